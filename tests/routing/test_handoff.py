"""Bot hand-offs through the API against a real Redis: rules route by the
bot's intent, confidence and collected fields; the summary and fields are
personal data (full only for the agent holding the contact, never in
events); metrics count hand-offs by bot and intent, with bounded labels, and
the share whose intent the agent changed."""

from __future__ import annotations

import json
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from tests.support.client import (
    ADM,
    GW,
    SUP,
    act,
    add_agent,
    agent_headers,
    create,
    put_config,
    small_config,
)

SUMMARY = "Customer Jane Roe lost her card in Lisbon yesterday"
FIELDS = {"last4": "4242", "reason": "lost"}


def config() -> dict[str, Any]:
    cfg = small_config()
    cfg["skills"] += ["fraud", "general"]
    for name in ("fraud", "general"):
        cfg["pools"][name] = {"skills": [{"skill": name}], "channels": ["voice", "chat"]}
    cfg["defaults"]["stages"] = [{"pools": ["general"]}]
    cfg["rules"] = [
        {
            "name": "bot-stolen",
            "when": {"handoff": {"fields": {"reason": ["stolen"]}}},
            "stages": [{"pools": ["fraud"]}],
        },
        {
            "name": "bot-sure",
            "when": {
                "handoff": {"bot": ["helpbot"], "intent": ["card_block"], "min_confidence": 0.8}
            },
            "stages": [{"pools": ["cards"]}],
        },
        {
            "name": "bot-unsure",
            "when": {"handoff": {"intent": ["card_block"], "max_confidence": 0.8}},
            "stages": [{"pools": ["loans"]}],
        },
    ]
    return cfg


def handoff(**over: Any) -> dict[str, Any]:
    block = {"bot": "helpbot", "intent": "card_block", "confidence": 0.93}
    return block | over


async def get(api: Any, ws: str, cid: str, headers: dict[str, str]) -> Any:
    return await api.get(f"/v1/workspaces/{ws}/contacts/{cid}", headers=headers)


async def test_rules_route_by_intent_confidence_and_fields(api: Any, ws: str) -> None:
    await put_config(api, ws, config())
    cases = {
        "sure": (handoff(), ["cards"], ["bot-sure"]),
        "unsure": (handoff(confidence=0.41), ["loans"], ["bot-unsure"]),
        "stolen": (handoff(fields={"reason": "stolen"}), ["fraud"], ["bot-stolen"]),
        # a bound asks how sure the bot was: no confidence fails it
        "silent": (handoff(confidence=None), ["general"], []),
        "other-bot": (handoff(bot="faqbot"), ["general"], []),
        "no-handoff": (None, ["general"], []),
    }
    for cid, (block, pools, rules) in cases.items():
        extra = {"handoff": {k: v for k, v in block.items() if v is not None}} if block else {}
        c = await create(api, ws, cid, **extra)
        assert (c["pools"], c["rules"]) == (pools, rules), cid
    # an update re-runs the rules with the hand-off it came with: still routed by it
    r = await api.patch(f"/v1/workspaces/{ws}/contacts/unsure", json={"tier": "vip"}, headers=SUP)
    assert r.status == 200, await r.text()
    assert (await r.json())["pools"] == ["loans"]


async def test_bad_handoff_input_names_the_field(api: Any, ws: str) -> None:
    await put_config(api, ws, config())
    body = {"id": "c1", "channel": "voice", "customer": {"id": "cu1"}}
    r = await api.post(
        f"/v1/workspaces/{ws}/contacts", json=body | {"handoff": handoff(confidence=1.5)},
        headers=GW,
    )  # fmt: skip
    assert r.status == 422 and (await r.json())["field"] == "handoff.confidence"
    r = await api.post(
        f"/v1/workspaces/{ws}/contacts", json=body | {"handoff": handoff(transcript_text="hi")},
        headers=GW,
    )  # fmt: skip
    assert r.status == 422 and "transcript_text" in await r.text()
    bad = config()
    bad["rules"][1]["when"]["handoff"]["max_confidence"] = 0.5  # below its min 0.8
    r = await api.put(f"/v1/workspaces/{ws}", json=bad, headers=ADM)
    assert r.status == 422
    fields = [e["field"] for e in (await r.json()).get("errors", [])] or [(await r.json())["field"]]
    assert "rules[1].when.handoff.min_confidence" in fields


async def test_summary_and_fields_only_for_the_holding_agent(api: Any, ws: str) -> None:
    await put_config(api, ws, config())
    await add_agent(api, ws, "a1", {"cards": 5})
    await add_agent(api, ws, "a2", {"loans": 5})
    block = handoff(summary=SUMMARY, fields=FIELDS, transcript="https://bot.example/t/81")
    created = await create(api, ws, "c1", handoff=block)
    assert created["agent"] == "a1"  # offered at once
    seen = created["handoff"]  # the gateway's answer
    assert seen["masked"] is True and seen["summary"] == "[redacted]"
    assert seen["fields"] == {"last4": "***", "reason": "***"}
    assert (seen["bot"], seen["intent"], seen["confidence"]) == ("helpbot", "card_block", 0.93)
    assert seen["transcript"] == "https://bot.example/t/81"
    for who in (GW, SUP):
        r = await get(api, ws, "c1", who)
        assert (await r.json())["handoff"]["summary"] == "[redacted]"
    r = await get(api, ws, "c1", agent_headers("a2"))  # another agent: shown nothing personal
    assert r.status in (403, 404) or (await r.json())["handoff"]["fields"]["last4"] == "***"
    assert SUMMARY not in await r.text() and "4242" not in await r.text()
    # the offer and the contact itself, in full, to the agent holding it
    r = await api.get(f"/v1/workspaces/{ws}/agents/a1/offers", headers=agent_headers("a1"))
    offer = (await r.json())["offers"][0]["handoff"]
    assert offer["summary"] == SUMMARY and offer["fields"] == FIELDS and not offer["masked"]
    assert (await act(api, ws, "c1", "accept", agent_id="a1")).status == 200
    held = (await (await get(api, ws, "c1", agent_headers("a1"))).json())["handoff"]
    assert held["summary"] == SUMMARY and held["fields"] == FIELDS
    assert (await (await get(api, ws, "c1", SUP)).json())["handoff"]["fields"]["last4"] == "***"
    # events carry the routing facts, never the summary or the collected values
    r = await api.get(f"/v1/workspaces/{ws}/events?limit=1000", headers=SUP)
    events = (await r.json())["events"]
    dump = json.dumps(events)
    assert "Lisbon" not in dump and "Jane" not in dump and "4242" not in dump
    assert "last4" not in dump and "bot.example" not in dump
    explain = next(e for e in events if e["type"] == "contact.created")["data"]["explain"]
    assert explain["handoff"] == {"bot": "helpbot", "intent": "card_block", "confidence": 0.93}


def handoff_series(text: str, ws: str) -> dict[tuple[str, ...], float]:
    out: dict[tuple[str, ...], float] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name.startswith("router_handoff") and s.labels["workspace"] == ws:
                labels = (s.labels["bot"], s.labels["intent"], s.labels.get("changed", ""))
                out[(s.name, *labels)] = s.value
    return out


async def test_metrics_count_handoffs_and_changed_intents(api: Any, ws: str) -> None:
    await put_config(api, ws, config())
    await add_agent(api, ws, "a1", {"cards": 5, "general": 5})
    served = [  # (contact, hand-off, the agent's intent when completing)
        ("k1", handoff(), None),
        ("k2", handoff(), "card_block"),
        ("k3", handoff(), "loan_question"),  # the bot was wrong
        ("k4", handoff(intent="weird_intent"), None),
        ("k5", handoff(bot="randombot"), "card_block"),
    ]
    for cid, block, intent in served:
        c = await create(api, ws, cid, handoff=block)
        assert c["agent"] == "a1", cid
        assert (await act(api, ws, cid, "accept", agent_id="a1")).status == 200
        body = {"agent_id": "a1"} | ({"intent": intent} if intent else {})
        r = await act(api, ws, cid, "complete", **body)
        assert r.status == 200, await r.text()
    await create(api, ws, "k6", handoff=handoff())  # handed over, not served yet
    k3 = await (await get(api, ws, "k3", SUP)).json()
    assert k3["handoff"]["agent_intent"] == "loan_question" and k3["state"] == "completed"
    r = await api.get(f"/v1/workspaces/{ws}/events?limit=1000", headers=SUP)
    disposition = [e["data"] for e in (await r.json())["events"]
                   if e["type"] == "contact.disposition"]  # fmt: skip
    assert [(d["intent"], d["changed"]) for d in disposition] == [
        ("card_block", False), ("loan_question", True), ("card_block", False)
    ]  # fmt: skip
    text = await (await api.get("/metrics")).text()
    m = handoff_series(text, ws)
    assert m[("router_handoffs_total", "helpbot", "card_block", "")] == 4
    # intents and bots no rule names are `other`: client text never makes a series
    assert m[("router_handoffs_total", "helpbot", "other", "")] == 1
    assert m[("router_handoffs_total", "other", "card_block", "")] == 1
    assert "weird_intent" not in text and "randombot" not in text
    outcomes = "router_handoff_outcomes_total"
    changed = m[(outcomes, "helpbot", "card_block", "true")]
    kept = m[(outcomes, "helpbot", "card_block", "false")]
    assert (changed, kept) == (1, 2)  # k3 changed; k1 (no intent given) and k2 kept it
    # the recording rule's share (deploy/prometheus/router-alerts.yml): 1 of the 5 served
    total = sum(v for k, v in m.items() if k[0] == outcomes)
    assert sum(v for k, v in m.items() if k[0] == outcomes and k[3] == "true") / total == 0.2
