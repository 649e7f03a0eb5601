"""`router health` (the container health check and Kubernetes exec probes) follows
the replica's settings: plain HTTP, HTTPS with the replica's own certificate,
and mutual TLS with a client certificate; it fails when nothing answers."""

from __future__ import annotations

import asyncio
from pathlib import Path

from router.cli.health import check
from tests.support.procs import Replica, stop_replicas, wait_ready
from tests.support.tlscerts import make_pki


async def test_health_follows_port_and_tls(redis_url: str, tmp_path: Path) -> None:
    pki = make_pki(tmp_path / "pki")
    tls = {"ROUTER_TLS_CERT": str(pki.server_cert), "ROUTER_TLS_KEY": str(pki.server_key)}
    mutual_env = {**tls, "ROUTER_TLS_CLIENT_CA": str(pki.ca)}
    client = {
        "ROUTER_HEALTH_CLIENT_CERT": str(pki.client_cert),
        "ROUTER_HEALTH_CLIENT_KEY": str(pki.client_key),
    }
    plain = Replica(redis_url, tmp_path, 0)
    https = Replica(redis_url, tmp_path, 1, tls)
    mutual = Replica(redis_url, tmp_path, 2, mutual_env)
    replicas = [plain, https, mutual]
    try:
        await wait_ready([plain])
        for r in (https, mutual):  # readiness over TLS, as the probe itself would ask
            env = {**tls, "ROUTER_PORT": str(r.port), **client}
            for _ in range(300):
                if (await asyncio.to_thread(check, True, env))[0]:
                    break
                await asyncio.sleep(0.1)

        async def probe(env: dict[str, str], ready: bool = False) -> tuple[bool, str]:
            return await asyncio.to_thread(check, ready, env)

        assert await probe({"ROUTER_PORT": str(plain.port)}) == (True, "200")
        assert await probe({"ROUTER_PORT": str(plain.port)}, ready=True) == (True, "200")
        assert await probe({**tls, "ROUTER_PORT": str(https.port)}) == (True, "200")
        # plain HTTP to an HTTPS replica does not pass
        assert not (await probe({"ROUTER_PORT": str(https.port)}))[0]
        # mutual TLS: without a client certificate the handshake is refused
        assert not (await probe({**mutual_env, "ROUTER_PORT": str(mutual.port)}))[0]
        with_cert = {**mutual_env, "ROUTER_PORT": str(mutual.port), **client}
        assert await probe(with_cert) == (True, "200")
        # nothing listening
        stop_replicas([plain])
        ok, why = await probe({"ROUTER_PORT": str(plain.port)})
        assert not ok and why == "ConnectionRefusedError"
    finally:
        stop_replicas(replicas)
