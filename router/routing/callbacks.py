"""Callbacks: a waiting caller hangs up, keeps its place and is called back.

The request and each attempt's outcome are one script call each
(`lua/callback.lua`, `lua/callback_attempt.lua`); the window's local times are
read here, in the workspace's `timezone`. What the record keeps of a callback
is `lua/lib/85_callbacks.lua`; the number to call lives in `pii` only
(`router/routing/personal.py`).
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Sequence
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from router.routing.config import RoutingConfig
from router.routing.configstore import ConfigStore
from router.routing.model import (
    CallbackAttemptIn,
    CallbackIn,
    CallbackOut,
    CallbackWindow,
    ContactIn,
    ContactOut,
)
from router.routing.personal import callback_phone
from router.runtime.errors import Conflict, FieldProblem, InvalidInput

# How far ahead a window may open: a callback is a promise for the coming days.
MAX_AHEAD_MS = 366 * 86_400_000


def _ms(raw: str, field: str, zone: ZoneInfo) -> int:
    try:
        at = dt.datetime.fromisoformat(raw)
        at = at.replace(tzinfo=zone) if at.tzinfo is None else at
        return round(at.timestamp() * 1000)
    except (ValueError, OverflowError) as exc:
        raise InvalidInput([FieldProblem(field, f"not a valid date-time: {exc}")]) from None


def window_ms(
    cfg: RoutingConfig, cb: CallbackIn, prefix: str = ""
) -> tuple[int | None, int | None]:
    """The window as Unix milliseconds: local to the workspace's timezone unless
    a time carries its own offset. `prefix` names the fields in problems."""
    zone = ZoneInfo(cfg.timezone)
    nb = _ms(cb.not_before, prefix + "not_before", zone) if cb.not_before else None
    na = _ms(cb.not_after, prefix + "not_after", zone) if cb.not_after else None
    now = time.time() * 1000  # only to refuse nonsense; Redis TIME decides when it opens
    if nb is not None and na is not None and na <= nb:
        raise InvalidInput([FieldProblem(prefix + "not_after", "must be after not_before")])
    if na is not None and na <= now:
        raise InvalidInput([FieldProblem(prefix + "not_after", "the window has already closed")])
    if nb is not None and nb > now + MAX_AHEAD_MS:
        raise InvalidInput([FieldProblem(prefix + "not_before", "at most 366 days ahead")])
    return nb, na


def _channel(cfg: RoutingConfig) -> str:
    channel = cfg.callback_setup.channel
    if channel not in cfg.channels:
        raise Conflict(
            f"callbacks are served on channel {channel!r}, which the routing config does not "
            "declare",
            state="not_configured",
            field="callbacks.channel",
        )
    return channel


def callback_fields(cfg: RoutingConfig, body: ContactIn) -> dict[str, object]:
    """The record fields of a contact created as a callback (`POST /contacts`
    with a `callback` block); its number goes into `pii` with the rest."""
    assert body.callback is not None
    if body.channel != _channel(cfg):
        problem = (
            f"a callback is served on channel {cfg.callback_setup.channel!r} (callbacks.channel)"
        )
        raise InvalidInput([FieldProblem("channel", problem)])
    nb, na = window_ms(cfg, body.callback, "callback.")
    fields: dict[str, object] = {
        "cb": 1,
        "cba": 0,
        "cbm": cfg.callback_setup.max_attempts,
        "cbg": cfg.callback_setup.retry_gap_ms(),
    }
    if nb is not None:
        fields["cbnb"] = nb
    if na is not None:
        fields["cbna"] = na
    return fields


def _s(raw: dict[str, str], key: str) -> float | None:
    v = raw.get(key)
    return int(float(v)) / 1000 if v else None


def callback_out(raw: dict[str, str]) -> CallbackOut | None:
    """The `callback` block of a contact record (its number in full)."""
    if not raw.get("cb"):
        return None
    nb, na = _s(raw, "cbnb"), _s(raw, "cbna")
    return CallbackOut(
        phone=callback_phone(raw.get("pii")),
        masked=False,
        attempts=int(raw.get("cba") or 0),
        max_attempts=int(raw.get("cbm") or 1),
        retry_gap=int(raw.get("cbg") or 0) / 1000,
        window=CallbackWindow(not_before=nb, not_after=na) if nb or na else None,
        reached=raw.get("cbr") == "1",
        next_attempt_at=_s(raw, "cbn"),
    )


class Contacts(Protocol):
    """What callbacks need of the engine (`router/routing/engine.py`)."""

    configs: ConfigStore

    async def contact_action(
        self, ws_name: str, cid: str, action: str, args: Sequence[Any], actor: str
    ) -> ContactOut: ...


class CallbackOps:
    def __init__(self, engine: Contacts) -> None:
        self._engine = engine

    async def request(self, ws_name: str, cid: str, body: CallbackIn, actor: str) -> ContactOut:
        """A queued contact becomes a callback (409 in any other state)."""
        cfg = (await self._engine.configs.get(ws_name)).config
        channel = _channel(cfg)
        nb, na = window_ms(cfg, body)
        args = [
            body.phone,
            "" if nb is None else nb,
            "" if na is None else na,
            cfg.callback_setup.max_attempts,
            cfg.callback_setup.retry_gap_ms(),
            channel,
        ]
        return await self._engine.contact_action(ws_name, cid, "callback", args, actor)

    async def attempt(
        self, ws_name: str, cid: str, body: CallbackAttemptIn, actor: str
    ) -> ContactOut:
        """The holding agent's outcome of one dial."""
        args = [body.agent_id, body.outcome]
        return await self._engine.contact_action(ws_name, cid, "callback_attempt", args, actor)
