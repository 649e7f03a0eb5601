"""No personal data and no secret in any log, with every logger at DEBUG.

Two `router serve` processes (DEBUG, access log on) on a TLS Redis with an ACL
password run a whole day in small: a config with webhook secrets (one receiver
up, one down), agents with signed tokens, contacts carrying distinctive
personal values (name, phone, national id, free-text note, customer id,
attributes, a bot hand-off's summary and collected fields), offers, a
reject, accept, complete (with the agent's intent), a rating, a transfer, an
abandon with a reason, requests that fail (malformed JSON, values in the wrong
fields, a malformed HTTP request with a token in it) and requests denied (an
unknown token, a token signed with the wrong key, an agent outside its scope).
Then every log line of every process is searched for every value sent and
every token, secret and password; a leak fails naming what leaked and where.
Problem documents returned must not repeat the personal values either.
"""

from __future__ import annotations

import asyncio
import base64
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from router.runtime.settings import token_hash
from router.security.auth import mint
from router.store.local import free_port
from tests.support.client import small_config
from tests.support.procs import Replica, stop_replicas, wait_ready
from tests.support.receiver import Receiver, new_secret
from tests.support.tlscerts import ROUTER_PASSWORD, TlsRedis

RUN = uuid.uuid4().hex[:6]  # values unique to this run: no match from an older log
PERSONAL = {
    "customer.name": f"Quintessa Marblethorpe{RUN}",
    "customer.phone": "+44 7700 900461",
    "customer.national_id": f"ZX4827{RUN}Q",
    "note": f"asked about the overdraft of her late husband Bartholomew {RUN}",
    "customer.id": f"cust-Vb71kQ93-{RUN}",
    "attributes.account": f"acct-55017-ORCHID-{RUN}",
    "abandon reason": f"hung up after hold music Wolfsbane{RUN}",
    "handoff.summary": f"bot heard: card swallowed at Pemberley Street {RUN}",
    "handoff.fields.postcode": f"PB7-{RUN}-QX",
}
# The same values as they might be reformatted on the way.
VARIANTS = {"customer.phone (digits)": "447700900461"}
TOKENS = {
    "gateway": f"tok-gw-{RUN}-Kq3F9w",
    "supervisor": f"tok-sup-{RUN}-Hd82Lm",
    "admin": f"tok-adm-{RUN}-Pz71Xc",
}
JWT_SECRET = f"jwt-secret-{RUN}-{uuid.uuid4().hex}"
BAD_TOKEN = f"tok-nobody-{RUN}-Zz00"


def _contact(cid: str, **extra: Any) -> dict[str, Any]:
    return {
        "id": cid,
        "channel": "voice",
        "customer": {
            "id": PERSONAL["customer.id"],
            "tier": "standard",
            "name": PERSONAL["customer.name"],
            "phone": PERSONAL["customer.phone"],
            "national_id": PERSONAL["customer.national_id"],
        },
        "note": PERSONAL["note"],
        "attributes": {"account": PERSONAL["attributes.account"]},
        "handoff": {
            "bot": "helpbot",
            "intent": "card_block",
            "confidence": 0.9,
            "summary": PERSONAL["handoff.summary"],
            "fields": {"postcode": PERSONAL["handoff.fields.postcode"]},
        },
        **extra,
    }


class Calls:
    """The test's HTTP client: remembers every problem document it got back."""

    def __init__(self, http: aiohttp.ClientSession, urls: list[str], ws: str) -> None:
        self.http, self.urls, self.ws = http, urls, ws
        self.problems: list[tuple[str, str]] = []
        self.n = 0

    async def __call__(
        self,
        method: str,
        path: str,
        token: str,
        body: Any = None,
        raw: bytes | None = None,
        expect: int | tuple[int, ...] = 200,
    ) -> Any:
        self.n += 1
        url = f"{self.urls[self.n % len(self.urls)]}/v1/workspaces/{self.ws}{path}"
        headers = {"Authorization": f"Bearer {token}"}
        if raw is not None:
            headers["Content-Type"] = "application/json"
        async with self.http.request(method, url, json=body, data=raw, headers=headers) as r:
            text = await r.text()
            if r.status >= 400:
                self.problems.append((f"{method} {path} -> {r.status}", text))
            expected = expect if isinstance(expect, tuple) else (expect,)
            assert r.status in expected, f"{method} {path}: {r.status} {text}"
            return await r.json(content_type=None) if text else None


def _raw_request(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(data)
        return s.recv(4096)


def _leaks(files: list[Path], needles: dict[str, str]) -> Iterator[str]:
    for path in files:
        for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            for what, value in needles.items():
                if value in line:
                    yield f"{what} in {path.name} line {n}: {line[:240]}"


def _assert_logs_clean(logs: list[Path], needles: dict[str, str]) -> None:
    text = "\n".join(p.read_text(errors="replace") for p in logs)
    # The logs were written at DEBUG, with the access log and the webhook failures.
    assert " DEBUG " in text and "/v1/workspaces/{ws}/contacts 201" in text, text[-3000:]
    assert "attempt failed" in text and "malformed HTTP request" in text, text[-3000:]
    # An unexpected exception's message and traceback may quote anything.
    assert "Traceback" not in text, text[text.index("Traceback") - 300 :][:3000]
    leaks = list(_leaks(logs, needles))
    assert not leaks, "leaked into the logs:\n" + "\n".join(leaks)


@pytest.mark.usefixtures("one_at_a_time")
async def test_no_personal_data_or_secret_in_logs(tmp_path: Path) -> None:
    hook_secret, old_hook_secret, down_secret = new_secret(), new_secret(), new_secret()
    agents = {aid: mint(JWT_SECRET, aid, "agent", ttl=3600) for aid in ("a1", "a2")}
    wrong_key_jwt = mint(f"not-the-secret-{RUN}-{uuid.uuid4().hex}", "a1", "agent", ttl=3600)
    redis = TlsRedis(tmp_path / "redis")
    receiver = Receiver()
    await receiver.start()
    spec = ",".join(f"{role}-svc:{role}:{token_hash(tok)}" for role, tok in TOKENS.items())
    env = {
        "ROUTER_TOKENS": spec,
        "ROUTER_JWT_SECRET": JWT_SECRET,
        "ROUTER_LOG_LEVEL": "DEBUG",
        "ROUTER_ACCESS_LOG": "on",
        "ROUTER_WEBHOOK_CLAIM_IDLE": "2",
    }
    replicas = [Replica(redis.url("router", ROUTER_PASSWORD), tmp_path, i, env) for i in range(2)]
    gw, sup, adm = TOKENS["gateway"], TOKENS["supervisor"], TOKENS["admin"]
    try:
        await wait_ready(replicas)
        async with aiohttp.ClientSession() as http:
            call = Calls(http, [r.url for r in replicas], "pii" + RUN)
            cfg = small_config()
            cfg["webhooks"] = {
                "crm": {
                    "url": receiver.url(),
                    "events": ["contact.*"],
                    "secret": hook_secret,
                    "previous_secret": old_hook_secret,
                },
                "down": {
                    "url": f"http://127.0.0.1:{free_port()}/hook",
                    "events": ["contact.*"],
                    "secret": down_secret,
                },
            }
            bad_cfg = {
                **cfg,
                "webhooks": {"crm": {**cfg["webhooks"]["crm"], "secret": down_secret + "!!"}},
            }
            await call("PUT", "", adm, bad_cfg, expect=422)
            await call("PUT", "", adm, cfg)
            for aid, tok in agents.items():
                await call("PUT", f"/agents/{aid}", sup, {"skills": {"cards": 5}})
                await call("POST", f"/agents/{aid}/state", tok, {"state": "available"})
            # c1: offered, rejected, offered again, accepted, completed, rated.
            c1 = await call("POST", "/contacts", gw, _contact("c1"), expect=201)
            first = c1["agent"]
            other = next(a for a in agents if a != first)
            await call("POST", "/contacts/c1/reject", agents[first], {"agent_id": first})
            await call("POST", "/contacts", gw, _contact("c1"), expect=200)  # a retry
            c1 = await call("GET", "/contacts/c1", sup)
            assert c1["agent"] == other, c1
            await call("POST", "/contacts/c1/accept", agents[other], {"agent_id": other})
            mine = await call("GET", "/contacts/c1", agents[other])
            assert PERSONAL["customer.phone"] in str(mine), "the agent sees the contact"
            assert PERSONAL["handoff.summary"] in str(mine), "and the bot's summary"
            await call("GET", "/contacts/c1", gw)
            done = {"agent_id": other, "intent": "card_lost"}  # the agent's disposition
            await call("POST", "/contacts/c1/complete", agents[other], done)
            await call("POST", "/contacts/c1/rating", gw, {"score": 2})
            # c2: offered to the agent now free, transferred, abandoned with a reason.
            await call("POST", "/contacts", gw, _contact("c2"), expect=201)
            await call("POST", "/contacts/c2/transfer", gw, {"pool": "loans"})
            await call("POST", "/contacts/c2/abandon", gw, {"reason": PERSONAL["abandon reason"]})
            # Requests that fail, each carrying the personal values.
            body = _contact("c9")
            await call("POST", "/contacts", gw, raw=str(body).encode(), expect=400)
            await call("POST", "/contacts", gw, raw=repr(body).encode()[:-20], expect=400)
            wrong = _contact("c10")
            wrong["customer"]["phone"] = PERSONAL["customer.name"]
            wrong["customer"]["tier"] = PERSONAL["note"]
            await call("POST", "/contacts", gw, wrong, expect=422)
            await call(
                "POST",
                "/agents/a1/state",
                agents["a1"],
                {"state": PERSONAL["customer.national_id"]},
                expect=422,
            )
            await call(
                "POST", "/contacts/c1/rating", gw, {"score": PERSONAL["customer.phone"]}, expect=422
            )
            # Denied: unknown token, wrong signing key, another agent's contact.
            await call("POST", "/contacts", BAD_TOKEN, _contact("c11"), expect=401)
            await call("GET", "/contacts/c1", wrong_key_jwt, expect=401)
            await call("GET", "/contacts/c1", agents[first], expect=(200, 403))
            await call(
                "POST", "/contacts/c1/accept", agents[first], {"agent_id": other}, expect=403
            )
            await call("GET", "/events?limit=100", sup)
            # Malformed HTTP: the parser quotes the bytes it stopped at.
            port = replicas[0].port
            _raw_request(
                port,
                b"GET /healthz HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
                + gw.encode()
                + b"\x01\r\n\r\n",
            )
            _raw_request(
                port,
                b"GET /v1/workspaces/x/contacts/"
                + PERSONAL["customer.name"].encode()
                + b"\x7f HTTP/1.1\r\n\r\n",
            )
            # Webhook deliveries happen (and fail for `down`) before the logs are read.
            for _ in range(100):
                if len(receiver.ok_ids()) >= 5:
                    break
                await asyncio.sleep(0.1)
            assert receiver.ok_ids(), "webhooks were delivered"
            await asyncio.sleep(1.0)
        problems = call.problems
    finally:
        stop_replicas(replicas)
        await receiver.stop()
        redis.stop()

    needles = {
        **PERSONAL,
        **VARIANTS,
        **{f"{role} token": t for role, t in TOKENS.items()},
        **{f"agent {aid}'s signed token": t for aid, t in agents.items()},
        "the signed token with the wrong key": wrong_key_jwt,
        "ROUTER_JWT_SECRET": JWT_SECRET,
        "the unknown token": BAD_TOKEN,
        "the Redis ACL password": ROUTER_PASSWORD,
    }
    for name, secret in (
        ("webhook secret", hook_secret),
        ("previous webhook secret", old_hook_secret),
        ("down webhook secret", down_secret),
    ):
        needles[name] = secret
        needles[name + " (key)"] = base64.b64decode(secret.removeprefix("whsec_")).hex()
    _assert_logs_clean([r.log_path for r in replicas], needles)
    echoed = [
        f"{what} in the answer to {req}: {body[:200]}"
        for req, body in problems
        for what, value in {**PERSONAL, **VARIANTS}.items()
        if value in body
    ]
    assert not echoed, "problem documents repeat personal values:\n" + "\n".join(echoed)
    assert len(problems) >= 9, problems
