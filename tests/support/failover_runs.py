"""A Redis failover under load (tests/faults/test_sentinel_failover.py and
test_redis_cluster_failover.py check the outcome; benchmarks/failover.py
measures it): a Sentinel group (primary, two replicas, three sentinels) or a
Redis Cluster (three primaries with two replicas each), two router processes on
its URL, a gateway creating contacts and agent desktops accepting and
completing them, retrying on 503 as they do in production. The primary that
holds the workspace is killed with SIGKILL mid-load and restarted at the same
address (with its append-only file) after the sentinels, or the cluster,
promoted a replica.

Every acknowledgement (a 2xx) is recorded with what it promised, so the test
can show that nothing acknowledged was lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
from redis.asyncio import Redis

from router.store.client import open_shards
from router.store.keys import WsKeys
from tests.support.client import ADM, GW, SUP
from tests.support.cluster import ClusterGroup
from tests.support.fault_runs import (
    KILL_LADDER,
    KILL_STEPS,
    probe,
    sla_config,
    ws_name,
)
from tests.support.faults import ENDED, Client, Desk, add_agents, create_contact, stop_all
from tests.support.invariants import DECODE, check_sla_steps, read_events, replay
from tests.support.procs import ROOT, Replica, _python, start_replicas, wait_ready
from tests.support.receiver import Receiver, new_secret
from tests.support.sentinel import ReplicationLink, SentinelGroup

LOAD_S = 22.0  # seconds of load
KILL_AT = 6.0  # seconds into the load
RESTART_AFTER = 8.0  # seconds after the kill, the old primary comes back
RATE = 8.0  # contacts per second
N_AGENTS = 8
# Loan contacts wait in a queue no agent serves until the end, so their SLA steps
# come due before, during and after the failover whatever the load's pace:
# each must be recorded exactly once.
WAITING_EVERY = 0.5  # seconds
LOANS_RULE = {"name": "loans", "when": {"intent": ["loan"]}, "stages": [{"pools": ["loans"]}]}


class AckingDesk(Desk):
    """A desktop that records each action the engine acknowledged."""

    def __init__(self, client: Client, aid: str, acked: dict[str, list[tuple[str, str]]]) -> None:
        super().__init__(client, aid, lambda: 0.5)
        self.acked = acked

    def refused(self, action: str, status: int) -> bool:
        # An offer the desktop saw may be gone after a failover, when the primary
        # died within the replication lag of the script that made it: the engine
        # refuses the accept like any contact the agent never held (403). No
        # acknowledged change is lost by it.
        # Without the write guarantee a contact itself may be gone (403 for any action).
        if status == 403:
            self.client.stats[f"{action}_vanished"] += 1
            return True
        return super().refused(action, status)

    async def _act(self, cid: str, action: str, done: frozenset[str]) -> bool:
        ok = await super()._act(cid, action, done)
        if ok:
            self.acked.setdefault(cid, []).append((action, self.aid))
        return ok


Probe = tuple[float, float, Any]  # (sent, answered: monotonic seconds; status)


async def _probe_creates(
    http: aiohttp.ClientSession, urls: list[str], ws: str, stop: asyncio.Event
) -> list[Probe]:
    """One creation every 100 ms without retries."""
    seen: list[Probe] = []
    n = 0
    while not stop.is_set():
        n += 1
        cid = f"p{n:05d}"
        body = {"id": cid, "channel": "chat", "customer": {"id": "cu-" + cid}}
        url = urls[n % len(urls)] + f"/v1/workspaces/{ws}/contacts"
        sent = time.monotonic()
        status = (await probe(http, "POST", url, body))["status"]
        seen.append((sent, time.monotonic(), status))
        await asyncio.sleep(0.1)
    return seen


def unavailable_window(seen: list[Probe], kill_t: float) -> float:
    """Seconds from the kill to the answer of the first creation sent after it
    and answered 2xx (one in flight at the kill may have been served before it)."""
    after = [done for sent, done, status in seen if sent >= kill_t and status in (200, 201)]
    return (after[0] - kill_t) if after else float("inf")


def failed_after(seen: list[Probe], kill_t: float) -> tuple[float, float]:
    """(seconds of failed probe creations after the kill, in total, each counted
    from its sending to its answer; seconds from the kill to the answer of the
    last one that failed): also counts the 503s of `WAIT` while the replicas
    resynchronise with the new primary."""
    failed = [(sent, done) for sent, done, status in seen
              if sent >= kill_t and status not in (200, 201)]  # fmt: skip
    total = sum(done - sent + 0.1 for sent, done in failed)  # + the pause between probes
    return total, (failed[-1][1] - kill_t) if failed else 0.0


def slowest_after(seen: list[Probe], kill_t: float) -> float:
    """The longest a probe sent after the kill waited for its answer (seconds)."""
    return max((done - sent for sent, done, _ in seen if sent >= kill_t), default=0.0)


class SentinelStore:
    """A Sentinel group: the primary is the workspace's."""

    def __init__(self, tmp: Path, lag: float, timings: tuple[int, int] = (1000, 10000)) -> None:
        self.group = SentinelGroup(tmp / "redis", replicas=2, link=lag > 0, timings=timings)
        self.url = self.group.url()
        self.link: ReplicationLink | None = self.group.link
        self._old = self.group.primary

    def kill(self, ws: str) -> int:
        self._old = self.group.primary
        self._old.stop()  # SIGKILL
        return self._old.port

    def wait_failover(self, port: int) -> int:
        return self.group.wait_failover(port)

    def restart(self, port: int) -> None:
        self._old.start()  # same port, its AOF: it comes back a primary

    def stop(self) -> None:
        self.group.stop()


class ClusterStore:
    """A Redis Cluster: the primary killed is the one holding the workspace's slot.
    Two replicas per primary, as the Sentinel group has: with one, the promoted
    replica has none left, and `WAIT 1` refuses every write on that shard until
    the old primary is back as its replica."""

    link: ReplicationLink | None = None

    def __init__(self, tmp: Path) -> None:
        self.group = ClusterGroup(tmp / "cluster", masters=3, replicas_per_master=2)
        self.url = self.group.url

    def kill(self, ws: str) -> int:
        port = self.group.primary_for(WsKeys(ws).tag)
        self.group.kill(port)
        return port

    def wait_failover(self, port: int) -> int:
        return self.group.wait_failover(port)

    def restart(self, port: int) -> None:
        self.group.restart(port)  # rejoins as a replica of the promoted one

    def stop(self) -> None:
        self.group.stop()


Store = SentinelStore | ClusterStore


async def failover_under_load(
    tmp: Path,
    wait_replicas: int,
    lag: float = 0.0,
    cluster: bool = False,
    timings: tuple[int, int] = (1000, 10000),
) -> dict[str, Any]:
    """`lag`: for that many seconds before the kill the replication stream is
    held back (`ReplicationLink`, Sentinel only), so the primary dies holding
    writes no replica has: what a replica falling behind (a slow link, a
    resync) leaves at risk. `timings`: the sentinels' `down-after-milliseconds`
    and `failover-timeout` (the deploy files use 5000 and 30000)."""
    group: Store = ClusterStore(tmp) if cluster else SentinelStore(tmp, lag, timings)
    env = {
        "ROUTER_REDIS_WAIT_REPLICAS": str(wait_replicas),
        "ROUTER_REDIS_TIMEOUT": "1",
        # a delivery whose settle call died with the primary is sent again soon
        "ROUTER_WEBHOOK_CLAIM_IDLE": "3",
    }
    replicas: list[Replica] = []
    ws, out = ws_name(), {"wait_replicas": wait_replicas}
    receiver = Receiver()  # SLA events go to a webhook across the failover
    await receiver.start()
    try:
        replicas = start_replicas(group.url, tmp, 2, env)
        await wait_ready(replicas)
        urls = [r.url for r in replicas]
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=100)) as http:
            c = Client(http, urls, ws)
            cfg = sla_config(2.5, KILL_LADDER) | {"rules": [LOANS_RULE]}
            cfg["webhooks"] = {
                "crm": {"url": receiver.url(), "events": ["sla.*"], "secret": new_secret()}
            }
            assert (await c.call("PUT", "", ADM, cfg))[0] == 200
            agents = [f"h{i:02d}" for i in range(N_AGENTS)]
            await add_agents(c, agents, {"cards": 5})
            out |= await _load(c, group, http, urls, ws, agents, lag)
            await _end_everything(c, out["created"])
            out["stats"] = dict(c.stats)
            out["statuses"] = dict(c.statuses)
            out["final"] = await _final_states(c, out["created"])
        shards = await open_shards(group.url, 5.0)
        try:
            client = shards.of(WsKeys(ws).tag)
            out["events"] = await read_events(client, WsKeys(ws).events)
            out["webhooks_missing"] = await _undelivered(client, ws, receiver)
        finally:
            await shards.aclose()
        out["audit"] = _audit_verify(group.url, ws)
        for r in replicas:
            assert r.proc.poll() is None, r.log_tail()
    finally:
        stop_all(replicas)
        group.stop()
        await receiver.stop()
    return out


async def _undelivered(
    client: Redis, ws: str, receiver: Receiver, within: float = 30.0
) -> list[str]:
    """Webhook ids (`<event id>.crm`) of the SLA events in the stream that the
    receiver has not answered 2xx within `within` seconds (at least once each)."""
    rows = await client.xrange(WsKeys(ws).events, "-", "+")
    wanted = {f"{sid}.crm" for sid, f in rows if DECODE(f["e"])["type"].startswith("sla.")}
    for _ in range(int(within / 0.5)):
        if not wanted - set(receiver.ok_ids()):
            break
        await asyncio.sleep(0.5)
    return sorted(wanted - set(receiver.ok_ids()))


async def _load(
    c: Client,
    group: Store,
    http: aiohttp.ClientSession,
    urls: list[str],
    ws: str,
    agents: list[str],
    lag: float,
) -> dict[str, Any]:
    acted: dict[str, list[tuple[str, str]]] = {}
    created: dict[str, float] = {}  # acknowledged creations, by when
    stop = asyncio.Event()
    desks = [AckingDesk(c, a, acted) for a in agents]
    tasks = [asyncio.create_task(d.run(stop)) for d in desks]
    probing = asyncio.create_task(_probe_creates(http, urls, ws, stop))
    pending: set[asyncio.Task[None]] = set()

    async def customer(cid: str, intent: str | None) -> None:
        await create_contact(c, cid, intent=intent)
        created[cid] = time.monotonic()

    async def gateway(prefix: str, every: float, intent: str | None = None) -> None:
        t0, n = time.monotonic(), 0
        while time.monotonic() - t0 < LOAD_S:
            n += 1
            task = asyncio.create_task(customer(f"{prefix}{n:05d}", intent))
            pending.add(task)
            task.add_done_callback(pending.discard)
            await asyncio.sleep(every)

    async def chaos() -> dict[str, float]:
        await asyncio.sleep(KILL_AT - lag)
        if group.link is not None:
            group.link.hold.set()  # the replicas fall behind from here
        await asyncio.sleep(lag)
        old_port = await asyncio.to_thread(group.kill, ws)  # SIGKILL
        kill_t = time.monotonic()  # the process is gone: what was sent before may be served
        new_port = await asyncio.to_thread(group.wait_failover, old_port)
        promoted_t = time.monotonic()
        await asyncio.sleep(max(0.0, RESTART_AFTER - (promoted_t - kill_t)))
        await asyncio.to_thread(group.restart, old_port)
        return {
            "kill_t": kill_t,
            "promoted_s": promoted_t - kill_t,
            "restarted_s": time.monotonic() - kill_t,
            "new_port": new_port,
        }

    chaos_task = asyncio.create_task(chaos())
    await asyncio.gather(gateway("x", 1 / RATE), gateway("w", WAITING_EVERY, "loan"))
    events = await chaos_task
    await asyncio.gather(*list(pending))
    await asyncio.sleep(3)  # the desks work off the queue
    stop.set()
    await asyncio.gather(*tasks)
    seen = await probing
    after = [cid for cid, t in created.items() if t > events["kill_t"] + events["promoted_s"]]
    return {
        "created": created,
        "acted": acted,
        "created_after_failover": after,
        "unavailable_s": unavailable_window(seen, events["kill_t"]),
        "failed_after": failed_after(seen, events["kill_t"]),
        "slowest_probe_s": slowest_after(seen, events["kill_t"]),
        "probe_statuses": Counter(str(s) for _, _, s in seen),
        **events,
    }


async def _end_everything(c: Client, created: dict[str, float]) -> None:
    """Abandons what is still open, so every contact ends in the events."""
    for cid in created:
        status, data = await c.call("POST", f"/contacts/{cid}/abandon", GW, {"reason": "over"})
        # 403: the contact is gone (lost in the failover), refused like any other
        # gateway's; the final states count it
        assert status in (200, 403) or (status == 409 and data["state"] in ENDED), data


async def _final_states(c: Client, created: dict[str, float]) -> dict[str, Any]:
    final: dict[str, Any] = {}
    for cid in created:
        status, data = await c.call("GET", f"/contacts/{cid}", SUP)
        final[cid] = data["state"] if status == 200 else status
    return final


def _audit_verify(url: str, ws: str) -> subprocess.CompletedProcess[str]:
    env = {"REDIS_URL": url, "PATH": "/usr/bin:/bin"}
    with contextlib.suppress(subprocess.TimeoutExpired):
        return subprocess.run(
            [_python(), "-m", "router", "audit", "verify", "--workspace", ws],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
    raise AssertionError("router audit verify did not finish within 120 s")


def check_nothing_acknowledged_lost(out: dict[str, Any]) -> None:
    """What a failover with the write guarantee (WAIT 1) must leave: every 2xx kept."""
    events, created, final = out["events"], out["created"], out["final"]
    rep = replay(events)
    sla = check_sla_steps(events, "answer", KILL_STEPS)
    print(
        f"\n{len(created)} contacts acknowledged; primary killed, a replica promoted after "
        f"{out['promoted_s']:.1f} s, old primary back at {out['restarted_s']:.1f} s; "
        f"creations failed for {out['unavailable_s']:.1f} s (probe: "
        f"{dict(out['probe_statuses'])}); statuses {out['statuses']}; client {out['stats']}; "
        f"SLA steps due {sla['due']}"
    )
    # the only server errors were 503 (with the retry that followed)
    assert not [s for s in out["statuses"] if s >= 500 and s != 503], out["statuses"]
    # every acknowledged contact is there, created once and ended once
    lost = [cid for cid, state in final.items() if state == 404]
    assert not lost, f"{len(lost)} acknowledged contacts lost: {lost[:10]}"
    assert set(rep["created"]) >= set(created) and set(rep["created"].values()) == {1}
    assert set(rep["ended"]) >= set(created) and set(rep["ended"].values()) == {1}
    # with its last acknowledged state: an acknowledged accept is in the record,
    # an acknowledged completion stays completed
    acks = [(cid, action, agent) for cid, done in out["acted"].items() for action, agent in done]
    completed = {cid for cid, action, _ in acks if action == "complete" and cid in final}
    assert all(final[cid] == "completed" for cid in completed)
    assigned = {(e["contact"], e["agent"]) for e in events if e["type"] == "contact.assigned"}
    accepted = {(cid, agent) for cid, action, agent in acks if action == "accept"}
    assert accepted <= assigned, sorted(accepted - assigned)[:10]
    # never two holders, never over capacity
    assert not rep["problems"], "\n".join(rep["problems"])
    # routing resumed after the failover
    done_after = [cid for cid in out["created_after_failover"] if final[cid] == "completed"]
    assert len(done_after) >= 10, (len(out["created_after_failover"]), len(done_after))
    # every SLA step that came due fired exactly once, none that did not
    assert sla["due"] > 0 and not sla["n_problems"], sla["problems"]
    assert out["audit"].returncode == 0, out["audit"].stdout + out["audit"].stderr
    # every SLA event in the record reached the webhook receiver, across the failover
    assert not out["webhooks_missing"], out["webhooks_missing"][:10]
