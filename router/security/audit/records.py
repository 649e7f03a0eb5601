"""Audit records: what a sealed record holds, how it is hashed, how a chain is checked.

A record is one JSON object per source entry:

    seq     gapless position in the chain, from 1
    prev    hash of the record before (64 zeros before the first)
    source  `ws:<name>` or `access`
    src     the id of the entry in the source stream
    who     the actor (`role:name` from the bearer token, `system` for timers)
    what    the event type and the ids it concerns (contact, agent, pool ...)
    when    milliseconds since the epoch (Redis TIME when it happened)
    why     the reason, explanation and rule fields the event carries
    event   the original event JSON, verbatim
    hash    SHA-256 (hex) of the record without `hash`, encoded canonically:
            JSON, object keys sorted, no whitespace, UTF-8 (msgspec with
            `order="sorted"`; Python's json.dumps(sort_keys=True,
            separators=(",", ":"), ensure_ascii=False) agrees except for
            float spelling, and sealed records only carry floats inside `why`)

Each record's `prev` is the previous record's `hash`, so editing, removing or
reordering any record breaks the chain at that record. `who`, `what`, `when`
and `why` are derived from `event`; a checker derives them again, so they
cannot be altered on their own either. Pure code, no I/O.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import msgspec

from router.store.groups import id_tuple as id_tuple  # re-exported for the audit modules
from router.store.keys import ACCESS_SHARDS, ACCESS_STREAM, WsKeys, access_stream

GENESIS = "0" * 64
# Source name of the global stream of denied requests (router/security/auth.py writes
# it in flat fields: at, actor, method, route, status, reason, remote).
ACCESS = "access"
# Event fields naming what an event concerns, and why it happened.
WHAT_FIELDS = ("state", "contact", "agent", "pool", "clock", "step", "version", "to_pool",
               "to_agent")  # fmt: skip
WHY_FIELDS = ("reason", "explain", "rules", "sla", "policy", "previous", "stage", "due",
              "margin_ms", "late_ms", "wait_ms", "boost_ms", "expand", "notify", "reassign",
              "reassigned_from", "auto", "followups", "rollback_of")  # fmt: skip
ACCESS_WHAT = ("method", "route", "status", "role")
_WHAT, _WHY = frozenset(WHAT_FIELDS), frozenset(WHY_FIELDS)  # disjoint

_decode = msgspec.json.Decoder()


def is_access_name(name: str) -> bool:
    """Is this source (by name) one of the access-denial chains?"""
    return name == ACCESS or name.startswith(ACCESS + "-")


def canonical(value: Any) -> bytes:
    return msgspec.json.encode(value, order="sorted")


@dataclass(frozen=True)
class Source:
    """A stream that is sealed, and where its chain lives.

    A chain's keys share their own hash tag, `{audit:<source>}`, so the
    sealing script (chain head and sealed stream together) runs on one Redis
    Cluster slot, and that slot is not the workspace's: a hot workspace's
    sealing load lands on another shard, and clearing a workspace's keys
    (`{ws:<name>}*`) leaves its audit trail alone.
    """

    name: str  # `ws:<name>` or `access`
    stream: str  # the source stream
    base: str  # prefix of the chain's keys
    label: str  # metrics `workspace` label
    dirname: str  # directory of its segment files

    @classmethod
    def workspace(cls, ws: str) -> Source:
        return cls("ws:" + ws, WsKeys(ws).events, "{audit:ws:" + ws + "}", ws, "ws-" + ws)

    @classmethod
    def access(cls, shard: int | None = None) -> Source:
        """One access-denial stream (`router/store/keys.py`); None: the one
        stream denials went to before they were sharded."""
        if shard is None:
            return cls(ACCESS, ACCESS_STREAM, "{audit:" + ACCESS + "}", ACCESS_STREAM, ACCESS)
        name = f"{ACCESS}-{shard}"
        stream = access_stream(shard)
        return cls(name, stream, "{audit:" + name + "}", stream, name)

    @classmethod
    def accesses(cls) -> list[Source]:
        """Every access-denial chain: the sharded streams and the older one."""
        return [cls.access(), *(cls.access(i) for i in range(ACCESS_SHARDS))]

    @classmethod
    def parse(cls, text: str) -> Source:
        """`access`, `access-<n>` or `ws:<name>` (a bare name is taken as a workspace)."""
        access = cls._access_named(text)
        return access if access is not None else cls.workspace(text.removeprefix("ws:"))

    @classmethod
    def _access_named(cls, name: str) -> Source | None:
        if name == ACCESS:
            return cls.access()
        shard = name.removeprefix(ACCESS + "-")
        if shard != name and shard.isdigit() and int(shard) < ACCESS_SHARDS:
            return cls.access(int(shard))
        return None

    @classmethod
    def from_dirname(cls, dirname: str) -> Source | None:
        access = cls._access_named(dirname)
        if access is not None:
            return access
        if dirname.startswith("ws-") and len(dirname) > 3:
            return cls.workspace(dirname[3:])
        return None

    @property
    def is_access(self) -> bool:
        return is_access_name(self.name)

    @property
    def sealed(self) -> str:  # stream of sealed records (field `r`)
        return self.base

    @property
    def head(self) -> str:  # hash: seq, hash, src (last source id sealed), ord, at
        return self.base + ":head"

    @property
    def lease(self) -> str:  # string: the sealing replica's id, with a TTL
        return self.base + ":lease"


def stream_ms(entry_id: str) -> int:
    return int(entry_id.partition("-")[0])


def event_json(fields: dict[str, str]) -> str:
    """The original event of a source entry: field `e`, or the whole entry
    (access entries are flat fields) as canonical JSON."""
    e = fields.get("e")
    if e is not None and len(fields) == 1:
        return e
    return canonical(fields).decode()


def _when(value: object, fallback: int) -> int:
    try:
        n = float(value)  # type: ignore[arg-type]
        # access entries may carry seconds; events carry milliseconds
        return int(n * 1000) if n < 100_000_000_000 else int(n)
    except (TypeError, ValueError, OverflowError):  # not a number, NaN, or beyond any time
        return fallback


def derive(source: str, src: str, event: str) -> dict[str, Any]:
    """who, what, when and why of one event (also for a garbled one: it is
    sealed all the same, as `unparsable`)."""
    fallback = stream_ms(src)
    try:
        ev = _decode.decode(event)
    except msgspec.DecodeError:
        ev = None
    if not isinstance(ev, dict):
        return {"who": "", "what": {"type": "unparsable"}, "when": fallback, "why": {}}
    if is_access_name(source):
        what = {"type": str(ev.get("type") or "access.denied")}
        what.update({k: ev[k] for k in ACCESS_WHAT if k in ev})
        who = str(ev.get("actor") or "anonymous")
        why = {"reason": ev["reason"]} if "reason" in ev else {}
    else:
        what = {"type": str(ev.get("type", ""))}
        why = {}
        # one pass over the event's few fields rather than a lookup per known
        # field (27 of them): sealing is on every event's path
        for k, v in ev.items():
            if k in _WHAT:
                what[k] = v
            elif k in _WHY:
                why[k] = v
        who = str(ev.get("actor", ""))
    return {"who": who, "what": what, "when": _when(ev.get("at"), fallback), "why": why}


def seal_record(source: str, seq: int, prev: str, src: str, event: str) -> tuple[str, str]:
    """The canonical JSON line of a new record and its hash.

    The body is encoded once. Its keys are sorted, so `hash` belongs between
    `event`, the first key, and `prev`, the second. `event`'s value is a JSON
    string, whose quotes are escaped, so the first `,"prev":` in the encoding
    is that key. The record with its hash is the same bytes with
    `,"hash":"<hex>"` placed there, as canonical(body | {"hash": ...}) would
    encode it (a test compares the two)."""
    body = {"seq": seq, "prev": prev, "source": source, "src": src, "event": event,
            **derive(source, src, event)}  # fmt: skip
    raw = canonical(body)
    digest = hashlib.sha256(raw).hexdigest()
    at = raw.index(b',"prev":')
    return (raw[:at] + b',"hash":"' + digest.encode() + b'"' + raw[at:]).decode(), digest


def gap_event(after: str, before: str, lost: int) -> str:
    """Event sealed in place of source entries deleted before they were sealed
    (the stream's length cap outran a sealer that was down): the loss itself
    is on record."""
    return canonical({"type": "audit.gap", "actor": "system", "at": stream_ms(before),
                      "reason": f"{lost} source entries deleted before they were sealed",
                      "after": after, "before": before, "lost": lost}).decode()  # fmt: skip


@dataclass
class Problem:
    reason: str
    seq: int | None


class ChainChecker:
    """Walks records in order and reports the first that does not belong.

    `next_seq`/`prev` anchor the walk when the chain's start was trimmed by
    retention; without them the first record seen is the anchor (and must
    link to GENESIS when it is seq 1).
    """

    def __init__(self, source: str, next_seq: int | None = None, prev: str | None = None) -> None:
        self.source = source
        self.next_seq = next_seq
        self.prev = prev
        self.count = 0
        self.first_seq: int | None = None
        self.first_prev: str | None = None
        self.last_when = 0
        self.gaps = 0

    def check(self, line: str | bytes) -> Problem | None:
        try:
            rec = _decode.decode(line)
        except msgspec.DecodeError:
            return Problem("unreadable record (not JSON)", None)
        if not isinstance(rec, dict):
            return Problem("unreadable record (not a JSON object)", None)
        seq = rec.get("seq")
        if not isinstance(seq, int) or isinstance(seq, bool):
            return Problem("record without a seq", None)
        stored = rec.pop("hash", None)
        if not isinstance(stored, str):
            return Problem("record without a hash", seq)
        computed = hashlib.sha256(canonical(rec)).hexdigest()
        if computed != stored:
            return Problem(f"hash mismatch (stored {stored[:16]}…, computed {computed[:16]}…)",
                           seq)  # fmt: skip
        problem = self._placement(rec, seq) or self._contents(rec, seq)
        if problem is None:
            if self.first_seq is None:
                self.first_seq, self.first_prev = seq, rec["prev"]
            self.count += 1
            self.next_seq, self.prev = seq + 1, stored
        return problem

    def _placement(self, rec: dict[str, Any], seq: int) -> Problem | None:
        """Is the record where the chain says it belongs?"""
        expected = seq if self.next_seq is None else self.next_seq
        if seq > expected:
            return Problem(f"gap: seq {expected} missing or out of order", seq)
        if seq < expected:
            return Problem(f"out of order: seq {seq} where {expected} belongs", seq)
        prev = self.prev if self.prev is not None else (GENESIS if seq == 1 else rec.get("prev"))
        if rec.get("prev") != prev:
            return Problem(f"broken link: prev {str(rec.get('prev'))[:16]}… is not the hash of "
                           f"seq {seq - 1} ({str(prev)[:16]}…)", seq)  # fmt: skip
        if rec.get("source") != self.source:
            return Problem(f"record of source {rec.get('source')!r} in {self.source!r}", seq)
        return None

    def _contents(self, rec: dict[str, Any], seq: int) -> Problem | None:
        """Do who, what, when and why say what the sealed event says?"""
        event, src = rec.get("event"), rec.get("src")
        if not isinstance(event, str) or not isinstance(src, str):
            return Problem("record without its event", seq)
        derived = derive(self.source, src, event)
        for k, v in derived.items():
            if rec.get(k) != v:
                return Problem(f"field {k!r} disagrees with the sealed event", seq)
        if derived["what"].get("type") == "audit.gap":
            self.gaps += 1
        self.last_when = int(derived["when"])
        return None
