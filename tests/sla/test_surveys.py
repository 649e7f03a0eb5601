"""Survey ratings end to end, against a real Redis: the workspace names the
kinds it collects (CSAT 1..5, NPS 0..10), each kind's scale is enforced with a
422 naming the field, a contact holds one rating per kind (the same score again
is a retry, another 409), the contact record and the `contact.rated` event
carry the kind and score, and low scores run the policy's actions per kind."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import msgspec
import pytest
from redis.asyncio import Redis

from router.routing.validation import parse_config
from router.runtime.errors import InvalidInput
from router.store.keys import WsKeys
from tests.support.client import ADM, GW, SUP, act, add_agent, create, put_config, small_config

CALLBACK = {"do": "create_followup", "channel": "voice", "intent": "callback", "sla": "cb"}


def survey_config(surveys: dict[str, Any] | None = None, **low: Any) -> dict[str, Any]:
    """small_config with policy `std` (low ratings call back and notify) for every contact."""
    cfg = small_config(sla="std")
    cfg["channels"]["voice"]["offer_timeout"] = 600
    if surveys is not None:
        cfg["surveys"] = surveys
    low = low or {"csat_below": 3, "nps_below": 7}
    actions = [CALLBACK, {"do": "notify", "to": ["team_supervisor"]}]
    cfg["sla_policies"] = {
        "std": {"answer": 600, "low_rating": {**low, "actions": actions}},
        "cb": {"resolve": 86_400},
    }
    return cfg


async def served(api: Any, ws: str, cid: str, agent: str = "a1") -> None:
    await create(api, ws, cid)
    assert (await act(api, ws, cid, "accept", agent_id=agent)).status == 200
    assert (await act(api, ws, cid, "complete", agent_id=agent)).status == 200


async def rate(api: Any, ws: str, cid: str, **body: Any) -> tuple[int, dict[str, Any]]:
    r = await api.post(f"/v1/workspaces/{ws}/contacts/{cid}/rating", json=body, headers=GW)
    return r.status, await r.json()


def config_problems(doc: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(InvalidInput) as info:
        parse_config(json.dumps(doc).encode())
    return {p.field: p.message for p in info.value.problems}


# --- config ---------------------------------------------------------------------------


def test_surveys_default_to_csat_and_take_both_kinds() -> None:
    assert parse_config(json.dumps(small_config()).encode()).surveys.kinds == ("csat",)
    cfg = parse_config(json.dumps(survey_config({"kinds": ["nps", "csat"]})).encode())
    assert cfg.surveys.kinds == ("nps", "csat") and cfg.surveys.default_kind == "nps"
    cfg = parse_config(
        json.dumps(survey_config({"kinds": ["csat", "nps"], "default": "nps"})).encode()
    )
    assert cfg.surveys.default_kind == "nps"


def test_survey_config_problems_name_their_fields() -> None:
    bad = survey_config({"kinds": ["csat", "ces"]}, csat_below=3)
    assert list(config_problems(bad)) == ["surveys.kinds[1]"]
    assert "surveys.kinds" in config_problems(survey_config({"kinds": []}))
    twice = config_problems(survey_config({"kinds": ["nps", "nps"]}, nps_below=7))
    assert twice == {"surveys.kinds[1]": "'nps' is listed twice"}
    stray = config_problems(survey_config({"kinds": ["csat"], "default": "nps"}, csat_below=3))
    assert stray == {"surveys.default": "'nps' is not among surveys.kinds"}
    # a threshold for a kind the workspace does not collect could never fire
    unused = config_problems(survey_config({"kinds": ["csat"]}, csat_below=3, nps_below=7))
    assert unused == {
        "sla_policies.std.low_rating.nps_below": (
            "the workspace does not collect nps: add it to surveys.kinds"
        )
    }
    # each threshold on its kind's scale
    out = config_problems(survey_config({"kinds": ["csat", "nps"]}, csat_below=6, nps_below=11))
    assert set(out) == {
        "sla_policies.std.low_rating.csat_below",
        "sla_policies.std.low_rating.nps_below",
    }
    assert "maximum of 5" in out["sla_policies.std.low_rating.csat_below"]
    none = config_problems(survey_config(None, csat_below=None))
    assert none == {
        "sla_policies.std.low_rating": (
            "give csat_below and/or nps_below: the scores that count as low"
        )
    }


def test_the_old_single_threshold_is_refused_with_the_way_forward() -> None:
    out = config_problems(survey_config(None, below=3))
    assert list(out) == ["sla_policies.std.low_rating.below"]
    assert "csat_below" in out["sla_policies.std.low_rating.below"]
    assert "nps_below" in out["sla_policies.std.low_rating.below"]


async def test_survey_config_problem_over_http(api: Any, ws: str) -> None:
    r = await api.put(
        f"/v1/workspaces/{ws}", json=survey_config({"kinds": ["csat", "ces"]}), headers=ADM
    )
    assert r.status == 422 and r.content_type == "application/problem+json"
    assert (await r.json())["field"] == "surveys.kinds[1]"
    r = await api.get(f"/v1/workspaces/{ws}", headers=ADM)
    assert r.status == 404  # nothing stored


# --- ratings --------------------------------------------------------------------------


async def test_each_kind_has_its_scale_and_must_be_collected(api: Any, ws: str) -> None:
    await put_config(api, ws, survey_config(csat_below=3))  # csat only (the default)
    await add_agent(api, ws, "a1", {"cards": 5})
    await served(api, ws, "c1")
    for body, field in (
        ({"kind": "csat", "score": 0}, "score"),
        ({"kind": "csat", "score": 6}, "score"),
        ({"score": 6}, "score"),  # no kind: the default, csat
        ({"kind": "nps", "score": 9}, "kind"),  # not collected here
        ({"kind": "nps", "score": 11}, "score"),  # off every scale: refused at the edge
        ({"kind": "ces", "score": 3}, "kind"),
        ({"kind": "csat", "score": 4.5}, "score"),
        ({"kind": "csat"}, "score"),
    ):
        status, problem = await rate(api, ws, "c1", **body)
        assert (status, problem.get("field")) == (422, field), (body, problem)
    status, problem = await rate(api, ws, "c1", kind="csat", score=6)
    assert problem["detail"] == "score: a csat score is 1 to 5"
    status, problem = await rate(api, ws, "c1", kind="nps", score=9)
    assert problem["detail"] == "kind: this workspace does not collect nps; it collects csat"
    # nothing was stored by the refusals
    c = await api.get(f"/v1/workspaces/{ws}/contacts/c1", headers=SUP)
    assert not [e for e in (await c.json())["timeline"] if e["type"] == "contact.rated"]
    # the low score last: its follow-up call takes a1, who then has no room for
    # another contact
    for score in (5, 1):
        await served(api, ws, f"ok{score}")
        assert (await rate(api, ws, f"ok{score}", kind="csat", score=score))[0] == 200
        c = await api.get(f"/v1/workspaces/{ws}/contacts/ok{score}", headers=SUP)
        rated = [e for e in (await c.json())["timeline"] if e["type"] == "contact.rated"]
        assert [(e["kind"], e["score"]) for e in rated] == [("csat", score)]
    # the config as read back names the kinds in force
    r = await api.get(f"/v1/workspaces/{ws}", headers=ADM)
    assert (await r.json())["config"]["surveys"] == {"kinds": ["csat"], "default": None}


async def test_one_rating_per_kind_retries_and_conflicts(api: Any, ws: str, redis_url: str) -> None:
    await put_config(api, ws, survey_config({"kinds": ["csat", "nps"]}))
    await add_agent(api, ws, "a1", {"cards": 5})
    await served(api, ws, "c1")
    await create(api, ws, "early")
    status, problem = await rate(api, ws, "early", kind="csat", score=5)
    assert status == 409 and problem["state"] == "offered"  # not served yet
    assert (await rate(api, ws, "c1", kind="csat", score=4))[0] == 200
    assert (await rate(api, ws, "c1", kind="nps", score=0))[0] == 200  # 0 is on NPS's scale
    assert (await rate(api, ws, "c1", kind="csat", score=4))[0] == 200  # a retry
    assert (await rate(api, ws, "c1", score=4))[0] == 200  # the same, without kind
    assert (await rate(api, ws, "c1", kind="nps", score=0))[0] == 200
    status, problem = await rate(api, ws, "c1", kind="csat", score=5)
    assert status == 409 and problem["detail"] == "cannot rate: csat already rated 4"
    assert problem["state"] == "completed"
    assert (await rate(api, ws, "c1", kind="nps", score=10))[0] == 409
    # a gateway hears 403 for a contact not its own, whether or not it exists
    assert (await rate(api, ws, "nobody", kind="csat", score=3))[0] == 403
    client = Redis.from_url(redis_url, decode_responses=True)
    try:
        record = await client.hgetall(WsKeys(ws).contact("c1"))
        entries = await client.xrange(WsKeys(ws).events, "-", "+")
    finally:
        await client.aclose()
    assert record["rating:csat"] == "4" and record["rating:nps"] == "0"
    assert "rating" not in record  # the single rating of old is gone
    rated = [e for _, f in entries if (e := msgspec.json.decode(f["e"]))["type"] == "contact.rated"]
    assert [(e["kind"], e["score"]) for e in rated] == [("csat", 4), ("nps", 0)]
    assert all(e["contact"] == "c1" and e["agent"] == "a1" and e["pool"] == "cards" for e in rated)
    assert [e.get("low", False) for e in rated] == [False, True]  # nps 0 < 7


async def test_default_kind_reads_old_bodies(api: Any, ws: str) -> None:
    await put_config(api, ws, survey_config({"kinds": ["csat", "nps"], "default": "nps"}))
    await add_agent(api, ws, "a1", {"cards": 5})
    await served(api, ws, "c1")
    assert (await rate(api, ws, "c1", score=9))[0] == 200  # nps: 9 is on its scale
    assert (await rate(api, ws, "c1", kind="nps", score=9))[0] == 200  # the same rating
    assert (await rate(api, ws, "c1", kind="csat", score=9))[0] == 422


# --- low ratings, per kind --------------------------------------------------------------


async def stream(redis_url: str, ws: str) -> list[dict[str, Any]]:
    client = Redis.from_url(redis_url, decode_responses=True)
    try:
        entries = await client.xrange(WsKeys(ws).events, "-", "+")
    finally:
        await client.aclose()
    return [msgspec.json.decode(f["e"]) for _, f in entries]


async def test_low_scores_run_the_actions_of_their_kind(api: Any, ws: str, redis_url: str) -> None:
    await put_config(api, ws, survey_config({"kinds": ["csat", "nps"]}))
    await add_agent(api, ws, "a1", {"cards": 5}, supervisor="sup-7")
    answers = {
        # contact: answers, and which of them are low (csat < 3, nps < 7)
        "csat-low": [("csat", 2)],
        "csat-edge": [("csat", 3)],
        "nps-low": [("nps", 6)],
        "nps-edge": [("nps", 7)],
        "both-low": [("csat", 1), ("nps", 0)],
        "content": [("csat", 5), ("nps", 10)],
    }
    for cid in answers:  # all served before the first call back takes the agent
        await served(api, ws, cid)
    for cid, given in answers.items():
        for kind, score in given:
            assert (await rate(api, ws, cid, kind=kind, score=score))[0] == 200
    want = {"csat-low", "nps-low", "both-low"}
    followups: list[dict[str, Any]] = []
    for _ in range(100):
        events = await stream(redis_url, ws)
        followups = [e for e in events if e.get("actor") == "system:followup"]
        if len([e for e in followups if e["type"] == "contact.created"]) >= len(want):
            break
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.3)  # and no more, though timers poll on
    events = await stream(redis_url, ws)
    rated = {(e["contact"], e["kind"]): e for e in events if e["type"] == "contact.rated"}
    low = {key for key, e in rated.items() if e.get("low")}
    assert low == {
        ("csat-low", "csat"),
        ("nps-low", "nps"),
        ("both-low", "csat"),
        ("both-low", "nps"),
    }
    for key in low:
        assert rated[key]["notify"] == ["person:sup-7"] and rated[key]["followups"] == 1
    created = [
        e for e in events if e["type"] == "contact.created" and e["actor"] == "system:followup"
    ]
    # one call back per contact rated low, however many of its surveys were low
    origins = []
    for e in created:
        r = await api.get(f"/v1/workspaces/{ws}/contacts/{e['contact']}", headers=SUP)
        fu = await r.json()
        assert fu["intent"] == "callback" and fu["sla"] == "cb"
        origins.append(fu["customer_id"].removeprefix("cu-"))
    assert sorted(origins) == sorted(want)


async def test_a_policy_may_watch_one_kind_only(api: Any, ws: str, redis_url: str) -> None:
    await put_config(api, ws, survey_config({"kinds": ["csat", "nps"]}, nps_below=7))
    await add_agent(api, ws, "a1", {"cards": 5})
    await served(api, ws, "c1")
    assert (await rate(api, ws, "c1", kind="csat", score=1))[0] == 200
    assert (await rate(api, ws, "c1", kind="nps", score=8))[0] == 200
    events = [e for e in await stream(redis_url, ws) if e["type"] == "contact.rated"]
    assert [e.get("low", False) for e in events] == [False, False]
