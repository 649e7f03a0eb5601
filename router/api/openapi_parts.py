"""Pieces every part of the OpenAPI document is built from: operations,
parameters and the problem+json schema (`openapi.py` assembles them)."""

from __future__ import annotations

from typing import Any

# (method, path, operation)
Route = tuple[str, str, dict[str, Any]]

PROBLEM = {
    "type": "object",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "field": {"type": "string"},
        "state": {"type": "string"},
        "errors": {"type": "array", "items": {"type": "object"}},
        # a refused sign-out: the answered contacts the agent still holds
        "contacts": {"type": "array", "items": {"type": "string"}},
    },
}


def ref(t: Any) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{t.__name__}"}


def operation(
    summary: str,
    ok: Any,
    body: Any = None,
    status: int = 200,
    params: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    problem = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
    responses: dict[str, Any] = {
        str(status): {"description": "OK", "content": {"application/json": {"schema": ok}}},
    }
    for code in ("400", "401", "403", "404", "409", "413", "422", "429", "503"):
        responses[code] = {"description": "Problem", "content": problem}
    op: dict[str, Any] = {
        "summary": summary,
        "responses": responses,
        "parameters": params or [],
        "security": [{"bearer": []}],
    }
    if body is not None:
        op["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": ref(body)}},
        }
    return op


def path_params(path: str) -> list[dict[str, Any]]:
    names = [p[1:-1] for p in path.split("/") if p.startswith("{")]
    return [
        {
            "name": n,
            "in": "path",
            "required": True,
            "schema": {"type": "string", "pattern": "^[A-Za-z0-9_.:@-]{1,128}$"},
        }
        for n in names
    ]


def query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": schema,
    }


NAME = {"type": "string", "minLength": 1, "maxLength": 64, "pattern": "^[A-Za-z0-9_.:-]+$"}
