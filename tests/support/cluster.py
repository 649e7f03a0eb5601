"""A Redis Cluster of real `redis-server` processes on loopback, for the tests
that run the router against a sharded store: primaries each with their own
replicas (all with AOF), made a cluster by `redis-cli --cluster create`. A
primary can be killed, its replica promoted by the cluster itself, and the old
primary restarted at the same address (it rejoins from its nodes.conf and
append-only file, as a real server comes back, and becomes a replica).

Cluster timings are short so a failover takes a couple of seconds:
`cluster-node-timeout` 1000 ms; replicas do not migrate to other primaries, so
each primary's replica is the one promoted when it dies; `repl-diskless-sync-delay`
0, so a replica (or a restarted old primary) syncs at once, not 5 s later.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from redis import Redis as SyncRedis
from redis.crc import key_slot  # what redis.cluster uses; exported from here
from redis.exceptions import RedisError

from router.store.local import free_port

T = TypeVar("T")
SlotMap = list[tuple[int, int, int]]  # (first slot, last slot, primary's port), sorted


class ClusterGroup:
    """`masters` primaries with `replicas_per_master` replicas each, one cluster."""

    def __init__(self, directory: Path, masters: int = 3, replicas_per_master: int = 1) -> None:
        exe, cli = shutil.which("redis-server"), shutil.which("redis-cli")
        if exe is None or cli is None:
            raise RuntimeError("redis-server not found (apt-get install -y redis-server)")
        self.exe = exe
        self.directory = directory
        count = masters * (1 + replicas_per_master)
        # Two ports a node: clients' and the cluster bus. The bus defaults to port
        # + 10000, beyond 65535 for high ephemeral ports, so it is given too.
        ports: list[int] = []
        while len(ports) < 2 * count:
            if (port := free_port()) not in ports:
                ports.append(port)
        self.ports = ports[:count]
        self.bus = dict(zip(self.ports, ports[count:], strict=True))
        self.procs: dict[int, subprocess.Popen[bytes]] = {}
        self._slots_at_kill: dict[int, SlotMap] = {}
        try:  # a failed start leaves no process behind
            for port in self.ports:
                self._spawn(port)
            try:
                subprocess.run(
                    [cli, "--cluster", "create", *(f"127.0.0.1:{p}" for p in self.ports),
                     "--cluster-replicas", str(replicas_per_master), "--cluster-yes"],
                    check=True, capture_output=True, timeout=60,
                )  # fmt: skip
            except subprocess.CalledProcessError as exc:
                output = (exc.stdout + exc.stderr).decode(errors="replace")
                raise RuntimeError(f"redis-cli --cluster create failed:\n{output}") from exc
            self.wait_ok()
        except BaseException:
            self.stop()
            raise
        self._initial = self.primaries()

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{p}" for p in self._initial)

    def home(self, port: int) -> Path:
        return self.directory / f"node-{port}"

    def _spawn(self, port: int) -> None:
        home = self.home(port)
        home.mkdir(parents=True, exist_ok=True)
        args = [
            self.exe, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(home),
            "--daemonize", "no", "--save", "", "--enable-debug-command", "local",
            "--appendonly", "yes", "--appendfsync", "everysec",
            "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
            "--cluster-port", str(self.bus[port]), "--cluster-node-timeout", "1000",
            "--cluster-allow-replica-migration", "no",
            # A full sync otherwise waits 5 s for more replicas to share the transfer.
            "--repl-diskless-sync-delay", "0",
        ]  # fmt: skip
        with (home / "redis.log").open("ab") as log:
            self.procs[port] = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)

        def pong() -> bool | None:
            if self.procs[port].poll() is not None:
                raise RuntimeError(f"redis-server on {port} exited:\n{self._tail(port)}")
            with _client(port) as r:
                return r.ping() or None  # raises BusyLoadingError while reading the AOF

        self._poll(pong, 15.0, f"redis-server on {port} did not answer")

    def live(self) -> list[int]:
        return [p for p in self.ports if self.procs[p].poll() is None]

    def _nodes(self) -> list[list[str]]:
        """CLUSTER NODES from the first live node that answers, split in fields."""
        for port in self.live():
            try:
                with _client(port) as r:
                    text = r.execute_command("CLUSTER", "NODES")
            except (RedisError, OSError):
                continue
            return [line.split() for line in text.splitlines() if line.strip()]
        raise RuntimeError("no live cluster node answers")

    def primaries(self) -> list[int]:
        """Ports of the primaries serving slots now (failed or unlinked ones left out)."""
        return sorted(
            int(f[1].split("@")[0].rsplit(":", 1)[1])
            for f in self._nodes()
            if "master" in f[2].split(",")
            and not {"fail", "fail?", "noaddr"} & set(f[2].split(","))
            and f[7] == "connected"
            and len(f) > 8  # serves slots: a primary without any serves no key
        )

    def slot_map(self, port: int) -> SlotMap:
        with _client(port) as r:
            rows = r.execute_command("CLUSTER", "SLOTS")
        return sorted((int(row[0]), int(row[1]), int(row[2][1])) for row in rows)

    def primary_for(self, key: str) -> int:
        slot = key_slot(key.encode())
        for port in self.live():
            try:
                rows = self.slot_map(port)
            except (RedisError, OSError):
                continue
            return next(p for first, last, p in rows if first <= slot <= last)
        raise RuntimeError("no live cluster node answers")

    def names_on_each_primary(self, prefix: str, template: str = "{ws:%s}") -> list[str]:
        """One name per primary (by port) whose `template % name` hashes to its slots."""
        rows = self.slot_map(self.live()[0])
        wanted = self.primaries()
        found: dict[int, str] = {}
        for i in range(100_000):  # 16384 slots: a few dozen tries cover 3 primaries
            name = f"{prefix}{i}"
            slot = key_slot((template % name).encode())
            port = next(p for first, last, p in rows if first <= slot <= last)
            found.setdefault(port, name)
            if all(p in found for p in wanted):
                return [found[p] for p in wanted]
        raise RuntimeError(f"no names with prefix {prefix!r} for every primary")

    def kill(self, port: int) -> None:
        """SIGKILL: no AOF flush, no goodbye to the cluster (a crash)."""
        if self.procs[port].poll() is None:
            others = [p for p in self.live() if p != port]
            # The slots it served, for wait_failover (the survivors forget soon).
            self._slots_at_kill[port] = [r for r in self.slot_map(others[0]) if r[2] == port]
            self.procs[port].send_signal(signal.SIGKILL)
            self.procs[port].wait(10)

    def restart(self, port: int) -> None:
        assert self.procs[port].poll() is not None, f"node {port} is still running"
        self._spawn(port)

    def _settled(self) -> SlotMap | None:
        """The slot map if every live node is ok, agrees on it, and every slot's
        primary is live and every live replica is linked to its primary."""
        live = self.live()
        maps: list[SlotMap] = []
        for port in live:
            with _client(port) as r:
                if r.cluster("INFO").get("cluster_state") != "ok":
                    return None
                info = r.info("replication")
                if info["role"] == "slave" and info.get("master_link_status") != "up":
                    return None
            maps.append(self.slot_map(port))
        if not maps or any(m != maps[0] for m in maps) or any(p not in live for *_, p in maps[0]):
            return None
        return maps[0]

    def wait_ok(self, timeout: float = 30.0) -> None:
        self._poll(self._settled, timeout, "the cluster did not settle")

    def wait_failover(self, old_port: int, timeout: float = 30.0) -> int:
        """Blocks until one other node serves the slots `old_port` served when
        killed and the cluster is ok again; returns its port."""
        before = {(first, last) for first, last, _ in self._slots_at_kill.get(old_port, [])}
        if not before:
            raise ValueError(f"node {old_port} served no slots when killed")

        def promoted() -> int | None:
            rows = self._settled()
            owners = {p for first, last, p in rows or [] if (first, last) in before}
            ok = rows is not None and len(owners) == 1 and old_port not in owners
            return owners.pop() if ok else None

        return self._poll(promoted, timeout, f"no failover away from {old_port}")

    def _poll(self, check: Callable[[], T | None], timeout: float, what: str) -> T:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if (result := check()) is not None:
                    return result
            except (RedisError, OSError):
                pass  # a node still starting or just killed: ask again
            time.sleep(0.1)
        tails = "\n".join(f"--- node {p}:\n{self._tail(p)}" for p in self.ports)
        raise RuntimeError(f"{what} within {timeout} s\n{tails}")

    def _tail(self, port: int, lines: int = 15) -> str:
        log = self.home(port) / "redis.log"
        text = log.read_text(errors="replace") if log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait(5)


def _client(port: int) -> SyncRedis:
    return SyncRedis(port=port, socket_timeout=1, socket_connect_timeout=1, decode_responses=True)
