"""Personal data of a contact: how it is stored and what each caller sees.

The customer's name, phone, national ID number and the contact's free-text
note are stored in one field of the contact record (`pii`, compact JSON, only
when any is given) and nowhere else: events, timelines, the audit trail,
webhooks, metrics and logs never carry them, and they expire with the record.

Responses show them by caller: the agent the contact is offered or assigned to
sees them in full; everyone else (supervisors, the creating gateway, admins)
sees them masked: name -> initials, phone -> its last 2 digits, national ID ->
its last 4 characters, note -> "[redacted]".
"""

from __future__ import annotations

import msgspec

from router.model import ContactIn, ContactOut, PersonalOut
from router.settings import Token

REDACTED = "[redacted]"
_HIDDEN = "***"
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
    }
    kept = {k: v for k, v in values.items() if v is not None}
    return msgspec.json.encode(kept).decode() if kept else None


def unpack(stored: str | None) -> PersonalOut | None:
    """The full personal fields of a record's `pii` field."""
    if not stored:
        return None
    raw = _DEC.decode(stored)
    return PersonalOut(masked=False, **{name: raw[k] for k, name in _KEYS if k in raw})


def initials(name: str) -> str:
    return " ".join(part[0] + "." for part in name.split())


def last(value: str, keep: int) -> str:
    """`***` and the last `keep` letters or digits; all hidden when that would show it all."""
    chars = [c for c in value if c.isalnum()]
    return _HIDDEN + ("".join(chars[-keep:]) if len(chars) > keep else "")


def mask(p: PersonalOut) -> PersonalOut:
    if p.masked:
        return p
    return PersonalOut(
        masked=True,
        name=initials(p.name) if p.name is not None else None,
        phone=last(p.phone, 2) if p.phone is not None else None,
        national_id=last(p.national_id, 4) if p.national_id is not None else None,
        note=REDACTED if p.note is not None else None,
    )


def present(token: Token, contact: ContactOut) -> ContactOut:
    """The contact as `token` may see it: in full only for the agent holding it."""
    if contact.personal is None or contact.personal.masked:
        return contact
    if token.role == "agent" and contact.agent == token.name:
        return contact
    return msgspec.structs.replace(contact, personal=mask(contact.personal))
