"""Verification of an audit chain: exported segment files, the live sealed
stream, or the history archive's `audit_records` table.

All walk the records in order with `ChainChecker` (hash of each record, seq
without gaps, each `prev` the hash before, fields agreeing with the sealed
event) and stop at the first bad record, naming where it is. Segments are
also checked against their manifest (counts, first/last seq and hash, size,
SHA-256 of the file); the live stream and the archive against their chain
head, so records cut off the end are noticed too. With an archive, Redis holds
only what is not archived yet: the live check starts where the archive ends
(the head's `archived`, `archived_hash`).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import msgspec
from psycopg import AsyncConnection
from redis.asyncio import Redis

from router.security.audit.records import (
    GENESIS,
    ChainChecker,
    Problem,
    Source,
    stream_ms,
)
from router.security.audit.segments import MANIFEST, Segment, folder_lock, load_manifest

PAGE = 1000
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_decode = msgspec.json.Decoder()


@dataclass
class Result:
    source: str
    ok: bool
    records: int = 0
    first_seq: int | None = None
    last_seq: int | None = None
    last_hash: str = ""
    gaps: int = 0
    archived: int = 0  # seq 1..archived are in the history archive (live check)
    where: str = ""  # the bad record's place: segment file and line, or stream id
    seq: int | None = None
    reason: str = ""

    def text(self) -> str:
        if self.ok:
            if not self.records:
                archived = f" (seq 1..{self.archived} archived)" if self.archived else ""
                return f"{self.source}: OK, no records{archived}"
            out = (f"{self.source}: OK, {self.records} records (seq {self.first_seq}.."
                   f"{self.last_seq}), last hash {self.last_hash}")  # fmt: skip
            if self.first_seq and self.first_seq > 1:
                out += f"; seq 1..{self.first_seq - 1} past retention"
            if self.archived:
                out = out.replace("past retention", "in the history archive")
            if self.gaps:
                out += f"; {self.gaps} gap record(s): source entries deleted before sealing"
            return out
        seq = f", seq {self.seq}" if self.seq is not None else ""
        return f"{self.source}: BAD record at {self.where}{seq}: {self.reason}"


def _ok(source: str, c: ChainChecker) -> Result:
    last = None if c.next_seq is None else c.next_seq - 1
    return Result(source, True, c.count, c.first_seq, last, c.prev or "", c.gaps)


def _bad(source: str, where: str, seq: int | None, reason: str) -> Result:
    return Result(source, False, where=where, seq=seq, reason=reason)


# --- segment files ----------------------------------------------------------------


def verify_dir(root: Path, source: Source | None = None) -> list[Result]:
    """Every source folder under `root` (or the one of `source`)."""
    if source is not None:
        return [verify_folder(root / source.dirname, source)]
    out = []
    for folder in sorted(p for p in root.iterdir() if (p / MANIFEST).exists()):
        src = Source.from_dirname(folder.name)
        if src is not None:
            out.append(verify_folder(folder, src))
    return out


@contextlib.contextmanager
def _reading(folder: Path) -> Iterator[None]:
    # waits for an export in progress; an archive on read-only media has no lock
    with contextlib.ExitStack() as stack:
        with contextlib.suppress(OSError):
            stack.enter_context(folder_lock(folder, shared=True))
        yield


def verify_folder(folder: Path, source: Source) -> Result:
    with _reading(folder):
        manifest = load_manifest(folder)
        if manifest is None:
            return _bad(source.name, str(folder), None, f"{MANIFEST} is missing")
        pruned = manifest.pruned_through_seq
        checker = ChainChecker(source.name, pruned + 1 if pruned else None,
                               manifest.pruned_last_hash or None)  # fmt: skip
        for seg in manifest.segments:
            bad = _verify_segment(folder, seg, checker, source.name)
            if bad is not None:
                return bad
        return _ok(source.name, checker)


def _verify_segment(
    folder: Path, seg: Segment, checker: ChainChecker, source: str
) -> Result | None:
    path = folder / seg.file
    digest, size = hashlib.sha256(), 0
    first = checker.count
    start_prev = checker.prev
    try:
        f = path.open("rb")
    except FileNotFoundError:
        return _bad(source, f"segment {seg.file}", seg.first_seq,
                    "manifest mismatch: the segment file is missing")  # fmt: skip
    with f:  # line by line: a segment may be large
        for lineno, line in enumerate(f, 1):
            digest.update(line)
            size += len(line)
            problem: Problem | None = checker.check(line.rstrip(b"\n"))
            if problem is not None:
                return _bad(source, f"segment {seg.file} line {lineno}", problem.seq,
                            problem.reason)  # fmt: skip
    n = checker.count - first
    last = None if checker.next_seq is None else checker.next_seq - 1
    where = f"segment {seg.file} line {n + 1 if n < seg.records else n}"
    first_seq = None if last is None else last - n + 1
    if n != seg.records or last != seg.last_seq or (n and first_seq != seg.first_seq):
        return _bad(source, where, last, f"manifest mismatch: it lists {seg.records} records "
                    f"(seq {seg.first_seq}..{seg.last_seq}), the file holds {n}")  # fmt: skip
    first_prev = start_prev if start_prev is not None else checker.first_prev
    if n and (checker.prev != seg.last_hash or first_prev != seg.first_prev):
        return _bad(source, where, last, "manifest mismatch: first prev-hash or last hash differs")
    if seg.first_seq == 1 and seg.first_prev != GENESIS:
        return _bad(source, f"segment {seg.file} line 1", 1, "first record must link to genesis")
    if size != seg.bytes or digest.hexdigest() != seg.sha256:
        return _bad(source, f"segment {seg.file}", last,
                    "manifest mismatch: file size or SHA-256 differs")  # fmt: skip
    return None


# --- live stream ----------------------------------------------------------------


async def verify_live(client: Redis, source: Source) -> Result:
    """The sealed stream against its chain head. Replicas go on sealing and
    archiving while this runs, so each page is read in one transaction (MULTI)
    with the head as it is then: the last page is checked against that head,
    and records that moved to the history archive between two pages (the head's
    `archived` covers them; `--archive` checks them there) are no gap."""
    checker = ChainChecker(source.name)
    head, page = await _snapshot(client, source, "-", PAGE)
    # where the archive ended when the first record was read
    archived, archived_hash = int(head.get("archived", 0)), head.get("archived_hash", "")
    while True:
        if page and checker.count:
            _skip_archived(checker, page[0][1].get("r", ""), int(head.get("archived", 0)))
        for eid, fields in page:
            problem = checker.check(fields.get("r", ""))
            if problem is None and checker.count == 1:
                problem = _continues_archive(checker, archived, archived_hash)
            if problem is not None:
                where = f"stream {source.sealed} id {eid}"
                return _bad(source.name, where, problem.seq, problem.reason)
        if len(page) < PAGE:
            break
        head, page = await _snapshot(client, source, "(" + page[-1][0], PAGE)
    head_seq, head_hash = int(head.get("seq", 0)), head.get("hash", GENESIS)
    archived = int(head.get("archived", 0))
    last = 0 if checker.next_seq is None else checker.next_seq - 1
    if archived > last:  # the rest is in the archive (every record, or moved there meanwhile)
        last, checker.prev = archived, head.get("archived_hash", "")
    if last != head_seq or ((checker.count or archived) and checker.prev != head_hash):
        return _bad(source.name, f"stream {source.sealed} end", last or None,
                    f"head mismatch: the chain head is at seq {head_seq} "
                    f"({head_hash[:16]}…), the last record is seq {last}")  # fmt: skip
    result = _ok(source.name, checker)
    result.archived = archived
    return result


def _skip_archived(checker: ChainChecker, line: str, archived: int) -> None:
    """A page that starts past where the last one ended, with everything before
    its first record archived (as the head read with the page says): those
    records left Redis for the archive between the two reads. The walk goes on
    from that first record, linked as it says."""
    if checker.next_seq is None:
        return
    with contextlib.suppress(msgspec.DecodeError, AttributeError):
        rec = _decode.decode(line)
        seq, prev = rec.get("seq"), rec.get("prev")
        if isinstance(seq, int) and seq > checker.next_seq and archived >= seq - 1:
            checker.next_seq, checker.prev = seq, str(prev)


async def _snapshot(
    client: Redis, source: Source, start: str, count: int | None
) -> tuple[dict[str, str], list[tuple[str, dict[str, str]]]]:
    """The chain head and the sealed records from `start`, at one instant."""
    async with client.pipeline(transaction=True) as pipe:
        pipe.hgetall(source.head)
        pipe.xrange(source.sealed, start, "+", count=count)
        head, page = await pipe.execute()
    return cast(dict[str, str], head), cast(list[tuple[str, dict[str, str]]], page)


def _continues_archive(c: ChainChecker, archived: int, archived_hash: str) -> Problem | None:
    """The first record Redis holds must follow the last archived one (records
    up to it may still be there, archived but not trimmed yet)."""
    if not archived or c.first_seq is None or c.first_seq <= archived:
        return None
    if c.first_seq > archived + 1:
        return Problem(f"gap: seq {archived + 1}..{c.first_seq - 1} neither in Redis nor "
                       "archived", c.first_seq)  # fmt: skip
    if c.first_prev != archived_hash:
        return Problem(f"broken link: prev {str(c.first_prev)[:16]}… is not the hash of the "
                       f"last archived record, seq {archived}", c.first_seq)  # fmt: skip
    return None


# --- the history archive (PostgreSQL) ------------------------------------------------


async def archived_sources(conn: AsyncConnection) -> list[Source]:
    """Every source with a chain in the archive (each has a head row)."""
    cur = await conn.execute("SELECT source FROM audit_heads ORDER BY source")
    return [Source.parse(str(r[0])) for r in await cur.fetchall()]


async def verify_archive(conn: AsyncConnection, source: Source) -> Result:
    """The chain of `source` in `audit_records`, in seq order, against its row
    of `audit_heads`; also the columns against the record they hold (source,
    seq, hash, and `at`: the time of the sealed entry's stream id). The start
    may be past retention (dropped partitions): the first row anchors."""
    checker = ChainChecker(source.name)
    where = "table audit_records"
    # a server-side cursor (a source may hold millions of rows), which lives in
    # a transaction; closed on the way out, also when a bad record ends the walk.
    # REPEATABLE READ: the head and the rows from one snapshot, while replicas
    # go on archiving
    async with conn.transaction(), conn.cursor(name="audit_verify") as rows:
        await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        cur = await conn.execute("SELECT seq, hash FROM audit_heads WHERE source = %s",
                                 (source.name,))  # fmt: skip
        head = await cur.fetchone()
        await rows.execute(
            "SELECT seq, at, record, hash FROM audit_records WHERE source = %s ORDER BY seq, at",
            (source.name,),
        )
        async for seq, at, record, stored in rows:
            problem = checker.check(record) or _columns(checker, record, int(seq), at, stored)
            if problem is not None:
                return _bad(source.name, where, int(seq), problem.reason)
    last = 0 if checker.next_seq is None else checker.next_seq - 1
    head_seq, head_hash = (int(head[0]), str(head[1])) if head else (0, GENESIS)
    if last != head_seq or (checker.count and checker.prev != head_hash):
        return _bad(source.name, f"{where} end", last or None,
                    f"head mismatch: audit_heads is at seq {head_seq} ({head_hash[:16]}…), "
                    f"the last record is seq {last}")  # fmt: skip
    return _ok(source.name, checker)


def _columns(c: ChainChecker, record: str, seq: int, at: Any, stored: str) -> Problem | None:
    """A row's columns say what its (verified) record says."""
    if seq != (c.next_seq or 0) - 1:
        return Problem(f"column seq {seq} disagrees with the record's seq {(c.next_seq or 0) - 1}",
                       seq)  # fmt: skip
    if stored != c.prev:
        return Problem("column hash disagrees with the record's hash", seq)
    src = str(_decode.decode(record).get("src"))
    if (at - EPOCH) // dt.timedelta(milliseconds=1) != stream_ms(src):
        return Problem(f"column at ({at.isoformat()}) disagrees with the record's entry {src}",
                       seq)  # fmt: skip
    return None
