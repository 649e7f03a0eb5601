"""A private PostgreSQL per archive test (tests/support/postgres.py), and a
Redis per module.

A router's archiver copies every workspace its Redis holds: on the session's
shared Redis, a test's fresh database would first receive the events of every
workspace the tests before it left there (hundreds by the end of a run), and
its own rows only after them."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from router.store.local import LocalRedis
from tests.support.postgres import PostgresServer, private_postgres


@pytest.fixture
def server() -> Iterator[PostgresServer]:
    with private_postgres("pg-archive-") as pg:
        yield pg


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    server = LocalRedis()
    try:
        yield server.url
    finally:
        server.stop()
