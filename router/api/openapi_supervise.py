"""The supervisor actions' part of the OpenAPI document (`openapi.py` assembles
it): the agents list, a pool's waiting list, assign."""

from __future__ import annotations

from typing import Any

from router.api.openapi_parts import NAME, Route, operation, query, ref
from router.routing import supervise
from router.routing.model import AgentPage, AssignIn, ContactOut, WaitingPage

TYPES: tuple[Any, ...] = (AgentPage, WaitingPage, AssignIn)

_AGENT_CURSOR = {"type": "string", "pattern": "^[A-Za-z0-9_.:@-]{1,128}$"}
_RANK_CURSOR = {"type": "string", "pattern": "^-?[0-9]{1,20}:[A-Za-z0-9_.:@-]{1,128}$"}
_STATES = {"type": "string", "enum": ["offline", "available", "break", "missed"]}


def _limit() -> dict[str, Any]:
    limit = {"type": "integer", "minimum": 1, "maximum": supervise.LIMIT_MAX, "default": 50}
    return query("limit", limit, "Entries per page")


def supervise_routes(b: str) -> list[Route]:
    agents = operation(
        "Agents by id, paged; a team-scoped supervisor sees its teams' only",
        ref(AgentPage),
        params=[
            query("cursor", _AGENT_CURSOR, "The `next` of the previous page"),
            _limit(),
            query("state", _STATES, "Only agents in this state"),
            query("team", NAME, "Only agents of this team"),
            query("pool", NAME, "Only members of this pool"),
        ],
    )
    waiting = operation(
        "Contacts waiting in the pool in rank order, masked, paged",
        ref(WaitingPage),
        params=[query("cursor", _RANK_CURSOR, "The `next` of the previous page"), _limit()],
    )
    assign = operation(
        "Offer a waiting contact to a named agent now (supervisor); 409 names why the "
        "agent cannot take it (agent_id, skills, channel, capacity)",
        ref(ContactOut),
        AssignIn,
    )
    return [
        ("get", b + "/agents", agents),
        ("get", b + "/pools/{pool_id}/waiting", waiting),
        ("post", b + "/contacts/{contact_id}/assign", assign),
    ]
