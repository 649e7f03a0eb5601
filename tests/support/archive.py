"""What the archive tests share: the service's settings with an archive, a
query that waits for the schema, and waiting for a condition."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import psycopg
from psycopg import AsyncConnection

from router.runtime.settings import Settings, demo_token_spec
from tests.support.client import JWT_SECRET


def archive_settings(redis_url: str, archive_url: str | None) -> Settings:
    """The service's settings: demo tokens, the tests' JWT secret, the archive."""
    env = {
        "ROUTER_TOKENS": demo_token_spec(),
        "ROUTER_METRICS_GROUP": uuid.uuid4().hex,
        "ROUTER_JWT_SECRET": JWT_SECRET,
    }
    if archive_url:
        env["ROUTER_ARCHIVE_URL"] = archive_url
    return Settings.from_env(env, redis_url=redis_url, timer_poll=0.01)


async def rows(url: str, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    """The query's rows; none while the service has not made the schema yet."""
    async with await AsyncConnection.connect(url) as conn:
        try:
            cur = await conn.execute(sql, args)
        except psycopg.errors.UndefinedTable:
            return []
        return list(await cur.fetchall())


async def until(check: Any, within: float = 30.0) -> Any:
    """`check()`'s first truthy answer, polled every 0.1 s."""
    for _ in range(int(within / 0.1)):
        got = await check()
        if got:
            return got
        await asyncio.sleep(0.1)
    raise AssertionError("not reached in time")
