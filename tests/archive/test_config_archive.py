"""Config versions past what Redis keeps live in the archive: every version is
written to PostgreSQL from its `config.updated` event, and the history's list,
reads, diff and roll-back reach back past the Redis window through it; a
version that left Redis before the archive copied it is on record as missing;
an archive that is down is a 503 to retry."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from redis.asyncio import Redis

from router.api.app import create_app
from router.store.keys import WsKeys
from tests.support.archive import archive_settings, rows, until
from tests.support.client import ADM, SUP, put_config, small_config
from tests.support.postgres import PostgresServer

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

KEPT = 3  # versions Redis keeps in these tests
TOTAL = KEPT + 3


def _app(redis_url: str, archive_url: str | None) -> Any:
    settings = archive_settings(redis_url, archive_url)
    return create_app(dataclasses.replace(settings, config_versions_kept=KEPT))


def _doc(n: int) -> dict[str, Any]:
    return small_config(reoffer_after=10 + n) | {"description": f"edit {n}"}


async def _get(api: Any, path: str, status: int = 200) -> Any:
    r = await api.get(path, headers=SUP)
    assert r.status == status, await r.text()
    return await r.json()


async def _archived(url: str, ws: str) -> list[tuple[Any, ...]]:
    return await rows(
        url,
        "SELECT version, actor, description, rollback_of, document IS NULL "
        "FROM config_versions WHERE workspace = %s ORDER BY version",
        ws,
    )


async def _redis_versions(redis_url: str, ws: str) -> list[int]:
    client = Redis.from_url(redis_url, decode_responses=True)
    try:
        fields = await client.hkeys(WsKeys(ws).config_versions)
    finally:
        await client.aclose()
    return sorted(int(f) for f in fields if f.isdigit())


async def test_every_version_is_read_back_across_the_redis_window(
    aiohttp_client: Any, redis_url: str, server: PostgresServer, ws: str
) -> None:
    api = await aiohttp_client(_app(redis_url, server.url))
    for n in range(1, TOTAL + 1):
        await put_config(api, ws, _doc(n))
        # each version archived before the next write: none can fall out unread
        await until(lambda n=n: _archived_at_least(server.url, ws, n))
    assert await _redis_versions(redis_url, ws) == list(range(4, TOTAL + 1))
    assert await _archived(server.url, ws) == [
        (n, "admin:admin", f"edit {n}", None, False) for n in range(1, TOTAL + 1)
    ]

    base = f"/v1/workspaces/{ws}/config"
    # paged newest first: the Redis window, then the archive, with no seam
    pages, before = [], ""
    while True:
        page = await _get(api, base + "/versions?limit=2" + before)
        pages.append([v["version"] for v in page["versions"]])
        if page["next"] is None:
            break
        before = f"&before={page['next']}"
    assert pages == [[6, 5], [4, 3], [2, 1]]
    whole = await _get(api, base + "/versions?limit=100")
    assert [v["description"] for v in whole["versions"]] == [f"edit {n}" for n in range(6, 0, -1)]

    oldest = await _get(api, base + "/versions/1")  # from PostgreSQL
    assert oldest["version"] == 1 and oldest["actor"] == "admin:admin"
    assert oldest["config"]["defaults"]["reoffer_after"] == 11
    assert oldest["config"]["description"] == "edit 1"

    diff = await _get(api, base + "/diff?from=2&to=5")  # archive to Redis
    assert {(op["op"], op["path"]) for op in diff["patch"]} == {
        ("replace", "/defaults/reoffer_after"),
        ("replace", "/description"),
    }
    assert (diff["from"]["version"], diff["to"]["version"]) == (2, 5)

    r = await api.post(base + "/rollback", json={"version": 1}, headers=ADM)
    assert r.status == 200, await r.text()
    back = await r.json()
    assert back["version"] == TOTAL + 1 and back["rollback_of"] == 1
    now = await _get(api, f"/v1/workspaces/{ws}")
    assert now["config"]["defaults"]["reoffer_after"] == 11
    newest = await _get(api, base + f"/versions/{TOTAL + 1}")
    assert newest["rollback_of"] == 1
    await until(lambda: _archived_at_least(server.url, ws, TOTAL + 1))
    assert (await _archived(server.url, ws))[-1] == (TOTAL + 1, "admin:admin", "edit 1", 1, False)

    unknown = await _get(api, base + "/versions/99", status=404)
    assert unknown["field"] == "version"

    # the archive down: a version only it holds is a 503 to retry, never a 500;
    # the versions Redis keeps are still served
    server.stop()
    r = await api.get(base + "/versions/1", headers=SUP)
    assert r.status == 503 and r.content_type == "application/problem+json"
    assert int(r.headers["Retry-After"]) > 0
    assert (await _get(api, base + f"/versions/{TOTAL}"))["version"] == TOTAL


async def _archived_at_least(url: str, ws: str, n: int) -> bool:
    return len(await _archived(url, ws)) >= n


async def test_versions_that_left_redis_unarchived_are_on_record_as_missing(
    aiohttp_client: Any, redis_url: str, server: PostgresServer, ws: str
) -> None:
    # written while no archive ran: the oldest fell out of Redis unread
    plain = await aiohttp_client(_app(redis_url, None))
    for n in range(1, TOTAL + 1):
        await put_config(plain, ws, _doc(n))
    await plain.close()

    api = await aiohttp_client(_app(redis_url, server.url))
    got = await until(lambda: _archived_at_least(server.url, ws, TOTAL))
    assert got
    archived = await _archived(server.url, ws)
    assert [(v, empty) for v, _, _, _, empty in archived] == [
        (n, n <= TOTAL - KEPT) for n in range(1, TOTAL + 1)
    ]

    base = f"/v1/workspaces/{ws}/config"
    listed = await _get(api, base + "/versions?limit=100")
    assert [v["version"] for v in listed["versions"]] == list(range(TOTAL, 0, -1))
    lost = await _get(api, base + "/versions/2", status=404)
    assert lost["field"] == "version" and "before the archive could copy it" in lost["detail"]
    kept = await _get(api, base + f"/versions/{TOTAL - KEPT + 1}")
    assert kept["config"]["description"] == f"edit {TOTAL - KEPT + 1}"
