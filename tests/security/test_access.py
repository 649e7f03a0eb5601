"""Access control: identities (static hashes, signed tokens), scopes by role,
personal-data masking and the record of denied requests, against a real Redis."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import jwt
import msgspec
import pytest
from aiohttp.test_utils import TestClient
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from redis.asyncio import Redis

from router.api.app import create_app
from router.cli.main import main as cli_main
from router.runtime.settings import Settings, demo_token_spec, token_hash
from router.security import auth as auth_module
from router.security.auth import AUTH, mint
from router.store.keys import access_shard, access_stream
from router.store.local import free_port
from tests.support.client import (
    ADM,
    AG_FOR,
    GW,
    JWT_SECRET,
    SUP,
    act,
    add_agent,
    create,
    put_config,
    small_config,
    supervisor_headers,
)

PERSONAL = {"name": "Jane Q. Doe", "phone": "+44 20 7946 0958", "national_id": "AB123456C"}
NOTE = "Says the card was stolen in Lisbon on Tuesday"
FULL = {"masked": False, **PERSONAL, "note": NOTE}
MASKED = {
    "masked": True,
    "name": "J. Q. D.",
    "phone": "***58",
    "national_id": "***456C",
    "note": "[redacted]",
}
OPEN_ROUTES = {"/healthz", "/readyz", "/metrics", "/openapi.json", "/v1/workspaces/{ws}/wallboard"}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": "Bearer " + token}


supervisor = supervisor_headers


async def put_agent(
    api: TestClient,  # type: ignore[type-arg]
    ws: str,
    aid: str,
    team: str | None = None,
    sup: str | None = None,
    available: bool = True,
) -> None:
    """An agent skilled for `cards` in `team` under supervisor `sup`."""
    await add_agent(api, ws, aid, {"cards": 5}, available=available, team=team, supervisor=sup)


def public_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


async def app_with(aiohttp_client: Any, redis_url: str, **env: str) -> TestClient:  # type: ignore[type-arg]
    base = {
        "ROUTER_TOKENS": demo_token_spec(),
        "ROUTER_JWT_SECRET": JWT_SECRET,
        "ROUTER_METRICS_GROUP": uuid.uuid4().hex,
    }
    settings = Settings.from_env({**base, **env}, redis_url=redis_url, timer_poll=0.01)
    return await aiohttp_client(create_app(settings))  # type: ignore[no-any-return]


async def denied(
    r: aiohttp.ClientResponse, status: int, field: str | None = None
) -> dict[str, Any]:
    problem: dict[str, Any] = await r.json(content_type=None)
    assert r.status == status, problem
    assert r.content_type == "application/problem+json", problem
    assert problem["status"] == status and problem["detail"]
    if field is not None:
        assert problem.get("field") == field, problem
    return problem


# --- every route needs a role -----------------------------------------------------


async def test_no_route_is_left_without_a_role(api: Any) -> None:
    open_routes, closed = set(), []
    for route in api.app.router.routes():
        if route.method == "HEAD":
            continue
        path = route.resource.canonical
        if getattr(route.handler, "open_access", False) or path in OPEN_ROUTES:
            open_routes.add(path)
        else:
            roles = getattr(route.handler, "roles", None)
            assert roles and roles <= {"gateway", "agent", "supervisor", "admin"}, path
            closed.append((route.method, path))
    assert open_routes == OPEN_ROUTES
    assert len(closed) >= 25
    for method, path in closed:  # and without a token every one of them is 401
        url = (
            path.replace("{ws}", "w1")
            .replace("{agent_id}", "a1")
            .replace("{contact_id}", "c1")
            .replace("{pool_id}", "p1")
        )
        await denied(await api.request(method, url, json={}), 401)


# --- agents: only as themselves ----------------------------------------------------


async def test_an_agent_sees_and_acts_only_as_itself(api: Any, ws: str) -> None:
    await put_config(api, ws, small_config())
    await put_agent(api, ws, "a1")
    await put_agent(api, ws, "a2", available=False)
    base = f"/v1/workspaces/{ws}"
    a1, a2 = AG_FOR("a1"), AG_FOR("a2")
    assert (await create(api, ws, "c1"))["agent"] == "a1"

    # another agent: neither a1's routes nor a1's contact, whatever the body says
    for method, path, body in (
        ("GET", "/agents/a1", None),
        ("GET", "/agents/a1/offers?wait=0", None),
        ("POST", "/agents/a1/state", {"state": "break"}),
    ):
        r = await api.request(method, base + path, json=body, headers=a2)
        await denied(r, 403, "agent_id")
    with pytest.raises(aiohttp.WSServerHandshakeError) as handshake:
        await api.ws_connect(f"{base}/agents/a1/ws", headers=a2)
    assert handshake.value.status == 403
    await denied(await api.get(f"{base}/contacts/c1", headers=a2), 403, "contact_id")
    await denied(await act(api, ws, "c1", "accept", agent_id="a2"), 403, "contact_id")
    r = await api.post(f"{base}/contacts/c1/accept", json={"agent_id": "a1"}, headers=a2)
    await denied(r, 403, "agent_id")
    await denied(
        await api.post(f"{base}/contacts/c1/transfer", json={"pool": "loans"}, headers=a2),
        403,
        "contact_id",
    )
    # a contact that does not exist gets the same answer as someone else's
    seen = await denied(await api.get(f"{base}/contacts/c1", headers=a2), 403)
    ghost = await denied(await api.get(f"{base}/contacts/nope", headers=a2), 403)
    assert ghost == {**seen, "detail": seen["detail"].replace("'c1'", "'nope'")}
    assert (await denied(await act(api, ws, "nope", "complete", agent_id="a2"), 403)) == {**ghost}

    # the agent itself: its long-poll, WebSocket, the contact and its actions
    r = await api.get(f"{base}/agents/a1/offers?wait=0", headers=a1)
    assert [o["id"] for o in (await r.json())["offers"]] == ["c1"]
    sock = await api.ws_connect(f"{base}/agents/a1/ws", headers=a1)
    pushed = msgspec.json.decode(await asyncio.wait_for(sock.receive_bytes(), 5))
    assert [o["id"] for o in pushed["offers"]] == ["c1"]
    await sock.close()
    assert (await api.get(f"{base}/contacts/c1", headers=a1)).status == 200
    assert (await act(api, ws, "c1", "accept", agent_id="a1")).status == 200
    # a2 still may not finish a1's work; a1 sees a conflict on its own contact
    await denied(await act(api, ws, "c1", "complete", agent_id="a2"), 403, "contact_id")
    assert (await act(api, ws, "c1", "complete", agent_id="a1")).status == 200
    await denied(await act(api, ws, "c1", "complete", agent_id="a1"), 409)
    # handled before: still visible to a1 after it ended
    assert (await api.get(f"{base}/contacts/c1", headers=a1)).status == 200


async def test_an_agent_keeps_sight_of_a_contact_it_passed_on(api: Any, ws: str) -> None:
    await put_config(api, ws, small_config())
    await put_agent(api, ws, "a1")
    base = f"/v1/workspaces/{ws}"
    c = await create(api, ws, "c2", customer={"id": "cu-2", **PERSONAL}, note=NOTE)
    assert c["agent"] == "a1"
    assert (await act(api, ws, "c2", "reject", agent_id="a1")).status == 200
    await put_agent(api, ws, "a2")  # takes it: it is a2's now
    r = await api.get(f"{base}/contacts/c2", headers=AG_FOR("a2"))
    assert (await r.json())["agent"] == "a2" and (await r.json())["personal"] == FULL
    r = await api.get(f"{base}/contacts/c2", headers=AG_FOR("a1"))
    assert r.status == 200 and (await r.json())["personal"] == MASKED  # no longer its
    # only the holder transfers it
    await denied(
        await api.post(
            f"{base}/contacts/c2/transfer", json={"pool": "loans"}, headers=AG_FOR("a1")
        ),
        403,
        "contact_id",
    )
    r = await api.post(f"{base}/contacts/c2/transfer", json={"pool": "loans"}, headers=AG_FOR("a2"))
    assert r.status == 200 and (await r.json())["state"] == "queued"


# --- supervisors: their teams --------------------------------------------------------


async def test_a_supervisor_sees_its_teams_agents_and_their_contacts(api: Any, ws: str) -> None:
    await put_config(api, ws, small_config())
    await put_agent(api, ws, "a1", team="t1")
    await put_agent(api, ws, "a3", team="t3", sup="boss")
    base = f"/v1/workspaces/{ws}"
    s1 = supervisor("lead1", ["t1"])
    boss = supervisor("boss")  # no teams: the agents naming it as their supervisor
    assert (await create(api, ws, "c1", customer={"id": "cu", **PERSONAL}))["agent"] == "a1"
    assert (await create(api, ws, "c3"))["agent"] == "a3"
    assert (await create(api, ws, "q1"))["state"] == "queued"

    for who, mine, other in ((s1, "a1", "a3"), (boss, "a3", "a1")):
        for path in ("", "/offers?wait=0"):
            assert (await api.get(f"{base}/agents/{mine}{path}", headers=who)).status == 200
            await denied(
                await api.get(f"{base}/agents/{other}{path}", headers=who), 403, "agent_id"
            )
        cid, foreign = f"c{mine[1]}", f"c{other[1]}"
        assert (await api.get(f"{base}/contacts/{cid}", headers=who)).status == 200
        await denied(await api.get(f"{base}/contacts/{foreign}", headers=who), 403, "contact_id")
    # offers of its agent, masked; a contact nobody of its teams handled, or none at all
    r = await api.get(f"{base}/agents/a1/offers?wait=0", headers=s1)
    no_note = {k: v for k, v in MASKED.items() if k != "note"}  # none was sent
    assert (await r.json())["offers"][0]["personal"] == no_note
    for cid in ("q1", "nope"):
        await denied(await api.get(f"{base}/contacts/{cid}", headers=s1), 403, "contact_id")
    # acts for its agents only, and cannot move an agent into or out of its teams
    await denied(
        await api.post(f"{base}/agents/a3/state", json={"state": "break"}, headers=s1),
        403,
        "agent_id",
    )
    await denied(
        await api.post(f"{base}/contacts/c3/accept", json={"agent_id": "a3"}, headers=s1),
        403,
        "agent_id",
    )
    assert (
        await api.post(f"{base}/contacts/c1/accept", json={"agent_id": "a1"}, headers=s1)
    ).status == 200
    await denied(
        await api.put(f"{base}/agents/a1", json={"skills": {}, "team": "t3"}, headers=s1),
        403,
        "agent_id",
    )
    await denied(
        await api.put(f"{base}/agents/a3", json={"skills": {}, "team": "t1"}, headers=s1),
        403,
        "agent_id",
    )
    r = await api.put(f"{base}/agents/a9", json={"skills": {}, "team": "t1"}, headers=s1)
    assert r.status == 200
    # workspace aggregates stay visible
    for path in ("/pools", "/pools/cards", "/events?limit=5"):
        assert (await api.get(base + path, headers=s1)).status == 200, path
    # "*": every team, like the static supervisor token
    every = supervisor("lead2", ["*"])
    assert (await api.get(f"{base}/agents/a3", headers=every)).status == 200
    assert (await api.get(f"{base}/contacts/q1", headers=every)).status == 200


# --- gateways: their contacts; static tokens from a file ---------------------------


async def test_gateways_see_their_own_contacts_from_a_tokens_file(
    aiohttp_client: Any, redis_url: str, ws: str, tmp_path: Path
) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text(
        f"# gateways\nivr:gateway:{token_hash('tok-ivr')}\n\n"
        f"chat:gateway:{token_hash('tok-chat')}\n"
    )
    api = await app_with(
        aiohttp_client, redis_url, ROUTER_TOKENS="", ROUTER_TOKENS_FILE=str(tokens)
    )
    base = f"/v1/workspaces/{ws}"
    ivr, chat = bearer("tok-ivr"), bearer("tok-chat")
    # only the file's tokens: the demo admin of ROUTER_TOKENS is not configured here
    await denied(await api.put(base, json=small_config(), headers=ADM), 401)
    body = {"id": "c1", "channel": "voice", "customer": {"id": "cu"}}
    await denied(await api.post(f"{base}/contacts", json=body, headers=ivr), 404, "ws")
    admin = tmp_path / "tokens2"
    admin.write_text(tokens.read_text() + f"ops:admin:{token_hash('tok-ops')}\n")
    admin.replace(tokens)  # a rotated Kubernetes secret: picked up without a restart
    assert await asyncio.to_thread(api.app[AUTH]._reload)
    assert (await api.put(base, json=small_config(), headers=bearer("tok-ops"))).status == 200

    r = await api.post(f"{base}/contacts", json=body, headers=ivr)
    assert r.status == 201 and (await r.json())["gateway"] == "ivr"
    assert (await api.post(f"{base}/contacts", json=body, headers=ivr)).status == 200
    assert (await api.get(f"{base}/contacts/c1", headers=ivr)).status == 200
    # another gateway: not its contact, not even by retrying the id
    await denied(await api.post(f"{base}/contacts", json=body, headers=chat), 403, "id")
    await denied(await api.get(f"{base}/contacts/c1", headers=chat), 403, "contact_id")
    await denied(
        await api.post(f"{base}/contacts/c1/abandon", json={}, headers=chat), 403, "contact_id"
    )
    await denied(
        await api.post(f"{base}/contacts/nope/abandon", json={}, headers=chat), 403, "contact_id"
    )
    r = await api.post(f"{base}/contacts/c1/abandon", json={}, headers=ivr)
    assert r.status == 200 and (await r.json())["state"] == "abandoned"
    # rotation: a token taken out of the file stops working
    tokens.write_text(f"ivr:gateway:{token_hash('tok-ivr')}\n")
    assert await asyncio.to_thread(api.app[AUTH]._reload)
    await denied(await api.get(f"{base}/contacts/c1", headers=chat), 401)
    assert (await api.get(f"{base}/contacts/c1", headers=ivr)).status == 200


# --- personal data -----------------------------------------------------------------


async def dump_values(client: Redis, pattern: str = "*") -> dict[str, str]:
    """Every key matching `pattern` and its whole value as text."""
    out: dict[str, str] = {}
    async for key in client.scan_iter(match=pattern, count=1000):
        kind = await client.type(key)
        if kind == "string":
            value: Any = await client.get(key)
        elif kind == "hash":
            value = await client.hgetall(key)  # type: ignore[misc]
        elif kind == "list":
            value = await client.lrange(key, 0, -1)  # type: ignore[misc]
        elif kind == "set":
            value = await client.smembers(key)  # type: ignore[misc]
        elif kind == "zset":
            value = await client.zrange(key, 0, -1, withscores=True)
        elif kind == "stream":
            value = await client.xrange(key)
        else:
            value = kind
        out[key] = repr(value)
    return out


async def test_personal_fields_are_shown_by_role(api: Any, ws: str, redis_url: str) -> None:
    await put_config(api, ws, small_config())
    await put_agent(api, ws, "a1", team="t1")
    base = f"/v1/workspaces/{ws}"
    body = {"id": "p1", "channel": "voice", "customer": {"id": "cu-p", **PERSONAL}, "note": NOTE}
    r = await api.post(f"{base}/contacts", json=body, headers=GW)
    created = await r.json()
    assert r.status == 201 and created["agent"] == "a1"
    assert created["personal"] == MASKED  # the gateway's create reply masks too
    a1 = AG_FOR("a1")
    r = await api.get(f"{base}/agents/a1/offers", headers=a1)
    assert (await r.json())["offers"][0]["personal"] == FULL
    sock = await api.ws_connect(f"{base}/agents/a1/ws", headers=a1)
    assert msgspec.json.decode(await sock.receive_bytes())["offers"][0]["personal"] == FULL
    await sock.close()
    assert (await (await act(api, ws, "p1", "accept", agent_id="a1")).json())["personal"] == FULL
    views = {
        "agent": (a1, FULL),
        "supervisor": (supervisor("lead", ["t1"]), MASKED),
        "static supervisor": (SUP, MASKED),
        "gateway": (GW, MASKED),
        "admin": (ADM, MASKED),
    }
    for who, (headers, expected) in views.items():
        r = await api.get(f"{base}/contacts/p1", headers=headers)
        assert r.status == 200 and (await r.json())["personal"] == expected, who
    r = await api.post(f"{base}/contacts/p1/complete", json={"agent_id": "a1"}, headers=SUP)
    assert (await r.json())["personal"] == MASKED
    # a contact without personal fields carries none; short values are hidden whole
    assert (await create(api, ws, "p2"))["personal"] is None
    short = {
        "id": "p3",
        "channel": "voice",
        "note": "",
        "customer": {"id": "cu", "name": "Li", "phone": "12", "national_id": "A1"},
    }
    r = await api.post(f"{base}/contacts", json=short, headers=GW)
    assert (await r.json())["personal"] == {
        "masked": True,
        "name": "L.",
        "phone": "***",
        "national_id": "***",
        "note": "[redacted]",
    }
    for bad, field in (
        ({"phone": "call me"}, "customer.phone"),
        ({"national_id": "<script>"}, "customer.national_id"),
    ):
        wrong = {**body, "id": "p4", "customer": {"id": "cu", **bad}}
        await denied(await api.post(f"{base}/contacts", json=wrong, headers=GW), 422, field)
    await denied(
        await api.post(
            f"{base}/contacts", json={**body, "id": "p5", "note": "x" * 4097}, headers=GW
        ),
        422,
        "note",
    )
    # stored in the contact record alone: not in events, timelines or anything else
    client = Redis.from_url(redis_url, decode_responses=True)
    try:
        values = await dump_values(client)
    finally:
        await client.aclose()
    mine = f"{{ws:{ws}}}"
    holders = {
        k
        for k, v in values.items()  # other tests' workspaces aside
        if any(s in v for s in (*PERSONAL.values(), NOTE, "Jane"))
        and (k.startswith(mine) or not k.startswith("{ws:"))
    }
    assert holders == {f"{{ws:{ws}}}:c:p1"}


# --- signed tokens -----------------------------------------------------------------


def hs256_by_hand(claims: dict[str, Any], key: bytes) -> str:
    """HS256 with any key (PyJWT itself refuses a PEM key as an HMAC secret)."""

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    head = b64(b'{"alg":"HS256","typ":"JWT"}') + "." + b64(msgspec.json.encode(claims))
    return head + "." + b64(hmac.new(key, head.encode(), hashlib.sha256).digest())


def signed(claims: dict[str, Any], key: Any = JWT_SECRET, alg: str = "HS256") -> dict[str, str]:
    now = int(time.time())
    return bearer(jwt.encode({"iat": now, "exp": now + 600, **claims}, key, algorithm=alg))


async def test_signed_tokens_are_verified(aiohttp_client: Any, redis_url: str, ws: str) -> None:
    api = await app_with(
        aiohttp_client,
        redis_url,
        ROUTER_JWT_ISSUER="https://idp.bank",
        ROUTER_JWT_AUDIENCE="contact-router",
    )
    await put_config(api, ws, small_config())
    await put_agent(api, ws, "a1", available=False)
    url = f"/v1/workspaces/{ws}/agents/a1"
    good = {"sub": "a1", "role": "agent", "iss": "https://idp.bank", "aud": "contact-router"}
    assert (await api.get(url, headers=signed(good))).status == 200
    assert (await api.get(url, headers=signed({**good, "ws": [ws]}))).status == 200
    now = int(time.time())
    refused = {
        "bad signature": (
            signed(good, key="another-secret-of-at-least-32-chars!!"),
            "token signature is invalid",
        ),
        "expired": (signed({**good, "iat": now - 7200, "exp": now - 3600}), "token expired"),
        "wrong audience": (signed({**good, "aud": "crm"}), "token audience is not accepted"),
        "no audience": (
            signed({k: v for k, v in good.items() if k != "aud"}),
            "token lacks the required claim 'aud'",
        ),
        "wrong issuer": (signed({**good, "iss": "https://evil"}), "token issuer is not accepted"),
        "no exp": (
            bearer(jwt.encode(good, JWT_SECRET, algorithm="HS256")),
            "token lacks the required claim 'exp'",
        ),
        "admin role": (
            signed({**good, "role": "admin"}),
            "claim 'role' must be one of agent, supervisor",
        ),
        "alg none": (
            bearer(jwt.encode(good, None, algorithm="none")),
            "token algorithm must be one of HS256",
        ),
        "garbage": (bearer("a.b.c"), "token is malformed"),
    }
    for case, (headers, reason) in refused.items():
        problem = await denied(await api.get(url, headers=headers), 401)
        assert problem["detail"] == reason, case
    wrong_ws = await denied(
        await api.get(url, headers=signed({**good, "ws": ["other"]})), 403, "ws"
    )
    assert ws in wrong_ws["detail"]


async def test_public_key_tokens_and_the_cache(
    aiohttp_client: Any, redis_url: str, ws: str, tmp_path: Path, monkeypatch: Any
) -> None:
    private = ec.generate_private_key(ec.SECP256R1())
    pem = public_pem(private)
    (tmp_path / "idp.pem").write_bytes(pem)
    api = await app_with(
        aiohttp_client,
        redis_url,
        ROUTER_JWT_SECRET="",
        ROUTER_JWT_PUBLIC_KEY=str(tmp_path / "idp.pem"),
    )
    await put_config(api, ws, small_config())
    await put_agent(api, ws, "a1", team="t1", available=False)
    url = f"/v1/workspaces/{ws}/agents/a1"
    headers = signed({"sub": "s1", "role": "supervisor", "teams": ["t1"]}, private, "ES256")
    assert (await api.get(url, headers=headers)).status == 200
    # the public key used as an HMAC secret (algorithm confusion) is refused
    forged = hs256_by_hand({"sub": "a1", "role": "agent", "exp": int(time.time()) + 600}, pem)
    problem = await denied(await api.get(url, headers=bearer(forged)), 401)
    assert problem["detail"] == "token algorithm must be one of ES256"
    # verified once, then served from the cache; bounded, least recently used out
    auth = api.app[AUTH]
    monkeypatch.setattr(auth_module, "CACHE_SIZE", 2)
    auth._cache.clear()
    tokens = [
        signed({"sub": f"s{i}", "role": "supervisor", "teams": ["t1"]}, private, "ES256")
        for i in range(3)
    ]
    for h in tokens:
        assert (await api.get(url, headers=h)).status == 200
    assert len(auth._cache) == 2
    first = auth.identify(tokens[2]["Authorization"])
    assert auth.identify(tokens[2]["Authorization"]) is first


def test_token_command_mints_what_the_service_accepts(capsys: Any, monkeypatch: Any) -> None:
    monkeypatch.setenv("ROUTER_JWT_SECRET", JWT_SECRET)
    assert (
        cli_main(
            ["token", "--sub", "lead", "--role", "supervisor", "--teams", "t1,t2", "--ttl", "30m"]
        )
        == 0
    )
    token = capsys.readouterr().out.strip()
    settings = Settings.from_env({"ROUTER_JWT_SECRET": JWT_SECRET}, redis_url="redis://x")
    ident = auth_module.Authenticator(settings).identify("Bearer " + token)
    assert (ident.name, ident.role, ident.teams) == ("lead", "supervisor", frozenset({"t1", "t2"}))
    claims = jwt.decode(token, JWT_SECRET, algorithms=["HS256"])
    assert 1790 <= claims["exp"] - claims["iat"] <= 1800
    with pytest.raises(SystemExit):  # people only: gateways and admins have static tokens
        cli_main(["token", "--sub", "a1", "--role", "admin"])
    monkeypatch.delenv("ROUTER_JWT_SECRET")
    assert cli_main(["token", "--sub", "a1", "--role", "agent"]) == 2
    assert cli_main(["token", "--demo", "--sub", "a1", "--role", "agent", "--ttl", "soon"]) == 2
    assert "JwtVerifier" in repr(auth_module.Authenticator(settings))
    assert JWT_SECRET not in repr(settings) + repr(auth_module.Authenticator(settings))


# --- denials are recorded, never the token -------------------------------------------


async def test_denials_are_recorded_without_the_token(api: Any, ws: str, redis_url: str) -> None:
    await put_config(api, ws, small_config())
    await put_agent(api, ws, "a1")
    client = Redis.from_url(redis_url, decode_responses=True)
    try:
        stream = access_stream(access_shard("127.0.0.1"))  # this client's address
        last = await client.xrevrange(stream, count=1)
        start = last[0][0] if last else "0-0"
        agent = "x" + uuid.uuid4().hex[:8]
        own = mint(JWT_SECRET, agent, "agent")
        expired = jwt.encode(
            {"sub": "a1", "role": "agent", "exp": int(time.time()) - 3600},
            JWT_SECRET,
            algorithm="HS256",
        )
        garbage = "garbage-" + uuid.uuid4().hex
        base = f"/v1/workspaces/{ws}"
        await denied(await api.get(f"{base}/agents/a1?x=1", headers=bearer(own)), 403)
        await denied(await api.get(f"{base}/contacts/c9", headers=bearer(expired)), 401)
        await denied(await api.post(f"{base}/contacts", json={}, headers=bearer(garbage)), 401)
        await denied(await api.get(f"{base}/pools"), 401)
        expected = [
            {
                "actor": f"agent:{agent}",
                "method": "GET",
                "status": "403",
                "route": "/v1/workspaces/{ws}/agents/{agent_id}",
                "reason": f"this token acts only as agent {agent!r}, not 'a1'",
            },
            {
                "actor": "anonymous",
                "method": "GET",
                "status": "401",
                "reason": "token expired",
                "route": "/v1/workspaces/{ws}/contacts/{contact_id}",
            },
            {
                "actor": "anonymous",
                "method": "POST",
                "status": "401",
                "reason": "unknown token",
                "route": "/v1/workspaces/{ws}/contacts",
            },
            {
                "actor": "anonymous",
                "method": "GET",
                "status": "401",
                "route": "/v1/workspaces/{ws}/pools",
                "reason": "a bearer token is required (Authorization: Bearer <token>)",
            },
        ]
        entries: list[dict[str, str]] = []
        for _ in range(100):  # written in the background: at once, but not before the reply
            entries = [f for _, f in await client.xrange(stream, min="(" + start)]
            if len(entries) >= len(expected):
                break
            await asyncio.sleep(0.02)
        # each denial is written by its own background task, so two close
        # together may land in either order; each carries its own time (`at`)
        got = [{k: e[k] for k in expected[0]} for e in entries]
        assert sorted(got, key=str) == sorted(expected, key=str)
        for e in entries:
            assert e["remote"] == "127.0.0.1" and abs(int(e["at"]) / 1000 - time.time()) < 30
        values = "\n".join((await dump_values(client)).values())
        for secret in (own, expired, garbage, own.split(".")[2], JWT_SECRET):
            assert secret not in values
    finally:
        await client.aclose()


async def test_a_lost_access_record_is_counted(aiohttp_client: Any) -> None:
    """Redis unreachable: the denial is still answered at once, and the lost record
    is counted in router_access_log_failures_total."""
    api = await app_with(aiohttp_client, f"redis://127.0.0.1:{free_port()}")
    started = time.monotonic()
    await denied(await api.get("/v1/workspaces/w1/pools"), 401)
    assert time.monotonic() - started < 1.0
    await api.app[AUTH].drain()
    r = await api.get("/metrics")
    assert "router_access_log_failures_total 1.0" in await r.text()


async def test_signing_keys_rotate_without_downtime(
    aiohttp_client: Any, redis_url: str, ws: str, tmp_path: Path
) -> None:
    """During a rotation tokens signed with the old key and the new one both verify; a
    key never configured does not; once the old key is dropped its tokens stop."""
    old, new = "o" * 40, "n" * 40
    api = await app_with(
        aiohttp_client, redis_url, ROUTER_JWT_SECRET=new, ROUTER_JWT_PREVIOUS_SECRET=old
    )
    await put_config(api, ws, small_config())
    await put_agent(api, ws, "a1", team="t1", available=False)
    url = f"/v1/workspaces/{ws}/agents/a1"
    claims = {"sub": "s1", "role": "supervisor", "teams": ["t1"]}
    assert (await api.get(url, headers=signed(claims, new))).status == 200
    assert (await api.get(url, headers=signed(claims, old))).status == 200
    await denied(await api.get(url, headers=signed(claims, "x" * 40)), 401)
    after = await app_with(aiohttp_client, redis_url, ROUTER_JWT_SECRET=new)
    await denied(await after.get(url, headers=signed(claims, old)), 401)
    assert (await after.get(url, headers=signed(claims, new))).status == 200
    # an identity provider's key bundle: the current and the next public key
    keys = [ec.generate_private_key(ec.SECP256R1()) for _ in range(2)]
    bundle = b"".join(public_pem(k) for k in keys)
    (tmp_path / "bundle.pem").write_bytes(bundle)
    idp = await app_with(
        aiohttp_client,
        redis_url,
        ROUTER_JWT_SECRET="",
        ROUTER_JWT_PUBLIC_KEY=str(tmp_path / "bundle.pem"),
    )
    for k in keys:
        assert (await idp.get(url, headers=signed(claims, k, "ES256"))).status == 200
    stranger = ec.generate_private_key(ec.SECP256R1())
    await denied(await idp.get(url, headers=signed(claims, stranger, "ES256")), 401)
