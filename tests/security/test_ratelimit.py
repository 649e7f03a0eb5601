"""Per-token rate limits: counted in Redis, refused before any change, fail open."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from limits import parse
from redis.asyncio import Redis

from router.api import ratelimit
from router.api.app import create_app
from router.api.appkeys import ENGINE
from router.runtime.settings import Settings, SettingsError, token_hash
from router.store.local import LocalRedis
from tests.support.client import SUP, add_agent, put_config, small_config


def _settings(redis_url: str, tokens: dict[str, tuple[str, str]], **env: str) -> Settings:
    """Settings with tokens {secret: (name, role)} plus the demo supervisor/admin ones."""
    spec = ",".join(f"{name}:{role}:{token_hash(tok)}" for tok, (name, role) in tokens.items())
    spec += f",supervisor:supervisor:{token_hash('demo-supervisor')}"
    spec += f",admin:admin:{token_hash('demo-admin')}"
    return Settings.from_env(
        {"ROUTER_TOKENS": spec, "ROUTER_METRICS_GROUP": uuid.uuid4().hex, **env},
        redis_url=redis_url,
    )


def _limited_gateway(redis_url: str, secret: str, per_day: int) -> tuple[str, Settings]:
    """A gateway token of a unique name (its counter is its own even on a Redis
    kept between runs) limited to `per_day` requests: a day's window, so a burst
    never straddles a window boundary."""
    name = "gw-" + uuid.uuid4().hex[:8]
    spec = {secret: (name, "gateway")}
    return name, _settings(redis_url, spec, ROUTER_RATE_LIMIT_OVERRIDES=f"{name}={per_day}/day")


async def _counted(client: Redis, role: str, name: str, limit: str) -> int:
    """A token's count in Redis for its current window."""
    item = parse(limit)
    window = int(time.time() // item.get_expiry())
    raw = await client.get(f"{ratelimit.counter_base(item, role, name)}/{window}")
    return int(raw or 0)


def _contact(cid: str) -> dict[str, Any]:
    return {"id": cid, "channel": "voice", "customer": {"id": "cu-" + cid, "tier": "standard"}}


async def test_over_the_limit_is_429_and_changes_nothing(
    aiohttp_client: Any, redis_url: str, ws: str
) -> None:
    _, settings = _limited_gateway(redis_url, "gw-secret-1", 5)
    api: TestClient = await aiohttp_client(create_app(settings))  # type: ignore[type-arg]
    await put_config(api, ws, small_config())
    gw = {"Authorization": "Bearer gw-secret-1"}

    async def post(i: int) -> tuple[int, Any, dict[str, str]]:
        r = await api.post(f"/v1/workspaces/{ws}/contacts", json=_contact(f"c{i}"), headers=gw)
        return r.status, await r.json(content_type=None), dict(r.headers)

    results = await asyncio.gather(*(post(i) for i in range(8)))  # concurrent: one pipeline
    created = [i for i, (status, _, _) in enumerate(results) if status == 201]
    refused = [i for i, (status, _, _) in enumerate(results) if status == 429]
    assert len(created) == 5 and len(refused) == 3, [r[0] for r in results]
    assert sorted(int(results[i][2]["RateLimit-Remaining"]) for i in created) == [0, 1, 2, 3, 4]
    for i in created:
        assert results[i][2]["RateLimit-Limit"] == "5"
        assert results[i][2]["RateLimit-Policy"] == "5;w=86400"
    for i in refused:
        _, problem, headers = results[i]
        assert headers["Content-Type"] == "application/problem+json"
        assert problem["status"] == 429 and problem["type"].endswith("/rate-limited")
        assert headers["RateLimit-Remaining"] == "0"
        reset = int(headers["Retry-After"])
        assert 1 <= reset <= 86400 and headers["RateLimit-Reset"] == headers["Retry-After"]
    # Refused contacts were never created; accepted ones exist; other tokens are unaffected.
    for i in range(8):
        r = await api.get(f"/v1/workspaces/{ws}/contacts/c{i}", headers=SUP)
        assert r.status == (200 if i in created else 404), (i, await r.text())
    r = await api.get(f"/v1/workspaces/{ws}/pools", headers=SUP)
    assert r.status == 200 and int(r.headers["RateLimit-Remaining"]) > 0


async def test_counted_across_replicas_and_recovers_after_the_window(
    aiohttp_client: Any, redis_url: str, ws: str
) -> None:
    name = "desk-" + uuid.uuid4().hex[:8]
    settings = _settings(
        redis_url, {"desk-secret": (name, "agent")}, ROUTER_RATE_LIMITS="agent=4/2 seconds"
    )
    # Two apps on one Redis stand for two replicas: they share the token's count.
    one: TestClient = await aiohttp_client(create_app(settings))  # type: ignore[type-arg]
    two: TestClient = await aiohttp_client(create_app(settings))  # type: ignore[type-arg]
    await put_config(one, ws, small_config())
    await add_agent(one, ws, name, {"cards": 5}, available=False)  # the token acts as it
    desk = {"Authorization": "Bearer desk-secret"}
    deadline = time.monotonic() + 10
    statuses: list[int] = []
    while time.monotonic() < deadline:
        api = (one, two)[len(statuses) % 2]
        r = await api.get(f"/v1/workspaces/{ws}/agents/{name}", headers=desk)
        statuses.append(r.status)
        if r.status == 429:
            break
    # At most 4 in a 2 s window, 8 across one window boundary, then a refusal.
    assert statuses[-1] == 429 and 4 <= statuses.count(200) <= 8, statuses
    await asyncio.sleep(int(r.headers["Retry-After"]))
    r = await two.get(f"/v1/workspaces/{ws}/agents/{name}", headers=desk)
    assert r.status == 200, await r.text()


async def test_every_hit_counted_and_the_limit_exact_within_its_slack(
    aiohttp_client: Any, redis_url: str, ws: str
) -> None:
    # 60 a day: far from it a request does not wait for its count (sent in the
    # next tick's pipeline), within a tenth of it Redis' count decides.
    name, settings = _limited_gateway(redis_url, "gw-secret-3", 60)
    one: TestClient = await aiohttp_client(create_app(settings))  # type: ignore[type-arg]
    two: TestClient = await aiohttp_client(create_app(settings))  # type: ignore[type-arg]
    await put_config(one, ws, small_config())
    gw = {"Authorization": "Bearer gw-secret-3"}
    statuses: list[int] = []
    remaining: list[int] = []
    for i in range(80):  # alternating replicas, one request at a time
        api = (one, two)[i % 2]
        r = await api.post(f"/v1/workspaces/{ws}/contacts", json=_contact(f"s{i}"), headers=gw)
        statuses.append(r.status)
        remaining.append(int(r.headers["RateLimit-Remaining"]))
    allowed = statuses.count(201)
    # exact on one replica; each other replica may add at most its slack (6)
    # of hits Redis has not heard of yet
    assert 60 <= allowed <= 66, statuses
    assert statuses[-10:] == [429] * 10 and set(statuses) == {201, 429}, statuses
    assert statuses.index(429) == allowed  # once refused, refused to the end of the window
    assert remaining[-1] == 0 and remaining[0] >= 58, remaining
    # every request counted in Redis, refused ones too, none lost or doubled
    client = one.app[ENGINE].client(ws)
    for _ in range(100):  # the hits far from the limit arrive with the next flush
        if await _counted(client, "gateway", name, "60/day") == 80:
            break
        await asyncio.sleep(0.05)
    assert await _counted(client, "gateway", name, "60/day") == 80


async def test_off_and_exempt_tokens_are_not_counted(
    aiohttp_client: Any, redis_url: str, ws: str
) -> None:
    exempt = "bulk-" + uuid.uuid4().hex[:8]
    settings = _settings(
        redis_url,
        {"bulk-secret": (exempt, "supervisor")},
        ROUTER_RATE_LIMITS="supervisor=2/day",
        ROUTER_RATE_LIMIT_OVERRIDES=f"{exempt}=off",
    )
    api: TestClient = await aiohttp_client(create_app(settings))  # type: ignore[type-arg]
    for _ in range(6):
        r = await api.get(
            f"/v1/workspaces/{ws}/pools", headers={"Authorization": "Bearer bulk-secret"}
        )
        assert r.status in (200, 404) and "RateLimit-Limit" not in r.headers
    off = _settings(redis_url, {}, ROUTER_RATE_LIMITS="off")
    api = await aiohttp_client(create_app(off))
    for _ in range(3):
        r = await api.get(f"/v1/workspaces/{ws}/pools", headers=SUP)
        assert "RateLimit-Limit" not in r.headers


async def test_redis_down_fails_open_to_the_handlers_503(
    aiohttp_client: Any, ws: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ratelimit, "SKIP_AFTER_FAILURE", 60.0)  # however slow this machine is
    server = LocalRedis()
    try:
        settings = _settings(
            server.url, {"gw-secret-2": ("gw-down", "gateway")}, ROUTER_REDIS_TIMEOUT="0.5"
        )
        api: TestClient = await aiohttp_client(create_app(settings))  # type: ignore[type-arg]
        await put_config(api, ws, small_config())
        gw = {"Authorization": "Bearer gw-secret-2"}
        r = await api.post(f"/v1/workspaces/{ws}/contacts", json=_contact("up"), headers=gw)
        assert r.status == 201 and r.headers["RateLimit-Limit"] == "5000"
        server.stop()
        r = await api.post(f"/v1/workspaces/{ws}/contacts", json=_contact("down"), headers=gw)
        # Not a 500 and not a refusal by the limiter: the request reached the
        # engine, whose own Redis call answered 503 with Retry-After.
        assert r.status == 503 and r.headers["Retry-After"], await r.text()
        assert r.headers["Content-Type"] == "application/problem+json"
        failed = 'router_redis_errors_total{where="ratelimit"} 1.0'
        for _ in range(100):  # the hits' counts fail at their flush, once for the outage
            metrics = await (await api.get("/metrics")).text()
            if failed in metrics:
                break
            await asyncio.sleep(0.05)
        assert failed in metrics
        # Right after a failed count the checks are skipped: one timeout, not two.
        r = await api.post(f"/v1/workspaces/{ws}/contacts", json=_contact("down2"), headers=gw)
        assert r.status == 503
        await asyncio.sleep(ratelimit.FLUSH_EVERY * 2)
        metrics = await (await api.get("/metrics")).text()
        assert failed in metrics
        assert 'router_redis_errors_total{where="http"} 2.0' in metrics
    finally:
        server.stop()


async def test_a_replica_learns_the_others_hits_from_its_counts(
    aiohttp_client: Any, redis_url: str, ws: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Far from the limit a replica counts a hit at once and sends it with the
    # next flush; the flush's reply carries every replica's hits.
    monkeypatch.setattr(ratelimit, "FLUSH_EVERY", 0.05)
    name, settings = _limited_gateway(redis_url, "gw-secret-5", 100)
    one: TestClient = await aiohttp_client(create_app(settings))  # type: ignore[type-arg]
    two: TestClient = await aiohttp_client(create_app(settings))  # type: ignore[type-arg]
    await put_config(one, ws, small_config())
    gw = {"Authorization": "Bearer gw-secret-5"}
    client = one.app[ENGINE].client(ws)

    async def remaining(api: TestClient, cid: str) -> int:  # type: ignore[type-arg]
        r = await api.post(f"/v1/workspaces/{ws}/contacts", json=_contact(cid), headers=gw)
        assert r.status == 201, await r.text()
        return int(r.headers["RateLimit-Remaining"])

    assert [await remaining(one, f"r{i}") for i in range(5)] == [99, 98, 97, 96, 95]
    for _ in range(100):
        if await _counted(client, "gateway", name, "100/day") == 5:
            break
        await asyncio.sleep(0.02)
    assert await remaining(two, "r5") == 99  # its own hit: it has not heard of the others
    for _ in range(100):
        if await _counted(client, "gateway", name, "100/day") == 6:
            break
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.1)  # the flush's reply has been read
    assert await remaining(two, "r6") == 93  # 6 counted in Redis, and this one


async def test_hits_not_sent_yet_are_sent_on_shutdown(
    aiohttp_client: Any, redis_url: str, ws: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No flush comes within the test: only the shutdown sends the counts,
    # of several tokens in one call per counter slot.
    monkeypatch.setattr(ratelimit, "FLUSH_EVERY", 3600.0)
    desks = {f"desk-{uuid.uuid4().hex[:8]}": f"desk-secret-{i}" for i in range(6)}
    tokens = {secret: (name, "agent") for name, secret in desks.items()}
    settings = _settings(redis_url, tokens, ROUTER_RATE_LIMITS="agent=1000/day")
    api: TestClient = await aiohttp_client(create_app(settings))  # type: ignore[type-arg]
    await put_config(api, ws, small_config())
    for n, (name, secret) in enumerate(desks.items(), start=1):
        await add_agent(api, ws, name, {"cards": 5}, available=False)
        for _ in range(n):
            r = await api.get(
                f"/v1/workspaces/{ws}/agents/{name}", headers={"Authorization": f"Bearer {secret}"}
            )
            assert r.status == 200 and r.headers["RateLimit-Remaining"], await r.text()
    client = Redis.from_url(redis_url)
    try:
        assert [await _counted(client, "agent", name, "1000/day") for name in desks] == [0] * 6
        await api.close()  # graceful stop: the counts leave before Redis is closed
        counted = [await _counted(client, "agent", name, "1000/day") for name in desks]
    finally:
        await client.aclose()
    assert counted == [1, 2, 3, 4, 5, 6]


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"ROUTER_RATE_LIMITS": "gateway=lots"}, "ROUTER_RATE_LIMITS"),
        ({"ROUTER_RATE_LIMITS": "robot=5/second"}, "ROUTER_RATE_LIMITS"),
        ({"ROUTER_RATE_LIMITS": "agent=0/second"}, "ROUTER_RATE_LIMITS"),
        ({"ROUTER_RATE_LIMITS": "agent=5/second,9/minute"}, "ROUTER_RATE_LIMITS"),
        ({"ROUTER_RATE_LIMIT_OVERRIDES": "gw1"}, "ROUTER_RATE_LIMIT_OVERRIDES"),
    ],
)
def test_bad_settings_name_the_variable(env: dict[str, str], named: str) -> None:
    with pytest.raises(SettingsError, match=named):
        Settings.from_env({"REDIS_URL": "redis://127.0.0.1:1/0", **env})


def test_settings_merge_with_the_defaults() -> None:
    s = Settings.from_env(
        {
            "REDIS_URL": "redis://x/0",
            "ROUTER_RATE_LIMITS": "agent=20/second; admin=off",
            "ROUTER_RATE_LIMIT_OVERRIDES": "crm-gw=100 per minute;ivr=off",
        }
    )
    assert s.rate_limits == {
        "gateway": "5000/second",
        "agent": "20/second",
        "supervisor": "500/second",
    }
    assert s.rate_limit_overrides == {"crm-gw": "100 per minute", "ivr": "off"}
    assert (
        Settings.from_env({"REDIS_URL": "redis://x/0", "ROUTER_RATE_LIMITS": "OFF"}).rate_limits
        == {}
    )
