"""Validation of routing config documents: every problem, each located by its path.

A rejected config costs an operator a round trip per reported problem, so this
module reports all of them at once: type and shape problems from the JSON
Schema that msgspec derives from `RoutingConfig` (one source of truth for the
wire types), then cross-reference problems (a rule naming an unknown pool, a
pool serving an undeclared channel) that no schema can express.

Schema problems are `router/routing/schema_problems.py`, cross-references
`router/routing/config_checks.py`; `validate_config` feeds the latter a typed
config turned back into builtins. Pure code, no I/O.
"""

from __future__ import annotations

from typing import Any

import msgspec

from router.routing.config import CONFIG_DECODER, RoutingConfig
from router.routing.config_checks import COLLECTIONS, semantic_problems
from router.routing.schema_problems import msgspec_problem, schema_problems
from router.runtime.errors import BadRequest, FieldProblem, InvalidInput


def parse_config(body: bytes) -> RoutingConfig:
    """Decode and fully validate a routing config document.

    Raises `BadRequest` when the body is not JSON, `InvalidInput` listing every
    problem (schema and cross-reference alike) when it is JSON but not a valid
    config.
    """
    doc = _decode_json(body)
    problems = schema_problems(doc)
    if problems:
        raise InvalidInput(_with_semantic_problems(doc, problems))
    # Cross-references (and checks a schema cannot express, such as a webhook
    # secret's encoding) before the typed decode, which stops at the first.
    problems = semantic_problems(doc, frozenset())
    if problems:
        raise InvalidInput(problems)
    try:
        return CONFIG_DECODER.decode(body)
    except msgspec.ValidationError as exc:
        # The schema mirrors the Structs, so this means the two disagree on
        # some corner; still answer 422 with msgspec's own location.
        raise InvalidInput([msgspec_problem(exc)]) from None


def validate_config(cfg: RoutingConfig) -> list[FieldProblem]:
    """Cross-reference problems of a config whose types are already valid."""
    return semantic_problems(msgspec.to_builtins(cfg), frozenset())


def _decode_json(body: bytes) -> Any:
    try:
        return msgspec.json.decode(body)
    except msgspec.DecodeError as exc:
        detail = str(exc).removeprefix("JSON is malformed: ")
        raise BadRequest(f"malformed JSON: {detail}") from None
    except msgspec.ValidationError as exc:
        # Untyped decoding only fails validation on numbers beyond float64.
        raise BadRequest(f"malformed JSON: {exc}") from None
    except RecursionError:
        raise BadRequest("malformed JSON: nested too deeply") from None
    except UnicodeDecodeError:  # msgspec lets some invalid UTF-8 in strings through as this
        raise BadRequest("malformed JSON: not valid UTF-8") from None


def _with_semantic_problems(doc: object, problems: list[FieldProblem]) -> list[FieldProblem]:
    """Schema problems plus the cross-reference problems not already covered."""
    if not isinstance(doc, dict) or any(not p.field for p in problems):
        return problems
    # A collection that is itself missing or mistyped declares nothing, and
    # every reference into it would be a spurious echo of that one problem.
    broken = frozenset(p.field for p in problems if p.field in COLLECTIONS)
    covered = [p.field for p in problems]
    extra = [
        p
        for p in semantic_problems(doc, broken)
        if not any(_is_within(p.field, field) for field in covered)
    ]
    return problems + extra


def _is_within(path: str, prefix: str) -> bool:
    return path == prefix or (path.startswith(prefix) and path[len(prefix)] in ".[")
