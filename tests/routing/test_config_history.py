"""Config history through the API on a real Redis: every accepted version kept
with its actor and time, listed newest first in pages, read back whole (secrets
redacted), compared as a JSON Patch, and rolled back as a new version that
routes and re-plans SLA clocks like any config change."""

from __future__ import annotations

import asyncio
import base64
import copy
import json
import os
import uuid
from typing import Any

import jsonpatch
import pytest
from redis.asyncio import Redis

from router.api.app import create_app
from router.cli.main import main
from router.runtime.settings import Settings, demo_token_spec, token_hash
from router.security.audit.records import Source
from router.store.keys import WsKeys
from tests.support.client import (
    ADM,
    AG,
    GW,
    JWT_SECRET,
    SUP,
    add_agent,
    create,
    put_config,
    small_config,
    supervisor_headers,
)

OPS = {"Authorization": "Bearer ops-token"}  # a second admin: another actor
REDACTED = "whsec_<redacted>"


@pytest.fixture
def settings(redis_url: str) -> Settings:
    return Settings.from_env(
        {
            "ROUTER_TOKENS": demo_token_spec() + ",ops:admin:" + token_hash("ops-token"),
            "ROUTER_METRICS_GROUP": uuid.uuid4().hex,
            "ROUTER_JWT_SECRET": JWT_SECRET,
        },
        redis_url=redis_url,
        timer_poll=0.01,
    )


def secret() -> str:
    return "whsec_" + base64.b64encode(os.urandom(32)).decode()


async def get(api: Any, path: str, headers: dict[str, str] = SUP, status: int = 200) -> Any:
    r = await api.get(path, headers=headers)
    assert r.status == status, await r.text()
    return await r.json()


async def put_as(api: Any, ws: str, cfg: dict[str, Any], headers: dict[str, str]) -> Any:
    r = await api.put(f"/v1/workspaces/{ws}", json=cfg, headers=headers)
    assert r.status == 200, await r.text()
    return await r.json()


async def rollback(api: Any, ws: str, version: int, status: int = 200, **headers: str) -> Any:
    r = await api.post(
        f"/v1/workspaces/{ws}/config/rollback", json={"version": version}, headers=ADM | headers
    )
    assert r.status == status, await r.text()
    return await r.json()


async def test_versions_listed_newest_first_paged_and_read_back_whole(api: Any, ws: str) -> None:
    docs = [small_config() for _ in range(3)]
    docs[0]["description"] = "first"
    docs[1]["description"] = "slower re-offers"
    docs[1]["defaults"]["reoffer_after"] = 90
    docs[1]["webhooks"] = {
        "crm": {"url": "http://127.0.0.1:9/hook", "events": ["sla.breached"], "secret": secret()}
    }
    docs[2]["description"] = "back to fast re-offers"
    puts = [
        await put_as(api, ws, docs[0], ADM),
        await put_as(api, ws, docs[1], OPS),
        await put_as(api, ws, docs[2], ADM),
    ]
    current = await get(api, f"/v1/workspaces/{ws}")

    base = f"/v1/workspaces/{ws}/config/versions"
    page = await get(api, base)
    assert [v["version"] for v in page["versions"]] == [3, 2, 1] and page["next"] is None
    assert [v["actor"] for v in page["versions"]] == ["admin:admin", "admin:ops", "admin:admin"]
    assert [v["description"] for v in page["versions"]] == [
        "back to fast re-offers",
        "slower re-offers",
        "first",
    ]
    for listed, put in zip(page["versions"], reversed(puts), strict=True):
        assert listed["updated_at"] == put["updated_at"]  # the time of the write
        assert listed["rollback_of"] is None
    times = [v["updated_at"] for v in page["versions"]]
    assert times == sorted(times, reverse=True)

    first = await get(api, base + "?limit=2")
    assert [v["version"] for v in first["versions"]] == [3, 2] and first["next"] == 2
    rest = await get(api, base + f"?limit=2&before={first['next']}")
    assert [v["version"] for v in rest["versions"]] == [1] and rest["next"] is None

    # whole, as GET config showed it while current; the secret redacted
    assert await get(api, base + "/3") == {**current, "rollback_of": None}
    v2 = await get(api, base + "/2")
    assert v2["actor"] == "admin:ops" and v2["config"]["defaults"]["reoffer_after"] == 90
    assert v2["config"]["webhooks"]["crm"]["secret"] == REDACTED
    assert docs[1]["webhooks"]["crm"]["secret"] not in str(v2)
    expected = copy.deepcopy(puts[1])  # what PUT answered, with the secret redacted
    expected["config"]["webhooks"]["crm"]["secret"] = REDACTED
    assert v2 == {**expected, "rollback_of": None}

    await get(api, base + "/4", status=404)
    missing = await get(api, base + "/nope", status=404)
    assert missing["field"] == "version"
    bad = await get(api, base + "?limit=0", status=422)
    assert bad["field"] == "limit"
    assert (await get(api, base + "?before=x", status=422))["field"] == "before"


async def test_diff_lists_exactly_the_changed_paths_without_secrets(api: Any, ws: str) -> None:
    old_secret, new_secret = secret(), secret()
    a = small_config()
    a["rules"] = [{"name": "loans", "when": {"intent": ["loan"]}, "stages": [{"pools": ["loans"]}]}]
    a["webhooks"] = {
        "crm": {"url": "http://127.0.0.1:9/hook", "events": ["sla.breached"], "secret": old_secret}
    }
    b = copy.deepcopy(a)
    b["description"] = "loans go to cards"
    b["defaults"]["reoffer_after"] = 5
    b["rules"][0]["stages"] = [{"pools": ["cards"]}]
    b["pools"]["vip"] = {"skills": [{"skill": "cards", "min": 8}], "channels": ["voice"]}
    b["webhooks"]["crm"]["secret"] = new_secret
    await put_config(api, ws, a)
    await put_config(api, ws, b)

    diff = await get(api, f"/v1/workspaces/{ws}/config/diff?from=1&to=2")
    assert (diff["from"]["version"], diff["to"]["version"]) == (1, 2)
    assert diff["to"]["description"] == "loans go to cards" and diff["from"]["description"] == ""
    assert diff["to"]["actor"] == "admin:admin"
    ops = {(op["op"], op["path"]) for op in diff["patch"]}
    assert ops == {
        ("replace", "/description"),
        ("replace", "/defaults/reoffer_after"),
        ("replace", "/rules/0/stages/0/pools/0"),
        ("add", "/pools/vip"),
        ("replace", "/webhooks/crm/secret"),  # changed, shown redacted
    }
    assert old_secret not in str(diff) and new_secret not in str(diff)
    by_path = {op["path"]: op for op in diff["patch"]}
    assert by_path["/defaults/reoffer_after"]["value"] == 5
    assert by_path["/webhooks/crm/secret"]["value"] == REDACTED
    # the patch turns one version into the other (as GET shows them, redacted)
    v1 = await get(api, f"/v1/workspaces/{ws}/config/versions/1")
    v2 = await get(api, f"/v1/workspaces/{ws}/config/versions/2")
    assert jsonpatch.apply_patch(v1["config"], diff["patch"]) == v2["config"]

    same = await get(api, f"/v1/workspaces/{ws}/config/diff?from=2&to=2")
    assert same["patch"] == []
    back = await get(api, f"/v1/workspaces/{ws}/config/diff?from=2&to=1")
    assert ("remove", "/pools/vip") in {(op["op"], op["path"]) for op in back["patch"]}
    unknown = await get(api, f"/v1/workspaces/{ws}/config/diff?from=1&to=9", status=404)
    assert unknown["field"] == "to"
    assert (await get(api, f"/v1/workspaces/{ws}/config/diff?to=1", status=422))["field"] == "from"


def routed(cfg: dict[str, Any], pool: str, answer: float) -> dict[str, Any]:
    out = copy.deepcopy(cfg)
    out["rules"] = [{"name": "cards", "when": {"intent": ["card"]}, "stages": [{"pools": [pool]}]}]
    out["sla_policies"] = {"std": {"answer": answer}}
    return out


async def test_rollback_restores_routing_and_replans_running_clocks(
    api: Any, ws: str, redis_url: str
) -> None:
    base = small_config(sla="std")
    base["channels"]["chat"]["offer_timeout"] = 600
    v1 = routed(base, "cards", 3600)
    v1["webhooks"] = {
        "crm": {"url": "http://127.0.0.1:9/hook", "events": ["sla.breached"], "secret": secret()}
    }
    await put_config(api, ws, v1)
    await add_agent(api, ws, "a1", {"cards": 5})  # nobody serves loans
    c1 = await create(api, ws, "c1", channel="chat", intent="card")
    assert c1["pools"] == ["cards"] and c1["agent"] == "a1"

    await put_config(api, ws, routed(base, "loans", 1800))
    c2 = await create(api, ws, "c2", channel="chat", intent="card")
    assert c2["pools"] == ["loans"] and c2["state"] == "queued"
    before = (await get(api, f"/v1/workspaces/{ws}/contacts/c2"))["sla_clocks"]["answer"]
    assert abs(before["due_at"] - before["started_at"] - 1800) < 0.05

    got = await rollback(api, ws, 1)
    assert got["version"] == 3 and got["rollback_of"] == 1 and got["actor"] == "admin:admin"
    assert got["config"]["webhooks"]["crm"]["secret"] == REDACTED  # not echoed back
    current = await get(api, f"/v1/workspaces/{ws}")
    first = await get(api, f"/v1/workspaces/{ws}/config/versions/1")
    assert current["version"] == 3 and current["config"] == first["config"]
    # the webhook secret came back from the stored version, not the redacted text
    client = Redis.from_url(redis_url, decode_responses=True)
    try:
        doc = await client.hget(WsKeys(ws).config, "doc")
    finally:
        await client.aclose()
    assert v1["webhooks"]["crm"]["secret"] in doc and REDACTED not in doc

    c3 = await create(api, ws, "c3", channel="chat", intent="card")
    assert c3["pools"] == ["cards"] and c3["agent"] == "a1"  # routed as under v1 again
    c2 = await get(api, f"/v1/workspaces/{ws}/contacts/c2")
    clock = c2["sla_clocks"]["answer"]
    assert [e["type"] for e in c2["timeline"] if e["type"].startswith("sla.")] == ["sla.replanned"]
    assert clock["status"] == "active" and clock["started_at"] == before["started_at"]
    assert abs(clock["due_at"] - clock["started_at"] - 3600) < 0.05

    listed = (await get(api, f"/v1/workspaces/{ws}/config/versions"))["versions"]
    assert [(v["version"], v["rollback_of"]) for v in listed] == [(3, 1), (2, None), (1, None)]
    shown = await get(api, f"/v1/workspaces/{ws}/config/versions/3")
    assert shown["rollback_of"] == 1
    assert (await get(api, f"/v1/workspaces/{ws}/config/diff?from=1&to=3"))["patch"] == []


async def test_rollback_is_an_audited_event_and_honours_if_match(
    api: Any, ws: str, redis_url: str
) -> None:
    await put_config(api, ws, small_config())
    await put_config(api, ws, small_config(reoffer_after=5))
    stale = await rollback(api, ws, 1, status=409, **{"If-Match": '"1"'})
    assert stale["field"] == "If-Match"
    r = await api.post(
        f"/v1/workspaces/{ws}/config/rollback",
        json={"version": 1},
        headers={**OPS, "If-Match": '"2"'},
    )
    assert r.status == 200, await r.text()
    events = (await get(api, f"/v1/workspaces/{ws}/events?type=config.updated"))["events"]
    last = events[-1]["data"]
    assert last["version"] == 3 and last["previous"] == 2 and last["rollback_of"] == 1
    assert last["actor"] == "admin:ops"
    assert all("rollback_of" not in e["data"] for e in events[:-1])
    # sealed into the audit trail: who rolled back, to which version, from which
    source = Source.workspace(ws)
    client = Redis.from_url(redis_url, decode_responses=True)
    try:
        for _ in range(400):  # the app's sealer runs in the background
            sealed = [json.loads(f["r"]) for _, f in await client.xrange(source.sealed)]
            if any(r["what"].get("version") == 3 for r in sealed):
                break
            await asyncio.sleep(0.05)
    finally:
        await client.aclose()
    record = next(r for r in sealed if r["what"].get("version") == 3)
    assert record["who"] == "admin:ops" and record["what"]["type"] == "config.updated"
    assert record["why"] == {"previous": 2, "rollback_of": 1}
    listed = (await get(api, f"/v1/workspaces/{ws}/config/versions?limit=1"))["versions"]
    assert listed[0]["actor"] == "admin:ops" and listed[0]["rollback_of"] == 1


async def test_history_roles_and_unknown_versions(api: Any, ws: str) -> None:
    await put_config(api, ws, small_config())
    base = f"/v1/workspaces/{ws}/config"
    for headers in (GW, AG):
        for path in ("/versions", "/versions/1", "/diff?from=1&to=1"):
            assert (await api.get(base + path, headers=headers)).status == 403
    for headers in (GW, AG, SUP):
        r = await api.post(base + "/rollback", json={"version": 1}, headers=headers)
        assert r.status == 403
    elsewhere = supervisor_headers("s9", workspaces=["x"])
    assert (await api.get(base + "/versions", headers=elsewhere)).status == 403
    missing = await rollback(api, ws, 7, status=404)
    assert missing["field"] == "version"
    bad = await api.post(base + "/rollback", json={"version": 0}, headers=ADM)
    assert bad.status == 422 and (await bad.json())["field"] == "version"
    extra = await api.post(base + "/rollback", json={"version": 1, "x": 1}, headers=ADM)
    assert extra.status == 422 and (await extra.json())["field"] == "x"
    nobody = await api.get(f"/v1/workspaces/{ws}x/config/versions", headers=SUP)
    assert nobody.status == 404
    assert (await get(api, f"/v1/workspaces/{ws}"))["version"] == 1  # nothing was written


async def test_a_version_written_before_the_history_is_listed_then_kept(
    api: Any, ws: str, redis_url: str
) -> None:
    await put_config(api, ws, small_config(reoffer_after=7) | {"description": "old"})
    await put_config(api, ws, small_config(reoffer_after=8) | {"description": "older"})
    client = Redis.from_url(redis_url, decode_responses=True)
    try:
        # as a workspace written before versions were kept: no history at all
        await client.delete(WsKeys(ws).config_versions)
        base = f"/v1/workspaces/{ws}/config/versions"
        page = await get(api, base)
        assert [(v["version"], v["description"]) for v in page["versions"]] == [(2, "older")]
        assert page["next"] is None
        assert (await get(api, base + "/2"))["config"]["defaults"]["reoffer_after"] == 8
        await get(api, base + "/1", status=404)  # gone before history was kept
        assert not await client.exists(WsKeys(ws).config_versions)  # a read writes nothing

        await put_config(api, ws, small_config(reoffer_after=9))
        page = await get(api, base)
        assert [v["version"] for v in page["versions"]] == [3, 2] and page["next"] is None
        assert await client.hexists(WsKeys(ws).config_versions, "2:meta")
        back = await rollback(api, ws, 2)
        assert back["version"] == 4 and back["config"]["defaults"]["reoffer_after"] == 8
    finally:
        await client.aclose()


async def test_cli_lists_shows_diffs_and_rolls_back(
    api: Any, ws: str, capsys: pytest.CaptureFixture[str]
) -> None:
    await put_config(api, ws, small_config() | {"description": "first"})
    await put_config(api, ws, small_config(reoffer_after=5) | {"description": "faster"})
    url = str(api.make_url("/"))

    async def cli(*argv: str, token: str = "demo-admin") -> tuple[int, str, str]:
        # in a thread: the CLI blocks on HTTP while this loop serves it
        common = ["config", "--url", url, "--token", token, "--workspace", ws]
        code = await asyncio.to_thread(main, [*common, *argv])
        out, err = capsys.readouterr()
        return code, out, err

    code, out, _ = await cli("versions")
    lines = out.splitlines()
    assert code == 0 and [line.split()[0] for line in lines] == ["2", "1"]
    assert lines[0].endswith("admin:admin  faster") and lines[1].endswith("first")
    code, out, _ = await cli("diff", "1", "2")
    assert code == 0
    assert "  replace  /defaults/reoffer_after 5.0" in out.splitlines()
    code, out, _ = await cli("show", "1")
    assert code == 0 and json.loads(out)["config"]["description"] == "first"
    code, _, err = await cli("rollback", "1", token="demo-supervisor")
    assert code == 1 and "403" in err
    code, out, _ = await cli("rollback", "1", "--if-match", "2")
    assert code == 0 and out.strip() == "version 3 is version 1's config again"
    assert (await get(api, f"/v1/workspaces/{ws}"))["config"]["description"] == "first"
    code, out, _ = await cli("versions", "--limit", "1")
    assert out.splitlines() == [out.splitlines()[0], "(older: --before 3)"]
    assert "(rollback of 1)" in out
    code, _, err = await cli("show", "9")
    assert code == 1 and "404" in err and "version 9" in err


async def test_rollback_to_a_version_todays_checks_refuse_writes_nothing(
    api: Any, ws: str, redis_url: str
) -> None:
    await put_config(api, ws, small_config())
    await put_config(api, ws, small_config(reoffer_after=5))
    client = Redis.from_url(redis_url, decode_responses=True)
    try:
        # a stored version the checks of today refuse (as if they had grown stricter)
        keys = WsKeys(ws)
        doc = json.loads(await client.hget(keys.config_versions, "1"))
        doc["defaults"]["stages"] = [{"pools": ["gone"]}]
        await client.hset(keys.config_versions, "1", json.dumps(doc))
    finally:
        await client.aclose()
    refused = await rollback(api, ws, 1, status=422)
    assert refused["field"] == "version" and "defaults.stages" in refused["detail"]
    assert (await get(api, f"/v1/workspaces/{ws}"))["version"] == 2
    assert len((await get(api, f"/v1/workspaces/{ws}/config/versions"))["versions"]) == 2


KEPT = 4  # ROUTER_CONFIG_VERSIONS_KEPT for the bound's test


def _kept_settings(redis_url: str, kept: int) -> Settings:
    return Settings.from_env(
        {
            "ROUTER_TOKENS": demo_token_spec(),
            "ROUTER_METRICS_GROUP": uuid.uuid4().hex,
            "ROUTER_JWT_SECRET": JWT_SECRET,
            "ROUTER_CONFIG_VERSIONS_KEPT": str(kept),
        },
        redis_url=redis_url,
        timer_poll=0.01,
    )


async def _held(redis_url: str, ws: str) -> list[int]:
    """The versions the Redis history holds, each with its meta."""
    client = Redis.from_url(redis_url, decode_responses=True)
    try:
        fields = set(await client.hkeys(WsKeys(ws).config_versions))
    finally:
        await client.aclose()
    versions = sorted(int(f) for f in fields if f.isdigit())
    assert fields - {"floor"} == {str(v) for v in versions} | {f"{v}:meta" for v in versions}
    return versions


async def test_redis_keeps_the_latest_versions_only_the_older_are_404(
    aiohttp_client: Any, redis_url: str, ws: str
) -> None:
    api = await aiohttp_client(create_app(_kept_settings(redis_url, KEPT)))
    for n in range(1, KEPT + 4):
        await put_config(api, ws, small_config(reoffer_after=n) | {"description": f"v{n}"})
    newest = list(range(4, KEPT + 4))  # versions 4..7: the latest KEPT
    assert await _held(redis_url, ws) == newest

    base = f"/v1/workspaces/{ws}/config"
    page = await get(api, base + "/versions?limit=100")
    assert [v["version"] for v in page["versions"]] == newest[::-1] and page["next"] is None
    assert (await get(api, base + "/versions/4"))["config"]["defaults"]["reoffer_after"] == 4
    for old in (1, 3):
        gone = await get(api, base + f"/versions/{old}", status=404)
        assert gone["field"] == "version" and "kept window" in gone["detail"]
    diff = await get(api, base + "/diff?from=2&to=7", status=404)
    assert diff["field"] == "from"
    assert (await rollback(api, ws, 3, status=404))["field"] == "version"
    assert (await get(api, f"/v1/workspaces/{ws}"))["version"] == KEPT + 3  # nothing written

    # the number lowered: the next write drops every version past the new window
    fewer = await aiohttp_client(create_app(_kept_settings(redis_url, 2)))
    await put_config(fewer, ws, small_config(reoffer_after=99))
    assert await _held(redis_url, ws) == [KEPT + 3, KEPT + 4]
