"""Bad requests get a 4xx problem+json naming the field (or the current state) and
change nothing in Redis: every key of the workspace, events stream included, is
byte-for-byte the same afterwards."""

from __future__ import annotations

import json
from typing import Any

import pytest
from redis.asyncio import Redis

from tests.support.client import (
    ADM,
    AG_FOR,
    GW,
    SUP,
    act,
    add_agent,
    create,
    put_config,
    small_config,
)

# "ag" is agent a1's desktop, "ghost" the desktop of an agent that does not exist;
# contacts or agents outside a caller's scope are 403 (tests/security/test_access.py), so
# the unknown-id and conflict cases use callers whose scope covers them.
ROLES: dict[str, dict[str, str]] = {
    "gw": GW,
    "ag": AG_FOR("a1"),
    "ghost": AG_FOR("nope"),
    "sup": SUP,
    "adm": ADM,
    "none": {},
    "bad": {"Authorization": "Bearer not-a-token"},
    "basic": {"Authorization": "Basic YTpi"},
}
CONTACT = {"id": "new", "channel": "voice", "customer": {"id": "cu-1"}}
BIG = "x" * (65 * 1024)


def contact(**changes: Any) -> dict[str, Any]:
    return {**CONTACT, **changes}


async def dump(r: Redis, key: str) -> object:
    kind = await r.type(key)
    if kind == "string":
        return await r.get(key)
    if kind == "hash":
        return await r.hgetall(key)  # type: ignore[misc]
    if kind == "list":
        return await r.lrange(key, 0, -1)  # type: ignore[misc]
    if kind == "set":
        return sorted(await r.smembers(key))  # type: ignore[misc]
    if kind == "zset":
        return await r.zrange(key, 0, -1, withscores=True)
    if kind == "stream":
        return await r.xrange(key)
    return kind


async def snapshot(redis_url: str, *names: str) -> dict[str, object]:
    """Every key (and value) of the named workspaces, and their registration."""
    r = Redis.from_url(redis_url, decode_responses=True)
    try:
        out: dict[str, object] = {}
        for name in names:
            async for key in r.scan_iter(match=f"{{ws:{name}}}*", count=1000):
                out[key] = await dump(r, key)
            out["registered:" + name] = await r.sismember("router:workspaces", name)  # type: ignore[misc]
        return out
    finally:
        await r.aclose()


async def world(api: Any, ws: str) -> None:
    """a1 available holding offer `off`; a2 offline; `q` queued; `done` completed."""
    await put_config(api, ws, small_config())
    await add_agent(api, ws, "a1", {"cards": 5})
    await add_agent(api, ws, "a2", {"cards": 5}, available=False)
    assert (await create(api, ws, "done"))["agent"] == "a1"
    assert (await act(api, ws, "done", "accept", agent_id="a1")).status == 200
    assert (await act(api, ws, "done", "complete", agent_id="a1")).status == 200
    assert (await create(api, ws, "off"))["agent"] == "a1"
    assert (await create(api, ws, "q"))["state"] == "queued"


# (method, path under /v1/workspaces/{ws}, role, body, status, field, state); a
# body of bytes is sent as is, a dict as JSON, None as no body.
C = "/contacts"
CASES: dict[str, dict[str, tuple[Any, ...]]] = {
    "auth": {  # authentication and roles
        "no token": ("POST", C, "none", CONTACT, 401, None, None),
        "unknown token": ("POST", C, "bad", CONTACT, 401, None, None),
        "not bearer": ("GET", C + "/q", "basic", None, 401, None, None),
        "agent creates contact": ("POST", C, "ag", CONTACT, 403, None, None),
        "gateway puts config": ("PUT", "", "gw", small_config(), 403, None, None),
        "agent puts agent": ("PUT", "/agents/a3", "ag", {"skills": {}}, 403, None, None),
        "agent abandons": ("POST", C + "/q/abandon", "ag", {}, 403, None, None),
    },
    "malformed": {  # malformed JSON and missing bodies
        "truncated contact": ("POST", C, "gw", b'{"id": "x", ', 400, None, None),
        "not json": ("POST", C, "gw", b"id=x&channel=voice", 400, None, None),
        "no body": ("POST", C, "gw", None, 400, None, None),
        "accept no body": ("POST", C + "/off/accept", "ag", None, 400, None, None),
        "truncated config": ("PUT", "", "adm", b'{"tiers": {', 400, None, None),
        "deep config": ("PUT", "", "adm", b"[" * 50_000, 400, None, None),
        "truncated state": ("POST", "/agents/a1/state", "ag", b"{state", 400, None, None),
    },
    "types": {  # wrong types and values
        "array body": ("POST", C, "gw", b"[]", 422, None, None),
        "id type": ("POST", C, "gw", contact(id=5), 422, "id", None),
        "id chars": ("POST", C, "gw", contact(id="has space"), 422, "id", None),
        "tier type": (
            "POST",
            C,
            "gw",
            contact(customer={"id": "c", "tier": 5}),
            422,
            "customer.tier",
            None,
        ),
        "flags type": (
            "POST",
            C,
            "gw",
            contact(customer={"id": "c", "flags": "vip"}),
            422,
            "customer.flags",
            None,
        ),
        "skill min": (
            "POST",
            C,
            "gw",
            contact(skills=[{"skill": "cards", "min": 11}]),
            422,
            "skills[0].min",
            None,
        ),
        "capacity type": (
            "PUT",
            "/agents/a3",
            "sup",
            {"skills": {}, "capacity": "lots"},
            422,
            "capacity",
            None,
        ),
        "capacity zero": (
            "PUT",
            "/agents/a1",
            "sup",
            {"skills": {}, "capacity": 0},
            422,
            "capacity",
            None,
        ),
        "state value": ("POST", "/agents/a1/state", "ag", {"state": "asleep"}, 422, "state", None),
        "agent_id type": ("POST", C + "/off/accept", "ag", {"agent_id": 7}, 422, "agent_id", None),
        "rules type": ("PUT", "", "adm", {**small_config(), "rules": 3}, 422, "rules", None),
        "wait value": ("GET", "/agents/a1/offers?wait=soon", "ag", None, 422, "wait", None),
        "wait range": ("GET", "/agents/a1/offers?wait=-1", "ag", None, 422, "wait", None),
    },
    "unknown_fields": {  # unknown fields
        "contact extra": ("POST", C, "gw", contact(priority=1), 422, "priority", None),
        "customer extra": (
            "POST",
            C,
            "gw",
            contact(customer={"id": "c", "ssn": "1"}),
            422,
            "customer.ssn",
            None,
        ),
        "agent extra": (
            "PUT",
            "/agents/a3",
            "sup",
            {"skills": {}, "colour": "red"},
            422,
            "colour",
            None,
        ),
        "accept extra": (
            "POST",
            C + "/off/accept",
            "ag",
            {"agent_id": "a1", "now": True},
            422,
            "now",
            None,
        ),
        "config extra": ("PUT", "", "adm", {**small_config(), "extra": 1}, 422, "extra", None),
    },
    "missing": {  # missing required fields
        "no channel": ("POST", C, "gw", {"id": "x", "customer": {"id": "c"}}, 422, "channel", None),
        "no customer id": ("POST", C, "gw", contact(customer={}), 422, "customer.id", None),
        "no skills": ("PUT", "/agents/a3", "sup", {"capacity": 100}, 422, "skills", None),
        "no agent_id": ("POST", C + "/off/accept", "ag", {}, 422, "agent_id", None),
        "no state": ("POST", "/agents/a1/state", "ag", {}, 422, "state", None),
        "config no pools": (
            "PUT",
            "",
            "adm",
            {k: v for k, v in small_config().items() if k != "pools"},
            422,
            "pools",
            None,
        ),
    },
    "unknown_names": {  # valid shape, unknown names
        "unknown channel": ("POST", C, "gw", contact(channel="fax"), 422, "channel", None),
        "unknown tier": (
            "POST",
            C,
            "gw",
            contact(customer={"id": "c", "tier": "gold"}),
            422,
            "customer.tier",
            None,
        ),
        "unknown skill": (
            "POST",
            C,
            "gw",
            contact(skills=[{"skill": "golf"}]),
            422,
            "skills[0].skill",
            None,
        ),
        "agent unknown skill": (
            "PUT",
            "/agents/a3",
            "sup",
            {"skills": {"golf": 3}},
            422,
            "skills.golf",
            None,
        ),
        "transfer unknown pool": (
            "POST",
            C + "/q/transfer",
            "gw",
            {"pool": "golf"},
            422,
            "pool",
            None,
        ),
        "transfer unknown agent": (
            "POST",
            C + "/q/transfer",
            "gw",
            {"agent_id": "zz"},
            422,
            "agent_id",
            None,
        ),
        "transfer both": (
            "POST",
            C + "/q/transfer",
            "gw",
            {"pool": "loans", "agent_id": "a2"},
            422,
            "pool",
            None,
        ),
        "transfer neither": ("POST", C + "/q/transfer", "gw", {}, 422, "pool", None),
    },
    "oversized": {  # oversized bodies (> 64 KiB)
        "big contact": ("POST", C, "gw", contact(attributes={"note": BIG}), 413, None, None),
        "big agent": ("PUT", "/agents/a3", "sup", {"skills": {}, "team": BIG}, 413, None, None),
        "big config": ("PUT", "", "adm", {**small_config(), "description": BIG}, 413, None, None),
        "big accept": ("POST", C + "/off/accept", "ag", {"agent_id": BIG}, 413, None, None),
        "long attribute": (
            "POST",
            C,
            "gw",
            contact(attributes={"note": "x" * 2000}),
            422,
            "attributes",
            None,
        ),
    },
    "not_found": {  # unknown workspace, contact, agent, route
        "ghost ws contact": ("POST", "!" + C, "gw", CONTACT, 404, "ws", None),
        "ghost ws get": ("GET", "!" + C + "/q", "gw", None, 404, "ws", None),
        "ghost ws config": ("GET", "!", "sup", None, 404, "ws", None),
        "ghost ws agent": ("PUT", "!/agents/a1", "sup", {"skills": {}}, 404, "ws", None),
        "ghost ws state": (
            "POST",
            "!/agents/a1/state",
            "ag",
            {"state": "available"},
            404,
            "ws",
            None,
        ),
        "ghost ws accept": (
            "POST",
            "!" + C + "/off/accept",
            "ag",
            {"agent_id": "a1"},
            404,
            "ws",
            None,
        ),
        "ghost ws bad config": ("PUT", "!", "adm", {"tiers": {}}, 422, None, None),
        "unknown contact": ("GET", C + "/nope", "sup", None, 404, "contact_id", None),
        "bad contact id": ("GET", C + "/no%20pe", "gw", None, 404, "contact_id", None),
        "accept unknown": (
            "POST",
            C + "/nope/accept",
            "sup",
            {"agent_id": "a1"},
            404,
            "contact_id",
            None,
        ),
        "abandon unknown": ("POST", C + "/nope/abandon", "sup", {}, 404, "contact_id", None),
        "transfer unknown": (
            "POST",
            C + "/nope/transfer",
            "sup",
            {"pool": "cards"},
            404,
            "contact_id",
            None,
        ),
        "unknown agent": ("GET", "/agents/nope", "sup", None, 404, "agent_id", None),
        "unknown agent state": (
            "POST",
            "/agents/nope/state",
            "ghost",
            {"state": "available"},
            404,
            "agent_id",
            None,
        ),
        "unknown agent offers": (
            "GET",
            "/agents/nope/offers",
            "ghost",
            None,
            404,
            "agent_id",
            None,
        ),
        "unknown agent ws": ("GET", "/agents/nope/ws", "ghost", None, 404, "agent_id", None),
        "unknown pool": ("GET", "/pools/nope", "sup", None, 404, "pool_id", None),
        "unknown action": ("POST", C + "/q/explode", "gw", {}, 404, None, None),
        "wrong method": ("DELETE", C + "/q", "adm", None, 405, None, None),
    },
    "conflict": {  # illegal transitions
        "accept queued": ("POST", C + "/q/accept", "sup", {"agent_id": "a1"}, 409, None, "queued"),
        "complete offered": (
            "POST",
            C + "/off/complete",
            "ag",
            {"agent_id": "a1"},
            409,
            None,
            "offered",
        ),
        "accept by other": (
            "POST",
            C + "/off/accept",
            "sup",
            {"agent_id": "a2"},
            409,
            None,
            "offered",
        ),
        "reject by other": (
            "POST",
            C + "/off/reject",
            "sup",
            {"agent_id": "a2"},
            409,
            None,
            "offered",
        ),
        "reject queued": ("POST", C + "/q/reject", "sup", {"agent_id": "a1"}, 409, None, "queued"),
        "abandon completed": ("POST", C + "/done/abandon", "gw", {}, 409, None, "completed"),
        "complete completed": (
            "POST",
            C + "/done/complete",
            "ag",
            {"agent_id": "a1"},
            409,
            None,
            "completed",
        ),
        "transfer completed": (
            "POST",
            C + "/done/transfer",
            "gw",
            {"pool": "loans"},
            409,
            None,
            "completed",
        ),
        "offline while holding": (
            "POST",
            "/agents/a1/state",
            "ag",
            {"state": "offline"},
            409,
            "state",
            "available",
        ),
    },
}


async def refused(api: Any, ws: str, redis_url: str, case: str, spec: tuple[Any, ...]) -> None:
    method, path, role, body, status, field, state = spec
    ghost = "g" + ws
    url = (
        f"/v1/workspaces/{ghost}{path[1:]}"
        if path.startswith("!")
        else f"/v1/workspaces/{ws}{path}"
    )
    data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    headers = {**ROLES[role], "Content-Type": "application/json"}
    before = await snapshot(redis_url, ws, ghost)
    r = await api.request(method, url, data=data, headers=headers)
    problem = json.loads(await r.read())
    assert r.status == status, (case, problem)
    assert r.content_type == "application/problem+json", case
    assert problem["status"] == status and problem["title"] and problem["detail"], case
    if field is not None:
        assert problem.get("field", "").startswith(field), (case, problem)
    if state is not None:
        assert problem["state"] == state, (case, problem)
    assert await snapshot(redis_url, ws, ghost) == before, f"{case} changed Redis"


@pytest.mark.parametrize("kind", list(CASES))
async def test_bad_requests_are_refused_and_change_nothing(
    api: Any, ws: str, redis_url: str, kind: str
) -> None:
    await world(api, ws)
    keys = await snapshot(redis_url, ws)
    assert {f"{{ws:{ws}}}:events", f"{{ws:{ws}}}:c:q", f"{{ws:{ws}}}:a:a1"} <= keys.keys()
    for case, spec in CASES[kind].items():
        await refused(api, ws, redis_url, case, spec)


async def test_stale_config_version_is_a_conflict(api: Any, ws: str, redis_url: str) -> None:
    await world(api, ws)
    before = await snapshot(redis_url, ws)
    headers = {**ADM, "If-Match": '"7"'}
    r = await api.put(f"/v1/workspaces/{ws}", json=small_config(), headers=headers)
    assert r.status == 409 and json.loads(await r.read())["field"] == "If-Match"
    assert await snapshot(redis_url, ws) == before


async def test_reads_change_nothing(api: Any, ws: str, redis_url: str) -> None:
    """The good read paths (what dashboards poll) write nothing, events included."""
    await world(api, ws)
    before = await snapshot(redis_url, ws)
    base = f"/v1/workspaces/{ws}"
    for path in (
        "",
        "/contacts/off",
        "/contacts/done",
        "/agents/a1",
        "/agents/a1/offers",
        "/pools",
        "/pools/cards",
    ):
        r = await api.get(base + path, headers=SUP)
        assert r.status == 200, path
    assert await snapshot(redis_url, ws) == before
