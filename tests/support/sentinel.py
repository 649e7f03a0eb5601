"""A Redis primary with replicas watched by three `redis-sentinel` processes, on
loopback, for the high-availability tests: the primary can be killed and later
restarted at the same address (with its append-only file, as a real server
comes back), and the test can ask the sentinels which node is the primary now.

Sentinel timings are short so a failover takes a few seconds:
`down-after-milliseconds` 1000, `failover-timeout` 10000 (the values the
deploy files use are in deploy/).
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from redis import Redis as SyncRedis

from router.store.local import free_port
from tests.support.faults import RedisServer

SERVICE = "contacts"


def sentinel_homes(directory: Path, count: int) -> tuple[str, list[tuple[int, Path]]]:
    """The redis-sentinel binary, and a free port with a folder of its own for
    each of `count` sentinels."""
    exe = shutil.which("redis-sentinel")
    if exe is None:
        raise RuntimeError("redis-sentinel not found (apt-get install -y redis-sentinel)")
    homes = []
    for port in (free_port() for _ in range(count)):
        home = directory / f"sentinel-{port}"
        home.mkdir(parents=True, exist_ok=True)
        homes.append((port, home))
    return exe, homes


class NamesPrimary(Protocol):
    def primary_port(self) -> int | None: ...


def wait_new_primary(
    sentinels: NamesPrimary,
    old_port: int,
    within: float = 30.0,
    confirmed: Callable[[int], bool] = lambda port: True,
) -> int:
    """Until the sentinels name a primary other than `old_port` (and
    `confirmed(port)` agrees); returns its port."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        port = sentinels.primary_port()
        if port is not None and port != old_port and confirmed(port):
            return port
        time.sleep(0.1)
    raise AssertionError(f"no failover away from port {old_port} within {within} s")


class Sentinels:
    """`redis-sentinel` processes monitoring one primary as `SERVICE`."""

    def __init__(
        self,
        directory: Path,
        primary_port: int,
        count: int = 3,
        quorum: int = 2,
        timings: tuple[int, int] = (1000, 10000),
    ) -> None:
        """`timings`: `down-after-milliseconds` and `failover-timeout`."""
        exe, homes = sentinel_homes(directory, count)
        self.ports = [port for port, _ in homes]
        self.procs: list[subprocess.Popen[bytes]] = []
        for port, home in homes:
            conf = home / "sentinel.conf"  # sentinels rewrite their config: their own file
            conf.write_text(
                f"port {port}\nbind 127.0.0.1\ndir {home}\n"
                f"sentinel monitor {SERVICE} 127.0.0.1 {primary_port} {quorum}\n"
                f"sentinel down-after-milliseconds {SERVICE} {timings[0]}\n"
                f"sentinel failover-timeout {SERVICE} {timings[1]}\n"
                f"sentinel parallel-syncs {SERVICE} 1\n"
            )
            with (home / "sentinel.log").open("ab") as log:
                self.procs.append(
                    subprocess.Popen([exe, str(conf)], stdout=log, stderr=subprocess.STDOUT)
                )
        for port in self.ports:
            _wait_pong(port)

    @property
    def nodes(self) -> str:
        return ",".join(f"127.0.0.1:{p}" for p in self.ports)

    def primary_port(self) -> int | None:
        """The primary's port as the first sentinel that answers reports it."""
        for port in self.ports:
            try:
                with SyncRedis(port=port, socket_timeout=1, decode_responses=True) as s:
                    addr = s.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", SERVICE)
                    return int(addr[1]) if addr else None
            except OSError:
                continue
        return None

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(5)


class SentinelGroup:
    """A primary, `replicas` replicas (all with AOF) and three sentinels."""

    def __init__(
        self,
        directory: Path,
        replicas: int = 2,
        link: bool = False,
        timings: tuple[int, int] = (1000, 10000),
    ) -> None:
        """`link`: the replicas replicate through a `ReplicationLink` the test can hold;
        `timings`: the sentinels' `down-after-milliseconds` and `failover-timeout`."""
        self.primary = RedisServer(directory / "primary", aof=True)
        self.link = ReplicationLink(self.primary.port) if link else None
        upstream = self.link.port if self.link else self.primary.port
        self.replicas = [
            RedisServer(directory / f"replica-{i}", aof=True, replica_of=upstream)
            for i in range(replicas)
        ]
        self.servers = [self.primary, *self.replicas]
        wait_synced(self.primary.port, replicas)
        self.sentinels = Sentinels(directory, self.primary.port, timings=timings)
        _wait_replicas_known(self.sentinels, replicas)

    def url(self, db: int = 0) -> str:
        return f"redis+sentinel://{self.sentinels.nodes}/{SERVICE}/{db}"

    def server_on(self, port: int) -> RedisServer:
        return next(s for s in self.servers if s.port == port)

    def wait_failover(self, old_port: int, within: float = 30.0) -> int:
        """Blocks until the sentinels name another primary; returns its port."""
        return wait_new_primary(self.sentinels, old_port, within)

    def stop(self) -> None:
        if self.link is not None:
            self.link.close()
        self.sentinels.stop()
        for server in self.servers:
            server.stop()


def _wait_pong(port: int, within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            with SyncRedis(port=port, socket_timeout=0.5) as r:
                if r.ping():
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"nothing answered PING on port {port} within {within} s")


def wait_synced(primary_port: int, replicas: int, within: float = 20.0) -> None:
    deadline = time.monotonic() + within
    with SyncRedis(port=primary_port, decode_responses=True) as r:
        while time.monotonic() < deadline:
            info = r.info("replication")
            online = [v for k, v in info.items() if k.startswith("slave") and "online" in str(v)]
            if len(online) >= replicas:
                return
            time.sleep(0.1)
    raise RuntimeError(f"{replicas} replicas did not sync within {within} s")


def _wait_replicas_known(sentinels: Sentinels, replicas: int, within: float = 20.0) -> None:
    """Every sentinel knows the replicas and the other sentinels (a failover needs both)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        ready = 0
        for port in sentinels.ports:
            with SyncRedis(port=port, decode_responses=True) as s:
                fields = s.sentinel_master(SERVICE)
                if (
                    int(fields["num-slaves"]) >= replicas
                    and int(fields["num-other-sentinels"]) >= len(sentinels.ports) - 1
                ):
                    ready += 1
        if ready == len(sentinels.ports):
            return
        time.sleep(0.2)
    raise RuntimeError(f"the sentinels did not discover the group within {within} s")


class ReplicationLink:
    """A TCP relay between the replicas and the primary (threads, so it runs
    whatever the test's event loop does). While `hold` is set it drops what the
    primary sends (the replication stream) but passes the replicas' ACKs: the
    replicas fall behind as over a slow link, and a primary killed then dies
    holding writes no replica has."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.hold = threading.Event()
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._server.getsockname()[1])
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._server.accept()
                upstream = socket.create_connection(("127.0.0.1", self.target_port))
            except OSError:
                continue
            for src, dst, stream in ((client, upstream, False), (upstream, client, True)):
                threading.Thread(target=self._pipe, args=(src, dst, stream), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, stream: bool) -> None:
        try:
            while data := src.recv(65536):
                if stream and self.hold.is_set():
                    continue
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.close()

    def close(self) -> None:
        self._closed = True
        self._server.close()
