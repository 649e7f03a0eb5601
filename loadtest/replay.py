"""Replay a real day of the anonbank 1999 records through the engine.

Every recorded call that asked for an agent arrives at its recorded time (the
day compressed `LT_COMPRESS` times), with its skill as the intent and its
priority as the tier; it is handled for its recorded service time, and a caller
who hung up in the records hangs up after the patience they showed then.

    LT_DAY=1999-07-04 locust -f loadtest/replay.py --headless --host http://127.0.0.1:8080

Data acknowledgement: the "Anonymous Bank" data set of the Technion Service
Enterprise Engineering lab (Guedj and Mandelbaum), studied in Brown et al.,
"Statistical Analysis of a Telephone Call Center: A Queueing-Science
Perspective", JASA 2005. Terms in `documentation.pdf` (page 1): the data is free
for use; acknowledge the source (keep this paragraph wherever the data is used
or shipped).
"""

from __future__ import annotations

import collections
import datetime as dt
import os
import time

import gevent
from locust import FastHttpUser, LoadTestShape, constant, task

from loadtest import locustfile as base
from loadtest.locustfile import BASE, GW, RUN, _check_contact
from router.wfm.anonbank import DEFAULT_DIR, Call, is_agent_demand, read_calls

DAY = dt.date.fromisoformat(os.environ.get("LT_DAY", "1999-07-04"))
COMPRESS = float(os.environ.get("LT_COMPRESS", "60"))
# skill type -> intent of the demo routing; priority -> tier (2: priority customers)
INTENT = {"PS": "card", "PE": "card", "NE": "wealth", "IN": "loan", "NW": "loan", "TT": "card"}
TIER = {0: "standard", 1: "standard", 2: "vip"}
HANDLE: dict[str, float] = {}  # contact -> recorded service time (s), for the agents


def day_calls(day: dt.date) -> list[Call]:
    path = DEFAULT_DIR / f"{day:%B}".lower()
    calls = [c for c in read_calls(path.with_suffix(".txt.gz"))
             if c.date == day and is_agent_demand(c)]  # fmt: skip
    return sorted(calls, key=lambda c: c.arrival)


CALLS = collections.deque(day_calls(DAY))
FIRST = CALLS[0].arrival if CALLS else 0
START = time.monotonic()


class ReplayGateway(FastHttpUser):
    """Sends each recorded call when its (compressed) time comes."""

    wait_time = constant(0.01)
    fixed_count = 4

    @task
    def send_due(self) -> None:
        now = (time.monotonic() - START) * COMPRESS + FIRST
        while CALLS and CALLS[0].arrival <= now:
            self._send(CALLS.popleft())

    def _send(self, call: Call) -> None:
        cid = f"lt-{RUN}-r{call.arrival}-{len(CALLS)}"
        body = {"id": cid, "channel": "voice", "intent": INTENT.get(call.type, "card"),
                "customer": {"id": f"cu-{call.date}-{call.arrival}",
                             "tier": TIER.get(call.priority, "standard")}}  # fmt: skip
        HANDLE[cid] = float(call.ser_time)
        with self.client.post(
            BASE + "/contacts", json=body, headers=GW, name="POST /contacts", catch_response=True
        ) as resp:
            if resp.status_code not in (200, 201):
                resp.failure(f"{resp.status_code}: {resp.text[:200]}")
                return
            _check_contact(resp, cid)
        if call.outcome == "HANG":  # they left after the patience they showed that day
            gevent.spawn_later(call.q_time / COMPRESS, base.abandon, self.client, cid)


class ReplayAgent(base.Agent):
    """Handles each contact for its recorded service time (compressed)."""

    def handle_seconds(self, cid: str) -> float:
        return HANDLE.get(cid, 180.0) / COMPRESS


class ReplayShape(LoadTestShape):
    def tick(self) -> tuple[int, float] | None:
        if not CALLS and self.get_run_time() > 5:
            return None
        return ReplayAgent.fixed_count + ReplayGateway.fixed_count, 100.0  # users/s
