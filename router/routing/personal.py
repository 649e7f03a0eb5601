"""Personal data of a contact: how it is stored.

The customer's name, phone, national ID number, the contact's free-text
note and the number a callback is made to (key `c`, written by callback.lua
when a waiting contact asks for one) are stored in one field of the contact
record (`pii`, compact JSON, only when any is given) and nowhere else:
events, timelines, the audit trail, webhooks, metrics and logs never carry
them, and they expire with the record.
What each caller sees of them is `router/security/privacy.py`.
"""

from __future__ import annotations

import msgspec

from router.routing.model import ContactIn, PersonalOut

# Stored keys, short on purpose: the record of every contact carries them.
_KEYS = (("n", "name"), ("p", "phone"), ("i", "national_id"), ("t", "note"))
_DEC = msgspec.json.Decoder(dict[str, str])


def pack(body: ContactIn) -> str | None:
    """The `pii` field of a new contact record, or None when nothing personal was sent."""
    values = {
        "n": body.customer.name,
        "p": body.customer.phone,
        "i": body.customer.national_id,
        "t": body.note,
        "c": body.callback.phone if body.callback else None,
    }
    kept = {k: v for k, v in values.items() if v is not None}
    return msgspec.json.encode(kept).decode() if kept else None


def unpack(stored: str | None) -> PersonalOut | None:
    """The full personal fields of a record's `pii` field."""
    if not stored:
        return None
    raw = _DEC.decode(stored)
    if not any(k in raw for k, _ in _KEYS):  # only a callback's number
        return None
    return PersonalOut(masked=False, **{name: raw[k] for k, name in _KEYS if k in raw})


def callback_phone(stored: str | None) -> str | None:
    """The number a callback is made to, in full."""
    return _DEC.decode(stored).get("c") if stored else None
