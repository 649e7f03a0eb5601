"""Sliding-window pool statistics from per-minute buckets kept by the scripts.

The scripts add to `{ws}:sl:<pool>:<minute>` on every arrival, answer,
abandon and completion, and `<kind>:<score>` on every survey answer
(`rate.lua`); a window is the sum of its minutes (the current, partial one
included). Pure arithmetic on the sums lives in `WindowStats`.
"""

from __future__ import annotations

from collections.abc import Sequence

from msgspec import Struct
from redis.asyncio import Redis

from router.store.keys import WsKeys

WINDOWS = {"15m": 15, "1h": 60}
FIELDS = ("arrived", "answered", "within", "wait_ms", "abandoned", "abandon_wait_ms",
          "handled", "handle_ms")  # fmt: skip


class WindowStats(Struct, frozen=True):
    """Sums over a window and what a workforce manager reads from them (None: no data)."""

    window: str
    seconds: int
    arrived: int
    answered: int
    within: int
    abandoned: int
    handled: int
    # answered within target / answered
    service_level: float | None
    # answered within target / (answered + abandoned): abandons count against it
    service_level_with_abandons: float | None
    average_speed_of_answer: float | None
    average_handle_time: float | None
    abandon_rate: float | None
    arrival_rate: float  # contacts per second
    # mean patience (s): total time waited by answered and abandoned contacts
    # over the number of abandons (the usual estimator for Erlang A)
    patience: float | None
    # survey answers given in the window: kind -> score -> answers
    # (router/routing/surveys.py turns them into CSAT and NPS)
    ratings: dict[str, dict[int, int]] = {}


def _ratio(a: float, b: float) -> float | None:
    return a / b if b else None


def window_stats(
    window: str,
    minutes: int,
    sums: dict[str, int],
    ratings: dict[str, dict[int, int]] | None = None,
) -> WindowStats:
    answered, abandoned = sums["answered"], sums["abandoned"]
    waited = sums["wait_ms"] + sums["abandon_wait_ms"]
    return WindowStats(
        window=window,
        seconds=minutes * 60,
        arrived=sums["arrived"],
        answered=answered,
        within=sums["within"],
        abandoned=abandoned,
        handled=sums["handled"],
        service_level=_ratio(sums["within"], answered),
        service_level_with_abandons=_ratio(sums["within"], answered + abandoned),
        average_speed_of_answer=_ratio(sums["wait_ms"] / 1000, answered),
        average_handle_time=_ratio(sums["handle_ms"] / 1000, sums["handled"]),
        abandon_rate=_ratio(abandoned, answered + abandoned),
        arrival_rate=sums["arrived"] / (minutes * 60),
        patience=_ratio(waited / 1000, abandoned),
        ratings=ratings or {},
    )


def sum_minutes(rows: Sequence[dict[str, str]]) -> dict[str, int]:
    out = dict.fromkeys(FIELDS, 0)
    for row in rows:
        for k, v in row.items():
            if k in out:
                out[k] += int(v)
    return out


def sum_ratings(rows: Sequence[dict[str, str]]) -> dict[str, dict[int, int]]:
    """Survey answers by kind and score (`<kind>:<score>` fields) over the rows."""
    out: dict[str, dict[int, int]] = {}
    for row in rows:
        for k, v in row.items():
            kind, sep, score = k.partition(":")
            if sep and score.isdigit():
                by_score = out.setdefault(kind, {})
                by_score[int(score)] = by_score.get(int(score), 0) + int(v)
    return out


async def pool_windows(
    client: Redis, ws_name: str, pools: Sequence[str], now_ms: int
) -> dict[str, dict[str, WindowStats]]:
    """pool -> window name -> stats, for every window in `WINDOWS`, in one round trip."""
    ws = WsKeys(ws_name)
    longest = max(WINDOWS.values())
    minute = now_ms // 60_000
    pipe = client.pipeline(transaction=False)
    for p in pools:
        for m in range(minute - longest + 1, minute + 1):
            pipe.hgetall(ws.pool_minute(p, m))
    rows: list[dict[str, str]] = await pipe.execute() if pools else []
    out: dict[str, dict[str, WindowStats]] = {}
    for i, p in enumerate(pools):
        mine = rows[i * longest : (i + 1) * longest]  # oldest first
        out[p] = {
            name: window_stats(
                name,
                minutes,
                sum_minutes(mine[longest - minutes :]),
                sum_ratings(mine[longest - minutes :]),
            )
            for name, minutes in WINDOWS.items()
        }
    return out
