"""Typed keys of the application's state and of a request's, in one place.

Every API module reads the app's engine, Redis client, settings and the
caller's token through these; none imports the app (`router/api/app.py`), which
only builds it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from router.archive.history import History
from router.routing.engine import Engine
from router.runtime.metrics import Metrics
from router.runtime.settings import Settings, Token
from router.store.notify import Notifier
from router.store.shards import Shards
from router.wfm.exporter import StateExporter
from sla.timers import TimerWorker

SETTINGS = web.AppKey("settings", Settings)
ENGINE = web.AppKey("engine", Engine)
NOTIFIER = web.AppKey("notifier", Notifier)
TIMERS = web.AppKey("timers", TimerWorker)
SHARDS = web.AppKey("shards", Shards)
METRICS = web.AppKey("metrics", Metrics)
EXPORTER = web.AppKey("exporter", StateExporter)
HISTORY = web.AppKey("history", History)  # only with ROUTER_ARCHIVE_URL
TOKEN = web.RequestKey("token", Token)  # the caller, set by auth

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
