"""Export of sealed records to append-only segment files with a manifest.

Layout under the export directory, one folder per source (`ws-<name>`,
`access`):

    000000000001.jsonl   one sealed record per line (canonical JSON, as sealed)
    000000100001.jsonl   the next segment, named by its first seq
    manifest.json        every segment: file, first/last seq, first prev-hash,
                         last hash, record count, bytes, SHA-256 of the file,
                         closed flag (plus what retention pruned)

A segment is appended to until it holds `max_records` records or is
`max_age` seconds old; then it is closed (made read-only) and never written
again. Lines are written and fsynced before the manifest names them, and the
manifest is replaced atomically, so after a crash the manifest is the truth:
unlisted bytes at the end of the open segment are cut off and exported again.
An exclusive lock file makes one process at a time write a folder (the
sealing lease normally ensures that already; the lock covers the moment a
lease moves, and `router audit export` run by hand).

Everything in `SegmentStore` blocks (file I/O, fsync): call it from a thread
(`Exporter` does, via the loop's executor).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import hashlib
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import msgspec

from router.security.audit.records import Source
from router.store.shards import Shards

MANIFEST = "manifest.json"
LOCK = ".lock"


class ExportError(Exception):
    """The records offered do not continue the exported chain (or the folder
    is in a state export must not touch); nothing was written."""


class Busy(Exception):
    """Another process holds the folder's lock."""


class Segment(msgspec.Struct, kw_only=True):
    file: str
    first_seq: int
    last_seq: int
    first_prev: str
    last_hash: str
    records: int
    bytes: int
    sha256: str
    closed: bool = False
    opened_at: int = 0  # ms, for rolling by age
    first_when: int = 0
    last_when: int = 0  # ms of the newest record, for audit retention
    last_id: str = ""  # sealed-stream id of the last record, to resume from


class Manifest(msgspec.Struct, kw_only=True):
    source: str
    format: int = 1
    # Segments removed by the audit retention window: the first listed one
    # must continue from these.
    pruned_through_seq: int = 0
    pruned_last_hash: str = ""
    segments: list[Segment] = []


_ENC = msgspec.json.Encoder()
_MANIFEST = msgspec.json.Decoder(Manifest)
_LINE = msgspec.json.Decoder()


@dataclass(frozen=True)
class Sealed:
    """One sealed record as read back from Redis."""

    sealed_id: str
    line: str
    seq: int
    prev: str
    hash: str
    when: int

    @classmethod
    def parse(cls, sealed_id: str, line: str) -> Sealed:
        rec = cast(dict[str, Any], _LINE.decode(line))
        return cls(sealed_id, line, int(rec["seq"]), str(rec["prev"]), str(rec["hash"]),
                   int(rec.get("when", 0)))  # fmt: skip


def load_manifest(folder: Path) -> Manifest | None:
    try:
        return _MANIFEST.decode((folder / MANIFEST).read_bytes())
    except FileNotFoundError:
        return None


def segment_name(first_seq: int) -> str:
    return f"{first_seq:012d}.jsonl"


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def folder_lock(folder: Path, shared: bool = False) -> Iterator[None]:
    """The folder's lock: exclusive for writers (fails at once when taken),
    shared for readers (waits for a write in progress)."""
    with (folder / LOCK).open("a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_SH if shared else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise Busy(str(folder)) from None
            raise
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


class SegmentStore:
    """The segment files and manifest of one source (blocking calls)."""

    def __init__(self, root: Path, source: Source, max_records: int, max_age: float) -> None:
        self.source = source
        self.dir = root / source.dirname
        self.max_records = max(1, max_records)
        self.max_age_ms = max(1, int(max_age * 1000))
        self.manifest = Manifest(source=source.name)
        self._stamp: tuple[int, int, int] | None = None  # manifest as we last saw it
        self._open_hash: Any = None  # running SHA-256 of the open segment

    # --- state ------------------------------------------------------------------

    def _manifest_stamp(self) -> tuple[int, int, int] | None:
        try:
            st = (self.dir / MANIFEST).stat()
        except FileNotFoundError:
            return None
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    def _refresh(self) -> None:
        """Re-reads the manifest when another process (or a previous run)
        wrote it, and repairs the open segment's tail after a crash."""
        stamp = self._manifest_stamp()
        if stamp is not None and stamp == self._stamp:
            return
        manifest = load_manifest(self.dir)
        if manifest is None:
            if any(self.dir.glob("*.jsonl")):
                raise ExportError(f"{self.dir}: segment files but no {MANIFEST}; not touching them")
            manifest = Manifest(source=self.source.name)
        if manifest.source != self.source.name:
            raise ExportError(f"{self.dir}/{MANIFEST} is of source {manifest.source!r}")
        self.manifest, self._stamp, self._open_hash = manifest, stamp, None
        seg = self._open()
        if seg is not None:
            self._open_hash = self._resume_open(seg)

    def _resume_open(self, seg: Segment) -> Any:
        path = self.dir / seg.file
        h = hashlib.sha256()
        with path.open("r+b") as f:
            size = os.fstat(f.fileno()).st_size
            if size < seg.bytes:
                raise ExportError(f"{path}: shorter than {MANIFEST} says ({size} < {seg.bytes})")
            if size > seg.bytes:  # written but never listed: exported again below
                f.truncate(seg.bytes)
                os.fsync(f.fileno())
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        if h.hexdigest() != seg.sha256:
            raise ExportError(f"{path}: SHA-256 differs from {MANIFEST}; not appending to it")
        return h

    def _open(self) -> Segment | None:
        segs = self.manifest.segments
        return segs[-1] if segs and not segs[-1].closed else None

    def position(self) -> tuple[int, str, str]:
        """(last exported seq, its hash, its sealed-stream id); 0 when none."""
        self.dir.mkdir(parents=True, exist_ok=True)
        with folder_lock(self.dir):
            self._refresh()
            return self._position()

    def _position(self) -> tuple[int, str, str]:
        m = self.manifest
        if m.segments:
            last = m.segments[-1]
            return last.last_seq, last.last_hash, last.last_id
        return m.pruned_through_seq, m.pruned_last_hash, ""

    # --- writing ----------------------------------------------------------------

    def append(self, records: list[Sealed], now_ms: int | None = None) -> int:
        """Appends the records that continue the exported chain; returns how many."""
        now = int(time.time() * 1000) if now_ms is None else now_ms
        self.dir.mkdir(parents=True, exist_ok=True)
        with folder_lock(self.dir):
            self._refresh()
            last_seq, last_hash, _ = self._position()
            todo = [r for r in records if r.seq > last_seq]
            for r in todo:
                if last_seq and (r.seq != last_seq + 1 or r.prev != last_hash):
                    raise ExportError(
                        f"{self.source.name}: sealed record seq {r.seq} does not continue the "
                        f"exported chain at seq {last_seq}"
                    )
                last_seq, last_hash = r.seq, r.hash
            if todo:
                self._write(todo, now)
            return len(todo)

    def _write(self, records: list[Sealed], now: int) -> None:
        seg = self._open()
        pending: list[bytes] = []
        for r in records:
            if seg is None or self._full(seg, now):
                if seg is not None:
                    self._flush(seg, pending)
                    self._close(seg)
                seg = self._start(r, now)
                pending = []
            data = (r.line + "\n").encode()
            pending.append(data)
            self._open_hash.update(data)
            seg.last_seq, seg.last_hash, seg.last_when = r.seq, r.hash, r.when
            seg.last_id = r.sealed_id
            seg.records += 1
            seg.bytes += len(data)
        if seg is not None:
            self._flush(seg, pending)
        self._save()

    def _full(self, seg: Segment, now: int) -> bool:
        return seg.records >= self.max_records or now - seg.opened_at >= self.max_age_ms

    def _start(self, r: Sealed, now: int) -> Segment:
        name = segment_name(r.seq)
        if any(s.file == name for s in self.manifest.segments):
            raise ExportError(f"{self.dir / name} is already listed; not overwriting it")
        # an unlisted file of that name is a crashed export's: start it afresh
        with (self.dir / name).open("wb") as f:
            os.fsync(f.fileno())
        _fsync_dir(self.dir)
        seg = Segment(file=name, first_seq=r.seq, last_seq=r.seq - 1, first_prev=r.prev,
                      last_hash=r.prev, records=0, bytes=0, sha256=hashlib.sha256().hexdigest(),
                      opened_at=now, first_when=r.when, last_when=r.when)  # fmt: skip
        self.manifest.segments.append(seg)
        self._open_hash = hashlib.sha256()
        return seg

    def _flush(self, seg: Segment, lines: list[bytes]) -> None:
        if lines:
            with (self.dir / seg.file).open("ab") as f:
                f.write(b"".join(lines))
                f.flush()
                os.fsync(f.fileno())
        seg.sha256 = self._open_hash.hexdigest()

    def _close(self, seg: Segment) -> None:
        seg.closed = True
        (self.dir / seg.file).chmod(0o444)  # a closed segment is never written again
        self._open_hash = None

    def _save(self) -> None:
        tmp = self.dir / (MANIFEST + ".tmp")
        with tmp.open("wb") as f:
            f.write(msgspec.json.format(_ENC.encode(self.manifest), indent=1))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.dir / MANIFEST)
        _fsync_dir(self.dir)
        self._stamp = self._manifest_stamp()

    def roll_if_due(self, now_ms: int | None = None) -> bool:
        """Closes the open segment once it is `max_age` old, even when idle."""
        now = int(time.time() * 1000) if now_ms is None else now_ms
        if not (self.dir / MANIFEST).exists():
            return False
        with folder_lock(self.dir):
            self._refresh()
            seg = self._open()
            if seg is None or now - seg.opened_at < self.max_age_ms:
                return False
            self._close(seg)
            self._save()
            return True

    def prune(self, before_ms: int) -> int:
        """Removes closed segments whose newest record is older than `before_ms`
        (the audit retention window); returns how many."""
        if not (self.dir / MANIFEST).exists():
            return 0
        with folder_lock(self.dir):
            self._refresh()
            m, gone = self.manifest, []
            while m.segments and m.segments[0].closed and m.segments[0].last_when < before_ms:
                seg = m.segments.pop(0)
                m.pruned_through_seq, m.pruned_last_hash = seg.last_seq, seg.last_hash
                gone.append(seg.file)
            if gone:
                self._save()  # listed as pruned first, then removed
                for name in gone:
                    with contextlib.suppress(FileNotFoundError):
                        (self.dir / name).unlink()
            return len(gone)


class Exporter:
    """Copies sealed records from Redis into segment stores, off the event loop."""

    def __init__(self, shards: Shards, root: Path, max_records: int, max_age: float,
                 batch: int = 1000) -> None:  # fmt: skip
        self._shards = shards
        self.root = root
        self._max_records = max_records
        self._max_age = max_age
        self._batch = batch
        self._stores: dict[str, SegmentStore] = {}
        # Last sealed-stream id exported, per source: sealed records after it
        # are not trimmed from Redis by retention.
        self.exported_id: dict[str, str] = {}

    def store(self, source: Source) -> SegmentStore:
        s = self._stores.get(source.name)
        if s is None:
            s = self._stores[source.name] = SegmentStore(
                self.root, source, self._max_records, self._max_age
            )
        return s

    async def _blocking(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(None, fn, *args)

    async def catch_up(self, source: Source) -> int:
        """Exports the next batch of sealed records; returns how many were
        written (0 when up to date or another process holds the folder)."""
        store = self.store(source)
        try:
            _, _, last_id = await self._blocking(store.position)
        except Busy:
            return 0
        start = "(" + last_id if last_id else "-"
        got = await self._shards.of(source.sealed).xrange(
            source.sealed, start, "+", count=self._batch
        )
        entries = cast(list[tuple[str, dict[str, str]]], got)
        if not entries:
            if last_id:
                self.exported_id[source.name] = last_id
            return 0
        records = [Sealed.parse(eid, fields["r"]) for eid, fields in entries]
        try:
            n = int(await self._blocking(store.append, records))
        except Busy:
            return 0
        self.exported_id[source.name] = records[-1].sealed_id
        return n

    async def roll_if_due(self, source: Source) -> None:
        with contextlib.suppress(Busy):
            await self._blocking(self.store(source).roll_if_due)

    async def prune(self, source: Source, before_ms: int) -> int:
        try:
            return int(await self._blocking(self.store(source).prune, before_ms))
        except Busy:
            return 0
