"""A Redis Sentinel group that speaks TLS only and has no default user anywhere,
the deployment README.md describes ("Sentinel with TLS and ACL users"), for
the tests of `rediss+sentinel://` URLs.

- A primary and one replica: `port 0` (no plaintext port), a TLS port, the
  default user off, the router's ACL user (`ROUTER_ACL`) and an `ops` admin
  user. The replica replicates over TLS (`tls-replication yes`) as `ops`, and
  the sentinels log in to both data nodes as `ops` (`sentinel auth-user`).
- Three sentinels: TLS only as well, `tls-replication yes` so that their own
  links to the data nodes and to each other are TLS, the default user off and
  one ACL user, `sentinel-client`, for the router and for the sentinels among
  themselves (`sentinel sentinel-user` / `sentinel sentinel-pass`).

Every node uses the same server certificate (SAN 127.0.0.1) from one throwaway
CA. Clients are not asked for certificates (`tls-auth-clients no`): the nodes'
outgoing links would present the server certificate, whose extended key usage
is serverAuth only, and the point here is TLS plus ACLs, not mutual TLS (that
is tests/security/test_tls.py's).

Sentinel timings are tests/support/sentinel.py's: `down-after-milliseconds`
1000, `failover-timeout` 10000, so a failover takes a few seconds.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from redis import Redis as SyncRedis
from redis.exceptions import RedisError

from router.store.local import free_port
from tests.support.sentinel import sentinel_homes, wait_new_primary
from tests.support.tlscerts import ADMIN_PASSWORD, ROUTER_ACL, ROUTER_PASSWORD, Pki, make_pki

SERVICE = "contacts"
OPS_USER = "ops"
SENTINEL_USER = "sentinel-client"
SENTINEL_PASSWORD = "sentinel-acl-pw-1b7e3f905a"  # throwaway test password


def _tls_lines(port: int, pki: Pki) -> list[str]:
    return [
        "port 0",  # TLS only: nothing listens in plaintext
        "bind 127.0.0.1",
        f"tls-port {port}",
        f"tls-cert-file {pki.server_cert}",
        f"tls-key-file {pki.server_key}",
        f"tls-ca-cert-file {pki.ca}",
        "tls-auth-clients no",
        # Outgoing links (replica -> primary, sentinel -> node, sentinel ->
        # sentinel) are TLS too; replicas then also announce their TLS port.
        "tls-replication yes",
    ]


def tls_client(pki: Pki, port: int, user: str, password: str) -> SyncRedis:
    """A client of one of the group's TLS-only processes, as `user`."""
    return SyncRedis(
        host="127.0.0.1", port=port, username=user, password=password,
        ssl=True, ssl_ca_certs=str(pki.ca),
        socket_timeout=2, socket_connect_timeout=2, decode_responses=True,
    )  # fmt: skip


def _spawn(exe: str, conf: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen([exe, str(conf)], stdout=out, stderr=subprocess.STDOUT)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    # SIGKILL: nothing here is worth a graceful shutdown, and a sentinel or a
    # replica may otherwise spend seconds retrying a dead primary.
    if proc.poll() is None:
        proc.kill()
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(5)


def _wait_ping(
    proc: subprocess.Popen[bytes], connect: SyncRedis, log: Path, within: float = 15.0
) -> None:
    """Until a PING over TLS, as an ACL user, answers (the process may still be binding)."""
    deadline = time.monotonic() + within
    try:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(
                    f"{log.parent.name} exited with {proc.returncode}:\n"
                    + log.read_text(errors="replace")[-2000:]
                )
            with contextlib.suppress(RedisError, OSError):
                if connect.ping():
                    return
            time.sleep(0.05)
    finally:
        connect.close()
    raise RuntimeError(
        f"{log.parent.name} did not answer PING over TLS within {within} s:\n"
        + log.read_text(errors="replace")[-2000:]
    )


class TlsDataNode:
    """A redis-server with a TLS port only, the router's ACL user and `ops`."""

    def __init__(self, directory: Path, pki: Pki, replica_of: int | None = None) -> None:
        exe = shutil.which("redis-server")
        if exe is None:
            raise RuntimeError("redis-server not found (apt-get install -y redis-server)")
        directory.mkdir(parents=True, exist_ok=True)
        self.dir = directory
        self.pki = pki
        self.port = free_port()
        self.log = directory / "redis.log"
        lines = [
            *_tls_lines(self.port, pki),
            f"dir {directory}",
            'save ""',
            "appendonly no",
            # The replica's first full sync starts at once, not after the
            # default 5 s wait for more replicas to join it.
            "repl-diskless-sync-delay 0",
            "loglevel notice",
            "user default off",
            ROUTER_ACL,
            f"user {OPS_USER} on >{ADMIN_PASSWORD} ~* &* +@all",
            # How this node logs in to its primary: at the start (the replica),
            # and after a failover, when the sentinels may point any node at
            # another one. With the default user off there is no other way in.
            f"masteruser {OPS_USER}",
            f"masterauth {ADMIN_PASSWORD}",
        ]
        if replica_of is not None:
            lines.append(f"replicaof 127.0.0.1 {replica_of}")
        conf = directory / "redis.conf"  # the sentinels CONFIG REWRITE it on a failover
        conf.write_text("\n".join(lines) + "\n")
        self.proc = _spawn(exe, conf, self.log)
        _wait_ping(self.proc, self.client(), self.log)

    def client(self, user: str = OPS_USER, password: str = ADMIN_PASSWORD) -> SyncRedis:
        return tls_client(self.pki, self.port, user, password)

    def kill(self) -> None:
        _stop(self.proc)


class TlsSentinels:
    """`redis-sentinel` processes over TLS with the default user off."""

    def __init__(self, directory: Path, pki: Pki, primary_port: int, count: int = 3) -> None:
        exe, homes = sentinel_homes(directory, count)
        self.pki = pki
        self.ports = [port for port, _ in homes]
        self.procs: list[subprocess.Popen[bytes]] = []
        for port, home in homes:
            conf = home / "sentinel.conf"  # sentinels rewrite their config: their own file
            conf.write_text(
                "\n".join(
                    [
                        *_tls_lines(port, pki),
                        f"dir {home}",
                        # The sentinels' own ACL (Redis 6.2+ reads `user` lines here).
                        "user default off",
                        f"user {SENTINEL_USER} on >{SENTINEL_PASSWORD} allchannels +@all",
                        # How the sentinels log in to each other, now that the
                        # default user is off on every one of them.
                        f"sentinel sentinel-user {SENTINEL_USER}",
                        f"sentinel sentinel-pass {SENTINEL_PASSWORD}",
                        f"sentinel monitor {SERVICE} 127.0.0.1 {primary_port} 2",
                        # ... and to the data nodes (after `monitor`: it names the service).
                        f"sentinel auth-user {SERVICE} {OPS_USER}",
                        f"sentinel auth-pass {SERVICE} {ADMIN_PASSWORD}",
                        f"sentinel down-after-milliseconds {SERVICE} 1000",
                        f"sentinel failover-timeout {SERVICE} 10000",
                        f"sentinel parallel-syncs {SERVICE} 1",
                    ]
                )
                + "\n"
            )
            log = home / "sentinel.log"
            self.procs.append(_spawn(exe, conf, log))
            _wait_ping(self.procs[-1], self.client(port), log)

    def client(self, port: int) -> SyncRedis:
        return tls_client(self.pki, port, SENTINEL_USER, SENTINEL_PASSWORD)

    def primary_port(self) -> int | None:
        """The primary's port as the first sentinel that answers reports it."""
        for port in self.ports:
            try:
                with self.client(port) as s:
                    addr = s.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", SERVICE)
                    return int(addr[1]) if addr else None
            except (RedisError, OSError):
                continue
        return None

    def stop(self) -> None:
        for proc in self.procs:
            _stop(proc)


class TlsSentinelGroup:
    """A primary, one replica and three sentinels, TLS only, ACL users only."""

    def __init__(self, directory: Path) -> None:
        self.pki = make_pki(directory / "pki", prefix="sentinel-")
        self.servers: list[TlsDataNode] = []
        self.sentinels: TlsSentinels | None = None
        try:  # a half-started group is stopped here: the caller gets no object to stop
            self.primary = TlsDataNode(directory / "primary", self.pki)
            self.servers.append(self.primary)
            self.replica = TlsDataNode(directory / "replica", self.pki, self.primary.port)
            self.servers.append(self.replica)
            _wait_link_up(self.replica)
            self.sentinels = TlsSentinels(directory, self.pki, self.primary.port)
            self._wait_discovered()
        except BaseException:
            self.stop()
            raise

    def url(self, db: int = 0) -> str:
        """The router's REDIS_URL: data-node user in the userinfo, the sentinels'
        user in `sentinel_*`, the CA for both in `ssl_ca_certs`."""
        assert self.sentinels is not None
        nodes = ",".join(f"127.0.0.1:{p}" for p in self.sentinels.ports)
        query = urlencode(
            {
                "ssl_ca_certs": str(self.pki.ca),
                "sentinel_username": SENTINEL_USER,
                "sentinel_password": SENTINEL_PASSWORD,
            },
            quote_via=quote,
        )
        userinfo = f"{quote('router', safe='')}:{quote(ROUTER_PASSWORD, safe='')}"
        return f"rediss+sentinel://{userinfo}@{nodes}/{SERVICE}/{db}?{query}"

    def server_on(self, port: int) -> TlsDataNode:
        return next(s for s in self.servers if s.port == port)

    def _wait_discovered(self, within: float = 30.0) -> None:
        """Every sentinel sees the replica (over TLS, as `ops`) and the two other
        sentinels (over TLS, as `sentinel-client`): a failover needs both."""
        assert self.sentinels is not None
        deadline = time.monotonic() + within
        seen: dict[int, str] = {}
        while time.monotonic() < deadline:
            ready = 0
            for port in self.sentinels.ports:
                with contextlib.suppress(RedisError, OSError), self.sentinels.client(port) as s:
                    master = s.sentinel_master(SERVICE)
                    replicas = s.sentinel_slaves(SERVICE)
                    ok = [r for r in replicas if _replica_up(r, self.replica.port)]
                    seen[port] = f"replicas {replicas!r}, master {master!r}"
                    if ok and int(master["num-other-sentinels"]) >= len(self.sentinels.ports) - 1:
                        ready += 1
            if ready == len(self.sentinels.ports):
                return
            time.sleep(0.2)
        raise RuntimeError(f"the sentinels did not discover the group within {within} s: {seen}")

    def wait_failover(self, old_port: int, within: float = 30.0) -> int:
        """Until the sentinels name another primary and it answers as one; returns its port."""
        assert self.sentinels is not None

        def answers_as_primary(port: int) -> bool:
            with contextlib.suppress(RedisError, OSError), self.server_on(port).client() as r:
                return bool(r.info("replication")["role"] == "master")
            return False

        return wait_new_primary(self.sentinels, old_port, within, answers_as_primary)

    def stop(self) -> None:
        """Kills every process; safe to call twice or on a half-started group."""
        if self.sentinels is not None:
            self.sentinels.stop()
        for server in self.servers:
            server.kill()


def _replica_up(info: dict[str, Any], port: int) -> bool:
    """One `SENTINEL REPLICAS` entry (as redis-py parses it) for our replica,
    neither down nor disconnected, with its link to the primary up."""
    return (
        int(info["port"]) == port
        and not info["is_sdown"]
        and not info["is_disconnected"]
        and info.get("master-link-status") == "ok"
    )


def _wait_link_up(replica: TlsDataNode, within: float = 20.0) -> None:
    """Until the replica reports `master_link_status:up` (it has synced over TLS)."""
    deadline = time.monotonic() + within
    status = "?"
    with replica.client() as r:
        while time.monotonic() < deadline:
            with contextlib.suppress(RedisError, OSError):
                status = str(r.info("replication").get("master_link_status"))
                if status == "up":
                    return
            time.sleep(0.1)
    raise RuntimeError(
        f"the replica's link to the primary is {status!r} after {within} s:\n"
        + replica.log.read_text(errors="replace")[-2000:]
    )
