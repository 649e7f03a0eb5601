"""The load-test workspace is set up through a rate-limited, still-starting router
(compose's `loadtest` profile did this and failed with 429): its client waits
out 429 and 503 answers for their Retry-After, and every agent is there after."""

from __future__ import annotations

import uuid
from typing import Any

from loadtest import workspace
from router.api.app import create_app
from router.runtime.settings import Settings, demo_token_spec
from tests.support.client import SUP


async def test_setup_waits_out_the_admin_rate_limit(aiohttp_client: Any, redis_url: str) -> None:
    env = {
        "ROUTER_TOKENS": demo_token_spec(),
        "ROUTER_METRICS_GROUP": uuid.uuid4().hex,
        "ROUTER_RATE_LIMITS": "admin=5/second",  # 40 agents need 8 s of it
    }
    api = await aiohttp_client(create_app(Settings.from_env(env, redis_url=redis_url)))
    url = str(api.make_url("")).rstrip("/")
    await workspace.setup(url, 40, 60.0, "demo-admin")
    base = f"/v1/workspaces/{workspace.WORKSPACE}"
    for aid, _ in workspace.agents(40):
        r = await api.get(f"{base}/agents/{aid}", headers=SUP)
        assert r.status == 200, (aid, await r.text())
