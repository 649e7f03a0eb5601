"""What finding a request's handler costs: aiohttp's `UrlDispatcher.resolve` on
the router's real route table, for the three requests of a contact's
lifecycle, against `/healthz` (one plain route, a dict lookup and a string
compare) as the baseline measured in the same run.

    .venv/bin/pytest benchmarks/test_bench_routes.py -p no:xdist --benchmark-only

Every route under `/v1/workspaces` shares one index entry, so aiohttp tries
them in the order they were added, a regex match each; the lifecycle's routes
are added first (`router/api/routes.py`). Before that, creation cost 6.0 µs,
acceptance 8.5 and completion 9.9 (the 11th, 14th and 16th tried); after it
1.9, 2.9 and 3.2, against 0.9 for `/healthz` (2026-12-05).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from router.api.app import create_app
from router.runtime.settings import Settings

PATHS = {
    "healthz": ("GET", "/healthz"),
    "create": ("POST", "/v1/workspaces/bank/contacts"),
    "accept": ("POST", "/v1/workspaces/bank/contacts/c-1/accept"),
    "complete": ("POST", "/v1/workspaces/bank/contacts/c-1/complete"),
}
# resolutions per measured round: one is ~1 µs, below the timer's resolution
ROUND = 1000


@pytest.fixture(scope="module")
def app(monkeypatch_module: pytest.MonkeyPatch) -> Iterator[web.Application]:
    # the table only: create_app parses the URL and connects to nothing
    monkeypatch_module.setenv("REDIS_URL", "redis://127.0.0.1:6379/0")
    application = create_app(Settings.from_env())
    application.freeze()
    yield application


@pytest.fixture(scope="module")
def monkeypatch_module() -> Iterator[pytest.MonkeyPatch]:
    with pytest.MonkeyPatch.context() as mp:
        yield mp


@pytest.mark.parametrize("name", list(PATHS))
def test_resolve(benchmark: Any, app: web.Application, name: str) -> None:
    method, path = PATHS[name]
    request = make_mocked_request(method, path, app=app)
    router = app.router
    loop = asyncio.new_event_loop()

    async def many() -> Any:
        for _ in range(ROUND):
            info = await router.resolve(request)
        return info

    try:
        info = benchmark(lambda: loop.run_until_complete(many()))
    finally:
        loop.close()
    # the right handler, not a 404 or 405 found fast
    assert info.http_exception is None
    assert info.route.method == method
