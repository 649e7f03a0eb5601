"""Consumer groups read back: what one group of a stream has read and holds;
stream ids compared."""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ResponseError


def id_tuple(entry_id: str) -> tuple[int, int]:
    """A stream id as (milliseconds, sequence), for ordering ids."""
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


async def groups_info(client: Redis, stream: str) -> list[dict[str, Any]]:
    """XINFO GROUPS: every consumer group of the stream (name, consumers,
    pending, last-delivered-id, entries-read, lag); none when there is no stream."""
    try:
        groups = await client.xinfo_groups(stream)
    except ResponseError:  # no stream yet
        return []
    return [dict(g) for g in groups]


async def group_info(client: Redis, stream: str, group: str) -> dict[str, Any] | None:
    """XINFO GROUPS' entry for `group`; None when the stream or the group
    does not exist."""
    return next((g for g in await groups_info(client, stream) if g.get("name") == group), None)
