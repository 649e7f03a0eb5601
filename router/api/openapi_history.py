"""The config history's part of the OpenAPI document (`openapi.py` assembles it)."""

from __future__ import annotations

from typing import Any

from router.api.config_history import VERSION_MAX
from router.api.openapi_parts import Route, operation, query, ref
from router.routing.confighistory import PAGE_MAX, ConfigVersion, RollbackIn, VersionPage

TYPES: tuple[Any, ...] = (ConfigVersion, VersionPage, RollbackIn)


def _version(name: str, text: str, required: bool = False) -> dict[str, Any]:
    param = query(name, {"type": "integer", "minimum": 1, "maximum": VERSION_MAX}, text)
    param["required"] = required
    return param


def config_history_routes(b: str) -> list[Route]:
    c = b + "/config"
    limit = {"type": "integer", "minimum": 1, "maximum": PAGE_MAX, "default": 20}
    versions = operation(
        "Config versions, newest first, without their documents (supervisor)",
        ref(VersionPage),
        params=[
            query("limit", limit, "Versions per page"),
            _version("before", "Versions older than this one (the `next` of the last page)"),
        ],
    )
    info = {"$ref": "#/components/schemas/VersionInfo"}
    diff = operation(
        "RFC 6902 JSON Patch from one config version to another, secrets redacted",
        {
            "type": "object",
            "required": ["from", "to", "patch"],
            "properties": {
                "from": info,
                "to": info,
                "patch": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["op", "path"],
                        "properties": {
                            "op": {"enum": ["add", "remove", "replace", "move", "copy", "test"]},
                            "path": {"type": "string"},
                            "from": {"type": "string"},
                            "value": {},
                        },
                    },
                },
            },
        },
        params=[
            _version("from", "The version compared from", required=True),
            _version("to", "The version compared to", required=True),
        ],
    )
    rollback = operation(
        "Put an earlier version's config back as a new version (admin)",
        ref(ConfigVersion),
        RollbackIn,
    )
    ops: list[tuple[str, str, str, dict[str, Any]]] = [
        ("get", c + "/versions", "getConfigVersions", versions),
        (
            "get",
            c + "/versions/{version}",
            "getConfigVersion",
            operation("One config version, whole, secrets redacted", ref(ConfigVersion)),
        ),
        ("get", c + "/diff", "diffConfigVersions", diff),
        ("post", c + "/rollback", "rollbackConfig", rollback),
    ]
    for _, _, op_id, op in ops:
        op["operationId"] = op_id
    return [(method, path, op) for method, path, _, op in ops]
