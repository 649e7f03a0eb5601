"""Open-loop load of full contact lifecycles, run as its own process.

A gateway offers contacts at `--rate` a second (Poisson arrivals, open loop:
a slow server does not slow the arrivals down). `--agents` agent desktops each
hold a WebSocket to a router; when an offer is pushed the desktop accepts it,
handles it for an exponential `--handle` seconds (0: at once) and completes it,
and the engine hands the agent its next contact. A lifecycle is
create -> offer -> accept -> complete -> the agent takes the next.

Measured over `--duration` seconds after `--warmup`: latency of each request
kind, the routing decision (contact sent -> offer pushed to the agent, only for
contacts offered at once, i.e. a free agent existed), lifecycles completed per
second, errors by kind, and the generator's own event-loop lag (how late a
10 ms sleep woke): a late generator adds its lag to every latency it measures,
so a tail it shares with its own loop is not the server's. The generator keeps
its garbage collector's pauses short as the router does (router/runtime/pauses.py).
With `--cpu-pids` (and `--redis-url`) it also reads those processes' CPU, its
own and Redis' INFO at the window's start and end (benchmarks/cpu_window.py) and
reports CPU µs per lifecycle completed in the window, with the requests it made
per lifecycle (HTTP requests answered, WebSocket messages received).
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import asyncio.subprocess
import json
import random
import sys
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import aiohttp
import msgspec
import uvloop

from benchmarks.cpu_window import WindowCpu, parse_pids, per_unit
from benchmarks.loadgen import percentile
from router.runtime.pauses import apply_gc_policy
from router.runtime.settings import Settings

CHANNELS = ["voice"] * 6 + ["chat"] * 3 + ["app"]
TIERS = ["standard"] * 7 + ["gold"] * 2 + ["vip"]
INTENTS = ["card"] * 6 + ["loan"] * 2 + ["wealth"] + ["complaint"]


class Window:
    """Samples that fall in the measured window."""

    def __init__(self, start: float, end: float) -> None:
        self.start, self.end = start, end
        self.lat: dict[str, list[float]] = {}
        self.status: Counter[str] = Counter()
        self.lifecycles = 0
        self.ws_messages = 0  # pushes the desktops received in the window
        self.ws_offers = 0

    def inside(self, t: float) -> bool:
        return self.start <= t <= self.end

    def add(self, kind: str, t0: float, t1: float, status: str) -> None:
        if self.inside(t1):
            self.lat.setdefault(kind, []).append(t1 - t0)
            self.status[f"{kind} {status}"] += 1


class Load:
    def __init__(self, a: argparse.Namespace, agent_headers: Callable[[str], dict[str, str]]):
        self.a = a
        self.urls = [u.rstrip("/") for u in a.urls.split(",")]
        self.agent_headers = agent_headers
        self.gw = {"Authorization": f"Bearer {a.gateway_token}"}
        now = time.perf_counter()
        self.win = Window(now + a.warmup, now + a.warmup + a.duration)
        self.sent_at: dict[str, float] = {}  # contact id -> when its create was sent
        self.offer_at: dict[str, float] = {}  # contact id -> when its offer was pushed
        self.offered_on_arrival: set[str] = set()
        self.complaints: set[str] = set()  # cases the back office resolves (--resolve-after)
        self.resolving: set[asyncio.Task[None]] = set()
        self.in_flight = 0
        self.skipped = 0  # arrivals not sent: the generator itself was saturated
        self.errors: Counter[str] = Counter()
        self.rng = random.Random(a.seed)
        self.dec = msgspec.json.Decoder()
        self.cpu = WindowCpu(parse_pids(a.cpu_pids), a.redis_url)
        self.connections = self.desktop_connections = 0
        self.probe: dict[str, Any] | None = None  # benchmarks/sleep_probe.py over the window

    def base(self, i: int) -> str:
        return f"{self.urls[i % len(self.urls)]}/v1/workspaces/{self.a.ws}"

    async def post(
        self, s: aiohttp.ClientSession, kind: str, url: str, body: bytes, headers: dict[str, str]
    ) -> tuple[int, bytes]:
        t0 = time.perf_counter()
        data = b""
        try:
            async with s.post(url, data=body, headers=headers) as r:
                data = await r.read()
                status = r.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            self.errors[f"{kind} {type(exc).__name__}"] += 1
            status = 0
        self.win.add(kind, t0, time.perf_counter(), str(status))
        return status, data

    def decision(self, cid: str) -> None:
        """Contact sent -> offer at the desktop, for contacts offered on arrival (a free
        agent existed); the push may arrive before or after the create reply."""
        if cid in self.offered_on_arrival and cid in self.offer_at:
            self.offered_on_arrival.discard(cid)
            sent, seen = self.sent_at.pop(cid), self.offer_at.pop(cid)
            if self.win.inside(seen):
                self.win.lat.setdefault("decision", []).append(seen - sent)

    async def create(self, s: aiohttp.ClientSession, n: int) -> None:
        rng = self.rng
        cid = f"{self.a.prefix}-{n:08d}"
        intent = rng.choice(INTENTS)
        if intent == "complaint":
            self.complaints.add(cid)
        body = json.dumps({
            "id": cid, "channel": rng.choice(CHANNELS), "intent": intent,
            "customer": {"id": f"cu-{rng.randrange(100_000)}", "tier": rng.choice(TIERS)},
        }).encode()  # fmt: skip
        self.sent_at[cid] = time.perf_counter()
        self.in_flight += 1
        try:
            status, data = await self.post(
                s,
                "create",
                f"{self.base(n)}/contacts",
                body,
                {**self.gw, "Content-Type": "application/json"},
            )
            if status == 201 and self.dec.decode(data).get("state") == "offered":
                self.offered_on_arrival.add(cid)
                self.decision(cid)
        finally:
            self.in_flight -= 1

    async def gateway(self, s: aiohttp.ClientSession) -> None:
        """Poisson arrivals at --rate until the window ends."""
        n = 0
        tasks: set[asyncio.Task[None]] = set()
        next_t = time.perf_counter()
        while next_t < self.win.end:
            next_t += self.rng.expovariate(self.a.rate)
            delay = next_t - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            if self.in_flight >= self.a.max_in_flight:
                self.skipped += self.win.inside(time.perf_counter())
                continue
            t = asyncio.create_task(self.create(s, n))
            tasks.add(t)
            t.add_done_callback(tasks.discard)
            n += 1
        if tasks:
            await asyncio.wait(tasks, timeout=30)

    async def resolve(self, s: aiohttp.ClientSession, base: str, cid: str) -> None:
        """The back office resolves a complaint's case (its resolve clock stops)."""
        self.complaints.discard(cid)
        await asyncio.sleep(self.a.resolve_after)
        await self.post(s, "resolve", f"{base}/contacts/{cid}/resolve", b"{}",
                        {**self.gw, "Content-Type": "application/json"})  # fmt: skip

    async def agent(self, s: aiohttp.ClientSession, i: int, ready: asyncio.Event) -> None:
        aid = f"{self.a.agent_prefix}{i:04d}"
        headers = {**self.agent_headers(aid), "Content-Type": "application/json"}
        base = self.base(i)
        seen: set[str] = set()
        work: set[asyncio.Task[None]] = set()
        body = json.dumps({"agent_id": aid}).encode()

        async def handle(cid: str) -> None:
            if (await self.post(s, "accept", f"{base}/contacts/{cid}/accept", body,
                                headers))[0] != 200:  # fmt: skip
                return
            if self.a.handle > 0:
                await asyncio.sleep(self.rng.expovariate(1 / self.a.handle))
            if (await self.post(s, "complete", f"{base}/contacts/{cid}/complete", body,
                                headers))[0] == 200:  # fmt: skip
                self.win.lifecycles += self.win.inside(time.perf_counter())
                if cid in self.complaints and self.a.resolve_after > 0:
                    t = asyncio.create_task(self.resolve(s, base, cid))
                    self.resolving.add(t)
                    t.add_done_callback(self.resolving.discard)

        try:
            async with s.ws_connect(f"{base}/agents/{aid}/ws", headers=headers,
                                    heartbeat=None, max_msg_size=0) as sock:  # fmt: skip
                ready.set()
                async for msg in sock:
                    if msg.type != aiohttp.WSMsgType.BINARY and msg.type != aiohttp.WSMsgType.TEXT:
                        break
                    now = time.perf_counter()
                    self.win.ws_messages += self.win.inside(now)
                    for offer in self.dec.decode(msg.data).get("offers", []):
                        cid = offer["id"]
                        if cid in seen:
                            continue
                        seen.add(cid)
                        self.win.ws_offers += self.win.inside(now)
                        self.offer_at[cid] = now
                        self.decision(cid)
                        t = asyncio.create_task(handle(cid))
                        work.add(t)
                        t.add_done_callback(work.discard)
                    if now > self.win.end + 5:
                        break
        except (aiohttp.ClientError, TimeoutError) as exc:
            status = getattr(exc, "status", "")
            self.errors[f"ws {type(exc).__name__} {status}".rstrip()] += 1
            ready.set()

    async def _count_connection(self, *_: object) -> None:
        self.connections += 1

    async def run(self) -> dict[str, Any]:
        conn = aiohttp.TCPConnector(limit=0)
        # connections opened: the desktops' WebSockets, then the keep-alive pool's HTTP ones
        trace = aiohttp.TraceConfig()
        trace.on_connection_create_end.append(self._count_connection)
        async with aiohttp.ClientSession(connector=conn, trace_configs=[trace],
                                         timeout=aiohttp.ClientTimeout(total=30)) as s:  # fmt: skip
            events = [asyncio.Event() for _ in range(self.a.agents)]
            agents = []
            for i in range(0, self.a.agents, 200):  # connect in chunks: no SYN storm
                agents += [asyncio.create_task(self.agent(s, j, events[j]))
                           for j in range(i, min(i + 200, self.a.agents))]  # fmt: skip
                await asyncio.gather(*(e.wait() for e in events[i : i + 200]))
            apply_gc_policy(Settings.gc_thresholds)  # 5,000 sockets: as the router does
            lag = asyncio.create_task(self.loop_lag())
            # the window starts after every desktop is connected
            shift = time.perf_counter() + self.a.warmup - self.win.start
            self.win.start += shift
            self.win.end += shift
            self.desktop_connections = self.connections
            sampler = asyncio.create_task(self.cpu.run(self.win.start, self.win.end))
            probe = asyncio.create_task(self.sleep_probe())
            await self.gateway(s)
            await sampler
            self.probe = await probe
            lag.cancel()
            await asyncio.sleep(1)
            for t in agents:
                t.cancel()
            await asyncio.gather(*agents, return_exceptions=True)
            if self.resolving:  # the back office finishes the cases it has
                await asyncio.wait(set(self.resolving), timeout=self.a.resolve_after + 10)
        return self.report()

    async def sleep_probe(self) -> dict[str, Any] | None:
        """benchmarks/sleep_probe.py over the window, in a process of its own:
        how late a process with nothing to do wakes while this load runs. It
        is started now, in the warm-up, and waits for the window: starting a
        process from this one (5,000 sockets) holds its loop for ~90 ms."""
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "benchmarks.sleep_probe",
            "--after", str(max(0.0, self.win.start - time.perf_counter())),
            "--duration", str(self.win.end - self.win.start), stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, _ = await proc.communicate()
        if proc.returncode != 0 or not out.strip():
            return None
        return json.loads(out.decode().strip().splitlines()[-1])  # type: ignore[no-any-return]

    async def loop_lag(self, every: float = 0.01) -> None:
        loop = asyncio.get_running_loop()
        while True:
            t0 = loop.time()
            await asyncio.sleep(every)
            t1 = loop.time()
            if self.win.inside(time.perf_counter()):
                self.win.lat.setdefault("loadgen_loop_lag", []).append(max(0.0, t1 - t0 - every))

    def report(self) -> dict[str, Any]:
        d = self.a.duration
        out: dict[str, Any] = {
            "offered_rate": self.a.rate, "agents": self.a.agents, "duration": d,
            "lifecycles_per_s": round(self.win.lifecycles / d, 1),
            "created_per_s": round(self.win.status.get("create 201", 0) / d, 1),
            "skipped": self.skipped, "errors": dict(self.errors),
            "status": dict(self.win.status),
            "connections": {"desktops": self.desktop_connections,
                            "http": self.connections - self.desktop_connections},
        }  # fmt: skip
        cpu = self.cpu.result()
        if cpu:
            done = self.win.lifecycles
            http = sum(self.win.status.values())
            out["cpu_window"] = cpu
            out["cpu_us_per_lifecycle"] = per_unit(cpu, done)
            out["http_requests_per_s"] = round(http / d, 1)
            out["requests_per_lifecycle"] = {
                "http": round(http / max(1, done), 3),
                "ws_messages": round(self.win.ws_messages / max(1, done), 3),
                "ws_offers": round(self.win.ws_offers / max(1, done), 3),
            }
        for kind, vals in self.win.lat.items():
            vals.sort()
            out[kind] = {"n": len(vals), "p50_ms": round(percentile(vals, 50) * 1000, 2),
                         "p90_ms": round(percentile(vals, 90) * 1000, 2),
                         "p99_ms": round(percentile(vals, 99) * 1000, 2),
                         "max_ms": round(vals[-1] * 1000, 2)}  # fmt: skip
            if kind == "decision":  # where the tail starts: the share above each mark
                out[kind]["over_ms"] = {str(ms): round(sum(v > ms / 1000 for v in vals)
                                                       / len(vals), 4)
                                        for ms in (5, 10, 20, 40)}  # fmt: skip
        if self.probe:
            out["sleep_probe"] = self.probe
        bad = sum(v for k, v in self.win.status.items()
                  if not k.endswith((" 200", " 201", " 409")))  # fmt: skip
        total = sum(self.win.status.values())
        out["error_rate"] = round((bad + self.skipped + sum(self.errors.values()))
                                  / max(1, total + self.skipped), 5)  # fmt: skip
        return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--urls", required=True, help="router base URLs, comma separated")
    p.add_argument("--ws", default="capacity")
    p.add_argument("--rate", type=float, required=True, help="contacts offered per second")
    p.add_argument("--agents", type=int, default=1000)
    p.add_argument("--agent-prefix", default="cap-a")
    p.add_argument("--prefix", default="cap")
    p.add_argument("--handle", type=float, default=0.0, help="mean handle time, seconds")
    p.add_argument("--duration", type=float, default=15.0)
    p.add_argument("--warmup", type=float, default=3.0)
    p.add_argument("--max-in-flight", type=int, default=2000)
    p.add_argument("--gateway-token", default="demo-gateway")
    p.add_argument(
        "--agent-token",
        default="demo-agent",
        help="bearer token for every desktop (see --jwt-secret)",
    )
    p.add_argument(
        "--jwt-secret",
        default="",
        help="mint one signed token per agent with this HS256 secret instead",
    )
    p.add_argument(
        "--resolve-after",
        type=float,
        default=0.0,
        help="the gateway resolves a complaint this many seconds after it is completed (0: never)",
    )
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--cpu-pids", default="",
                   help="name=pid,... whose CPU is read at the window's start and end "
                   "(names starting with 'router' are summed)")  # fmt: skip
    p.add_argument("--redis-url", default="", help="also read this Redis' INFO in the window")
    a = p.parse_args()
    agent_headers = token_source(a)
    uvloop.install()
    print(json.dumps(asyncio.run(Load(a, agent_headers).run())), flush=True)


def token_source(a: argparse.Namespace) -> Callable[[str], dict[str, str]]:
    if not a.jwt_secret:
        fixed = {"Authorization": f"Bearer {a.agent_token}"}
        return lambda aid: fixed
    import jwt

    exp = int(time.time()) + 3600

    def mint(aid: str) -> dict[str, str]:
        tok = jwt.encode({"sub": aid, "role": "agent", "exp": exp}, a.jwt_secret, "HS256")
        return {"Authorization": f"Bearer {tok}"}

    return mint


if __name__ == "__main__":
    main()
