"""Router memory per agent WebSocket, with the desktops offering permessage-deflate
(as every browser does) or not.

    .venv/bin/python -m benchmarks.ws_memory [--desktops 1000]

For each case: one router on a private redis-server, the load-test workspace
with `--desktops` agents, one WebSocket per agent (aiohttp's client, with
`compress=15` when compression is offered), each waiting for its first push;
the router's resident memory (VmRSS) before and after is printed, with what
the handshake settled on.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from pathlib import Path

import aiohttp
import uvloop

from benchmarks.capacity import AGENT_FORMAT, setup
from loadtest.workspace import WORKSPACE
from router.store.local import LocalRedis
from tests.support.client import agent_headers
from tests.support.procs import Replica, stop_replicas, wait_ready


def rss_mib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) // 1024
    return 0


async def one_case(desktops: int, compress: int) -> None:
    local = LocalRedis()
    replica = Replica(local.url, Path(tempfile.mkdtemp(prefix="ws-memory-")), 0,
                      {"ROUTER_LOG_LEVEL": "WARNING"})  # fmt: skip
    try:
        await wait_ready([replica])
        await setup(local.url, desktops)
        await asyncio.sleep(1.5)
        before = rss_mib(replica.proc.pid)
        base = f"{replica.url}/v1/workspaces/{WORKSPACE}/agents"
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
            socks = []
            for i in range(desktops):
                aid = f"{AGENT_FORMAT}{i:04d}"
                socks.append(await http.ws_connect(f"{base}/{aid}/ws", headers=agent_headers(aid),
                                                   compress=compress))  # fmt: skip
            first = await asyncio.gather(*(s.receive() for s in socks))
            await asyncio.sleep(1)
            after = rss_mib(replica.proc.pid)
            print(f"compression offered: {'yes' if compress else 'no '}; accepted: "
                  f"{'yes' if socks[0].compress else 'no'}; first push {len(first[0].data)} "
                  f"bytes; router RSS {before} -> {after} MiB, "
                  f"{(after - before) * 1024 / desktops:.0f} KiB per desktop")  # fmt: skip
            for s in socks:
                await s.close()
    finally:
        stop_replicas([replica])
        local.stop()


async def main(desktops: int) -> None:
    for compress in (0, 15):
        await one_case(desktops, compress)


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--desktops", type=int, default=1000)
    uvloop.run(main(p.parse_args().desktops))
