"""Routing config validation: every problem reported, each at its exact path."""

from __future__ import annotations

import copy
import json
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from router.cli.demo import demo_config
from router.routing.config import RoutingConfig
from router.routing.validation import parse_config, validate_config
from router.runtime.errors import BadRequest, FieldProblem, InvalidInput
from tests.support.documents import json_paths


def demo_doc() -> dict[str, Any]:
    doc: dict[str, Any] = msgspec.to_builtins(demo_config())
    return doc


def small_doc(**overrides: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "tiers": {"standard": {}, "vip": {"priority_offset": 120}},
        "channels": {"voice": {}, "email": {"weight": 10}},
        "skills": ["cards", "loans"],
        "pools": {
            "cards": {"skills": [{"skill": "cards"}], "channels": ["voice", "email"]},
            "loans": {"skills": [{"skill": "loans", "min": 3}], "channels": ["voice"]},
        },
        "sla_policies": {"standard": {"answer": 60}},
        "rules": [],
        "defaults": {"stages": [{"pools": ["cards"]}], "sla": "standard"},
    }
    doc.update(overrides)
    return doc


def problems_of(doc: object) -> list[FieldProblem]:
    with pytest.raises(InvalidInput) as info:
        parse_config(json.dumps(doc).encode())
    assert info.value.problems, "InvalidInput must list its problems"
    return info.value.problems


def fields_of(doc: object) -> list[str]:
    return [p.field for p in problems_of(doc)]


# --- schema problems ----------------------------------------------------------


def test_every_problem_is_reported_with_its_path() -> None:
    doc = demo_doc()
    doc["pools"]["loans"]["max_queue"] = "ten"  # wrong type
    doc["pools"]["cards"]["colour"] = "red"  # unknown field
    doc["rules"][1]["stages"][0]["pools"] = ["nowhere"]  # unknown pool (cross-reference)

    problems = problems_of(doc)

    assert sorted(p.field for p in problems) == [
        "pools.cards.colour",
        "pools.loans.max_queue",
        "rules[1].stages[0].pools[0]",
    ]
    by_field = {p.field: p.message for p in problems}
    assert by_field["pools.loans.max_queue"] == "expected integer or null, got string"
    assert by_field["pools.cards.colour"].startswith("unknown field")
    assert "'nowhere'" in by_field["rules[1].stages[0].pools[0]"]


def test_invalid_input_summary_names_first_field_and_count() -> None:
    doc = small_doc()
    doc["pools"]["cards"]["strategy"] = "random"
    doc["channels"]["voice"]["weight"] = 0
    with pytest.raises(InvalidInput) as info:
        parse_config(json.dumps(doc).encode())
    assert info.value.field == info.value.problems[0].field
    assert "(and 1 more)" in info.value.detail
    assert {p.field for p in info.value.problems} == {
        "pools.cards.strategy",
        "channels.voice.weight",
    }


def test_each_unknown_field_is_named_separately() -> None:
    doc = small_doc(colour="red")
    doc["channels"]["voice"].update({"volume": 3, "pitch": 1})
    assert sorted(fields_of(doc)) == ["channels.voice.pitch", "channels.voice.volume", "colour"]


def test_missing_required_fields_are_named() -> None:
    doc = small_doc()
    del doc["channels"]
    del doc["pools"]["loans"]["channels"]
    assert sorted(fields_of(doc)) == ["channels", "pools.loans.channels"]


def test_document_that_is_not_an_object_is_a_root_problem() -> None:
    assert problems_of([1, 2]) == [FieldProblem("", "expected object, got array")]


def test_bad_key_is_named_as_the_key_itself() -> None:
    doc = small_doc()
    doc["tiers"]["gold star"] = {}
    problems = problems_of(doc)
    assert [p.field for p in problems] == ['tiers["gold star"]']
    assert problems[0].message.startswith("invalid name")


def test_names_containing_dots_are_quoted_in_paths() -> None:
    doc = small_doc()
    doc["pools"]["eu.cards"] = {"skills": [], "channels": ["fax"]}
    assert fields_of(doc) == ['pools["eu.cards"].channels[0]']


def test_optional_fields_report_the_inner_problem() -> None:
    # `X | None` fields are anyOf in the schema; the useful message is the one
    # from the branch the value's type fits, at the inner path.
    doc = small_doc(
        rules=[
            {"name": "r1", "when": {"tier": "vip"}, "stages": [{"pools": []}]},
            {"name": "r2", "when": {"attributes": {"segment": [["nested"]]}}},
        ]
    )
    problems = {p.field: p.message for p in problems_of(doc)}
    assert set(problems) == {
        "rules[0].when.tier",
        "rules[0].stages[0].pools",
        "rules[1].when.attributes.segment[0]",
    }
    assert problems["rules[0].when.tier"] == "expected array or null, got string"
    assert "non-empty" in problems["rules[0].stages[0].pools"]


def test_float_for_integer_is_listed_with_the_other_problems() -> None:
    # JSON Schema alone accepts 1.0 as an integer; msgspec does not. Both
    # problems must come back together, not one per round trip.
    doc = small_doc()
    doc["channels"]["voice"]["weight"] = 1.0
    doc["pools"]["loans"]["skills"][0]["min"] = 11
    problems = {p.field: p.message for p in problems_of(doc)}
    assert problems == {
        "channels.voice.weight": "expected integer, got number",
        "pools.loans.skills[0].min": "11 is greater than the maximum of 10",
    }


def test_booleans_are_not_numbers() -> None:
    doc = small_doc()
    doc["tiers"]["vip"]["priority_offset"] = True
    assert fields_of(doc) == ["tiers.vip.priority_offset"]


def test_long_offending_values_are_clipped() -> None:
    doc = small_doc(description="x" * 5000)
    (problem,) = problems_of(doc)
    assert problem.field == "description"
    assert len(problem.message) <= 200


@pytest.mark.parametrize(
    "body",
    [b"", b"{", b'{"tiers": }', b"\xff\xfe", b"[" * 5000, b"1e999", b"NaN"],
    ids=["empty", "truncated", "syntax", "not-utf8", "too-deep", "out-of-range", "nan"],
)
def test_malformed_json_is_a_bad_request(body: bytes) -> None:
    with pytest.raises(BadRequest) as info:
        parse_config(body)
    assert info.value.detail.startswith("malformed JSON")


# --- cross-reference problems -------------------------------------------------


def test_demo_config_is_valid_and_round_trips() -> None:
    cfg = demo_config()
    assert validate_config(cfg) == []
    body = msgspec.json.encode(cfg)
    assert parse_config(body) == cfg
    assert msgspec.json.decode(body, type=RoutingConfig) == cfg


def test_pool_references_are_checked() -> None:
    doc = small_doc()
    doc["pools"]["cards"]["skills"].append({"skill": "mortgages"})
    doc["pools"]["cards"]["channels"].append("fax")
    doc["pools"]["loans"]["skills"].append({"skill": "loans", "min": 5})
    problems = {p.field: p.message for p in problems_of(doc)}
    assert set(problems) == {
        "pools.cards.skills[1].skill",
        "pools.cards.channels[2]",
        "pools.loans.skills[1].skill",
    }
    assert "'mortgages'" in problems["pools.cards.skills[1].skill"]
    assert "'fax'" in problems["pools.cards.channels[2]"]
    assert "twice" in problems["pools.loans.skills[1].skill"]


def test_stage_timing_is_checked() -> None:
    doc = small_doc(
        rules=[
            {
                "name": "late_start",
                "when": {"intent": ["card"]},
                "stages": [{"pools": ["cards"], "after": 10}, {"pools": ["loans"], "after": 30}],
            },
            {
                "name": "backwards",
                "when": {"intent": ["loan"]},
                "stages": [
                    {"pools": ["loans"]},
                    {"pools": ["cards"], "after": 60},
                    {"pools": ["cards"], "after": 30},
                ],
            },
        ]
    )
    assert fields_of(doc) == ["rules[0].stages[0].after", "rules[1].stages[2].after"]


def test_rule_references_are_checked() -> None:
    doc = small_doc(
        rules=[
            {
                "name": "r",
                "when": {"channel": ["voice", "fax"], "tier": ["platinum"]},
                "stages": [{"pools": ["cards", "ghost"]}],
                "sla": "gold",
            },
            {"name": "r", "when": {"intent": ["x"]}},
        ]
    )
    assert fields_of(doc) == [
        "rules[0].when.channel[1]",
        "rules[0].when.tier[0]",
        "rules[0].stages[0].pools[1]",
        "rules[0].sla",
        "rules[1].name",
    ]


def test_defaults_references_are_checked() -> None:
    doc = small_doc(
        defaults={"tier": "basic", "sla": "none", "stages": [{"pools": ["ghost"], "after": 5}]}
    )
    assert fields_of(doc) == [
        "defaults.tier",
        "defaults.sla",
        "defaults.stages[0].after",
        "defaults.stages[0].pools[0]",
    ]


def test_default_tier_must_exist_even_when_not_written() -> None:
    doc = small_doc(tiers={"vip": {}})
    doc["defaults"].pop("tier", None)
    problems = problems_of(doc)
    assert [p.field for p in problems] == ["defaults.tier"]
    assert "'standard'" in problems[0].message


def test_dead_configuration_is_reported() -> None:
    doc = small_doc(
        skills=["cards", "loans", "cards"],
        rules=[
            {"name": "empty", "when": {"intent": []}, "stages": [{"pools": ["cards"]}]},
            {
                "name": "email_only",
                "when": {"channel": ["email"]},
                "stages": [{"pools": ["loans"]}],
            },
            {"name": "no_stages", "when": {"intent": ["x"]}, "stages": []},
            {"name": "everyone", "stages": [{"pools": ["cards"]}]},
            {"name": "shadowed", "when": {"intent": ["y"]}},
        ],
    )
    assert fields_of(doc) == [
        "skills[2]",
        "rules[0].when.intent",
        "rules[1].stages[0].pools[0]",  # loans does not serve email
        "rules[2].stages",
        "rules[4]",  # rules[3] matches everything first
    ]


def test_merge_rule_without_conditions_does_not_shadow_later_rules() -> None:
    doc = small_doc(
        rules=[
            {"name": "boost", "priority_offset": 10, "merge": True},
            {"name": "cards", "when": {"intent": ["card"]}, "stages": [{"pools": ["cards"]}]},
        ]
    )
    assert parse_config(json.dumps(doc).encode()).rules[0].merge is True


def test_schema_and_cross_reference_problems_are_not_doubled() -> None:
    # A badly formed pool name is one problem, not also an "unknown pool".
    doc = small_doc(rules=[{"name": "r", "stages": [{"pools": ["no such pool!"]}]}])
    assert fields_of(doc) == ["rules[0].stages[0].pools[0]"]


def test_a_missing_collection_does_not_cascade() -> None:
    doc = small_doc()
    del doc["pools"]
    assert fields_of(doc) == ["pools"]


def test_validate_config_agrees_with_parse_config() -> None:
    doc = small_doc(rules=[{"name": "r", "stages": [{"pools": ["ghost"]}], "sla": "nope"}])
    body = json.dumps(doc).encode()
    with pytest.raises(InvalidInput) as info:
        parse_config(body)
    typed = msgspec.json.decode(body, type=RoutingConfig)
    assert validate_config(typed) == info.value.problems
    assert [p.field for p in info.value.problems] == ["rules[0].stages[0].pools[0]", "rules[0].sla"]


# --- properties -----------------------------------------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=12), children, max_size=5)
    ),
    max_leaves=30,
)


def _check_outcome(body: bytes) -> None:
    try:
        cfg = parse_config(body)
    except InvalidInput as exc:
        assert exc.problems
        assert all(isinstance(p.field, str) and p.message for p in exc.problems)
    except BadRequest:
        pass
    else:
        assert validate_config(cfg) == []


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_are_rejected_cleanly(body: bytes) -> None:
    _check_outcome(body)


@settings(max_examples=200, deadline=None)
@given(json_values)
def test_arbitrary_json_is_rejected_cleanly(value: object) -> None:
    _check_outcome(json.dumps(value).encode())


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["tiers", "channels", "skills", "pools", "rules", "defaults", "x"]),
        json_values,
    )
)
def test_config_shaped_json_is_rejected_cleanly(value: dict[str, object]) -> None:
    _check_outcome(json.dumps(value).encode())


_DEMO_DOC = demo_doc()
_DEMO_PATHS = json_paths(_DEMO_DOC)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(_DEMO_PATHS), json_values), min_size=1, max_size=3))
def test_mutated_demo_config_is_rejected_cleanly(
    mutations: list[tuple[tuple[str | int, ...], object]],
) -> None:
    # Damage a valid document deep inside, where the schema's nested branches are.
    doc = copy.deepcopy(_DEMO_DOC)
    for path, value in mutations:
        target: Any = doc
        try:
            for part in path[:-1]:
                target = target[part]
            target[path[-1]] = value
        except (KeyError, IndexError, TypeError):
            continue  # an earlier mutation replaced the parent
    _check_outcome(json.dumps(doc).encode())


def test_msgspec_errors_keep_their_location() -> None:
    # The fallback for a corner where the schema and the Structs disagree.
    from router.routing.schema_problems import msgspec_problem

    body = json.dumps(small_doc(tiers={"gold": {"x": 1}})).encode()
    with pytest.raises(msgspec.ValidationError) as info:
        msgspec.json.decode(body, type=RoutingConfig)
    assert msgspec_problem(info.value) == FieldProblem(
        "tiers[...]", "Object contains unknown field `x`"
    )
    with pytest.raises(msgspec.ValidationError) as info:
        msgspec.json.decode(b'{"tiers": {"a b": {}}}', type=RoutingConfig)
    assert msgspec_problem(info.value).field == "tiers"


# --- the workspace's timezone ---------------------------------------------------------


def test_the_timezone_is_an_iana_name_utc_by_default() -> None:
    assert parse_config(json.dumps(small_doc()).encode()).timezone == "UTC"
    assert parse_config(json.dumps(small_doc(timezone="Asia/Tokyo")).encode()).timezone == (
        "Asia/Tokyo"
    )
    for bad in ("Mars/Olympus", "../etc/passwd", "/etc/localtime"):
        (problem,) = problems_of(small_doc(timezone=bad))
        assert problem.field == "timezone" and "unknown IANA timezone" in problem.message
    assert fields_of(small_doc(timezone="")) == ["timezone"]
    assert fields_of(small_doc(timezone=9)) == ["timezone"]
    # with other problems, all of them at once
    assert sorted(fields_of(small_doc(timezone="Nowhere", skills="cards"))) == [
        "skills",
        "timezone",
    ]
