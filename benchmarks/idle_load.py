"""Idle cost: Redis commands per second from router replicas with nothing to do.

Starts a private redis-server, writes `--workspaces` workspaces (the demo
routing config each, no contacts), starts `--replicas` `router serve`
processes, lets them settle, then counts the commands Redis processed over
`--seconds` (INFO stats `total_commands_processed`) and which ones
(INFO commandstats), per second.

    .venv/bin/python -m benchmarks.idle_load                 # 10 replicas x 50 workspaces
    .venv/bin/python -m benchmarks.idle_load --replicas 2 --workspaces 5
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

from router.cli.demo import demo_config
from router.routing.engine import Engine
from router.store.client import make_client
from router.store.local import LocalRedis
from router.store.shards import Shards
from tests.support.procs import start_replicas, stop_replicas, wait_ready


async def seed(url: str, workspaces: int) -> None:
    client = make_client(url, 10.0)
    engine = Engine(Shards(client))
    try:
        for i in range(workspaces):
            await engine.put_config(f"idle{i:03d}", demo_config(), "admin:bench")
    finally:
        await engine.close()
        await client.aclose()


async def count(url: str, seconds: float) -> dict[str, Any]:
    client = make_client(url, 10.0)
    try:
        await client.config_resetstat()
        t0 = time.monotonic()
        await asyncio.sleep(seconds)
        stats = await client.info("stats")
        commands = await client.info("commandstats")
        elapsed = time.monotonic() - t0
    finally:
        await client.aclose()
    total = int(stats["total_commands_processed"])
    by_command = {
        name.removeprefix("cmdstat_"): round(int(v["calls"]) / elapsed, 1)
        for name, v in commands.items()
    }
    return {
        "commands_per_s": round(total / elapsed, 1),
        "by_command_per_s": dict(sorted(by_command.items(), key=lambda kv: -kv[1])),
    }


async def run(replicas: int, workspaces: int, seconds: float, settle: float) -> dict[str, Any]:
    server = LocalRedis()
    try:
        await seed(server.url, workspaces)
        with tempfile.TemporaryDirectory(prefix="idle-") as tmp:
            procs = start_replicas(server.url, Path(tmp), replicas, {"ROUTER_LOG_LEVEL": "WARNING"})
            try:
                await wait_ready(procs, within=120)
                await asyncio.sleep(settle)
                out = await count(server.url, seconds)
            finally:
                stop_replicas(procs)
    finally:
        server.stop()
    return {"replicas": replicas, "workspaces": workspaces, "seconds": seconds, **out}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicas", type=int, default=10)
    parser.add_argument("--workspaces", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--settle", type=float, default=5.0)
    args = parser.parse_args()
    out = asyncio.run(run(args.replicas, args.workspaces, args.seconds, args.settle))
    out["machine"] = f"{platform.node()} {platform.machine()} {platform.python_version()}"
    print(json.dumps(out, indent=1))
    per_replica = out["commands_per_s"] / args.replicas
    print(
        f"{args.replicas} idle replicas x {args.workspaces} workspaces: "
        f"{out['commands_per_s']:.0f} Redis commands/s ({per_replica:.0f} per replica)"
    )


if __name__ == "__main__":
    main()
