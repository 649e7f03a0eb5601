"""Personal data of a contact: what each caller sees.

How they are stored is `router/routing/personal.py`. Responses show them by
caller: the agent the contact is offered or assigned to sees them in full;
everyone else (supervisors, the creating gateway, admins) sees them masked:
name -> initials, phone -> its last 2 digits, national ID -> its last 4
characters, note -> "[redacted]". A callback's number (`callback.phone`) is
personal data too, masked like the phone. So are a bot hand-off's summary
(-> "[redacted]") and collected fields (each value -> "***"); its bot,
intent, confidence and transcript reference are not personal and stay.
"""

from __future__ import annotations

import msgspec

from router.routing.model import (
    CallbackOut,
    ContactOut,
    HandoffOut,
    PersonalOut,
    WaitingContact,
)
from router.runtime.settings import Token

REDACTED = "[redacted]"
_HIDDEN = "***"


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


def mask_callback(cb: CallbackOut) -> CallbackOut:
    if cb.masked:
        return cb
    phone = last(cb.phone, 2) if cb.phone is not None else None
    return msgspec.structs.replace(cb, phone=phone, masked=True)


def mask_handoff(h: HandoffOut) -> HandoffOut:
    if h.masked:
        return h
    return msgspec.structs.replace(
        h,
        masked=True,
        summary=REDACTED if h.summary is not None else None,
        fields=dict.fromkeys(h.fields, _HIDDEN),
    )


def present(token: Token, contact: ContactOut) -> ContactOut:
    """The contact as `token` may see it: in full only for the agent holding it."""
    if token.role == "agent" and contact.agent == token.name:
        return contact
    personal, callback, handoff = contact.personal, contact.callback, contact.handoff
    if all(p is None or p.masked for p in (personal, callback, handoff)):
        return contact
    return msgspec.structs.replace(
        contact,
        personal=mask(personal) if personal is not None else None,
        callback=mask_callback(callback) if callback is not None else None,
        handoff=mask_handoff(handoff) if handoff is not None else None,
    )


def present_waiting(item: WaitingContact) -> WaitingContact:
    """A waiting contact in a queue listing: held by no agent, so masked for everyone."""
    if item.personal is None or item.personal.masked:
        return item
    return msgspec.structs.replace(item, personal=mask(item.personal))
