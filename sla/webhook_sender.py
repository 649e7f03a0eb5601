"""One signed POST of an event to a webhook (Standard Webhooks headers, CloudEvents body)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import Any

import aiohttp
import msgspec

from sla.signing import Webhook, cloudevent, signature_headers

_ENCODER = msgspec.json.Encoder()


async def post_event(
    session: aiohttp.ClientSession,
    slots: asyncio.Semaphore,
    ws: str,
    sid: str,
    sub: str,
    wh: Webhook,
    event: Mapping[str, Any],
) -> tuple[int, str]:
    """Posts the event of stream entry `sid` to subscription `sub`; returns the
    HTTP status (0 when none came) and a short reason (never the URL or secret)."""
    body = _ENCODER.encode(cloudevent(ws, sid, event))
    reason = ""
    async with slots:
        # Signed after waiting for a slot: receivers reject stale timestamps.
        headers = signature_headers(f"{sid}.{sub}", int(time.time()), body, wh.keys())
        headers["content-type"] = "application/json"
        try:
            async with session.post(
                wh.url,
                data=body,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=wh.timeout),
                # A redirect is a failure (Standard Webhooks): following it
                # would send the signed event somewhere not configured.
                allow_redirects=False,
            ) as resp:
                status = resp.status
        except TimeoutError:
            status, reason = 0, "timeout"
        except aiohttp.ClientError as exc:
            status, reason = 0, type(exc).__name__
    return status, reason or f"http {status}"
