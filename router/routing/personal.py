"""Personal data of a contact: how it is stored.

The customer's name, phone, national ID number, the contact's free-text
note, the number a callback is made to (key `c`, written by callback.lua
when a waiting contact asks for one) and a bot hand-off's summary and
collected fields (keys `hs`, `hf`: free text and customer data) are stored
in one field of the contact record (`pii`, compact JSON, only when any is given) and nowhere else:
events, timelines, the audit trail, webhooks, metrics and logs never carry
them, and they expire with the record.
What each caller sees of them is `router/security/privacy.py`.
"""

from __future__ import annotations

import msgspec

from router.routing.model import ContactIn, PersonalOut

# Stored keys, short on purpose: the record of every contact carries them.
_KEYS = (("n", "name"), ("p", "phone"), ("i", "national_id"), ("t", "note"))
_DEC = msgspec.json.Decoder(dict[str, str | dict[str, str]])


def pack(body: ContactIn) -> str | None:
    """The `pii` field of a new contact record, or None when nothing personal was sent."""
    values = {
        "n": body.customer.name,
        "p": body.customer.phone,
        "i": body.customer.national_id,
        "t": body.note,
        "c": body.callback.phone if body.callback else None,
        "hs": body.handoff.summary if body.handoff else None,
        "hf": body.handoff.fields if body.handoff and body.handoff.fields else None,
    }
    kept = {k: v for k, v in values.items() if v is not None}
    return msgspec.json.encode(kept).decode() if kept else None


def unpack(stored: str | None) -> PersonalOut | None:
    """The full personal fields of a record's `pii` field."""
    if not stored:
        return None
    raw = _DEC.decode(stored)
    given = {name: v for k, name in _KEYS if isinstance(v := raw.get(k), str)}
    if not given:  # only a callback's number or a hand-off's data
        return None
    return PersonalOut(masked=False, **given)


def callback_phone(stored: str | None) -> str | None:
    """The number a callback is made to, in full."""
    phone = _DEC.decode(stored).get("c") if stored else None
    return phone if isinstance(phone, str) else None


def handoff_personal(stored: str | None) -> tuple[str | None, dict[str, str]]:
    """A bot hand-off's summary and collected fields, in full."""
    raw = _DEC.decode(stored) if stored else {}
    summary, fields = raw.get("hs"), raw.get("hf")
    return (
        summary if isinstance(summary, str) else None,
        fields if isinstance(fields, dict) else {},
    )
