"""Router CPU per sealed audit record, on real events.

    .venv/bin/python -m benchmarks.seal_cost [--rate 150] [--seconds 8] [--rounds 5]

A router on a private redis-server serves `--seconds` of full lifecycles of the
load-test workspace (`benchmarks.lifecycle`), and its events are read back.
Each round copies them into a fresh workspace's stream and seals them in this
process with the router's own `Sealer`, batch after batch, until none is left.
CPU (`time.process_time`) per record is printed for each round: parsing the
stream, deriving and hashing each record, and the seal script calls.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import cast

import uvloop
from redis.asyncio import Redis

from benchmarks.capacity import AGENT_FORMAT, setup
from loadtest.workspace import WORKSPACE
from router.runtime.settings import DEMO_JWT_SECRET
from router.security.audit.records import Source
from router.security.audit.sealer import Chain, Sealer
from router.store.keys import WsKeys
from router.store.local import LocalRedis
from router.store.shards import Shards
from tests.support.procs import ROOT, Replica, stop_replicas, wait_ready


async def real_events(url: str, rate: float, seconds: float) -> list[tuple[str, dict[str, str]]]:
    replica = Replica(url, Path(tempfile.mkdtemp(prefix="seal-cost-")), 0,
                      {"ROUTER_LOG_LEVEL": "WARNING"})  # fmt: skip
    try:
        await wait_ready([replica])
        await setup(url, 500)
        await asyncio.sleep(1.5)  # the router's config cache
        cmd = [sys.executable, "-m", "benchmarks.lifecycle", "--urls", replica.url,
               "--ws", WORKSPACE, "--rate", str(rate), "--agents", "500",
               "--agent-prefix", AGENT_FORMAT, "--prefix", "seal", "--duration", str(seconds),
               "--warmup", "1", "--handle", "0", "--jwt-secret", DEMO_JWT_SECRET]  # fmt: skip
        load = await asyncio.create_subprocess_exec(*cmd, cwd=ROOT,
                                                    stdout=subprocess.DEVNULL)  # fmt: skip
        if await load.wait() != 0:
            raise RuntimeError("the load generator failed")
    finally:
        stop_replicas([replica])
    client = Redis.from_url(url, decode_responses=True)
    try:
        events = cast(list[tuple[str, dict[str, str]]],
                      await client.xrange(WsKeys(WORKSPACE).events, "-", "+"))  # fmt: skip
    finally:
        await client.aclose()
    return events


async def main(a: argparse.Namespace) -> None:
    local = LocalRedis()
    try:
        events = await real_events(local.url, a.rate, a.seconds)
        client = Redis.from_url(local.url, decode_responses=True)
        shards = Shards(client)
        per_record = []
        for n in range(a.rounds):
            source = Source.workspace(f"seal-cost-{n}")
            pipe = client.pipeline(transaction=False)
            for _, fields in events:
                pipe.xadd(source.stream, fields)  # type: ignore[arg-type]
            await pipe.execute()
            sealer, chain = Sealer(shards), Chain(source)
            start, sealed = time.process_time(), 0
            await sealer._load_head(chain)
            while done := await sealer._seal_batch(chain):
                sealed += done
            per_record.append((time.process_time() - start) / sealed * 1e6)
        await client.aclose()
        print(f"{len(events)} events of the load-test workspace; router CPU per sealed record, "
              f"µs: {', '.join(f'{x:.1f}' for x in per_record)} "
              f"(median {statistics.median(per_record):.1f})")  # fmt: skip
    finally:
        local.stop()


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rate", type=float, default=150.0)
    p.add_argument("--seconds", type=float, default=8.0)
    p.add_argument("--rounds", type=int, default=5)
    uvloop.run(main(p.parse_args()))
