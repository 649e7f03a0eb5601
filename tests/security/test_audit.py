"""The audit trail: every event sealed into a hash chain by one replica at a time,
exported to segment files, verified by `router audit verify`, and retention.

Real redis-server, real router processes where leases and crashes matter.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import os
import shutil
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, cast

import aiohttp
import msgspec
import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from redis.asyncio import Redis

from router.api.app import create_app
from router.runtime.settings import Settings
from router.security.audit import verify
from router.security.audit.records import Source, canonical, seal_record
from router.security.audit.sealer import Chain, Sealer
from router.security.audit.segments import MANIFEST, Exporter, load_manifest
from router.security.audit.verify import verify_dir, verify_folder, verify_live
from router.store.keys import ARCHIVE_GROUP, WsKeys, access_shard
from router.store.shards import Shards
from tests.support.client import ADM, GW, SUP, act, add_agent, create, put_config, small_config
from tests.support.procs import ROOT, _python, start_replicas, stop_replicas, wait_ready

SLA = {"sla_policies": {"std": {"answer": 60, "resolve": 3600}}}


def audited_config(**retention: Any) -> dict[str, Any]:
    cfg = small_config(sla="std")
    cfg.update(SLA)
    if retention:
        cfg["retention"] = retention
    return cfg


async def eventually(check: Callable[[], Awaitable[bool]], within: float = 20.0,
                     what: str = "condition") -> None:  # fmt: skip
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def sealed_through_last(client: Redis, source: Source) -> bool:
    """The chain head has sealed the source stream's newest entry."""
    last = cast(list[Any], await client.xrevrange(source.stream, "+", "-", count=1))
    if not last:
        return False
    return bool(await client.hget(source.head, "src") == last[0][0])


async def cli(redis_url: str, *args: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        _python(), "-m", "router", "audit", *args, cwd=ROOT,
        env={**os.environ, "REDIS_URL": redis_url},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await proc.communicate()
    return int(proc.returncode or 0), out.decode()


async def records(client: Redis, source: Source) -> list[tuple[str, dict[str, Any]]]:
    got = cast(list[Any], await client.xrange(source.sealed, "-", "+"))
    return [(eid, json.loads(f["r"])) for eid, f in got]


@pytest.fixture
async def client(redis_url: str) -> Any:
    c = Redis.from_url(redis_url, decode_responses=True)
    yield c
    await c.aclose()


@pytest.fixture
async def audited(aiohttp_client: Any, settings: Settings, tmp_path: Path) -> Any:
    """The service with segment export into tmp_path/audit."""
    s = dataclasses.replace(settings, audit_dir=str(tmp_path / "audit"))
    return await aiohttp_client(create_app(s))


async def synthetic_chain(client: Redis, tmp_path: Path, n: int = 30,
                          segment_records: int = 10) -> tuple[Source, Path]:  # fmt: skip
    """A workspace stream of n events sealed and exported by a standalone sealer
    (no lease: the workspace is not listed, no replica seals it)."""
    src = Source.workspace("t" + uuid.uuid4().hex[:10])
    for i in range(n):
        ev = {
            "type": "contact.created",
            "contact": f"c{i}",
            "actor": "gateway:gw",
            "at": 1_700_000_000_000 + i,
            "state": "queued",
            "reason": "test",
        }
        await client.xadd(src.stream, {"e": json.dumps(ev)})
    root = tmp_path / "export"
    sealer = Sealer(
        Shards(client), exporter=Exporter(Shards(client), root, segment_records, 3600), batch=7
    )
    chain = Chain(src)
    while await sealer.advance(chain):
        pass
    return src, root


# --- the scenario through the API ---------------------------------------------------


async def test_api_scenario_is_sealed_exported_and_verifies(
    audited: Any, ws: str, client: Redis, redis_url: str, tmp_path: Path
) -> None:
    await put_config(audited, ws, audited_config())
    await add_agent(audited, ws, "a1", {"cards": 5})
    await create(audited, ws, "c1")
    assert (await act(audited, ws, "c1", "accept", agent_id="a1")).status == 200
    assert (await act(audited, ws, "c1", "complete", agent_id="a1")).status == 200
    await create(audited, ws, "c2")
    assert (await act(audited, ws, "c2", "abandon", reason="hung up")).status == 200
    bogus = {"Authorization": "Bearer not-a-token-" + uuid.uuid4().hex}
    denied = await audited.get(f"/v1/workspaces/{ws}/pools", headers=bogus)
    assert denied.status == 401
    access = Source.access(access_shard("127.0.0.1"))  # the stream of this client's address
    # the access-control middleware records denials in the background
    await eventually(lambda: sealed_through_last(client, access), what="access sealed")
    source = Source.workspace(ws)
    await eventually(lambda: sealed_through_last(client, source), what="events sealed")

    sealed = [r for _, r in await records(client, source)]
    n_events = int(await client.xlen(source.stream))
    assert [r["seq"] for r in sealed] == list(range(1, n_events + 1))
    by_type = {r["what"]["type"]: r for r in sealed}
    assert by_type["config.updated"]["who"] == "admin:admin"
    done = by_type["contact.completed"]
    assert done["who"].startswith("agent:") and done["what"]["contact"] == "c1"
    assert done["what"]["agent"] == "a1" and done["what"]["state"] == "completed"
    assert by_type["contact.abandoned"]["why"]["reason"] == "hung up"
    assert "explain" in by_type["contact.offered"]["why"]  # why this agent won
    assert json.loads(done["event"])["type"] == "contact.completed"
    denial = [r for _, r in await records(client, access)][-1]
    assert denial["who"] == "anonymous" and denial["what"]["status"] == "401"
    assert bogus["Authorization"][7:] not in denial["event"]  # never the token

    rc, out = await cli(redis_url, "verify", "--workspace", ws)
    assert rc == 0 and f"ws:{ws}: OK, {n_events} records" in out, out
    result = await verify_live(client, access)
    assert result.ok and result.records >= 1, result.text()

    export = tmp_path / "audit"
    await eventually(lambda: _exported(export, source, n_events), what="segments written")
    rc, out = await cli(redis_url, "verify", "--dir", str(export), "--source", f"ws:{ws}")
    assert rc == 0 and f"OK, {n_events} records (seq 1..{n_events})" in out, out

    metrics = await (await audited.get("/metrics")).text()
    sealed_line = f'router_audit_records_sealed_total{{workspace="{ws}"}} {float(n_events)}'
    assert sealed_line in metrics
    assert f'router_audit_seal_lag_seconds{{workspace="{ws}"}}' in metrics
    if shutil.which("promtool"):
        proc = await asyncio.create_subprocess_exec(
            "promtool", "check", "metrics", stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)  # fmt: skip
        lint, _ = await proc.communicate(metrics.encode())
        assert b"router_audit" not in lint, lint.decode()


async def _exported(root: Path, source: Source, n: int) -> bool:
    m = load_manifest(root / source.dirname)
    return bool(m and m.segments and m.segments[-1].last_seq == n)


# --- tampering ---------------------------------------------------------------------


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines(keepends=True)


def _rewrite(path: Path, lines: list[str]) -> None:
    path.chmod(0o644)  # closed segments are read-only
    path.write_text("".join(lines))


async def test_tampered_segments_name_the_bad_record(client: Redis, tmp_path: Path,
                                                      redis_url: str) -> None:  # fmt: skip
    src, root = await synthetic_chain(client, tmp_path, n=30, segment_records=10)
    assert [r.ok for r in verify_dir(root)] == [True]
    folder = root / src.dirname
    names = [s.file for s in cast(Any, load_manifest(folder)).segments]
    assert names == ["000000000001.jsonl", "000000000011.jsonl", "000000000021.jsonl"]

    def copy() -> Path:
        dst = tmp_path / uuid.uuid4().hex / src.dirname
        shutil.copytree(folder, dst)
        return dst

    # an edited field: the record's own hash no longer matches
    f = copy()
    lines = _lines(f / names[1])
    lines[4] = lines[4].replace('"who":"gateway:gw"', '"who":"admin:mallory"')
    _rewrite(f / names[1], lines)
    bad = verify_folder(f, src)
    assert not bad.ok and bad.seq == 15
    assert bad.where == f"segment {names[1]} line 5" and "hash mismatch" in bad.reason

    # a deleted line: the next record does not follow
    f = copy()
    lines = _lines(f / names[0])
    del lines[6]  # seq 7
    _rewrite(f / names[0], lines)
    bad = verify_folder(f, src)
    assert (bad.ok, bad.where, bad.seq) == (False, f"segment {names[0]} line 7", 8)
    assert "seq 7 missing" in bad.reason

    # two records swapped
    f = copy()
    lines = _lines(f / names[2])
    lines[2], lines[3] = lines[3], lines[2]  # seq 23 and 24
    _rewrite(f / names[2], lines)
    bad = verify_folder(f, src)
    assert (bad.ok, bad.where, bad.seq) == (False, f"segment {names[2]} line 3", 24)

    # a whole record re-hashed after editing: its successor's link breaks
    f = copy()
    lines = _lines(f / names[0])
    rec = json.loads(lines[1])
    rec["event"] = rec["event"].replace("c1", "cX")
    rec["what"]["contact"] = "cX"
    body = {k: v for k, v in rec.items() if k != "hash"}
    rec["hash"] = hashlib.sha256(canonical(body)).hexdigest()
    lines[1] = canonical(rec).decode() + "\n"
    _rewrite(f / names[0], lines)
    bad = verify_folder(f, src)
    assert (bad.ok, bad.where, bad.seq) == (False, f"segment {names[0]} line 3", 3)
    assert "broken link" in bad.reason

    # the manifest itself altered
    f = copy()
    m = json.loads((f / MANIFEST).read_text())
    m["segments"][1]["records"] = 9
    (f / MANIFEST).write_text(json.dumps(m))
    bad = verify_folder(f, src)
    assert not bad.ok and "manifest mismatch" in bad.reason and names[1] in bad.where

    # the command line: exit status and the record named
    f = copy()
    lines = _lines(f / names[2])
    lines[8] = lines[8].replace('"reason":"test"', '"reason":"tset"')
    _rewrite(f / names[2], lines)
    rc, out = await cli(redis_url, "verify", "--dir", str(f.parent))
    assert rc == 1, out
    assert f"{src.name}: BAD record at segment {names[2]} line 9, seq 29: hash mismatch" in out


async def test_tampered_live_stream_names_the_bad_record(client: Redis, tmp_path: Path,
                                                         redis_url: str) -> None:  # fmt: skip
    src, _ = await synthetic_chain(client, tmp_path, n=20)
    assert (await verify_live(client, src)).ok
    entries = await records(client, src)
    # streams cannot be edited in place: rebuild it with one record changed
    target_id = entries[11][0]
    await client.delete(src.sealed)
    for eid, rec in entries:
        forged = {**rec, "who": "admin:mallory"} if eid == target_id else rec
        await client.xadd(src.sealed, {"r": json.dumps(forged)}, id=eid)
    rc, out = await cli(redis_url, "verify", "--workspace", src.label)
    assert rc == 1, out
    assert f"BAD record at stream {src.sealed} id {target_id}, seq 12: hash mismatch" in out

    # records cut off the end: the chain head still says where it ended
    await client.delete(src.sealed)
    for eid, rec in entries[:15]:
        await client.xadd(src.sealed, {"r": json.dumps(rec)}, id=eid)
    bad = await verify_live(client, src)
    assert not bad.ok and "head mismatch" in bad.reason and bad.seq == 15


# --- sealing: no fork, gaps on record ------------------------------------------------


async def test_racing_sealers_never_fork_the_chain(client: Redis) -> None:
    """Two sealers on one chain at once (a lease that moved while its old holder
    was paused): the head check lets only one append each batch."""
    src = Source.workspace("t" + uuid.uuid4().hex[:10])
    a, b = Sealer(Shards(client), batch=5), Sealer(Shards(client), batch=5)
    ca, cb = Chain(src), Chain(src)
    for i in range(120):
        await client.xadd(src.stream, {"e": json.dumps({"type": "x", "n": i, "at": i})})
        if i % 3 == 0:
            await asyncio.gather(a.advance(ca), b.advance(cb))
    while await a.advance(ca) + await b.advance(cb):
        pass
    ok = await verify_live(client, src)
    assert ok.ok and ok.records == 120, ok.text()
    sealed_src = [r["src"] for _, r in await records(client, src)]
    assert sealed_src == [eid for eid, _ in await client.xrange(src.stream)]


async def test_live_verify_while_another_replica_seals(
    client: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`router audit verify` on a running deployment: records sealed while it
    pages through the stream are checked against the head as it is then, not
    taken for a tail cut off or a forged one."""
    monkeypatch.setattr(verify, "PAGE", 10)  # several pages from a small chain
    src = Source.workspace("t" + uuid.uuid4().hex[:10])
    sealer, chain = Sealer(Shards(client), batch=8), Chain(src)

    async def add(n: int) -> None:
        for _ in range(n):
            await client.xadd(src.stream, {"e": json.dumps({"type": "x", "at": 1})})

    await add(25)
    while await sealer.advance(chain):
        pass
    read_page = verify._snapshot
    sealed_meanwhile: list[int] = []

    async def seal_then_read(*args: Any, **kw: Any) -> Any:
        if args[2] != "-" and len(sealed_meanwhile) < 2:
            await add(8)  # another replica seals a batch between two pages
            sealed_meanwhile.append(await sealer.advance(chain))
        return await read_page(*args, **kw)

    monkeypatch.setattr(verify, "_snapshot", seal_then_read)
    ok = await verify_live(client, src)
    assert sealed_meanwhile == [8, 8]
    assert ok.ok and (ok.first_seq, ok.last_seq) == (1, 41), ok.text()

    # the end read with the head still tells a cut tail from a sealing one
    monkeypatch.setattr(verify, "_snapshot", read_page)
    last = (await client.xrevrange(src.sealed, count=1))[0][0]
    await client.xdel(src.sealed, last)
    bad = await verify_live(client, src)
    assert not bad.ok and "head mismatch" in bad.reason and bad.seq == 40, bad.text()


async def test_entries_deleted_before_sealing_leave_a_gap_record(client: Redis) -> None:
    src = Source.workspace("t" + uuid.uuid4().hex[:10])
    sealer = Sealer(Shards(client))
    chain = Chain(src)
    for i in range(5):
        await client.xadd(src.stream, {"e": json.dumps({"type": "x", "n": i})})
    await sealer.advance(chain)
    for i in range(5, 20):  # the length cap drops entries nobody sealed yet
        await client.xadd(src.stream, {"e": json.dumps({"type": "x", "n": i})}, maxlen=3,
                          approximate=False)  # fmt: skip
    await sealer.advance(chain)
    sealed = [r for _, r in await records(client, src)]
    assert [r["what"]["type"] for r in sealed] == ["x"] * 5 + ["audit.gap"] + ["x"] * 3
    result = await verify_live(client, src)
    assert result.ok and result.gaps == 1 and "1 gap record" in result.text()


# --- replicas: one seals, another takes over -----------------------------------------


async def _metric(http: aiohttp.ClientSession, url: str, line_start: str) -> float:
    async with http.get(url + "/metrics") as r:
        for line in (await r.text()).splitlines():
            if line.startswith(line_start):
                return float(line.rsplit(" ", 1)[1])
    return 0.0


async def test_one_replica_seals_and_another_takes_over_after_sigkill(
    redis_url: str, client: Redis, tmp_path: Path, one_at_a_time: None
) -> None:
    export = tmp_path / "audit"
    replicas = start_replicas(
        redis_url,
        tmp_path,
        2,
        env={"ROUTER_AUDIT_DIR": str(export), "ROUTER_AUDIT_SEGMENT_RECORDS": "7"},
    )
    ws = "t" + uuid.uuid4().hex[:10]
    source = Source.workspace(ws)
    try:
        await wait_ready(replicas)
        async with aiohttp.ClientSession() as http:
            base = [r.url + f"/v1/workspaces/{ws}" for r in replicas]

            async def contacts(prefix: str, n: int, at: int) -> None:
                for i in range(n):
                    body = {
                        "id": f"{prefix}{i}",
                        "channel": "chat",
                        "customer": {"id": f"cu{i}", "tier": "standard"},
                    }
                    async with http.post(base[at] + "/contacts", json=body, headers=GW) as r:
                        assert r.status == 201, await r.text()

            async with http.put(base[0], json=audited_config(), headers=ADM) as r:
                assert r.status == 200, await r.text()
            async with http.put(base[0] + "/agents/a1", json={"skills": {"cards": 3},
                                "capacity": 100}, headers=SUP) as r:  # fmt: skip
                assert r.status == 200
            await contacts("x", 15, 0)
            await eventually(lambda: sealed_through_last(client, source), what="sealed")
            sealed_metric = f'router_audit_records_sealed_total{{workspace="{ws}"}}'
            counts = [await _metric(http, r.url, sealed_metric) for r in replicas]
            holder = 0 if counts[0] else 1
            assert counts[holder] > 0 and counts[1 - holder] == 0, counts
            owner = await client.get(source.lease)
            assert f":{replicas[holder].proc.pid}:" in str(owner)

            replicas[holder].proc.kill()  # SIGKILL: no lease handed back
            replicas[holder].proc.wait(10)
            survivor = 1 - holder
            await contacts("y", 15, survivor)
            await eventually(lambda: sealed_through_last(client, source), within=40,
                             what="the other replica sealing")  # fmt: skip
        result = await verify_live(client, source)
        n_events = int(await client.xlen(source.stream))
        assert result.ok and result.records == n_events, result.text()
        sealed_src = [r["src"] for _, r in await records(client, source)]
        assert sealed_src == [eid for eid, _ in await client.xrange(source.stream)]
        assert f":{replicas[survivor].proc.pid}:" in str(await client.get(source.lease))
        await eventually(lambda: _exported(export, source, n_events), within=20,
                         what="export resumed by the other replica")  # fmt: skip
        folder = export / source.dirname
        ok = verify_folder(folder, source)
        assert ok.ok and ok.records == n_events, ok.text()
        assert len(cast(Any, load_manifest(folder)).segments) >= 4
    finally:
        stop_replicas(replicas)


# --- export resumes --------------------------------------------------------------------


async def test_export_resumes_after_restart_and_a_torn_write(client: Redis,
                                                             tmp_path: Path) -> None:  # fmt: skip
    src, root = await synthetic_chain(client, tmp_path, n=25, segment_records=10)
    folder = root / src.dirname
    before = cast(Any, load_manifest(folder))
    closed = {s.file: s.sha256 for s in before.segments if s.closed}
    assert len(closed) == 2 and not before.segments[-1].closed
    # a crash between writing lines and listing them: bytes past the manifest
    with (folder / before.segments[-1].file).open("ab") as f:
        f.write(b'{"seq":26,"half a rec')
    for i in range(25, 40):
        await client.xadd(src.stream, {"e": json.dumps({"type": "x", "n": i})})
    # a new process: a fresh sealer and exporter, nothing in memory
    sealer = Sealer(Shards(client), exporter=Exporter(Shards(client), root, 10, 3600))
    chain = Chain(src)
    while await sealer.advance(chain):
        pass
    after = cast(Any, load_manifest(folder))
    assert after.segments[-1].last_seq == 40
    assert {s.file: s.sha256 for s in after.segments[:2]} == closed  # never rewritten
    assert all((folder / f).stat().st_mode & 0o222 == 0 for f in closed)  # read-only
    result = verify_folder(folder, src)
    assert result.ok and result.records == 40, result.text()


async def test_audit_retention_prunes_segments_and_verify_still_passes(
    client: Redis, tmp_path: Path
) -> None:
    src, root = await synthetic_chain(client, tmp_path, n=30, segment_records=10)
    store = Exporter(Shards(client), root, 10, 3600).store(src)
    # the synthetic events are from 2023: both closed segments are past any window
    assert await asyncio.to_thread(store.prune, int(time.time() * 1000) - 86_400_000) == 2
    m = cast(Any, load_manifest(root / src.dirname))
    assert m.pruned_through_seq == 20 and [s.first_seq for s in m.segments] == [21]
    assert not (root / src.dirname / "000000000001.jsonl").exists()
    result = verify_folder(root / src.dirname, src)
    assert result.ok and result.first_seq == 21 and "past retention" in result.text()


# --- retention in Redis ------------------------------------------------------------------


async def test_terminal_contact_keys_expire_after_the_configured_window(
    api: Any, ws: str, client: Redis
) -> None:
    keys = WsKeys(ws)
    await put_config(api, ws, audited_config(contacts="2h", events="7d", audit="keep"))
    rt = await client.hmget(keys.runtime, ["retention_s", "ret_events_s", "ret_access_s",
                                           "ret_audit_s"])  # fmt: skip
    assert rt == ["7200", "604800", str(365 * 86400), "0"]
    await add_agent(api, ws, "a1", {"cards": 5})
    await create(api, ws, "c1")
    assert await client.ttl(keys.contact("c1")) == -1  # live contacts never expire
    assert (await act(api, ws, "c1", "accept", agent_id="a1")).status == 200
    assert (await act(api, ws, "c1", "complete", agent_id="a1")).status == 200
    for key in (keys.contact("c1"), keys.timeline("c1"), keys.sla("c1")):
        assert await client.exists(key), key
        assert 7190 <= await client.ttl(key) <= 7200, key
    await create(api, ws, "c2")
    assert (await act(api, ws, "c2", "abandon")).status == 200
    assert 7190 <= await client.ttl(keys.contact("c2")) <= 7200

    # with no retention section: 30 days
    await put_config(api, ws, audited_config())
    await create(api, ws, "c3")
    assert (await act(api, ws, "c3", "abandon")).status == 200
    assert 30 * 86400 - 10 <= await client.ttl(keys.contact("c3")) <= 30 * 86400

    # a one-second window: gone, and the API says so
    await put_config(api, ws, audited_config(contacts="1s"))
    await create(api, ws, "c4")
    assert (await act(api, ws, "c4", "accept", agent_id="a1")).status == 200
    assert (await act(api, ws, "c4", "complete", agent_id="a1")).status == 200
    await asyncio.sleep(1.3)
    for key in (keys.contact("c4"), keys.timeline("c4"), keys.sla("c4")):
        assert not await client.exists(key), key
    r = await api.get(f"/v1/workspaces/{ws}/contacts/c4", headers=ADM)
    assert r.status == 404, await r.text()


async def test_retention_windows_are_validated(api: Any, ws: str) -> None:
    for retention, field in (({"contacts": "keep"}, "retention.contacts"),
                             ({"events": "30y"}, "retention.events"),
                             ({"audit": "9999d"}, "retention.audit")):  # fmt: skip
        cfg = audited_config(**retention)
        r = await api.put(f"/v1/workspaces/{ws}", json=cfg, headers=ADM)
        assert r.status == 422, await r.text()
        assert r.content_type == "application/problem+json"
        assert field in await r.text()
    cfg = audited_config(contacts="1d")
    cfg["defaults"]["retention"] = 3600
    r = await api.put(f"/v1/workspaces/{ws}", json=cfg, headers=ADM)
    assert r.status == 422 and "defaults.retention" in await r.text()


async def test_events_are_trimmed_only_once_sealed(client: Redis) -> None:
    src = Source.workspace("t" + uuid.uuid4().hex[:10])
    await client.hset(WsKeys(src.label).runtime, mapping={"ret_events_s": 1})
    old = [await client.xadd(src.stream, {"e": json.dumps({"type": "x", "n": i})})
           for i in range(10)]  # fmt: skip
    await asyncio.sleep(1.1)  # all ten are past the one-second window now
    sealer = Sealer(Shards(client), batch=4)
    chain = Chain(src)
    await sealer.advance(chain)  # seals four, then applies retention
    remaining = [eid for eid, _ in await client.xrange(src.stream)]
    assert remaining == old[4:]  # the unsealed six stay
    chain.next_trim = 0
    while await sealer.advance(chain):
        chain.next_trim = 0
    await sealer.apply_retention(chain)
    assert await client.xlen(src.stream) == 0
    assert (await verify_live(client, src)).records == 10


async def test_events_are_trimmed_only_once_archived(client: Redis) -> None:
    """With a history archive (its consumer group on the stream), retention
    never trims what the archive has not written: its pending entries and what
    it has not read stay, sealed or not."""
    src = Source.workspace("t" + uuid.uuid4().hex[:10])
    await client.hset(WsKeys(src.label).runtime, mapping={"ret_events_s": 1})
    ids = [await client.xadd(src.stream, {"e": json.dumps({"type": "x", "n": i})})
           for i in range(10)]  # fmt: skip
    await client.xgroup_create(src.stream, ARCHIVE_GROUP, id="0")
    await client.xreadgroup(ARCHIVE_GROUP, "archiver", {src.stream: ">"}, count=6)
    await client.xack(src.stream, ARCHIVE_GROUP, *ids[:3])  # written: 3; pending: 3 more
    await asyncio.sleep(1.1)  # every entry is past the window
    sealer = Sealer(Shards(client), batch=100)
    chain = Chain(src)
    while await sealer.advance(chain):  # seals all ten, then applies retention
        chain.next_trim = 0
    await sealer.apply_retention(chain)
    assert [eid for eid, _ in await client.xrange(src.stream)] == ids[3:]
    await client.xack(src.stream, ARCHIVE_GROUP, *ids[3:6])  # the pending ones written
    await sealer.apply_retention(chain)
    assert [eid for eid, _ in await client.xrange(src.stream)] == ids[6:]  # never read: kept


async def test_export_command_writes_segments_that_verify(client: Redis, tmp_path: Path,
                                                          redis_url: str) -> None:  # fmt: skip
    src, _ = await synthetic_chain(client, tmp_path, n=12)
    out_dir = tmp_path / "archive"
    rc, out = await cli(redis_url, "export", "--dir", str(out_dir), "--workspace", src.label,
                        "--segment-records", "5")  # fmt: skip
    assert rc == 0 and f"{src.name}: 12 record(s) exported" in out, out
    result = verify_folder(out_dir / src.dirname, src)
    assert result.ok and result.records == 12, result.text()
    assert len(cast(Any, load_manifest(out_dir / src.dirname)).segments) == 3


@given(
    event=st.one_of(
        st.text(max_size=200),
        st.dictionaries(
            st.sampled_from(["type", "actor", "at", "contact", "prev", "reason", "explain"]),
            st.one_of(st.text(max_size=40), st.integers(), st.floats(allow_nan=False)),
        ).map(lambda d: msgspec.json.encode(d).decode()),
    ),
    prev=st.text(alphabet="0123456789abcdef", min_size=64, max_size=64),
    seq=st.integers(min_value=1, max_value=2**53),
)
# a time beyond any clock is sealed with the entry's own time (it stopped the sealer)
@example(event='{"type":"x","at":-1e306}', prev="0" * 64, seq=1)
@example(event='{"type":"x","at":1e400}', prev="0" * 64, seq=1)
def test_a_sealed_record_is_its_body_with_the_hash_in_canonical_order(
    event: str, prev: str, seq: int
) -> None:
    """The sealer encodes a record once and places the hash itself: the line
    must be exactly the canonical encoding of the record with its hash, for any
    event text (quotes, `,"prev":` inside it, non-ASCII)."""
    line, digest = seal_record("ws:demo", seq, prev, "1700000000000-0", event)
    rec = msgspec.json.decode(line)
    assert line == canonical(rec).decode()
    assert rec["hash"] == digest
    del rec["hash"]
    assert hashlib.sha256(canonical(rec)).hexdigest() == digest
