"""Live CSAT and NPS from the ratings a test sends: the Prometheus counters
(answers by workspace, pool, kind and score, and the sum of scores) give the
CSAT share, the mean and the NPS as PromQL would compute them, and the
wallboard's tiles and totals show the same over its window."""

from __future__ import annotations

import asyncio
import shutil
from typing import Any

import msgspec
from prometheus_client.parser import text_string_to_metric_families

from tests.support.client import GW, SUP, act, add_agent, create, put_config, small_config

PROMTOOL = shutil.which("promtool")
# pool -> answers given: (kind, score) per served contact
ANSWERS = {
    "cards": [
        [("csat", 5), ("nps", 10)],
        [("csat", 4), ("nps", 10)],
        [("csat", 4), ("nps", 9)],
        [("csat", 2), ("nps", 7)],
        [("csat", 1), ("nps", 3)],
    ],
    "loans": [[("csat", 3)]],
}


def config() -> dict[str, Any]:
    cfg = small_config()
    cfg["rules"] = [
        {"name": "loans", "when": {"intent": ["loan"]}, "stages": [{"pools": ["loans"]}]}
    ]
    cfg["surveys"] = {"kinds": ["csat", "nps"]}
    return cfg


async def rate_the_day(api: Any, ws: str) -> None:
    await put_config(api, ws, config())
    await add_agent(api, ws, "a1", {"cards": 5})
    await add_agent(api, ws, "a2", {"loans": 5})
    for pool, contacts in ANSWERS.items():
        agent = "a1" if pool == "cards" else "a2"
        for i, answers in enumerate(contacts):
            cid = f"{pool}-{i}"
            await create(api, ws, cid, intent="loan" if pool == "loans" else "card")
            assert (await act(api, ws, cid, "accept", agent_id=agent)).status == 200
            assert (await act(api, ws, cid, "complete", agent_id=agent)).status == 200
            for kind, score in answers:
                r = await api.post(
                    f"/v1/workspaces/{ws}/contacts/{cid}/rating",
                    json={"kind": kind, "score": score},
                    headers=GW,
                )
                assert r.status == 200, await r.text()
                # a retry is not counted twice
                r = await api.post(
                    f"/v1/workspaces/{ws}/contacts/{cid}/rating",
                    json={"kind": kind, "score": score},
                    headers=GW,
                )
                assert r.status == 200


def counters(text: str, ws: str) -> dict[tuple[str, str, str], dict[str, float]]:
    """(pool, kind, metric) -> score (or "" for the sum) -> value, of workspace `ws`."""
    out: dict[tuple[str, str, str], dict[str, float]] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name.startswith("router_survey_") and s.labels["workspace"] == ws:
                key = (s.labels["pool"], s.labels["kind"], s.name)
                out.setdefault(key, {})[s.labels.get("score", "")] = s.value
    return out


async def test_counters_give_csat_and_nps(api: Any, ws: str) -> None:
    await rate_the_day(api, ws)
    text = await (await api.get("/metrics")).text()
    assert PROMTOOL, "promtool is missing: scripts/bootstrap installs it (Debian prometheus)"
    proc = await asyncio.create_subprocess_exec(
        PROMTOOL, "check", "metrics", stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await proc.communicate(text.encode())
    assert proc.returncode == 0, out.decode()
    m = counters(text, ws)
    answers = "router_survey_responses_total"
    csat = m[("cards", "csat", answers)]
    # every score of a collected kind is a series from zero on
    assert csat == {"1": 1, "2": 1, "3": 0, "4": 2, "5": 1}
    nps = m[("cards", "nps", answers)]
    assert set(nps) == {str(s) for s in range(11)} and sum(nps.values()) == 5
    # what the recording rules compute (deploy/prometheus/router-alerts.yml)
    satisfied = (csat["4"] + csat["5"]) / sum(csat.values())
    assert satisfied == 0.6
    assert m[("cards", "csat", "router_survey_scores_total")][""] / sum(csat.values()) == 3.2
    promoters = nps["9"] + nps["10"]
    detractors = sum(nps[str(s)] for s in range(7))
    assert 100 * (promoters - detractors) / sum(nps.values()) == 40
    loans = m[("loans", "csat", answers)]
    assert loans["3"] == 1 and sum(loans.values()) == 1
    assert sum(m[("loans", "nps", answers)].values()) == 0  # collected, not answered yet


async def first_board(api: Any, ws: str) -> dict[str, Any]:
    r = await api.get(f"/v1/workspaces/{ws}/wallboard/stream", headers=SUP)
    assert r.status == 200
    try:
        frame = await asyncio.wait_for(r.content.readuntil(b"\n\n"), 5)
    finally:
        r.close()
    data = frame.split(b"data: ", 1)[1].strip()
    return msgspec.json.decode(data)  # type: ignore[no-any-return]


async def test_wallboard_shows_csat_and_nps_of_its_window(api: Any, ws: str) -> None:
    await rate_the_day(api, ws)
    board = await first_board(api, ws)
    assert board["survey_window"] == "15m"
    tiles = {t["pool"]: t for t in board["tiles"]}
    assert tiles["cards"]["csat"] == {"responses": 5, "mean": 3.2, "satisfied": 0.6}
    assert tiles["cards"]["nps"] == {
        "responses": 5, "promoters": 3, "passives": 1, "detractors": 1, "score": 40.0,
    }  # fmt: skip
    assert tiles["loans"]["csat"] == {"responses": 1, "mean": 3.0, "satisfied": 0.0}
    assert tiles["loans"]["nps"] == {
        "responses": 0, "promoters": 0, "passives": 0, "detractors": 0, "score": None,
    }  # fmt: skip
    # the workspace as a whole: every pool's answers
    assert board["csat"]["responses"] == 6 and board["csat"]["satisfied"] == 0.5
    assert abs(board["csat"]["mean"] - 19 / 6) < 1e-9
    assert board["nps"]["score"] == 40.0 and board["nps"]["responses"] == 5


async def test_a_kind_not_collected_is_not_on_the_board(api: Any, ws: str) -> None:
    await put_config(api, ws, small_config())  # csat only
    board = await first_board(api, ws)
    assert board["csat"] == {"responses": 0, "mean": None, "satisfied": None}
    assert board["nps"] is None and all(t["nps"] is None for t in board["tiles"])
