"""TLS: HTTPS and mutual TLS on `router serve`, and Redis over `rediss://` as an ACL user.

Real processes: router replicas (tests/support/procs.py) and a redis-server with a TLS
port only, its default user off, and the ACL user documented in README.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from redis.asyncio import Redis
from redis.exceptions import NoPermissionError

from router.runtime.settings import Settings, redacted_url
from tests.support.client import GW, SUP, agent_headers, ready_agent
from tests.support.procs import Replica, stop_replicas, wait_ready
from tests.support.tlscerts import ADMIN_PASSWORD, ROUTER_PASSWORD, Pki, TlsRedis, make_pki


def _client_ctx(pki: Pki, cert: bool = False) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(pki.ca))
    if cert:
        ctx.load_cert_chain(str(pki.client_cert), str(pki.client_key))
    return ctx


async def _get(url: str, ctx: ssl.SSLContext | bool, **kw: Any) -> tuple[int, str]:
    async with (
        aiohttp.ClientSession() as http,
        http.get(url, ssl=ctx, timeout=aiohttp.ClientTimeout(total=5), **kw) as r,
    ):
        return r.status, await r.text()


async def _handshake(port: int, ctx: ssl.SSLContext) -> tuple[str, str]:
    """The TLS version and cipher suite a handshake with the server agrees on."""
    _, writer = await asyncio.wait_for(
        asyncio.open_connection("127.0.0.1", port, ssl=ctx, server_hostname="127.0.0.1"), 5
    )
    try:
        tls = writer.get_extra_info("ssl_object")
        return tls.version(), tls.cipher()[0]
    finally:
        writer.close()


def _exit_and_log(proc: Replica, within: float = 30.0) -> tuple[int | None, str]:
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.proc.wait(within)
    return proc.proc.poll(), proc.log_tail()


@pytest.mark.usefixtures("one_at_a_time")
async def test_https_and_mutual_tls(redis_url: str, tmp_path: Path) -> None:
    pki = make_pki(tmp_path / "pki")
    tls = {"ROUTER_TLS_CERT": str(pki.server_cert), "ROUTER_TLS_KEY": str(pki.server_key)}
    plain = Replica(redis_url, tmp_path, 0, tls, client_ssl=_client_ctx(pki))
    mutual = Replica(
        redis_url,
        tmp_path,
        1,
        {**tls, "ROUTER_TLS_CLIENT_CA": str(pki.ca)},
        client_ssl=_client_ctx(pki, cert=True),
    )
    # Bad settings stop the process at once, naming the variable.
    missing = Replica(redis_url, tmp_path, 2, {**tls, "ROUTER_TLS_KEY": str(tmp_path / "no.key")})
    mismatch = Replica(redis_url, tmp_path, 3, {**tls, "ROUTER_TLS_KEY": str(pki.client_key)})
    not_pem = Replica(redis_url, tmp_path, 4, {**tls, "ROUTER_TLS_CLIENT_CA": str(pki.server_key)})
    try:
        await wait_ready([plain, mutual])
        assert await _get(plain.url + "/healthz", _client_ctx(pki)) == (200, '{"status":"ok"}')
        status, _ = await _get(plain.url + "/v1/workspaces/x/pools", _client_ctx(pki))
        assert status == 401  # TLS is transport only: a token is still required
        assert (await _handshake(plain.port, _client_ctx(pki)))[0] == "TLSv1.3"
        # TLS 1.2 with a forward-secret AEAD suite; a CBC suite is refused.
        old = _client_ctx(pki)
        old.maximum_version = ssl.TLSVersion.TLSv1_2
        version, cipher = await _handshake(plain.port, old)
        assert version == "TLSv1.2" and cipher.startswith("ECDHE-") and "GCM" in cipher, cipher
        old.set_ciphers("ECDHE-ECDSA-AES128-SHA")
        with pytest.raises((ssl.SSLError, ConnectionError)):  # the server ends the handshake
            await _handshake(plain.port, old)
        # Plain HTTP on the TLS port gets no answer.
        with pytest.raises(aiohttp.ClientError):
            await _get(plain.url.replace("https://", "http://") + "/healthz", False)
        # A client that does not trust the CA refuses the server.
        with pytest.raises(aiohttp.ClientError):
            await _get(plain.url + "/healthz", ssl.create_default_context())
        # Mutual TLS: with the client certificate, yes; without one, no.
        assert (await _get(mutual.url + "/healthz", _client_ctx(pki, cert=True)))[0] == 200
        with pytest.raises(aiohttp.ClientError):
            await _get(mutual.url + "/healthz", _client_ctx(pki))
        for proc, variable in (
            (missing, "ROUTER_TLS_KEY"),
            (mismatch, "ROUTER_TLS_KEY"),
            (not_pem, "ROUTER_TLS_CLIENT_CA"),
        ):
            code, log = _exit_and_log(proc)
            assert code == 2 and variable in log and "Traceback" not in log, log
    finally:
        stop_replicas([plain, mutual, missing, mismatch, not_pem])


@pytest.fixture
def tls_redis(tmp_path: Path) -> Iterator[TlsRedis]:
    server = TlsRedis(tmp_path / "redis")
    try:
        yield server
    finally:
        server.stop()


@pytest.mark.usefixtures("one_at_a_time")
async def test_rediss_with_the_router_acl_user(
    tls_redis: TlsRedis, tmp_path: Path, ws: str
) -> None:
    url = tls_redis.url("router", ROUTER_PASSWORD)
    ops = Redis.from_url(tls_redis.url("ops", ADMIN_PASSWORD), decode_responses=True)
    replica = Replica(url, tmp_path, 0, {"ROUTER_LOG_LEVEL": "DEBUG"})
    try:
        await wait_ready([replica])
        async with aiohttp.ClientSession(base_url=replica.url) as http:
            base = f"/v1/workspaces/{ws}"
            await ready_agent(http, ws)
            async with http.post(
                f"{base}/contacts",
                headers=GW,
                json={"id": "c1", "channel": "voice", "customer": {"id": "cu1"}},
            ) as r:
                assert r.status == 201, await r.text()
                assert (await r.json())["agent"] == "a1"
            async with http.post(
                f"{base}/contacts/c1/accept", json={"agent_id": "a1"}, headers=agent_headers("a1")
            ) as r:
                assert r.status == 200, await r.text()
                assert (await r.json())["state"] == "assigned"
            async with http.get(f"{base}/events?limit=10", headers=SUP) as r:
                assert r.status == 200, await r.text()
            async with http.get("/metrics") as r:
                assert r.status == 200
        await asyncio.sleep(1.5)  # background loops (timers, exporter, webhooks) run too
        # Nothing the router did was denied by the ACL ...
        denied = await ops.execute_command("ACL", "LOG")
        assert denied == [], denied
        # ... which still keeps the router user out of other keys and admin commands.
        router = Redis.from_url(url, decode_responses=True)
        try:
            assert await router.exists(f"{{ws:{ws}}}:config") == 1
            for attempt in (
                router.set("other:key", "1"),
                router.flushall(),
                router.config_get("*"),
                router.keys("*"),
            ):
                with pytest.raises(NoPermissionError):
                    await attempt
        finally:
            await router.aclose()
        replica.stop()
        log = replica.log_path.read_text()
        assert ROUTER_PASSWORD not in log and "DEBUG" in log
    finally:
        replica.stop()
        await ops.aclose()


@pytest.mark.usefixtures("one_at_a_time")
async def test_a_wrong_redis_password_is_not_printed(tls_redis: TlsRedis, tmp_path: Path) -> None:
    wrong = "wrong-pw-" + "5c0ffee5"
    replica = Replica(tls_redis.url("router", wrong), tmp_path, 0, {"ROUTER_LOG_LEVEL": "DEBUG"})
    try:
        deadline = time.monotonic() + 20
        status = 0
        while time.monotonic() < deadline and status != 503:
            with contextlib.suppress(aiohttp.ClientError, OSError):
                status = (await _get(replica.url + "/readyz", False))[0]
            await asyncio.sleep(0.2)
        assert status == 503, replica.log_tail()
        await asyncio.sleep(1.0)  # retries and their warnings
    finally:
        replica.stop()
    log = replica.log_path.read_text()
    assert wrong not in log and "AuthenticationError" in log, log[-2000:]


def test_redis_urls_in_messages_hide_the_password() -> None:
    url = f"rediss://router:{ROUTER_PASSWORD}@redis.internal:6380/0?ssl_ca_certs=/etc/ca.pem"
    shown = redacted_url(url)
    assert ROUTER_PASSWORD not in shown
    assert shown == "rediss://router:<redacted>@redis.internal:6380/0?ssl_ca_certs=/etc/ca.pem"
    assert redacted_url("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"
    assert redacted_url("redis://:p@ss@h:1/0") == "redis://:<redacted>@h:1/0"
    assert "secret" not in repr(Settings(redis_url="redis://u:secret@h/0"))
    sentinel = (
        "rediss+sentinel://r:pw1@s1:26379,s2/contacts/0?ssl_ca_certs=/ca&sentinel_password=pw2"
    )
    assert redacted_url(sentinel) == (
        "rediss+sentinel://r:<redacted>@s1:26379,s2/contacts/0"
        "?ssl_ca_certs=/ca&sentinel_password=<redacted>"
    )
