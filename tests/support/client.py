"""What tests do through the HTTP API: the demo tokens, a small config, agents,
contacts and actions, each asserting the call worked."""

from __future__ import annotations

import functools
from typing import Any

import aiohttp
from aiohttp.test_utils import TestClient

from router.runtime.settings import DEMO_JWT_SECRET
from router.security.auth import mint

GW = {"Authorization": "Bearer demo-gateway"}
# A static agent token: it acts only as agent "agent-desktop" (its name). A test
# acting for agent X uses agent_headers(X) / AG_FOR(X), a signed token for X.
AG = {"Authorization": "Bearer demo-agent"}
SUP = {"Authorization": "Bearer demo-supervisor"}  # static: sees every team
ADM = {"Authorization": "Bearer demo-admin"}
# Signs the tests' agent and supervisor tokens; the test services and the router
# processes of tests/support/procs.py verify with it (ROUTER_JWT_SECRET).
JWT_SECRET = DEMO_JWT_SECRET


@functools.cache
def agent_token(aid: str) -> str:
    return mint(JWT_SECRET, aid, "agent", ttl=24 * 3600)


def agent_headers(aid: str) -> dict[str, str]:
    """Bearer headers of agent `aid`'s desktop (a signed token with sub = aid)."""
    return {"Authorization": "Bearer " + agent_token(aid)}


AG_FOR = agent_headers


def supervisor_headers(sub: str, teams: list[str] | None = None, **claims: Any) -> dict[str, str]:
    """Bearer headers of a signed supervisor token: `teams` scopes it (None: every
    team), `claims` adds others (e.g. `workspaces`)."""
    return {"Authorization": "Bearer " + mint(JWT_SECRET, sub, "supervisor", teams=teams, **claims)}


def small_config(**defaults: Any) -> dict[str, Any]:
    """Two pools and a bullseye rule: enough to exercise ordering and stages."""
    return {
        "tiers": {"vip": {"priority_offset": 120}, "standard": {"priority_offset": 0}},
        "channels": {
            "voice": {"weight": 100, "offer_timeout": 20, "wrap_up": 0},
            "chat": {"weight": 25, "offer_timeout": 20, "wrap_up": 0},
        },
        "skills": ["cards", "loans"],
        "pools": {
            "cards": {"skills": [{"skill": "cards", "min": 1}], "channels": ["voice", "chat"]},
            "loans": {"skills": [{"skill": "loans", "min": 1}], "channels": ["voice", "chat"]},
        },
        "rules": [],
        "defaults": {"tier": "standard", "stages": [{"pools": ["cards"]}], **defaults},
    }


async def put_config(api: TestClient, ws: str, cfg: dict[str, Any]) -> dict[str, Any]:  # type: ignore[type-arg]
    r = await api.put(f"/v1/workspaces/{ws}", json=cfg, headers=ADM)
    assert r.status == 200, await r.text()
    return await r.json()  # type: ignore[no-any-return]


async def add_agent(
    api: TestClient,
    ws: str,
    aid: str,
    skills: dict[str, int],  # type: ignore[type-arg]
    capacity: int = 100,
    available: bool = True,
    **fields: str | None,
) -> dict[str, Any]:
    """PUT the agent (`fields`: team, supervisor, ... when not None) and, when
    `available`, make it available with its own desktop's token."""
    body = {"skills": skills, "capacity": capacity}
    body |= {k: v for k, v in fields.items() if v is not None}
    r = await api.put(f"/v1/workspaces/{ws}/agents/{aid}", json=body, headers=SUP)
    assert r.status == 200, await r.text()
    if available:
        r = await api.post(
            f"/v1/workspaces/{ws}/agents/{aid}/state",
            json={"state": "available"},
            headers=agent_headers(aid),
        )
        assert r.status == 200, await r.text()
    return await r.json()  # type: ignore[no-any-return]


async def create(
    api: TestClient,
    ws: str,
    cid: str,
    channel: str = "voice",  # type: ignore[type-arg]
    tier: str = "standard",
    **extra: Any,
) -> dict[str, Any]:
    body = {"id": cid, "channel": channel, "customer": {"id": "cu-" + cid, "tier": tier}, **extra}
    r = await api.post(f"/v1/workspaces/{ws}/contacts", json=body, headers=GW)
    assert r.status in (200, 201), await r.text()
    return await r.json()  # type: ignore[no-any-return]


async def act(api: TestClient, ws: str, cid: str, action: str, **body: Any) -> Any:  # type: ignore[type-arg]
    aid = body.get("agent_id")
    if action in ("accept", "reject", "complete", "respond") and isinstance(aid, str):
        headers = agent_headers(aid)  # the agent's own desktop acts
    else:
        headers = AG if action in ("accept", "reject", "complete") else GW
    return await api.post(
        f"/v1/workspaces/{ws}/contacts/{cid}/{action}", json=body, headers=headers
    )


async def ready_agent(http: aiohttp.ClientSession, ws: str, aid: str = "a1") -> None:
    """Over a running replica's HTTP (`http` has its base URL): the small config,
    agent `aid` with the cards skill, and that agent available."""
    base = f"/v1/workspaces/{ws}"
    steps = [
        ("PUT", base, small_config(), ADM),
        ("PUT", f"{base}/agents/{aid}", {"skills": {"cards": 5}}, SUP),
        ("POST", f"{base}/agents/{aid}/state", {"state": "available"}, agent_headers(aid)),
    ]
    for method, path, body, headers in steps:
        async with http.request(method, path, json=body, headers=headers) as r:
            assert r.status == 200, await r.text()
