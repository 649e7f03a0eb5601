"""The engine's error hierarchy. Each maps to one problem+json (RFC 9457) response.

Messages carry the offending values so a caller can fix the request without
reading server logs; they never carry personal data or secrets.
"""

from __future__ import annotations

from msgspec import Struct


class FieldProblem(Struct, frozen=True):
    """One problem with one field, located by a dotted path (`pools.cards.channels[0]`)."""

    field: str
    message: str


class RouterError(Exception):
    status = 500
    title = "Internal error"
    slug = "internal"

    def __init__(self, detail: str, *, field: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.field = field

    def extra(self) -> dict[str, object]:
        """Members added to the problem document beyond type/title/status/detail."""
        return {"field": self.field} if self.field else {}


class BadRequest(RouterError):
    status = 400
    title = "Bad request"
    slug = "bad-request"


class InvalidInput(RouterError):
    """The body parsed but is not acceptable; lists every problem found."""

    status = 422
    title = "Invalid input"
    slug = "invalid"

    def __init__(self, problems: list[FieldProblem]) -> None:
        first = problems[0] if problems else FieldProblem("", "invalid")
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        super().__init__(f"{first.field}: {first.message}{more}", field=first.field)
        self.problems = problems

    def extra(self) -> dict[str, object]:
        return {
            "field": self.field,
            "errors": [{"field": p.field, "message": p.message} for p in self.problems],
        }


class Unauthorized(RouterError):
    status = 401
    title = "Unauthorized"
    slug = "unauthorized"


class Forbidden(RouterError):
    status = 403
    title = "Forbidden"
    slug = "forbidden"


class NotFound(RouterError):
    status = 404
    title = "Not found"
    slug = "not-found"


class PayloadTooLarge(RouterError):
    status = 413
    title = "Payload too large"
    slug = "too-large"


class Conflict(RouterError):
    """An illegal transition: carries the current state so the caller can resync."""

    status = 409
    title = "Conflict"
    slug = "conflict"

    def __init__(self, detail: str, *, state: str | None = None, field: str | None = None) -> None:
        super().__init__(detail, field=field)
        self.state = state

    def extra(self) -> dict[str, object]:
        out = super().extra()
        if self.state is not None:
            out["state"] = self.state
        return out


class StillHolding(Conflict):
    """A sign-out refused while the agent holds answered contacts: lists them
    (`contacts`) so the supervisor can transfer them first."""

    def __init__(self, *, state: str, contacts: list[str]) -> None:
        held = ", ".join(contacts)
        detail = f"agent still holds answered contacts ({held}): transfer them first"
        super().__init__(detail, state=state, field="state")
        self.contacts = contacts

    def extra(self) -> dict[str, object]:
        return {**super().extra(), "contacts": self.contacts}


class QueueFull(RouterError):
    status = 429
    title = "Queue full"
    slug = "queue-full"


class Unavailable(RouterError):
    status = 503
    title = "Service unavailable"
    slug = "unavailable"
    retry_after = 1


class NotReplicated(Unavailable):
    """The change is on the primary but did not reach the replicas the write
    guarantee asks for in time: it may not survive a failover, so it is not
    acknowledged. A retry is safe (creation is idempotent on the contact id)."""

    slug = "not-replicated"
