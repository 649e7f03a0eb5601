"""Consumer groups read back: what one group of a stream has read and holds."""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ResponseError


async def group_info(client: Redis, stream: str, group: str) -> dict[str, Any] | None:
    """XINFO GROUPS' entry for `group` (name, consumers, pending,
    last-delivered-id, entries-read, lag); None when the stream or the group
    does not exist."""
    try:
        groups = await client.xinfo_groups(stream)
    except ResponseError:  # no stream yet
        return None
    return next((dict(g) for g in groups if g.get("name") == group), None)
