"""Fault injection for the fault-tolerance tests: a redis-server that can be
stopped, restarted from its append-only file or put to sleep; replicas
restarted on their port after a kill; a TCP relay between a replica and Redis
that can swallow replies (a network fault); an HTTP client that retries the
way channel gateways and agent desktops do."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import signal
import socket
import subprocess
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiohttp
import msgspec

from router.store.local import free_port
from tests.support.client import GW, SUP, agent_headers
from tests.support.procs import Replica

ENCODE = msgspec.json.encode
DECODE = msgspec.json.decode
JSON_TYPE = {"Content-Type": "application/json"}


class RedisServer:
    """A redis-server of the test's own: AOF optional, DEBUG allowed from
    loopback, restartable on the same port from the same directory."""

    def __init__(
        self, directory: Path, *, aof: bool = False, replica_of: int | None = None
    ) -> None:
        exe = shutil.which("redis-server")
        if exe is None:
            raise RuntimeError("redis-server not found (apt-get install -y redis-server)")
        self.exe = exe
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.aof = aof
        self.replica_of = replica_of  # the primary's port, at the first start
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        args = [
            self.exe, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.dir),
            "--save", "", "--daemonize", "no", "--loglevel", "warning",
            "--enable-debug-command", "local",
            "--appendonly", "yes" if self.aof else "no", "--appendfsync", "everysec",
        ]  # fmt: skip
        if self.replica_of is not None:
            args += ["--replicaof", "127.0.0.1", str(self.replica_of)]
        with (self.dir / "redis.log").open("ab") as log:
            self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"redis-server exited with {self.proc.returncode}:\n"
                    + (self.dir / "redis.log").read_text()[-2000:]
                )
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(64).startswith(b"+PONG"):  # not -LOADING: the AOF is read
                        return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError("redis-server did not answer within 15 s")

    def shutdown(self) -> None:
        """SIGTERM: Redis flushes its AOF and exits (a clean stop)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(15)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)


def restart(replica: Replica) -> None:
    """Starts a stopped or killed replica again on the same port."""
    assert replica.proc.poll() is not None, "the replica is still running"
    replica.proc = replica._spawn()  # same port, same log


def kill(replica: Replica) -> None:
    if replica.proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            replica.proc.send_signal(signal.SIGKILL)
        replica.proc.wait(10)


def stop_all(replicas: Sequence[Replica]) -> None:
    """Ends every replica still running (SIGKILL: the test is over)."""
    for r in replicas:
        kill(r)


class Relay:
    """A TCP relay from a replica to Redis that the test can make swallow the
    replies (the replica's commands still reach Redis): a reply lost on the
    network, seen from both ends. `lose_from(marker)`: from the first reply
    containing `marker` on, every reply is lost."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.swallow = False
        self._marker: bytes | None = None
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)

    async def _accept(self, cr: asyncio.StreamReader, cw: asyncio.StreamWriter) -> None:
        try:
            sr, sw = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            cw.close()
            return
        for src, dst, replies in ((cr, sw, False), (sr, cw, True)):
            task = asyncio.create_task(self._pipe(src, dst, replies))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pipe(
        self, src: asyncio.StreamReader, dst: asyncio.StreamWriter, replies: bool
    ) -> None:
        try:
            while data := await src.read(65536):
                if replies and self._marker is not None and self._marker in data:
                    self.swallow, self._marker = True, None
                if replies and self.swallow:
                    continue
                dst.write(data)
                await dst.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            dst.close()

    def lose_from(self, marker: bytes) -> None:
        self._marker = marker

    def restore(self) -> None:
        self.swallow, self._marker = False, None

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


class Client:
    """HTTP as a channel gateway or agent desktop does it: a connection error
    or a 503 is retried on the next replica with the same request (creation is
    idempotent on the contact id), and counted."""

    def __init__(self, http: aiohttp.ClientSession, urls: list[str], ws: str) -> None:
        self.http = http
        self.urls = urls
        self.base = f"/v1/workspaces/{ws}"
        self.stats: Counter[str] = Counter()
        self.statuses: Counter[int] = Counter()  # every HTTP status seen, retries included
        self.latencies: list[float] = []  # seconds per call, retries included
        self._next = 0

    async def once(
        self,
        url: str,
        method: str,
        path: str,
        headers: dict[str, str],
        body: Any = None,
        limit: float = 30.0,
    ) -> tuple[int, Any, dict[str, str]]:
        raw = None if body is None else ENCODE(body)
        hdrs = headers if raw is None else {**headers, **JSON_TYPE}
        async with self.http.request(
            method,
            url + self.base + path,
            data=raw,
            headers=hdrs,
            timeout=aiohttp.ClientTimeout(total=limit),
        ) as r:
            data = await r.read()
            self.statuses[r.status] += 1
            return r.status, DECODE(data) if data else None, dict(r.headers)

    async def call(
        self,
        method: str,
        path: str,
        headers: dict[str, str],
        body: Any = None,
        limit: float = 30.0,
        within: float = 90.0,
    ) -> tuple[int, Any]:
        """Retries on connection errors and 503 until `within` seconds passed."""
        t0 = time.monotonic()
        deadline = t0 + within
        while True:
            self._next += 1
            url = self.urls[self._next % len(self.urls)]
            try:
                status, data, _ = await self.once(url, method, path, headers, body, limit)
                self.stats["requests"] += 1
                if status != 503:
                    if "wait=" not in path:  # long-polls wait on purpose
                        self.latencies.append(time.monotonic() - t0)
                    return status, data
                self.stats["retried_503"] += 1
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                self.stats["retried_" + type(exc).__name__] += 1
            if time.monotonic() > deadline:
                raise AssertionError(f"{method} {path}: no answer within {within} s")
            await asyncio.sleep(0.05)


ENDED = frozenset({"completed", "abandoned", "expired"})


async def create_contact(
    client: Client, cid: str, channel: str = "voice", intent: str | None = None
) -> dict[str, Any]:
    """POST until answered: a retry after a lost reply finds the contact (200)."""
    body: dict[str, Any] = {"id": cid, "channel": channel, "customer": {"id": "cu-" + cid}}
    if intent:
        body["intent"] = intent
    status, data = await client.call("POST", "/contacts", GW, body)
    assert status in (200, 201), f"create {cid} -> {status}: {data}"
    client.stats["created" if status == 201 else "create_found"] += 1
    return data  # type: ignore[no-any-return]


class Desk:
    """An agent desktop: long-polls its offers through whichever replica answers,
    accepts, holds the contact for `hold()` seconds and completes it. A lost
    reply is retried; a 409 on the retry is resolved by looking at the contact
    (the first attempt went through, or the offer timed out meanwhile)."""

    def __init__(self, client: Client, aid: str, hold: Any, poll: float = 2.0) -> None:
        self.client = client
        self.aid = aid
        self.hold = hold
        self.poll = poll
        self.headers = agent_headers(aid)
        self.handling: set[str] = set()
        self.tasks: set[asyncio.Task[None]] = set()

    async def run(self, stop: asyncio.Event) -> None:
        idle_polls = 0
        while not stop.is_set():
            path = f"/agents/{self.aid}/offers?wait={self.poll}"
            status, data = await self.client.call("GET", path, self.headers, limit=self.poll + 10)
            assert status == 200, (status, data)
            fresh = [o["id"] for o in data["offers"] if o["id"] not in self.handling]
            if data["offers"] and not fresh:
                # only offers already in hand (an accept retried through a
                # failover): the long-poll answers at once, so do not spin into
                # the desk token's rate limit
                await asyncio.sleep(0.1)
            for cid in fresh:
                self.handling.add(cid)
                task = asyncio.create_task(self._handle(cid))
                self.tasks.add(task)
                task.add_done_callback(self.tasks.discard)
            idle_polls = 0 if fresh or self.handling else idle_polls + 1
            if idle_polls >= 3:  # offers that timed out may have made the agent `missed`
                idle_polls = 0
                _, agent = await self.client.call("GET", f"/agents/{self.aid}", SUP)
                if agent["state"] == "missed":
                    self.client.stats["missed_agent"] += 1
                    await self.client.call(
                        "POST", f"/agents/{self.aid}/state", self.headers, {"state": "available"}
                    )
        await asyncio.gather(*self.tasks)

    def refused(self, action: str, status: int) -> bool:
        """Is `status` an expected refusal of `action` (besides 409)? None is here."""
        return False

    async def _act(self, cid: str, action: str, done: frozenset[str]) -> bool:
        """True when the action took effect (now or by an earlier lost attempt)."""
        status, data = await self.client.call(
            "POST", f"/contacts/{cid}/{action}", self.headers, {"agent_id": self.aid}
        )
        if status == 200:
            self.client.stats[action] += 1
            return True
        if status == 403 and self.refused(action, status):
            return False
        assert status == 409, f"{action} {cid} -> {status}: {data}"
        _, view = await self.client.call("GET", f"/contacts/{cid}", SUP)
        if view["state"] in done and view.get("agent") in (self.aid, None):
            self.client.stats[action + "_found_done"] += 1  # the lost attempt went through
            return True
        self.client.stats[action + "_refused"] += 1  # offer timed out, or abandoned
        return False

    async def _handle(self, cid: str) -> None:
        try:
            if await self._act(cid, "accept", frozenset({"assigned", "wrap_up", "completed"})):
                await asyncio.sleep(self.hold())
                await self._act(cid, "complete", frozenset({"completed", "wrap_up"}))
        finally:
            self.handling.discard(cid)


async def add_agents(client: Client, ids: list[str], skills: dict[str, int]) -> None:
    for aid in ids:
        status, data = await client.call(
            "PUT", f"/agents/{aid}", SUP, {"skills": skills, "capacity": 100}
        )
        assert status == 200, data
        status, data = await client.call(
            "POST", f"/agents/{aid}/state", agent_headers(aid), {"state": "available"}
        )
        assert status == 200, data


async def slow_post(
    port: int,
    path: str,
    headers: dict[str, str],
    body: bytes,
    sent: asyncio.Event,
    finish: asyncio.Event,
) -> tuple[int, bytes]:
    """An HTTP/1.1 POST whose body arrives in two parts: the request is in the
    server's hands (headers and half the body read) until `finish` is set."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        writer.write(
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{head}"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            f"Connection: close\r\n\r\n".encode()
            + body[: len(body) // 2]
        )
        await writer.drain()
        sent.set()
        await finish.wait()
        writer.write(body[len(body) // 2 :])
        await writer.drain()
        raw = await reader.read()
        status = int(raw.split(b" ", 2)[1])
        return status, raw.split(b"\r\n\r\n", 1)[1]
    finally:
        writer.close()
