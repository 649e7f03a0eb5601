"""Shared fixtures: one real redis-server per test session, a fresh workspace per test.

Helpers that act through the API are in tests/support/client.py.
"""

from __future__ import annotations

import fcntl
import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from router.api.app import create_app
from router.runtime.settings import Settings, demo_token_spec
from router.store.local import LocalRedis
from tests.support.client import JWT_SECRET


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    url = os.environ.get("REDIS_URL")
    if url:
        yield url
        return
    server = LocalRedis()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def one_at_a_time(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """For the CPU-heavy multi-process tests: one runs at a time across xdist
    workers (a file lock in the temp root they share); side by side on two cores
    they starve each other into timeouts."""
    lock = tmp_path_factory.getbasetemp().parent / "one-at-a-time.lock"
    with lock.open("w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


@pytest.fixture
def settings(redis_url: str) -> Settings:
    # each test's service is its own metrics group: another test's never exports for it
    return Settings.from_env(
        {
            "ROUTER_TOKENS": demo_token_spec(),
            "ROUTER_METRICS_GROUP": uuid.uuid4().hex,
            "ROUTER_JWT_SECRET": JWT_SECRET,
        },
        redis_url=redis_url,
        timer_poll=0.01,
    )


@pytest.fixture
async def api(aiohttp_client: Any, settings: Settings) -> TestClient:  # type: ignore[type-arg]
    return await aiohttp_client(create_app(settings))


@pytest.fixture
def ws() -> str:
    return "t" + uuid.uuid4().hex[:10]
