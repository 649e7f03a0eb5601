"""JSON Schema problems of a routing config document, each at its exact path.

The schema is the one msgspec derives from `RoutingConfig` (one source of truth
for the wire types), checked with jsonschema so that every problem of a
document is reported at once, not only the first as a typed decode would.
Pure code, no I/O.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from typing import Any, Final

import msgspec
from jsonschema import Draft202012Validator, ValidationError
from jsonschema.protocols import Validator
from jsonschema.validators import extend

from router.routing.config import RoutingConfig
from router.runtime.errors import BadRequest, FieldProblem

# Long offending values (a megabyte string where a list belongs) are cut so a
# problem document stays readable and small.
_MAX_MESSAGE = 200
# Path segments that read unambiguously after a dot; anything else (names may
# contain `.`) is quoted in brackets: pools["eu.cards"].channels[0].
_PLAIN_KEY = re.compile(r"[A-Za-z0-9_:-]+")
_JSON_TYPES: Final[dict[type, str]] = {
    dict: "object",
    list: "array",
    str: "string",
    bool: "boolean",
    int: "integer",
    float: "number",
    type(None): "null",
}


def _strict_integer(_checker: object, instance: object) -> bool:
    # JSON Schema counts 1.0 as an integer but msgspec refuses a float for an
    # `int` field. Matching msgspec here keeps such a value among the listed
    # problems instead of surfacing alone from the typed decode afterwards.
    return isinstance(instance, int) and not isinstance(instance, bool)


_SCHEMA: Final[dict[str, Any]] = msgspec.json.schema(RoutingConfig)
Draft202012Validator.check_schema(_SCHEMA)
# Built once at import: compiling the schema's references and patterns per
# request would dominate the cost of validating a small document.
_VALIDATOR: Final[Validator] = extend(  # type: ignore[no-untyped-call]  # stubs leave extend untyped
    Draft202012Validator,
    type_checker=Draft202012Validator.TYPE_CHECKER.redefine("integer", _strict_integer),
)(_SCHEMA)


def schema_problems(doc: Any) -> list[FieldProblem]:
    problems: dict[FieldProblem, None] = {}  # ordered and free of duplicates
    try:
        for error in _VALIDATOR.iter_errors(doc):
            problems.update(dict.fromkeys(_problems_from(error)))
    except RecursionError:
        # Only a value nested close to the interpreter's limit gets here (the
        # schema itself is shallow, but jsonschema reprs offending values).
        raise BadRequest("malformed JSON: nested too deeply") from None
    return list(problems)


def _problems_from(error: ValidationError) -> Iterator[FieldProblem]:
    path = list(error.absolute_path)
    keyword = error.validator
    instance: Any = error.instance
    value: Any = error.validator_value
    if keyword == "additionalProperties" and value is False:
        yield from _unknown_fields(error, path)
    elif keyword == "required":
        for key in value:
            if key not in instance:
                yield FieldProblem(json_path([*path, key]), "required field is missing")
    elif _parent_keyword(error) == "propertyNames":
        # A bad key is reported under the object holding it, as the key itself.
        yield FieldProblem(json_path([*path, instance]), clip(f"invalid name: {error.message}"))
    elif keyword in ("anyOf", "oneOf"):
        yield from _alternative_problems(error, path)
    elif keyword == "type":
        yield FieldProblem(
            json_path(path), f"expected {_expected(error)}, got {_json_type(instance)}"
        )
    elif keyword == "enum":
        options = ", ".join(map(str, value))
        yield FieldProblem(json_path(path), clip(f"expected one of: {options}; got {instance!r}"))
    else:
        yield FieldProblem(json_path(path), clip(error.message))


def _unknown_fields(error: ValidationError, path: list[str | int]) -> Iterator[FieldProblem]:
    # One jsonschema error covers all unknown fields of an object; name each so
    # the caller sees exactly which keys to remove, and which ones exist.
    schema: Any = error.schema
    known = schema.get("properties", {})
    hint = f"unknown field; expected one of: {', '.join(known)}" if known else "unknown field"
    instance: Any = error.instance
    for key in instance:
        if key not in known:
            yield FieldProblem(json_path([*path, key]), hint)


def _alternative_problems(error: ValidationError, path: list[str | int]) -> Iterator[FieldProblem]:
    # `X | None` fields become anyOf. Report the problems of the first branch
    # whose type fits the value (e.g. a list whose items are bad); if none
    # fits, the value's type is the problem.
    branches: dict[str | int, list[ValidationError]] = {}
    for sub in error.context:
        branches.setdefault(sub.relative_schema_path[0], []).append(sub)
    for subs in branches.values():
        if not any(s.validator == "type" and not s.relative_path for s in subs):
            for sub in subs:
                yield from _problems_from(sub)
            return
    expected = " or ".join(
        dict.fromkeys(_expected(s) for s in error.context if s.validator == "type")
    )
    yield FieldProblem(json_path(path), f"expected {expected}, got {_json_type(error.instance)}")


def _parent_keyword(error: ValidationError) -> str | int | None:
    schema_path = error.absolute_schema_path
    return schema_path[-2] if len(schema_path) >= 2 else None


def _expected(error: ValidationError) -> str:
    value = error.validator_value
    return " or ".join(value) if isinstance(value, list) else str(value)


def _json_type(value: object) -> str:
    return _JSON_TYPES.get(type(value), type(value).__name__)


def clip(message: str) -> str:
    return message if len(message) <= _MAX_MESSAGE else message[: _MAX_MESSAGE - 3] + "..."


def msgspec_problem(exc: msgspec.ValidationError) -> FieldProblem:
    # msgspec says "Expected `int`, got `float` - at `$.pools[...].max_queue`"
    # (or "... - at `key` in `$.tiers`" for a bad key); keep the path it knows.
    message, _, where = str(exc).partition(" - at `")
    where = where.rstrip("`")
    if where.startswith("key` in `"):
        where = where.removeprefix("key` in `")
    return FieldProblem(where.removeprefix("$").removeprefix("."), message)


def json_path(parts: Iterable[str | int]) -> str:
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _PLAIN_KEY.fullmatch(part):
            out += f".{part}" if out else part
        else:
            out += f"[{json.dumps(part)}]"
    return out
