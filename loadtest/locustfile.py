"""Locust users for a bank's contact center: channel gateways and agent desktops.

Gateways create contacts with a realistic tier / channel / intent mix, retry a
failed request with the same id (creation is idempotent), and let some callers
hang up while they wait. Agents long-poll their offers, accept, handle for a
sampled time (compressed like the day), complete, now and then reject or take
a break. Every response body is checked, not just the status.

    locust -f loadtest/locustfile.py --host http://127.0.0.1:8080
    (or python -m loadtest.run for the whole peak day with reconciliation)
"""

from __future__ import annotations

import itertools
import os
import random
import time
import uuid

import gevent
from locust import FastHttpUser, between, constant_throughput, task

from loadtest.promises import SAMPLE, remember
from loadtest.shapes import PeakDayShape
from loadtest.workspace import REFUSED, WORKSPACE

RUN = os.environ.get("LT_RUN", uuid.uuid4().hex[:8])
BASE = f"/v1/workspaces/{WORKSPACE}"
GW = {"Authorization": "Bearer " + os.environ.get("LT_GATEWAY_TOKEN", "demo-gateway")}
# Agent desktops: one signed token per agent when LT_JWT_SECRET is set (the
# router's ROUTER_JWT_SECRET), else one shared LT_AGENT_TOKEN.
JWT_SECRET = os.environ.get("LT_JWT_SECRET", "")
AGENT_TOKEN = os.environ.get("LT_AGENT_TOKEN", "demo-agent")
COMPRESS = float(os.environ.get("LT_COMPRESS", "60"))  # real seconds per test second
AGENTS = int(os.environ.get("LT_AGENTS", "200"))
# Distributed runs: agent ids are interleaved over the workers (LT_WORKERS of them).
WORKERS = max(1, int(os.environ.get("LT_WORKERS", "1")))
# Mix of a card center's day (per 100 contacts).
CHANNELS = ["voice"] * 55 + ["chat"] * 25 + ["app"] * 15 + ["email"] * 5
TIERS = ["standard"] * 70 + ["gold"] * 20 + ["vip"] * 8 + ["private"] * 2
INTENTS = ["card"] * 60 + ["loan"] * 20 + ["wealth"] * 8 + ["complaint"] * 12
# Replicas to spread users over (comma list); default: the --host given to locust.
HOSTS = [h for h in os.environ.get("LT_HOSTS", "").split(",") if h]
# Where gateways note the expected wait of a sample of queued contacts
# (loadtest/promises.py); empty: no sample.
PROMISES = os.environ.get("LT_PROMISES", "")
ABANDON_SHARE = 0.15  # of callers hang up if still waiting after their patience
_agent_ids = itertools.count()
_seq = itertools.count()


def _check_contact(resp, cid: str) -> None:  # type: ignore[no-untyped-def]
    try:
        body = resp.json()
    except ValueError:
        resp.failure("body is not JSON")
        return
    if body.get("id") != cid or body.get("state") not in {
        "queued",
        "offered",
        "assigned",
        "wrap_up",
        "completed",
        "abandoned",
        "expired",
    }:
        resp.failure(f"unexpected contact body: {str(body)[:200]}")


def agent_headers(aid: str) -> dict[str, str]:
    if not JWT_SECRET:
        return {"Authorization": "Bearer " + AGENT_TOKEN}
    import jwt

    claims = {"sub": aid, "role": "agent", "exp": int(time.time()) + 8 * 3600}
    return {"Authorization": "Bearer " + jwt.encode(claims, JWT_SECRET, "HS256")}


def worker_index(user) -> int:  # type: ignore[no-untyped-def]
    """This process's index among the workers (0 when Locust runs alone)."""
    return max(0, int(getattr(user.environment.runner, "worker_index", 0) or 0))


def abandon(client, cid: str) -> None:  # type: ignore[no-untyped-def]
    """The caller hangs up; fine if an agent answered first (409)."""
    with client.post(
        BASE + f"/contacts/{cid}/abandon",
        json={"reason": "hung up"},
        headers=GW,
        name="POST /contacts/{id}/abandon",
        catch_response=True,
    ) as resp:
        if resp.status_code == 409:
            resp.success()  # already answered or ended: the caller stayed
        elif resp.status_code == 200:
            _check_contact(resp, cid)
        else:
            resp.failure(f"{resp.status_code}: {resp.text[:200]}")


class Gateway(FastHttpUser):
    """One gateway connection sending about one contact a second."""

    wait_time = constant_throughput(1)
    weight = 10

    def on_start(self) -> None:
        if HOSTS:
            self.client.base_url = random.choice(HOSTS)

    @task
    def create(self) -> None:
        rng = random.Random()
        cid = f"lt-{RUN}-{worker_index(self)}-{next(_seq)}"
        body = {
            "id": cid,
            "channel": rng.choice(CHANNELS),
            "intent": rng.choice(INTENTS),
            "customer": {"id": f"cu-{rng.randrange(200_000)}", "tier": rng.choice(TIERS)},
        }
        queued = False
        for attempt in range(3):  # a gateway retries with the same id
            with self.client.post(
                BASE + "/contacts",
                json=body,
                headers=GW,
                name="POST /contacts",
                catch_response=True,
            ) as resp:
                if resp.status_code in (200, 201):
                    _check_contact(resp, cid)
                    if attempt and resp.status_code != 200:
                        resp.failure("a retry created a second contact")
                    queued = resp.status_code == 201 and resp.json().get("state") == "queued"
                    break
                if resp.status_code == 429 and "queue-full" in resp.text:
                    # The pool's max queue refuses the caller (by design, the
                    # gateway plays a busy message): counted as its own outcome.
                    resp.request_meta["name"] = REFUSED
                    resp.success()
                    return
                if resp.status_code == 503 or resp.status_code == 0:
                    resp.failure(f"attempt {attempt + 1}: {resp.status_code}")
                    time.sleep(0.2)
                    continue
                resp.failure(f"{resp.status_code}: {resp.text[:200]}")
                return
        if PROMISES and queued and rng.random() < SAMPLE:
            self.promise(cid)
        if rng.random() < ABANDON_SHARE:
            # patience (compressed): the caller leaves if nobody answered by then
            patience = rng.expovariate(1 / 120) / COMPRESS
            gevent.spawn_later(patience, abandon, self.client, cid)

    def promise(self, cid: str) -> None:
        """Notes the wait the position promises this caller (compared after the run)."""
        with self.client.get(
            BASE + f"/contacts/{cid}/position",
            headers=GW,
            name="GET /contacts/{id}/position",
            catch_response=True,
        ) as resp:
            if resp.status_code == 409:  # answered already: nothing was promised
                resp.success()
                return
            if resp.status_code != 200:
                resp.failure(f"{resp.status_code}: {resp.text[:200]}")
                return
            wait = resp.json().get("expected_wait")
            if wait is not None:
                remember(PROMISES, cid, float(wait))


class Agent(FastHttpUser):
    """One agent desktop: long-polls offers, accepts, handles, completes."""

    wait_time = between(0, 0.05)
    weight = 1
    fixed_count = AGENTS

    def on_start(self) -> None:
        if HOSTS:
            self.client.base_url = random.choice(HOSTS)
        self.aid = f"lt-a{(next(_agent_ids) * WORKERS + worker_index(self)):04d}"
        self.headers = agent_headers(self.aid)
        self._set_state("available")

    def _set_state(self, state: str, reason: str | None = None) -> None:
        with self.client.post(
            BASE + f"/agents/{self.aid}/state",
            headers=self.headers,
            json={"state": state, "reason": reason},
            name="POST /agents/{id}/state",
            catch_response=True,
        ) as resp:
            if resp.status_code != 200 or resp.json().get("state") != state:
                resp.failure(f"state {state}: {resp.status_code} {resp.text[:200]}")

    @task
    def work(self) -> None:
        with self.client.get(
            BASE + f"/agents/{self.aid}/offers?wait=2",
            headers=self.headers,
            name="GET /agents/{id}/offers",
            catch_response=True,
        ) as resp:
            if resp.status_code != 200:
                resp.failure(f"{resp.status_code}: {resp.text[:200]}")
                return
            offers = resp.json().get("offers", [])
            if not isinstance(offers, list):
                resp.failure("offers is not a list")
                return
        rng = random.Random()
        for offer in offers:
            cid = offer["id"]
            act = "reject" if rng.random() < 0.03 else "accept"
            if not self._act(cid, act) or act == "reject":
                continue
            time.sleep(self.handle_seconds(cid))
            self._act(cid, "complete")
        if rng.random() < 0.002:  # a short break now and then
            self._set_state("break", "coffee")
            time.sleep(rng.uniform(60, 300) / COMPRESS)
            self._set_state("available")

    def handle_seconds(self, cid: str) -> float:
        """Talk time, compressed: lognormal with a mean of about 180 s."""
        return random.lognormvariate(5.0, 0.6) / COMPRESS

    def _act(self, cid: str, action: str) -> bool:
        with self.client.post(
            BASE + f"/contacts/{cid}/{action}",
            json={"agent_id": self.aid},
            headers=self.headers,
            name=f"POST /contacts/{{id}}/{action}",
            catch_response=True,
        ) as resp:
            if resp.status_code == 200:
                return True
            if resp.status_code == 409:  # the caller hung up first, or the offer timed out
                resp.success()
                return False
            resp.failure(f"{resp.status_code}: {resp.text[:200]}")
            return False


__all__ = ["Agent", "Gateway", "PeakDayShape"]
