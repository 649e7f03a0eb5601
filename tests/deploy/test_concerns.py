"""The router's CPU by concern (`benchmarks.floor --profile`): each py-spy
sample is charged to the deepest frame that names a concern, so time spent in
redis-py under the engine is the Redis client's, not the engine's."""

from __future__ import annotations

import pytest

from benchmarks.concerns import OTHER, shares

ENGINE = "Engine.create_contact (router/routing/engine.py:258)"
BATCH = "send_packed (router/store/batch.py:297)"
SEALER = "Sealer._seal_batch (router/security/audit/sealer.py:120)"
SEAL = "seal_record (router/security/audit/records.py:80)"


def test_samples_go_to_the_deepest_concern_named() -> None:
    raw = [
        f"run_app (router/runtime/serving.py:40);{ENGINE};{BATCH} 6",
        f"run_app (router/runtime/serving.py:40);{ENGINE} 2",
        f"{SEALER};{SEAL} 1",
        "run_app (router/runtime/serving.py:40) 1",
        "<module> (x.py:1);mystery (y.py:2) 0",
    ]
    got = shares(raw)
    assert got["Redis client: batch, send, replies (redis-py, hiredis)"] == pytest.approx(0.6)
    assert got["router middlewares, handler, engine (their own lines)"] == pytest.approx(0.2)
    assert got["audit trail: sealing (hash chain)"] == pytest.approx(0.1)
    assert got["event loop (uvloop: socket reads, polling)"] == pytest.approx(0.1)
    assert next(iter(got)).startswith("Redis client")  # largest first
    assert sum(got.values()) == pytest.approx(1.0)
    assert shares(["mystery (y.py:2) 3"]) == {OTHER: 1.0}
