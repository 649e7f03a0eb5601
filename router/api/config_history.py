"""The config history over HTTP: every version listed, one read back, two compared,
and a roll-back (`router/routing/confighistory.py` keeps them).

Reading the history is for supervisors (and admins), not for gateways and agent
desktops: those read the current config to do their work, while who changed
what and when is oversight. Rolling back is an admin's, like `PUT`. Webhook
secrets never leave: versions are redacted as `GET /v1/workspaces/{ws}` is, and
diffs are computed between redacted documents (a changed secret shows as a
`replace` of the redacted text, never its value).
"""

from __future__ import annotations

from typing import Any

import jsonpatch
import msgspec
from aiohttp import web

from router.api.appkeys import ENGINE, HISTORY
from router.api.common import actor, body, json_response, path_id, roles
from router.api.workspace import REDACTED, SECRETS, if_match, redacted
from router.archive.configs import ArchivedConfigs
from router.routing.confighistory import (
    PAGE_DEFAULT,
    PAGE_MAX,
    ConfigVersion,
    RollbackIn,
    VersionInfo,
)
from router.runtime.errors import FieldProblem, InvalidInput, NotFound

VERSION_MAX = 2**53  # versions are counters; past this a number is no version


def _number(value: str | None, name: str, low: int, high: int) -> int:
    if value is None or not value.isdigit() or not low <= int(value) <= high:
        raise InvalidInput([FieldProblem(name, f"must be an integer from {low} to {high}")])
    return int(value)


def _archive(request: web.Request) -> ArchivedConfigs | None:
    """Versions Redis no longer keeps, from the archive when one is configured."""
    history = request.app.get(HISTORY)
    return ArchivedConfigs(history) if history is not None else None


def _info(v: ConfigVersion) -> VersionInfo:
    return VersionInfo(v.version, v.updated_at, v.actor, v.config.description, v.rollback_of)


def secret_changes(a: ConfigVersion, b: ConfigVersion, patch: list[dict[str, Any]]) -> None:
    """A secret changed in a webhook both versions have looks the same once
    redacted: add a `replace` of the redacted text, so the diff still says so."""
    paths = {op["path"] for op in patch}
    for name, hook in b.config.webhooks.items():
        old = a.config.webhooks.get(name)
        for key in SECRETS:
            path = f"/webhooks/{name}/{key}"
            if old is None or path in paths or getattr(old, key) == getattr(hook, key):
                continue
            if getattr(old, key) is not None and getattr(hook, key) is not None:
                patch.append({"op": "replace", "path": path, "value": REDACTED})


@roles("supervisor")
async def get_versions(request: web.Request) -> web.Response:
    """`?limit=N&before=V`: newest first; `next` is the `before` of the next page."""
    q = request.query
    limit = _number(q.get("limit", str(PAGE_DEFAULT)), "limit", 1, PAGE_MAX)
    before = _number(q["before"], "before", 1, VERSION_MAX) if "before" in q else None
    history = request.app[ENGINE].history
    page = await history.versions(path_id(request, "ws"), before, limit, _archive(request))
    return json_response(page)


def _version_id(request: web.Request) -> int:
    text = path_id(request, "version")
    if not text.isdigit() or not 1 <= int(text) <= VERSION_MAX:
        raise NotFound(f"config version {text[:64]!r} does not exist", field="version")
    return int(text)


@roles("supervisor")
async def get_version(request: web.Request) -> web.Response:
    ws = path_id(request, "ws")
    wanted = _version_id(request)
    version = await request.app[ENGINE].history.version(ws, wanted, archive=_archive(request))
    return json_response(redacted(version))


@roles("supervisor")
async def get_diff(request: web.Request) -> web.Response:
    """`?from=A&to=B`: the RFC 6902 JSON Patch that turns A's config into B's."""
    ws = path_id(request, "ws")
    numbers = {k: _number(request.query.get(k), k, 1, VERSION_MAX) for k in ("from", "to")}
    history = request.app[ENGINE].history
    archive = _archive(request)
    a = await history.version(ws, numbers["from"], field="from", archive=archive)
    b = await history.version(ws, numbers["to"], field="to", archive=archive)
    patch = jsonpatch.make_patch(redacted(a)["config"], redacted(b)["config"]).patch
    secret_changes(a, b, patch)
    out = {"from": _info(a), "to": _info(b), "patch": patch}
    return json_response(msgspec.to_builtins(out))


@roles("admin")
async def post_rollback(request: web.Request) -> web.Response:
    """`{"version": N}`: N's document (its secrets included) as a new version."""
    ws = path_id(request, "ws")
    wanted = await body(request, RollbackIn)
    engine = request.app[ENGINE]
    stored = await engine.history.rollback(
        ws, wanted.version, actor(request), if_match(request), _archive(request)
    )
    # the caller sent no secrets this time: they are not echoed back as PUT does
    return json_response({**redacted(stored), "rollback_of": wanted.version})


def setup_config_history_routes(app: web.Application) -> None:
    base = "/v1/workspaces/{ws}/config"
    app.router.add_get(base + "/versions", get_versions)
    app.router.add_get(base + "/versions/{version}", get_version)
    app.router.add_get(base + "/diff", get_diff)
    app.router.add_post(base + "/rollback", post_rollback)
