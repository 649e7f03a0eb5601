"""Bad input at scale: schemathesis against the router's live `/openapi.json`.

A real `router serve` process (tests/support/procs.py) on the session's Redis serves a
seeded workspace: a config with an SLA policy, agents, and contacts in every
state, so generated requests reach existing resources and not only 404s. Every
operation of the document gets positive cases (schema-valid, with the admin
token; the gateway's operations also with the gateway token) and negative ones
(schema-invalid parameters or bodies, or missing / malformed credentials), then
a stateful run follows the document's links (create a contact, read it, act on
it with its holder, ...). Every response must:

- never be a 5xx;
- have a documented status code and content type, and match the documented
  schema (server-sent events: each event and its JSON data);
- for a 4xx, be `application/problem+json` with its status, a title and a
  detail, name the field of a 422 and carry `Allow` on a 405;
- refuse what the schema says is invalid (negative cases).

The converse (every schema-valid request accepted) is not checked: the schema
cannot say which channels, tiers, skills or pools a workspace declares, so a
well-formed contact on an undeclared channel is rightly a 422.

The router runs with rate limiting off (`ROUTER_RATE_LIMITS=off`): thousands of
requests a minute from one admin token would otherwise meet 429s and test the
limiter instead of the handlers. Generation is derandomized, so a run is
reproducible; the cases run per operation and in total are printed.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
import zlib
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Flaky
from schemathesis import Case, GenerationMode
from schemathesis.checks import CHECKS, load_all_checks
from schemathesis.core.parameters import ParameterLocation

from tests.support.client import small_config
from tests.support.procs import Replica, wait_ready

pytestmark = pytest.mark.timeout(600)

ADMIN, GATEWAY = "demo-admin", "demo-gateway"
CHECK_NAMES = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
    "negative_data_rejection",
)
# Cases per operation, by generation mode; streams answer 200 and then stay
# open until the client's timeout, so they get fewer.
EXAMPLES = {GenerationMode.POSITIVE: 26, GenerationMode.NEGATIVE: 14}
STREAM_EXAMPLES = {GenerationMode.POSITIVE: 6, GenerationMode.NEGATIVE: 10}
GATEWAY_EXAMPLES = 10
STREAM_TIMEOUT, TIMEOUT = 0.3, 15.0
STATEFUL_ROUNDS = 3
# What a gateway does (router/api/routes.py roles).
GATEWAY_OPS = {
    "POST /v1/workspaces/{ws}/contacts",
    "GET /v1/workspaces/{ws}/contacts/{contact_id}",
    "PATCH /v1/workspaces/{ws}/contacts/{contact_id}",
    *(
        f"POST /v1/workspaces/{{ws}}/contacts/{{contact_id}}/{a}"
        for a in ("abandon", "transfer", "resolve", "rating", "pause", "resume", "callback")
    ),
}
# Names the seeded workspace declares (tests/support/client.py small_config) and holds.
CHANNELS, TIERS, SKILLS = ("voice", "chat"), ("vip", "standard"), ("cards", "loans")
POOLS = ("cards", "loans")
AGENTS = ("a1", "a2", "a3")
CONTACTS = ("done", "held", "offered", "queued", "gone")


# --- the router and its seeded workspace -----------------------------------------------


def seed(url: str, ws: str) -> None:
    """a1 holds `held` (assigned) and `offered`; `queued` waits; `done` is
    completed, `gone` abandoned; a2 is offline and a3 on a break."""
    adm = requests.Session()
    adm.headers["Authorization"] = f"Bearer {ADMIN}"
    gw = requests.Session()
    gw.headers["Authorization"] = f"Bearer {GATEWAY}"
    base = f"{url}/v1/workspaces/{ws}"
    cfg = small_config(sla="std")
    cfg["sla_policies"] = {"std": {"answer": 600, "first_response": 900, "resolve": 86_400}}

    def ok(r: requests.Response) -> dict[str, Any]:
        assert r.status_code in (200, 201), r.text
        return r.json()  # type: ignore[no-any-return]

    ok(adm.put(base, json=cfg))
    agents = {"a1": {"cards": 5}, "a2": {"cards": 7, "loans": 3}, "a3": {"loans": 9}}
    for aid, skills in agents.items():
        ok(adm.put(f"{base}/agents/{aid}", json={"skills": skills, "team": "t1"}))
    ok(adm.post(f"{base}/agents/a3/state", json={"state": "break", "reason": "lunch"}))
    ok(adm.post(f"{base}/agents/a1/state", json={"state": "available"}))

    def create(cid: str, channel: str) -> dict[str, Any]:
        body = {
            "id": cid,
            "channel": channel,
            "customer": {"id": "cu-" + cid, "tier": "vip"},
            "intent": "card",
            "note": "called about a card",
        }
        return ok(gw.post(f"{base}/contacts", json=body))

    assert create("done", "chat")["agent"] == "a1"
    for action in ("accept", "complete"):
        ok(adm.post(f"{base}/contacts/done/{action}", json={"agent_id": "a1"}))
    assert create("held", "chat")["agent"] == "a1"
    ok(adm.post(f"{base}/contacts/held/accept", json={"agent_id": "a1"}))
    assert create("offered", "chat")["state"] == "offered"
    assert create("queued", "voice")["state"] == "queued"  # a1 has no room for a call
    create("gone", "voice")
    ok(gw.post(f"{base}/contacts/gone/abandon", json={"reason": "hung up"}))


@pytest.fixture(scope="module")
def router_url(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A router process with rate limits off; it must log no traceback."""
    replica = Replica(
        redis_url, tmp_path_factory.mktemp("fuzz"), 0, env={"ROUTER_RATE_LIMITS": "off"}
    )
    try:
        asyncio.run(wait_ready([replica]))
        yield replica.url
    finally:
        code = replica.stop()
        assert code == 0, replica.log_tail()
        assert "Traceback" not in replica.log_path.read_text(errors="replace"), replica.log_tail()


@pytest.fixture
def router(router_url: str, one_at_a_time: None) -> tuple[str, str]:
    """(base URL, a freshly seeded workspace): each test starts from the same state."""
    ws = "fz" + uuid.uuid4().hex[:8]
    seed(router_url, ws)
    return router_url, ws


# --- schemathesis setup -------------------------------------------------------------


def _pick(options: tuple[str, ...], key: object) -> str:
    # crc32, not hash(): the same choice in every process (reproducible runs)
    return options[zlib.crc32(repr(key).encode()) % len(options)]


def _known_names(case: Case) -> Case:
    """Points most positive bodies at names the seeded config declares, so that
    creation, agent updates and actions get past the config's cross-checks
    and run the routing scripts; a quarter keep their generated names."""
    body = case.body
    meta = case.meta
    info = meta.components.get(ParameterLocation.BODY) if meta is not None else None
    if not isinstance(body, dict) or info is None or info.mode != GenerationMode.POSITIVE:
        return case
    if zlib.crc32(repr(sorted(body.items())).encode()) % 4 == 0:
        return case
    path = case.operation.path
    if path.endswith("/contacts"):
        body["channel"] = _pick(CHANNELS, body.get("id"))
        if isinstance(body.get("customer"), dict) and body["customer"].get("tier") is not None:
            body["customer"]["tier"] = _pick(TIERS, body["customer"]["tier"])
        body["skills"] = [
            {**s, "skill": _pick(SKILLS, s.get("skill"))}
            for s in body.get("skills", [])
            if isinstance(s, dict)
        ]
    elif path.endswith("/agents/{agent_id}") and isinstance(body.get("skills"), dict):
        body["skills"] = {_pick(SKILLS, k): v for k, v in body["skills"].items()}
    elif path.endswith("/transfer"):
        if body.get("pool") is not None:
            body["pool"] = _pick(POOLS, body["pool"])
        elif body.get("agent_id") is not None:
            body["agent_id"] = _pick(AGENTS, body["agent_id"])
    elif isinstance(body.get("agent_id"), str):
        body["agent_id"] = _pick(AGENTS, body["agent_id"])
    return case


def _short_polls(_context: Any, query: dict[str, Any] | None) -> dict[str, Any] | None:
    # A valid long-poll waits up to `wait` seconds: keep valid waits short
    # (invalid ones, above 60 or below 0, are left as they are: refused at once).
    if query and isinstance(query.get("wait"), int | float) and 0.05 < query["wait"] <= 60:
        query["wait"] = 0.05
    return query


def _in_workspace(params: dict[str, Any] | None, ws: str) -> dict[str, Any]:
    """Generated path parameters (not those a link fills in) in the seeded
    workspace, mostly naming seeded resources."""
    params = {**(params or {}), "ws": ws}
    for name, known in (("contact_id", CONTACTS), ("agent_id", AGENTS), ("pool_id", POOLS)):
        value = params.get(name)
        if value is not None:
            params[name] = _pick((*known, *(value,) * (len(known) // 2)), value)
    return params


def load_schema(url: str, token: str, ws: str | None = None, positive_only: bool = False) -> Any:
    load_all_checks()
    config: dict[str, Any] = {
        "seed": 20261123,
        "generation": {"mode": "positive" if positive_only else "all"},
        "auth": {"openapi": {"bearer": {"bearer": token}}},
        "checks": {name: {"enabled": name in CHECK_NAMES} for name in CHECKS.get_all_names()},
        "request-timeout": TIMEOUT,
    }
    schema = schemathesis.openapi.from_url(
        url + "/openapi.json", config=schemathesis.Config.from_dict(config)
    )
    schema.hooks.register_hook_with_name(lambda _ctx, case: _known_names(case), "map_case")
    schema.hooks.register_hook_with_name(_short_polls, "map_query")
    if ws is not None:  # every request in the seeded workspace, mostly on seeded contacts
        schema.hooks.register_hook_with_name(
            lambda _ctx, strategy: strategy.map(lambda p: _in_workspace(p, ws)),
            "before_generate_path_parameters",
        )
    return schema


def problem_details(_ctx: Any, response: Any, case: Case) -> bool | None:
    """A 4xx is problem+json (RFC 9457) with status, title and detail; a 422
    names the field; a 405 lists the allowed methods."""
    status = response.status_code
    if not 400 <= status < 500:
        return None
    content_type = (response.headers.get("content-type") or [""])[0]
    assert content_type.startswith("application/problem+json"), (status, content_type)
    problem = response.json()
    assert problem["status"] == status and problem["title"] and problem["detail"], problem
    if status == 422:
        assert isinstance(problem.get("field"), str), problem
    if status == 405:
        assert response.headers.get("allow"), "405 without Allow"
    return True


def _path_choices(operation: Any, ws: str) -> list[dict[str, str]]:
    """Path parameters naming seeded resources, all or some of them."""
    names = {p.name for p in operation.path_parameters}
    known = {"agent_id": AGENTS, "contact_id": CONTACTS, "pool_id": POOLS}
    choices: list[dict[str, str]] = [{"ws": ws}] if "ws" in names else []
    for name, ids in known.items():
        if name in names:
            choices += [{"ws": ws, name: i} for i in ids]
    return choices


def _has_inputs(operation: Any) -> bool:
    raw = operation.definition.raw
    return bool(raw.get("parameters") or raw.get("requestBody") or raw.get("security"))


def fuzz_operation(
    operation: Any, mode: GenerationMode, ws: str, examples: int, counts: Counter[str]
) -> None:
    stream = operation.path.endswith("/stream")
    strategies = [operation.as_strategy(mode)]  # random names too: unknown ids and workspaces
    strategies += [
        operation.as_strategy(mode, path_parameters=p) for p in _path_choices(operation, ws)
    ]
    session = requests.Session()
    checks = [CHECKS.get_one(name) for name in CHECK_NAMES]

    @settings(
        max_examples=examples,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.explicit, Phase.generate, Phase.shrink],
    )
    @given(case=st.one_of(strategies))
    def run(case: Case) -> None:
        response = case.call(session=session, timeout=STREAM_TIMEOUT if stream else TIMEOUT)
        case.validate_response(response, checks=checks, additional_checks=[problem_details])
        counts[f"{mode.value} {operation.label}"] += 1

    run()


# --- the tests ------------------------------------------------------------------------


def test_every_operation_survives_generated_requests(router: tuple[str, str]) -> None:
    url, ws = router
    counts: Counter[str] = Counter()
    admin = load_schema(url, ADMIN)
    operations = [result.ok() for result in admin.get_all_operations()]
    assert len(operations) >= 28
    for operation in operations:
        stream = operation.path.endswith("/stream")
        for mode, n in (STREAM_EXAMPLES if stream else EXAMPLES).items():
            if mode == GenerationMode.NEGATIVE and not _has_inputs(operation):
                continue  # /healthz and friends: nothing in the request to get wrong
            fuzz_operation(operation, mode, ws, n, counts)
    gateway = load_schema(url, GATEWAY)
    for result in gateway.get_all_operations():
        operation = result.ok()
        if operation.label in GATEWAY_OPS:
            fuzz_operation(operation, GenerationMode.POSITIVE, ws, GATEWAY_EXAMPLES, counts)
    total = sum(counts.values())
    print(f"\nschemathesis: {total} cases over {len(operations)} operations")
    for label, n in sorted(counts.items()):
        print(f"  {n:4d}  {label}")
    assert total >= 1000, counts
    assert all(counts[f"positive {op.label}"] for op in operations), counts


def test_stateful_links(router: tuple[str, str]) -> None:
    """Follows the document's links: a created contact is read and acted on by
    its holder, an agent's state change leads to its offers, and so on."""
    url, ws = router
    schema = load_schema(url, ADMIN, ws=ws, positive_only=True)
    steps: Counter[str] = Counter()
    scenarios: list[int] = []
    failures: list[str] = []

    class Machine(schema.as_state_machine()):  # type: ignore[misc]
        def setup(self) -> None:
            scenarios.append(1)

        def after_call(self, response: Any, case: Case) -> None:
            super().after_call(response, case)
            steps[f"{response.status_code} {case.operation.label}"] += 1

        def validate_response(self, response: Any, case: Case, **kwargs: Any) -> None:
            try:
                super().validate_response(
                    response, case, additional_checks=[problem_details], **kwargs
                )
            except Exception as exc:  # kept: a replay may not reproduce it (see below)
                failures.append(f"{case.operation.label}: {exc}")
                raise

    run_settings = settings(
        max_examples=30,
        stateful_step_count=10,
        derandomize=True,
        # no shrinking: the server's state has moved on, a replay is not the same run
        phases=[Phase.explicit, Phase.generate],
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    for _ in range(STATEFUL_ROUNDS):
        # Hypothesis replays a scenario's prefix and may see the server answer
        # differently (a contact created before now exists): that ends what it
        # can explore (Flaky), not a failure (those are collected above). The
        # next round starts over on the workspace as the last one left it.
        with contextlib.suppress(Flaky):
            Machine.run(settings=run_settings)
    assert not failures, failures
    total = sum(steps.values())
    print(f"\nstateful: {total} calls in {len(scenarios)} scenarios")
    for label, n in sorted(steps.items()):
        print(f"  {n:4d}  {label}")
    followed = {label for label in steps if label.startswith("2") and "{contact_id}" in label}
    assert total >= 200 and followed, steps  # links from created contacts were followed
