"""Workforce-management reads: staffing per pool from live traffic (what-if by query)."""

from __future__ import annotations

import math

from aiohttp import web
from msgspec import Struct

from router.api.app import ENGINE, REDIS
from router.api.routes import json_response, path_id, roles
from router.errors import FieldProblem, InvalidInput, NotFound
from router.staffing import ServiceTarget, StaffingCapExceeded, StaffingPlan, agents_needed
from router.stats import pool_windows

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
    client = request.app[REDIS]
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
        shrinkage=_number(request, "shrinkage", 0, 0.95) or DEFAULT_SHRINKAGE,
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


def setup_wfm_routes(app: web.Application) -> None:
    app.router.add_get("/v1/workspaces/{ws}/pools/{pool_id}/staffing", get_staffing)
