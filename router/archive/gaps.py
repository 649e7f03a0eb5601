"""Entries trimmed from a stream before the archive read them: a gap, on record.

The stream's hard length cap (lib/20_events.lua, about 1,000,000 entries) only
bites when the archive has fallen that far behind; then entries go without ever
being archived. Redis tells it: the stream's first entry is past the archive
group's `last-delivered-id`, and entries were added that the group neither read
nor finds (entries-added - entries-read - length; XTRIM leaves the stream's
`max-deleted-entry-id` alone, so that is no help). The archiver then writes one
`archive.gap` event in their place (keyed by the last id it read, so seeing the
same gap again writes nothing), with the ids around the hole and how many
entries were lost; reports show it. The next read moves the group past the
hole.
"""

from __future__ import annotations

from typing import Any

import msgspec

from router.archive.rows import Row, stream_time
from router.store.groups import id_tuple
from router.store.keys import ARCHIVE_GROUP, WsKeys

GAP_TYPE = "archive.gap"
_encode = msgspec.json.Encoder()


async def gap_row(client: Any, ws: str) -> Row | None:
    """The gap event row of entries trimmed unread, or None when there is none."""
    keys = WsKeys(ws)
    pipe = client.pipeline(transaction=False)
    pipe.xinfo_stream(keys.events)
    pipe.xinfo_groups(keys.events)
    try:
        info, groups = await pipe.execute()
    except Exception:  # no stream yet
        return None
    group = next((g for g in groups if g.get("name") == ARCHIVE_GROUP), None)
    first = info.get("first-entry")
    if group is None or not first or group.get("entries-read") is None:
        return None  # (entries-read is unknown until the group has caught up once)
    last, before = str(group.get("last-delivered-id") or "0-0"), str(first[0])
    if id_tuple(before) <= id_tuple(last):
        return None  # trimming goes oldest first: nothing unread was trimmed
    # every entry still in the stream is unread; the rest of what was ever added
    # and not read by the group is gone
    lost = int(info["entries-added"]) - int(group["entries-read"]) - int(info["length"])
    if lost <= 0:
        return None
    doc = {
        "type": GAP_TYPE, "actor": "system", "at": int(before.partition("-")[0]),
        "reason": "events trimmed by the stream's length cap before they were archived",
        "after": last, "before": before, "lost": lost,
    }  # fmt: skip
    return (ws, "gap-" + last, stream_time(before), GAP_TYPE, None, _encode.encode(doc).decode())
