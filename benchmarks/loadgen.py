"""Closed-loop HTTP load generator (aiohttp client on uvloop), run as its own process.

`--concurrency` workers each keep one request in flight on a keep-alive
connection. Requests completing in the first `--warmup` seconds are not
counted; the next `--duration` seconds are. Prints one JSON object.

Modes:
  get       GET --url                                         (hello world)
  create    POST {base}/contacts with a unique contact id      (admission path)
  complete  POST {base}/contacts/{cid}/complete for a chain of contacts per agent:
            agent `{agent-prefix}-{a:04d}` (one per worker) holds contact
            `{contact-prefix}-{a:04d}-{n:06d}`; completing it makes the router hand
            the agent contact n+1 inside the same script (agent-freed path)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import sys
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import aiohttp
import uvloop

Request = tuple[str, str, bytes | None, dict[str, str]]


def percentile(sorted_values: list[float], p: float) -> float:
    if not sorted_values:
        return float("nan")
    k = min(len(sorted_values) - 1, max(0, math.ceil(p / 100 * len(sorted_values)) - 1))
    return sorted_values[k]


def get_requests(args: argparse.Namespace, worker: int) -> Iterator[Request]:
    while True:
        yield "GET", args.url, None, {}


def create_requests(args: argparse.Namespace, worker: int) -> Iterator[Request]:
    url = f"{args.url}/contacts"
    headers = {"Authorization": f"Bearer {args.token}", "Content-Type": "application/json"}
    n = 0
    while True:
        cid = f"{args.prefix}-{worker:03d}-{n:07d}"
        tier = "vip" if n % 4 == 0 else "standard"
        cust = (worker * 7919 + n) % 100_000
        body = json.dumps(
            {
                "id": cid,
                "channel": "voice",
                "intent": "card",
                "customer": {"id": f"cu-{cust}", "tier": tier},
            },
            separators=(",", ":"),
        )
        yield "POST", url, body.encode(), headers
        n += 1


def complete_requests(args: argparse.Namespace, worker: int) -> Iterator[Request]:
    headers = {"Authorization": f"Bearer {args.token}", "Content-Type": "application/json"}
    agent = f"{args.agent_prefix}-{worker:04d}"
    body = json.dumps({"agent_id": agent}).encode()
    for n in range(args.per_agent):
        cid = f"{args.prefix}-{worker:04d}-{n:06d}"
        yield "POST", f"{args.url}/contacts/{cid}/complete", body, headers


MODES = {"get": get_requests, "create": create_requests, "complete": complete_requests}


async def send(session: aiohttp.ClientSession, req: Any, errors: Counter[str]) -> str:
    """One request, read to the end: its status, or "error" (counted by kind)."""
    method, url, data, headers = req
    try:
        async with session.request(method, url, data=data, headers=headers) as r:
            await r.read()
            return str(r.status)
    except (aiohttp.ClientError, TimeoutError) as exc:
        errors[type(exc).__name__] += 1
        return "error"


async def run(args: argparse.Namespace) -> dict[str, object]:
    latencies: list[float] = []
    statuses: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    sent = 0
    exhausted_at: float | None = None
    ran_out = asyncio.Event()
    connector = aiohttp.TCPConnector(limit=0, force_close=False)
    timeout = aiohttp.ClientTimeout(total=30)
    start = time.perf_counter()
    warm_end = start + args.warmup
    end = warm_end + args.duration

    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def worker(w: int) -> None:
            nonlocal sent, exhausted_at, end
            gen = MODES[args.mode](args, w)
            while True:
                if time.perf_counter() >= end:
                    return
                req = next(gen, None)
                if req is None:  # this agent's chain is used up: stop the run here
                    now = time.perf_counter()
                    if exhausted_at is None:
                        exhausted_at = now
                        end = min(end, now)
                        ran_out.set()
                    return
                t0 = time.perf_counter()
                status = await send(session, req, errors)
                t1 = time.perf_counter()
                sent += 1
                if warm_end <= t1 <= end:
                    latencies.append(t1 - t0)
                    statuses[status] += 1

        async def marks() -> None:
            # Lets benchmarks/e2e/ sample CPU and Redis over the measured window only.
            await asyncio.sleep(max(0.0, warm_end - time.perf_counter()))
            print('{"event": "start"}', flush=True)
            with contextlib.suppress(TimeoutError):  # a used-up chain ends the run early
                await asyncio.wait_for(ran_out.wait(), max(0.0, end - time.perf_counter()))
            print('{"event": "end"}', flush=True)

        mark_task = asyncio.create_task(marks())
        await asyncio.gather(*(worker(w) for w in range(args.concurrency)))
        await mark_task

    measured = max(1e-9, min(end, time.perf_counter()) - warm_end)
    latencies.sort()
    ok = sum(v for k, v in statuses.items() if k.startswith("2"))
    return {
        "tool": "aiohttp-client",
        "mode": args.mode,
        "concurrency": args.concurrency,
        "duration_s": round(measured, 3),
        "requests": len(latencies),
        "ok": ok,
        "rps": round(len(latencies) / measured, 1),
        "min_ms": round((latencies[0] if latencies else float("nan")) * 1000, 3),
        "p10_ms": round(percentile(latencies, 10) * 1000, 3),
        "p50_ms": round(percentile(latencies, 50) * 1000, 3),
        "p90_ms": round(percentile(latencies, 90) * 1000, 3),
        "p99_ms": round(percentile(latencies, 99) * 1000, 3),
        "max_ms": round((latencies[-1] if latencies else float("nan")) * 1000, 3),
        "statuses": dict(statuses),
        "errors": dict(errors),
        "sent_total": sent,
        "exhausted": exhausted_at is not None,
    }


async def run_paired(args: argparse.Namespace) -> dict[str, object]:
    """Alternates `--slice`-second slices of GET --hello-url and of `mode` on --url, so
    both see the same machine: on a shared or throttled host the ratio of the two is
    steadier than that of two runs made one after the other. Every slice drains its
    in-flight requests before the next starts; the first `--warmup` seconds of each
    target are not counted."""
    targets = {
        "hello": (get_requests, argparse.Namespace(**{**vars(args), "url": args.hello_url})),
        args.mode: (MODES[args.mode], args),
    }
    stats = {
        name: {
            "lat": [],
            "time": 0.0,
            "statuses": Counter(),
            "errors": Counter(),
            "warm": args.warmup,
        }
        for name in targets
    }
    gens = {name: [fn(a, w) for w in range(args.concurrency)] for name, (fn, a) in targets.items()}
    ran_out = False
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0), timeout=aiohttp.ClientTimeout(total=30)
    ) as session:

        async def worker(
            name: str, w: int, deadline: float, out: list[float] | None, st: dict[str, Any]
        ) -> None:
            nonlocal ran_out
            while time.perf_counter() < deadline:
                req = next(gens[name][w], None)
                if req is None:
                    ran_out = True
                    return
                t0 = time.perf_counter()
                status = await send(session, req, st["errors"])
                if out is not None:
                    out.append(time.perf_counter() - t0)
                    st["statuses"][status] += 1

        i = 0
        while not ran_out and min(s["time"] for s in stats.values()) < args.duration:
            name = list(targets)[i % 2]
            i += 1
            st = stats[name]
            counted = st["warm"] <= 0
            start = time.perf_counter()
            lat: list[float] = []
            await asyncio.gather(
                *(
                    worker(name, w, start + args.slice, lat if counted else None, st)
                    for w in range(args.concurrency)
                )
            )
            took = time.perf_counter() - start
            if counted:
                st["lat"].extend(lat)
                st["time"] += took
            else:
                st["warm"] -= took
    out: dict[str, object] = {
        "tool": "aiohttp-client",
        "mode": f"paired-{args.mode}",
        "concurrency": args.concurrency,
        "slice_s": args.slice,
        "exhausted": ran_out,
    }
    for name, st in stats.items():
        lat = sorted(st["lat"])
        secs = max(st["time"], 1e-9)
        out[name] = {
            "duration_s": round(st["time"], 3),
            "requests": len(lat),
            "rps": round(len(lat) / secs, 1),
            "p50_ms": round(percentile(lat, 50) * 1000, 3),
            "p90_ms": round(percentile(lat, 90) * 1000, 3),
            "p99_ms": round(percentile(lat, 99) * 1000, 3),
            "statuses": dict(st["statuses"]),
            "errors": dict(st["errors"]),
        }
    h, m = out["hello"], out[args.mode]
    out["ratio"] = round(m["rps"] / h["rps"], 3) if h["rps"] else None  # type: ignore[index]
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("mode", choices=sorted(MODES))
    p.add_argument("--url", required=True, help="GET url, or the workspace base url")
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument("--duration", type=float, default=10.0)
    p.add_argument("--warmup", type=float, default=1.0)
    p.add_argument("--token", default="demo-gateway")
    p.add_argument("--prefix", default="lg", help="contact id prefix")
    p.add_argument("--agent-prefix", default="fa")
    p.add_argument("--per-agent", type=int, default=0, help="complete: contacts per agent")
    p.add_argument("--hello-url", help="paired runs: alternate slices with GET on this url")
    p.add_argument("--slice", type=float, default=1.0, help="paired runs: seconds per slice")
    args = p.parse_args()
    result = uvloop.run(run_paired(args) if args.hello_url else run(args))
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
