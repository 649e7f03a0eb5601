"""The load-test workspace: the demo bank's routing with short wrap-ups (the day
is compressed) and as many agents as asked, their skills drawn like the demo's.

    python -m loadtest.workspace --url http://router:8080 --agents 200   # set it up
"""

from __future__ import annotations

import argparse
import asyncio
import os

import aiohttp
import msgspec

from router.cli.demo import demo_agents, demo_config

WORKSPACE = "loadtest"
# Locust's name for a creation the pool refused as queue full (its own outcome).
REFUSED = "POST /contacts (refused: queue full)"


def config(compress: float) -> dict[str, object]:
    """The demo config with wrap-ups and timeouts divided by `compress` (time runs faster)."""
    doc = msgspec.to_builtins(demo_config())
    for ch in doc["channels"].values():
        ch["wrap_up"] = round(ch.get("wrap_up", 0.0) / compress, 3)
        ch["offer_timeout"] = max(5.0, round(ch.get("offer_timeout", 20.0) / compress, 3))
    return doc  # type: ignore[no-any-return]


def agents(n: int) -> list[tuple[str, dict[str, object]]]:
    demo = demo_agents()
    out = []
    for i in range(n):
        _, a = demo[i % len(demo)]
        out.append(
            (
                f"lt-a{i:04d}",
                {
                    "skills": dict(a.skills),
                    "capacity": a.capacity,
                    "team": a.team,
                    "supervisor": a.supervisor,
                },
            )
        )
    return out


async def put(
    http: aiohttp.ClientSession, url: str, body: object, headers: dict[str, str], within: float
) -> None:
    """PUT until answered 200, as a well-behaved client does: a router still
    starting (connection refused, 503) or a rate limit (429) is waited out, for
    Retry-After seconds when given, until `within` seconds have passed."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        wait = 0.5
        try:
            async with http.put(url, json=body, headers=headers) as r:
                if r.status == 200:
                    return
                text = await r.text()
                if r.status not in (429, 503):
                    raise RuntimeError(f"PUT {url} -> {r.status}: {text[:300]}")
                wait = float(r.headers.get("Retry-After", "1"))
        except aiohttp.ClientConnectionError:
            pass
        if asyncio.get_running_loop().time() + wait > deadline:
            raise RuntimeError(f"PUT {url}: no 200 within {within} s")
        await asyncio.sleep(wait)


async def setup(url: str, n_agents: int, compress: float, admin_token: str) -> None:
    """Puts the workspace's config and `n_agents` agents through the API."""
    adm = {"Authorization": "Bearer " + admin_token}
    async with aiohttp.ClientSession() as http:
        base = f"{url}/v1/workspaces/{WORKSPACE}"
        await put(http, base, config(compress), adm, within=120)
        sem = asyncio.Semaphore(32)

        async def one(aid: str, body: dict[str, object]) -> None:
            async with sem:
                await put(http, f"{base}/agents/{aid}", body, adm, within=120)

        await asyncio.gather(*(one(aid, body) for aid, body in agents(n_agents)))


def main() -> None:
    p = argparse.ArgumentParser(description="Set up the load-test workspace on a router.")
    p.add_argument("--url", default="http://127.0.0.1:8080")
    p.add_argument("--agents", type=int, default=int(os.environ.get("LT_AGENTS", "200")))
    p.add_argument("--compress", type=float, default=float(os.environ.get("LT_COMPRESS", "60")))
    p.add_argument("--admin-token", default=os.environ.get("LT_ADMIN_TOKEN", "demo-admin"))
    a = p.parse_args()
    asyncio.run(setup(a.url, a.agents, a.compress, a.admin_token))


if __name__ == "__main__":
    main()
