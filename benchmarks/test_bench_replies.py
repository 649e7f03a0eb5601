"""How a record function's contact reaches the router: the reply to the read after
the function (`router/store/batch.py`), parsed by hiredis as the router's
connections receive it (RESP3), as HGETALL's map against HRANDFIELD's pairs.

    .venv/bin/pytest benchmarks/test_bench_replies.py -p no:xdist --benchmark-only

The replies are the bytes Redis sends for a real contact record (one created by
the routing functions, with its SLA clock), read off a raw socket; the two
benchmarks' means give the ratio (HGETALL's map took 1.9x as long, 7.2 against 3.9 µs,
on 2026-12-05).
"""

from __future__ import annotations

import socket
import uuid
from typing import Any
from urllib.parse import urlparse

import hiredis
import pytest

from benchmarks.conftest import Runner, bench_config, contact, create_args
from router.routing.engine import Engine
from router.store.batch import _pairs_of, _whole
from router.store.keys import WsKeys
from router.store.local import LocalRedis


def _raw_reply(url: str, command: tuple[Any, ...]) -> bytes:
    """`command`'s reply as Redis sends it on a RESP3 connection, unparsed."""
    u = urlparse(url)
    with socket.create_connection((u.hostname or "127.0.0.1", u.port or 6379), 5) as s:
        s.sendall(hiredis.pack_command(("HELLO", 3)))
        reader = hiredis.Reader()
        while (hello := reader.gets()) is False:
            reader.feed(s.recv(65536))
        assert hello
        s.sendall(hiredis.pack_command(command))
        raw = b""
        probe = hiredis.Reader()
        while True:
            chunk = s.recv(65536)
            raw += chunk
            probe.feed(chunk)
            if probe.gets() is not False:
                return raw


@pytest.fixture(scope="module")
def record_key(engine: Engine, run: Runner) -> str:
    """A contact record as create writes it (queued, with an SLA clock)."""
    cfg = bench_config()
    ws = "rp" + uuid.uuid4().hex[:8]
    run(engine.put_config(ws, cfg, "admin:bench"))
    k = WsKeys(ws)
    run(engine.scripts["create"](keys=[k.runtime, k.contact("c1")],
                                 args=create_args(cfg, contact("c1")),
                                 client=engine.shards.single))  # fmt: skip
    return k.contact("c1")


def _parser() -> Any:
    """Parses one reply with one reader throughout, as a connection keeps its own."""
    reader = hiredis.Reader(encoding="utf-8")

    def parse(raw: bytes) -> Any:
        reader.feed(raw)
        return reader.gets()

    return parse


def test_record_reply_hgetall_map(
    benchmark: Any, redis_server: LocalRedis, record_key: str
) -> None:
    raw = _raw_reply(redis_server.url, ("HGETALL", record_key))
    parse = _parser()
    record = benchmark(parse, raw)
    assert isinstance(record, dict) and record["id"] == "c1"
    benchmark.extra_info["fields"] = len(record)


def test_record_reply_hrandfield_pairs(
    benchmark: Any, redis_server: LocalRedis, record_key: str
) -> None:
    raw = _raw_reply(redis_server.url, _whole(record_key))
    parse = _parser()
    record = benchmark(lambda: _pairs_of(parse(raw)))
    # the same record, whole, as the map gives it
    assert record == parse(_raw_reply(redis_server.url, ("HGETALL", record_key)))
    benchmark.extra_info["fields"] = len(record)
