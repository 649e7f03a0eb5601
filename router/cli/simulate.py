"""Demo traffic: gateways create contacts, agent desktops accept and complete
them, and some customers answer the surveys (CSAT, NPS) afterwards."""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter

import aiohttp

from router.security.auth import mint

CHANNELS = ("voice", "voice", "voice", "chat", "chat", "app", "email")
TIERS = ("standard", "standard", "standard", "gold", "gold", "vip", "private")
INTENTS = ("card", "card", "card", "loan", "wealth", "complaint")
# Survey answers, mostly content: a CSAT near 80% satisfied, an NPS near +30.
CSAT_SCORES = (5, 5, 5, 4, 4, 4, 4, 3, 2, 1)
NPS_SCORES = (10, 10, 10, 9, 9, 9, 8, 8, 7, 6, 5, 2)


async def _rate(
    session: aiohttp.ClientSession, base: str, cid: str, gw: dict[str, str], done: Counter[str]
) -> None:
    """The gateway passes on the customer's answers: about half answer the
    CSAT survey and a quarter the NPS one (a workspace that does not collect
    a kind answers 422, counted like any other status)."""
    for kind, scores, share in (("csat", CSAT_SCORES, 0.5), ("nps", NPS_SCORES, 0.25)):
        if random.random() < share:
            body = {"kind": kind, "score": random.choice(scores)}
            async with session.post(f"{base}/contacts/{cid}/rating", json=body, headers=gw) as r:
                done[f"rated {kind}:{r.status}"] += 1


async def _agent_loop(
    session: aiohttp.ClientSession,
    base: str,
    aid: str,
    headers: dict[str, str],
    gw: dict[str, str],
    stop: asyncio.Event,
    done: Counter[str],
) -> None:
    while not stop.is_set():
        async with session.get(f"{base}/agents/{aid}/offers?wait=2", headers=headers) as r:
            offers = (await r.json()).get("offers", []) if r.status == 200 else []
        for offer in offers:
            body = {"agent_id": aid}
            async with session.post(
                f"{base}/contacts/{offer['id']}/accept", json=body, headers=headers
            ) as r:
                if r.status != 200:
                    continue
            await asyncio.sleep(random.uniform(0.2, 1.5))  # talk time, compressed
            async with session.post(
                f"{base}/contacts/{offer['id']}/complete", json=body, headers=headers
            ) as r:
                done[f"completed:{r.status}"] += 1
                if r.status != 200:
                    continue
            await _rate(session, base, offer["id"], gw, done)


def _agent(secret: str, aid: str) -> dict[str, str]:
    return {"Authorization": "Bearer " + mint(secret, aid, "agent", ttl=3600)}


async def simulate(
    url: str, token: str, jwt_secret: str, contacts: int, rate: float, workspace: str
) -> int:
    """`jwt_secret` signs each agent desktop's own token (an agent acts only as itself)."""
    base = f"{url.rstrip('/')}/v1/workspaces/{workspace}"
    gw = {"Authorization": f"Bearer {token}"}
    sup = {"Authorization": "Bearer demo-supervisor"}
    stop = asyncio.Event()
    done: Counter[str] = Counter()
    rng = random.Random(7)
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{base}/pools", headers=sup) as r:
            pools = (await r.json()).get("pools", []) if r.status == 200 else []
        agents = [f"a{i:03d}" for i in range(1, 61)]
        tasks = [
            asyncio.create_task(
                _agent_loop(session, base, a, _agent(jwt_secret, a), gw, stop, done)
            )
            for a in agents
        ]
        run = f"{int(time.time())}"
        for i in range(contacts):
            cid, channel, tier = f"sim-{run}-{i}", rng.choice(CHANNELS), rng.choice(TIERS)
            intent = rng.choice(INTENTS)
            body = {
                "id": cid,
                "channel": channel,
                "intent": intent,
                "customer": {"id": f"cust{rng.randrange(5000)}", "tier": tier},
            }
            async with session.post(f"{base}/contacts", json=body, headers=gw) as r:
                result = await r.json()
                done[f"created:{r.status}"] += 1
                if i < 10:
                    print(
                        f"{cid}: {channel}/{tier}/{intent} -> "
                        f"{result.get('state')} {result.get('agent') or ''}"
                    )
            await asyncio.sleep(1 / rate)
        await asyncio.sleep(3)
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        async with session.get(f"{base}/pools", headers=sup) as r:
            pools = (await r.json()).get("pools", []) if r.status == 200 else pools
    print(dict(done))
    for p in pools:
        print(
            f"{p['id']:<18} waiting={p['depth']:<4} longest={p['longest_wait']:.1f}s "
            f"agents={p['agents_by_state']}"
        )
    return 0
