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


async def group_info(client: Redis, stream: str, group: str) -> dict[str, Any] | None:
    """XINFO GROUPS' entry for `group` (name, consumers, pending,
    last-delivered-id, entries-read, lag); None when the stream or the group
    does not exist."""
    try:
        groups = await client.xinfo_groups(stream)
    except ResponseError:  # no stream yet
        return None
    return next((dict(g) for g in groups if g.get("name") == group), None)
