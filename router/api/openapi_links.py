"""Operation ids and OpenAPI links of the HTTP API.

Links say which response value feeds which next request (a created contact's
`id` into `GET /contacts/{contact_id}` and its actions, an agent's `id` into its
state and offers), so clients and generators can follow the API as a graph
rather than guess identifiers. Every link keeps the workspace of the request.
"""

from __future__ import annotations

from typing import Any

__all__ = ["add_links"]

# Contact actions (POST /contacts/{contact_id}/<action>) in the order documented.
_ACTIONS = (
    "accept",
    "reject",
    "complete",
    "abandon",
    "transfer",
    "resolve",
    "respond",
    "rating",
    "pause",
    "resume",
)
# Operation id by method and path under /v1/workspaces/{ws}.
_IDS: dict[tuple[str, str], str] = {
    ("put", ""): "putConfig",
    ("get", ""): "getConfig",
    ("put", "/agents/{agent_id}"): "putAgent",
    ("get", "/agents/{agent_id}"): "getAgent",
    ("post", "/agents/{agent_id}/state"): "setAgentState",
    ("get", "/agents/{agent_id}/offers"): "getOffers",
    ("get", "/agents/{agent_id}/ws"): "agentSocket",
    ("post", "/contacts"): "createContact",
    ("get", "/contacts/{contact_id}"): "getContact",
    ("patch", "/contacts/{contact_id}"): "updateContact",
    ("get", "/contacts/{contact_id}/position"): "getContactPosition",
    ("get", "/pools"): "getPools",
    ("get", "/pools/{pool_id}"): "getPool",
    ("get", "/pools/{pool_id}/forecast"): "getForecast",
    ("get", "/pools/{pool_id}/staffing"): "getStaffing",
    ("get", "/events"): "getEvents",
    ("get", "/events/stream"): "streamEvents",
    ("get", "/wallboard"): "wallboardPage",
    ("get", "/wallboard/stream"): "wallboardStream",
    **{("post", f"/contacts/{{contact_id}}/{a}"): f"{a}Contact" for a in _ACTIONS},
    ("post", "/contacts/{contact_id}/callback"): "callbackContact",
    ("post", "/contacts/{contact_id}/callback/attempts"): "callbackAttempt",
    ("get", "/agents"): "listAgents",
    ("get", "/pools/{pool_id}/waiting"): "getPoolWaiting",
    ("post", "/contacts/{contact_id}/assign"): "assignContact",
}
_WS = {"ws": "$request.path.ws"}
_CONTACT = {"contact_id": "$response.body#/id"}
_AGENT = {"agent_id": "$response.body#/id"}
_POOL = {"pool_id": "$response.body#/id"}
_FIRST_POOL = "$response.body#/pools/0/id"
# Actions whose body names the acting agent: the one holding the contact.
_BY_HOLDER = frozenset({"accept", "reject", "complete", "respond"})


def _link(target: str, params: dict[str, str], body: Any = None) -> dict[str, Any]:
    link: dict[str, Any] = {"operationId": target, "parameters": {**_WS, **params}}
    if body is not None:
        link["requestBody"] = body
    return link


def _contact_links(params: dict[str, str], holder: str) -> dict[str, Any]:
    """From a contact in a response to reading it, changing it and every action on it."""
    links = {"GetContact": _link("getContact", params), "Update": _link("updateContact", params)}
    for action in _ACTIONS:
        body = {"agent_id": holder} if action in _BY_HOLDER else None
        links[action.capitalize()] = _link(f"{action}Contact", params, body)
    links["Callback"] = _link("callbackContact", params)
    links["Assign"] = _link("assignContact", params)
    links["Position"] = _link("getContactPosition", params)
    attempt = {"agent_id": holder, "outcome": "answered"}
    links["CallbackAttempt"] = _link("callbackAttempt", params, attempt)
    return links


def _agent_links() -> dict[str, Any]:
    return {
        "GetAgent": _link("getAgent", _AGENT),
        "SetAgentState": _link("setAgentState", _AGENT),
        "GetOffers": _link("getOffers", _AGENT),
    }


def _links_by_operation() -> dict[str, dict[str, dict[str, Any]]]:
    """Operation id -> response status -> links."""
    contact = _contact_links(_CONTACT, "$response.body#/agent")
    first_offer = _contact_links(
        {"contact_id": "$response.body#/offers/0/id"}, "$response.body#/agent_id"
    )
    workspace = {
        "GetConfig": _link("getConfig", {}),
        "GetPools": _link("getPools", {}),
        "GetEvents": _link("getEvents", {}),
        "CreateContact": _link("createContact", {}),
        "ListAgents": _link("listAgents", {}),
    }
    pool = {
        "GetStaffing": _link("getStaffing", _POOL),
        "GetForecast": _link("getForecast", _POOL),
        "GetWaiting": _link("getPoolWaiting", _POOL),
    }
    links: dict[str, dict[str, dict[str, Any]]] = {
        "putConfig": {"200": workspace},
        "createContact": {"201": contact, "200": contact},
        "getContact": {"200": contact},
        "updateContact": {"200": {"GetContact": _link("getContact", _CONTACT)}},
        "putAgent": {"200": _agent_links()},
        "setAgentState": {"200": _agent_links()},
        "getOffers": {"200": first_offer},
        "getPools": {"200": {"GetPool": _link("getPool", {"pool_id": _FIRST_POOL})}},
        "getPool": {"200": pool},
    }
    for op_id in (
        *(f"{a}Contact" for a in _ACTIONS),
        "callbackContact",
        "callbackAttempt",
        "assignContact",
    ):
        links[op_id] = {"200": {"GetContact": _link("getContact", _CONTACT)}}
    return links


def add_links(paths: dict[str, dict[str, Any]], base: str) -> None:
    """Sets `operationId` on the workspace operations and their responses' links."""
    links = _links_by_operation()
    for (method, suffix), op_id in _IDS.items():
        op = paths[base + suffix][method]
        op["operationId"] = op_id
        for status, by_name in links.get(op_id, {}).items():
            op["responses"][status]["links"] = by_name
