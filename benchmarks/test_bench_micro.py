"""Micro-benchmarks of the hot paths: pure functions, and each Lua script once per
round against a real redis-server (ratio to an EVALSHA of `return 1`).

    .venv/bin/pytest benchmarks/test_bench_micro.py -p no:xdist --benchmark-only
"""

from __future__ import annotations

import itertools
import uuid
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import msgspec
import pytest

from benchmarks.conftest import Runner, bench_config, contact, create_args, median_s
from router.cli.demo import demo_config
from router.routing.config import CONFIG_ENCODER, RoutingConfig
from router.routing.engine import Engine
from router.routing.model import AgentIn, AgentStateIn, ContactIn, ContactOut, Customer
from router.routing.records import contact_out, pairs
from router.routing.rules import plan_route
from router.routing.validation import parse_config
from router.store.keys import WsKeys
from sla.business_time import add_business, business_between, compile_calendar
from sla.calendar import Calendar
from sla.calendars import fingerprints
from sla.policy import Boost, Clock, Notify, SlaPolicy, Step, plan_text, schedule

LUA_ROUNDS = 300
IDS = itertools.count()


def fresh(prefix: str) -> str:
    return f"{prefix}{next(IDS)}"


# --- pure: rules, rank, encoding ----------------------------------------------

DEMO = demo_config()
SHAPES: dict[str, dict[str, Any]] = {
    # no rule matches: the whole rule list is walked, default route
    "default": {
        "channel": "voice",
        "tier": None,
        "intent": None,
        "language": None,
        "flags": [],
        "attributes": {},
    },
    # merge rule (fraud) + first-match complaint_vip with overflow and an SLA
    "vip_complaint_fraud": {
        "channel": "voice",
        "tier": "vip",
        "intent": "complaint",
        "language": "en",
        "flags": [],
        "attributes": {"fraud_risk": "high"},
    },
    # late rule (card_spanish) reached on chat: stage narrowing to the channel
    "card_spanish_chat": {
        "channel": "chat",
        "tier": "gold",
        "intent": "card",
        "language": "es",
        "flags": [],
        "attributes": {"x": 1},
    },
    "vulnerable_flag": {
        "channel": "voice",
        "tier": "standard",
        "intent": "loan",
        "language": None,
        "flags": ["vulnerable"],
        "attributes": {},
    },
}


@pytest.mark.parametrize("shape", list(SHAPES))
def test_plan_route(benchmark: Any, shape: str) -> None:
    kw = SHAPES[shape]
    plan = benchmark(lambda: plan_route(DEMO, **kw))
    # the rank offset the contact gets (rank = enqueued_at - priority_offset)
    benchmark.extra_info["priority_offset"] = plan.priority_offset
    benchmark.extra_info["rules"] = plan.rules


@pytest.fixture(scope="module")
def real_reply(engine: Engine, run: Runner) -> dict[str, str]:
    """A contact hash as create.lua returns it (queued, with an SLA clock)."""
    cfg = bench_config()
    ws = "mr" + uuid.uuid4().hex[:8]
    run(engine.put_config(ws, cfg, "admin:bench"))
    k = WsKeys(ws)
    res = run(
        engine.scripts["create"](
            keys=[k.runtime, k.contact("c1")],
            args=create_args(cfg, contact("c1")),
            client=engine.shards.single,
        )
    )
    return pairs(res[1])


def test_contact_out_render(benchmark: Any, real_reply: dict[str, str]) -> None:
    out = benchmark(contact_out, real_reply, True)
    assert out.rank == out.enqueued_at - out.priority_offset


CONTACT_IN = ContactIn(
    id="c-123456",
    channel="chat",
    intent="card",
    customer=Customer(id="cu-9", tier="vip", language="es", flags=["elderly"]),
    attributes={"fraud_risk": "low", "segment": "retail", "score": 7},
)
CONTACT_IN_JSON = msgspec.json.encode(CONTACT_IN)
_CONTACT_IN_DEC = msgspec.json.Decoder(ContactIn)
_CONTACT_OUT_DEC = msgspec.json.Decoder(ContactOut)
_ENC = msgspec.json.Encoder()


def test_contact_in_decode(benchmark: Any) -> None:
    assert benchmark(_CONTACT_IN_DEC.decode, CONTACT_IN_JSON) == CONTACT_IN


def test_contact_in_encode(benchmark: Any) -> None:
    benchmark(_ENC.encode, CONTACT_IN)


def test_contact_out_encode(benchmark: Any, real_reply: dict[str, str]) -> None:
    benchmark(_ENC.encode, contact_out(real_reply, True))


def test_contact_out_decode(benchmark: Any, real_reply: dict[str, str]) -> None:
    raw = _ENC.encode(contact_out(real_reply, True))
    benchmark(_CONTACT_OUT_DEC.decode, raw)


DEMO_JSON = CONFIG_ENCODER.encode(DEMO)
_CONFIG_DEC = msgspec.json.Decoder(RoutingConfig)


def test_parse_config_demo(benchmark: Any) -> None:
    """The full path of PUT /v1/workspaces/{ws}: schema + semantic checks + decode."""
    benchmark.extra_info["bytes"] = len(DEMO_JSON)
    assert benchmark(parse_config, DEMO_JSON) == DEMO


def test_config_decode_msgspec_only(benchmark: Any) -> None:
    benchmark(_CONFIG_DEC.decode, DEMO_JSON)


def test_config_encode(benchmark: Any) -> None:
    benchmark(CONFIG_ENCODER.encode, DEMO)


# --- pure: calendar arithmetic and SLA schedule ----------------------------------

SH = ZoneInfo("Asia/Shanghai")
SPLIT = compile_calendar(
    Calendar(
        timezone="Asia/Shanghai",
        hours={d: ["09:00-12:00", "13:00-18:00"] for d in ("mon", "tue", "wed", "thu", "fri")},
        holidays=["2026-01-01", "2026-10-01"],
    )
)
HOUR = 3_600_000
# Friday 2026-11-20 17:00 Shanghai: 1 h left today, then the weekend
FRI_17 = int(datetime(2026, 11, 20, 17, 0, tzinfo=SH).timestamp() * 1000)
MON_10 = int(datetime(2026, 11, 23, 10, 0, tzinfo=SH).timestamp() * 1000)


def test_add_business_over_weekend(benchmark: Any) -> None:
    due = benchmark(add_business, SPLIT, FRI_17, 2 * HOUR)
    assert due == MON_10


def test_business_between_over_weekend(benchmark: Any) -> None:
    assert benchmark(business_between, SPLIT, FRI_17, MON_10) == 2 * HOUR


def test_add_business_30_days(benchmark: Any) -> None:
    """30 business days of 8 h (split shift): about six calendar weeks."""
    due = benchmark(add_business, SPLIT, FRI_17, 30 * 8 * HOUR)
    assert business_between(SPLIT, FRI_17, due) == 30 * 8 * HOUR


def test_add_business_30_days_cold(benchmark: Any) -> None:
    """As above with a fresh calendar per round (no per-day cache yet)."""
    cal = Calendar(
        timezone="Asia/Shanghai",
        hours={d: ["09:00-12:00", "13:00-18:00"] for d in ("mon", "tue", "wed")},
    )
    benchmark.pedantic(
        lambda c: add_business(c, FRI_17, 30 * 8 * HOUR),
        setup=lambda: ((compile_calendar(cal),), {}),
        rounds=200,
    )


LADDER = Clock(
    target=5 * 9 * 3600.0,
    ladder=[
        Step(at=0.5, actions=[Notify(to=["team_supervisor"])]),
        Step(at=0.8, actions=[Boost(seconds=60.0)]),
        Step(after=3600.0, actions=[Notify(to=["role:duty_manager"])]),
    ],
)


def test_sla_schedule_business_ladder(benchmark: Any) -> None:
    steps = benchmark(schedule, LADDER, SPLIT, FRI_17)
    assert [s.kind for s in steps] == ["warning", "warning", "escalation", "breach"]


def test_sla_schedule_24x7(benchmark: Any) -> None:
    benchmark(schedule, LADDER, None, FRI_17)


def test_sla_plan_text_demo_complaint(benchmark: Any) -> None:
    """Demo `complaint`: answer 120 s wall clock + resolve 5 business days."""
    policy: SlaPolicy = DEMO.sla_policies["complaint"]
    fps = fingerprints(DEMO, "complaint")
    cal = compile_calendar(DEMO.calendars["back_office"])
    text = benchmark(plan_text, policy, cal, FRI_17, fps)
    assert text.startswith("answer:")


def test_sla_plan_text_demo_complaint_vip(benchmark: Any) -> None:
    policy = DEMO.sla_policies["complaint_vip"]
    benchmark(plan_text, policy, None, FRI_17, fingerprints(DEMO, "complaint_vip"))


# --- Lua scripts against redis-server ------------------------------------------


class Ws:
    """A fresh workspace on the benchmark server with the bench config."""

    def __init__(self, engine: Engine, run: Runner, agents: int = 0, capacity: int = 100) -> None:
        self.engine, self.run = engine, run
        self.name = "mb" + uuid.uuid4().hex[:10]
        self.k = WsKeys(self.name)
        self.cfg = bench_config()
        run(engine.put_config(self.name, self.cfg, "admin:bench"))
        for i in range(agents):
            aid = f"a{i}"
            run(
                engine.upsert_agent(
                    self.name, aid, AgentIn(skills={"cards": 5}, capacity=capacity), "sup:bench"
                )
            )
            run(
                engine.set_agent_state(
                    self.name, aid, AgentStateIn(state="available"), "agent:bench"
                )
            )

    def create(self, cid: str, channel: str = "voice") -> Any:
        return self.run(self.create_coro(cid, channel))

    def create_coro(self, cid: str, channel: str = "voice") -> Any:
        return self.engine.scripts["create"](
            keys=[self.k.runtime, self.k.contact(cid)],
            args=create_args(self.cfg, contact(cid, channel)),
            client=self.engine.shards.single,
        )

    def action(self, name: str, cid: str, *args: Any) -> Any:
        return self.engine.scripts[name](
            keys=[self.k.runtime, self.k.contact(cid)],
            args=["agent:bench", *args],
            client=self.engine.shards.single,
        )


def lua(benchmark: Any, baseline: float, target: Any, setup: Any) -> None:
    benchmark.pedantic(target, setup=setup, rounds=LUA_ROUNDS, warmup_rounds=10)
    median = median_s(benchmark)
    if median is not None:
        benchmark.extra_info["evalsha_return_1_median_us"] = round(baseline * 1e6, 1)
        benchmark.extra_info["vs_evalsha_return_1"] = round(median / baseline, 2)


def test_lua_baseline_evalsha_return_1(
    benchmark: Any, engine: Engine, run: Runner, evalsha_baseline: float
) -> None:
    script = engine.shards.single.register_script("return 1")
    benchmark.pedantic(lambda: run(script()), rounds=2000, warmup_rounds=50)
    median = median_s(benchmark)
    if median is not None:
        benchmark.extra_info["vs_evalsha_return_1"] = round(median / evalsha_baseline, 2)


def test_lua_create_queued(
    benchmark: Any, engine: Engine, run: Runner, evalsha_baseline: float
) -> None:
    """No agent ready: the contact is ranked, SLA clock started, queued."""
    ws = Ws(engine, run)
    made: list[str] = []

    def target(cid: str) -> None:
        assert pairs(run(ws.create_coro(cid))[1])["st"] == "queued"
        made.append(cid)

    lua(benchmark, evalsha_baseline, target, lambda: ((fresh("q"),), {}))
    # every contact created waits in the queue
    assert made and run(engine.shards.single.zcard(ws.k.queue("cards", "voice"))) == len(made)


def test_lua_create_offered(
    benchmark: Any, engine: Engine, run: Runner, evalsha_baseline: float
) -> None:
    """Ready agents with room: the contact is offered at once (chat, weight 25)."""
    ws = Ws(engine, run, agents=8, capacity=10_000)  # 3,200 chats of room

    def target(cid: str) -> None:
        res = run(ws.create_coro(cid, "chat"))
        assert pairs(res[1])["st"] == "offered"

    lua(benchmark, evalsha_baseline, target, lambda: ((fresh("o"),), {}))


def test_lua_accept(benchmark: Any, engine: Engine, run: Runner, evalsha_baseline: float) -> None:
    ws = Ws(engine, run, agents=8, capacity=10_000)

    def setup() -> tuple[tuple[str, str], dict[str, Any]]:
        cid = fresh("ac")
        got = pairs(ws.create(cid, "chat")[1])
        return (cid, got["agent"]), {}

    def target(cid: str, aid: str) -> None:
        assert run(ws.action("accept", cid, aid))[0] == 1

    lua(benchmark, evalsha_baseline, target, setup)


def test_lua_complete_frees_agent_next_offer(
    benchmark: Any, engine: Engine, run: Runner, evalsha_baseline: float
) -> None:
    """One voice agent (capacity 100): completing its call frees it and the
    best-ranked waiting call is offered to it in the same script."""
    ws = Ws(engine, run, agents=1, capacity=100)
    first = fresh("cc")
    assert pairs(ws.create(first)[1])["st"] == "offered"
    state = {"held": first}

    def setup() -> tuple[tuple[str], dict[str, Any]]:
        held = state["held"]
        assert run(ws.action("accept", held, "a0"))[0] == 1
        nxt = fresh("cc")
        assert pairs(ws.create(nxt)[1])["st"] == "queued"
        state["held"] = nxt
        return (held,), {}

    def target(cid: str) -> None:
        res = run(ws.action("complete", cid, "a0"))
        assert res[0] == 1

    lua(benchmark, evalsha_baseline, target, setup)
    got = run(engine.shards.single.hget(ws.k.contact(state["held"]), "st"))
    assert got == "offered"


def _due_now(ws: Ws, cid: str) -> str:
    member = f"sla|{cid}|answer|0|1"  # the 0.5 warning of the answer clock (boost 30 s)
    ws.run(ws.engine.shards.single.zadd(ws.k.timers, {member: 1}, xx=True))
    return member


def test_lua_timer_claim(
    benchmark: Any, engine: Engine, run: Runner, evalsha_baseline: float
) -> None:
    ws = Ws(engine, run)
    k = ws.k
    keys = [k.timers, k.timer_leases, k.timer_lease_info, k.timer_claims]

    def setup() -> tuple[tuple[int], dict[str, Any]]:
        cid = fresh("tc")
        ws.create(cid)
        _due_now(ws, cid)
        return (next(IDS),), {}

    def target(claim_id: int) -> None:
        res = run(
            engine.scripts["claim"](
                keys=keys, args=[100, 600_000, "bench", claim_id], client=engine.shards.single
            )
        )
        assert len(res) == 5

    lua(benchmark, evalsha_baseline, target, setup)


def test_lua_timer_fire_sla_step(
    benchmark: Any, engine: Engine, run: Runner, evalsha_baseline: float
) -> None:
    """Fires a claimed SLA warning whose action boosts the queued contact's rank."""
    ws = Ws(engine, run)
    k = ws.k
    claim_keys = [k.timers, k.timer_leases, k.timer_lease_info, k.timer_claims]

    def setup() -> tuple[tuple[str, int], dict[str, Any]]:
        cid = fresh("tf")
        ws.create(cid)
        member = _due_now(ws, cid)
        res = run(
            engine.scripts["claim"](
                keys=claim_keys,
                args=[100, 600_000, "bench", next(IDS)],
                client=engine.shards.single,
            )
        )
        assert res[2] == member
        return (member, int(res[3])), {}

    def target(member: str, due: int) -> None:
        res = run(
            engine.scripts["fire"](
                keys=[k.runtime, k.timer_leases, k.timer_lease_info],
                args=[member, due],
                client=engine.shards.single,
            )
        )
        assert res[0] == 1

    lua(benchmark, evalsha_baseline, target, setup)
