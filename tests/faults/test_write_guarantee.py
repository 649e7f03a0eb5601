"""What a 2xx promises (ROUTER_REDIS_WAIT_REPLICAS): with the guarantee on, a
change is acknowledged only once a Redis replica has it. While no replica
confirms, changes are answered 503 (never 2xx) and reads still work; once the
replica is back, the gateway's retry of the same creation is answered with the
contact it made (creation is idempotent on the id)."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from router.api.app import create_app
from router.runtime.settings import Settings, demo_token_spec
from tests.support.client import ADM, GW, JWT_SECRET, SUP, small_config
from tests.support.faults import RedisServer
from tests.support.sentinel import wait_synced


def contact(cid: str) -> dict[str, Any]:
    return {"id": cid, "channel": "voice", "customer": {"id": "cu-" + cid}}


@pytest.fixture
def pair(tmp_path: Path) -> Any:
    primary = RedisServer(tmp_path / "primary")
    replica = RedisServer(tmp_path / "replica", replica_of=primary.port)
    wait_synced(primary.port, 1)
    yield primary, replica
    replica.stop()
    primary.stop()


async def guarded_api(aiohttp_client: Any, url: str, replicas: int, ws: str) -> TestClient:  # type: ignore[type-arg]
    """A service with the write guarantee set to `replicas`, and `ws` configured."""
    env = {
        "ROUTER_TOKENS": demo_token_spec(),
        "ROUTER_METRICS_GROUP": uuid.uuid4().hex,
        "ROUTER_JWT_SECRET": JWT_SECRET,
        "ROUTER_REDIS_WAIT_REPLICAS": str(replicas),
        "ROUTER_REDIS_WAIT_TIMEOUT": "0.3",
    }
    api = await aiohttp_client(create_app(Settings.from_env(env, redis_url=url)))
    assert (await api.put(f"/v1/workspaces/{ws}", json=small_config(), headers=ADM)).status == 200
    return api  # type: ignore[no-any-return]


async def test_no_2xx_until_a_replica_has_the_change(
    aiohttp_client: Any, pair: tuple[RedisServer, RedisServer], ws: str
) -> None:
    primary, replica = pair
    api = await guarded_api(aiohttp_client, primary.url, replicas=1, ws=ws)
    base = f"/v1/workspaces/{ws}"
    assert (await api.post(base + "/contacts", json=contact("c1"), headers=GW)).status == 201

    replica.stop()  # the primary has no replica to confirm anything
    r = await api.post(base + "/contacts", json=contact("c2"), headers=GW)
    body = await r.json()
    assert r.status == 503, body
    assert r.content_type == "application/problem+json" and r.headers["Retry-After"]
    assert body["type"].endswith("/not-replicated") and "0 of 1" in body["detail"]
    # a retry is not acknowledged either while nothing confirms
    assert (await api.post(base + "/contacts", json=contact("c2"), headers=GW)).status == 503
    # reads do not wait for replicas
    assert (await api.get(base + "/contacts/c1", headers=SUP)).status == 200

    replica.start()  # resyncs from the primary
    wait_synced(primary.port, 1)
    r = await api.post(base + "/contacts", json=contact("c2"), headers=GW)
    assert r.status == 200, await r.text()  # the contact the first attempt made
    assert (await r.json())["id"] == "c2"


async def test_without_the_guarantee_a_lone_primary_acknowledges(
    aiohttp_client: Any, pair: tuple[RedisServer, RedisServer], ws: str
) -> None:
    primary, replica = pair
    api = await guarded_api(aiohttp_client, primary.url, replicas=0, ws=ws)
    base = f"/v1/workspaces/{ws}"
    replica.stop()
    assert (await api.post(base + "/contacts", json=contact("c1"), headers=GW)).status == 201


async def test_a_rating_is_acknowledged_only_once_a_replica_has_it(
    aiohttp_client: Any, pair: tuple[RedisServer, RedisServer], ws: str
) -> None:
    # the rating once counted as "not durable", mistaken for the rate limiter's count
    primary, replica = pair
    api = await guarded_api(aiohttp_client, primary.url, replicas=1, ws=ws)
    base = f"/v1/workspaces/{ws}"
    steps = [
        ("PUT", "/agents/a1", {"skills": {"cards": 5}}, SUP),
        ("POST", "/agents/a1/state", {"state": "available"}, SUP),
        ("POST", "/contacts", contact("c1"), GW),
        ("POST", "/contacts/c1/accept", {"agent_id": "a1"}, SUP),
        ("POST", "/contacts/c1/complete", {"agent_id": "a1"}, SUP),
    ]
    for method, path, body, headers in steps:
        r = await api.request(method, base + path, json=body, headers=headers)
        assert r.status in (200, 201), await r.text()
    replica.stop()
    rating = {"score": 2}
    r = await api.post(base + "/contacts/c1/rating", json=rating, headers=GW)
    assert r.status == 503 and (await r.json())["type"].endswith("/not-replicated")
    replica.start()
    wait_synced(primary.port, 1)
    r = await api.post(base + "/contacts/c1/rating", json=rating, headers=GW)
    assert r.status == 200, await r.text()  # the retry of what the primary already has
