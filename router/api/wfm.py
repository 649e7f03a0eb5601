"""Workforce-management reads: staffing per pool from live traffic (what-if by query)."""

from __future__ import annotations

import datetime as dt
import math

from aiohttp import web
from msgspec import Struct
from redis.asyncio import Redis

from router.api.appkeys import ENGINE, SHARDS
from router.api.common import json_response, path_id, roles
from router.runtime.errors import FieldProblem, InvalidInput, NotFound
from router.store.keys import WsKeys
from router.wfm.arrivals import ForecastError
from router.wfm.forecast import agents_needed as forecast_agents
from router.wfm.forecast import seasonal_naive
from router.wfm.queueing import ServiceTarget, scheduled_agents
from router.wfm.smoothing import smoothed_forecast
from router.wfm.staffing import StaffingCapExceeded, StaffingPlan, agents_needed
from router.wfm.stats import pool_windows

EPOCH = dt.date(1970, 1, 1)

# Without a query value: a 30% shrinkage (breaks, training, meetings) and at
# most 85% occupancy are common planning defaults in contact centers.
DEFAULT_SHRINKAGE = 0.3
DEFAULT_MAX_OCCUPANCY = 0.85


class StaffingInputs(Struct, frozen=True):
    rate: float  # contacts per second
    aht: float  # seconds
    patience: float | None  # seconds; None: no abandons seen (Erlang C only)
    target: ServiceTarget
    shrinkage: float
    max_occupancy: float
    # where rate, aht and patience came from: "live" windows or the query
    source: dict[str, str]


class StaffingOut(Struct, frozen=True):
    pool: str
    inputs: StaffingInputs
    erlang_c: StaffingPlan
    erlang_a: StaffingPlan | None  # with abandonment, when a patience is known


def _number(request: web.Request, name: str, low: float, high: float) -> float | None:
    raw = request.query.get(name)
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        raise InvalidInput([FieldProblem(name, "must be a number")]) from None
    if not (math.isfinite(value) and low <= value <= high):
        raise InvalidInput([FieldProblem(name, f"must be between {low:g} and {high:g}")])
    return value


def _shrinkage(request: web.Request) -> float:
    # 0 is a valid what-if (no breaks or training), not "use the default"
    value = _number(request, "shrinkage", 0, 0.95)
    return DEFAULT_SHRINKAGE if value is None else value


@roles("supervisor")
async def get_staffing(request: web.Request) -> web.Response:
    """Agents needed for the pool's service-level target: arrival rate from the
    last 15 minutes, handle time and patience from the last hour (the pool's
    configured handle time before any contact is handled); every input can be
    overridden in the query for what-if questions."""
    ws, pid = path_id(request, "ws"), path_id(request, "pool_id")
    cfg = (await request.app[ENGINE].configs.get(ws)).config
    pool = cfg.pools.get(pid)
    if pool is None:
        raise NotFound(f"pool {pid!r} does not exist", field="pool_id")
    client = request.app[SHARDS].of(WsKeys(ws).tag)
    secs, micros = await client.time()
    live = (await pool_windows(client, ws, [pid], int(secs) * 1000 + int(micros) // 1000))[pid]
    q_rate = _number(request, "rate", 0, 10_000)
    q_aht = _number(request, "aht", 1, 86_400)
    q_patience = _number(request, "patience", 1, 86_400)
    aht_live = live["1h"].average_handle_time
    inputs = StaffingInputs(
        rate=q_rate if q_rate is not None else live["15m"].arrival_rate,
        aht=q_aht or aht_live or pool.handle_time,
        patience=q_patience or live["1h"].patience,
        target=ServiceTarget(
            percent=pool.service_level.percent, seconds=pool.service_level.seconds
        ),
        shrinkage=_shrinkage(request),
        max_occupancy=_number(request, "max_occupancy", 0.05, 1) or DEFAULT_MAX_OCCUPANCY,
        source={
            "rate": "query" if q_rate is not None else "live 15m",
            "aht": "query" if q_aht else ("live 1h" if aht_live else "pool handle_time"),
            "patience": "query" if q_patience else ("live 1h" if live["1h"].patience else "none"),
        },
    )
    try:
        plans = [
            agents_needed(inputs.rate, inputs.aht, inputs.target, patience=patience,
                          max_occupancy=inputs.max_occupancy, shrinkage=inputs.shrinkage)
            for patience in (None, inputs.patience)
        ]  # fmt: skip
    except StaffingCapExceeded as exc:
        raise InvalidInput([FieldProblem("rate", str(exc))]) from None
    erlang_a = plans[1] if inputs.patience is not None else None
    return json_response(StaffingOut(pool=pid, inputs=inputs, erlang_c=plans[0], erlang_a=erlang_a))


HISTORY_DAYS = 56  # eight weeks of recorded arrivals


class ForecastOut(Struct, frozen=True):
    pool: str
    channel: str | None
    day: str  # YYYY-MM-DD, UTC
    method: str  # smoothed, or seasonal_naive while history is short
    history_days: int
    aht: float
    target: ServiceTarget
    patience: float | None
    expected: list[float]  # arrivals per 15 minutes, 96 intervals from 00:00 UTC
    lower: list[float]
    upper: list[float]
    agents: list[int]  # on the phones per interval
    scheduled_peak: int  # the peak after shrinkage


async def recorded_arrivals(
    client: Redis, ws: str, pool: str, channel: str | None, until: dt.date
) -> dict[dt.date, list[int]]:
    """Day -> 96 counts, for the days before `until` that recorded any arrival."""
    first = until - dt.timedelta(days=HISTORY_DAYS)
    days = [first + dt.timedelta(days=i) for i in range(HISTORY_DAYS)]
    keys = WsKeys(ws)
    pipe = client.pipeline(transaction=False)
    for d in days:
        pipe.hgetall(keys.arrivals(pool, (d - EPOCH).days))
    rows: list[dict[str, str]] = await pipe.execute()
    out: dict[dt.date, list[int]] = {}
    for d, row in zip(days, rows, strict=True):
        if not row:
            continue
        counts = [0] * 96
        for field, n in row.items():
            ch, _, interval = field.partition("|")
            if channel is None or ch == channel:
                counts[int(interval)] += int(n)
        out[d] = counts
    return out


@roles("supervisor")
async def get_forecast(request: web.Request) -> web.Response:
    """Tomorrow's (or `day`'s) arrivals per 15 minutes from the pool's recorded
    arrivals, and the agents each interval needs for the pool's target."""
    ws, pid = path_id(request, "ws"), path_id(request, "pool_id")
    cfg = (await request.app[ENGINE].configs.get(ws)).config
    pool = cfg.pools.get(pid)
    if pool is None:
        raise NotFound(f"pool {pid!r} does not exist", field="pool_id")
    channel = request.query.get("channel")
    if channel is not None and channel not in pool.channels:
        raise InvalidInput([FieldProblem("channel", f"pool {pid} does not serve {channel!r}")])
    client = request.app[SHARDS].of(WsKeys(ws).tag)
    secs, micros = await client.time()
    now_ms = int(secs) * 1000 + int(micros) // 1000
    today = EPOCH + dt.timedelta(days=now_ms // 86_400_000)
    try:
        day = dt.date.fromisoformat(request.query.get("day", str(today + dt.timedelta(days=1))))
    except ValueError:
        raise InvalidInput([FieldProblem("day", "must be a date YYYY-MM-DD")]) from None
    if day < EPOCH:  # nothing is recorded before; and date arithmetic ends at year 1
        raise InvalidInput([FieldProblem("day", "must be 1970-01-01 or later")])
    history = await recorded_arrivals(client, ws, pid, channel, day)
    if not history:
        raise InvalidInput([FieldProblem("day", "no recorded arrivals in the 8 weeks before")])
    try:
        fc = smoothed_forecast(history, day)
    except ForecastError:  # fewer days than the model needs: last week's pattern
        try:
            fc = seasonal_naive(history, day)
        except ForecastError:  # e.g. a pool whose arrivals began this week
            detail = f"no {day:%A} with recorded arrivals in the 8 weeks before"
            raise InvalidInput([FieldProblem("day", detail)]) from None
    live = (await pool_windows(client, ws, [pid], now_ms))[pid]["1h"]
    aht = live.average_handle_time or pool.handle_time
    target = ServiceTarget(percent=pool.service_level.percent, seconds=pool.service_level.seconds)
    patience = _number(request, "patience", 1, 86_400) or live.patience

    def agents_for(rate: float, handle: float) -> int:
        return agents_needed(rate, handle, target, patience=patience,
                             max_occupancy=DEFAULT_MAX_OCCUPANCY).agents  # fmt: skip

    agents = forecast_agents(fc, aht, agents_for)
    shrinkage = _shrinkage(request)
    return json_response(ForecastOut(
        pool=pid, channel=channel, day=str(day), method=fc.method, history_days=len(history),
        aht=aht, target=target, patience=patience, expected=list(fc.expected),
        lower=list(fc.lower), upper=list(fc.upper), agents=list(agents),
        scheduled_peak=scheduled_agents(max(agents, default=0), shrinkage),
    ))  # fmt: skip


def setup_wfm_routes(app: web.Application) -> None:
    app.router.add_get("/v1/workspaces/{ws}/pools/{pool_id}/staffing", get_staffing)
    app.router.add_get("/v1/workspaces/{ws}/pools/{pool_id}/forecast", get_forecast)
