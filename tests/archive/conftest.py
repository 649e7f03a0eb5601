"""A private PostgreSQL per archive test (tests/support/postgres.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.postgres import PostgresServer, private_postgres


@pytest.fixture
def server() -> Iterator[PostgresServer]:
    with private_postgres("pg-archive-") as pg:
        yield pg
