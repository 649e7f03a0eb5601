"""Validation of routing config documents: every problem, each located by its path.

A rejected config costs an operator a round trip per reported problem, so this
module reports all of them at once: type and shape problems from the JSON
Schema that msgspec derives from `RoutingConfig` (one source of truth for the
wire types), then cross-reference problems (a rule naming an unknown pool, a
pool serving an undeclared channel) that no schema can express.

The cross-reference checks walk plain JSON values rather than the typed
Structs, so they also run on a document that failed the schema: one bad field
must not hide an unrelated dangling reference elsewhere. `validate_config`
feeds them a typed config turned back into builtins. Pure code, no I/O.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Final

import msgspec
from jsonschema import Draft202012Validator, ValidationError
from jsonschema.protocols import Validator
from jsonschema.validators import extend

from router.routing.config import (
    CONFIG_DECODER,
    MAX_WINDOW_S,
    WINDOW_UNITS,
    Defaults,
    RoutingConfig,
    window_seconds,
)
from router.runtime.errors import BadRequest, FieldProblem, InvalidInput
from sla.checks import sla_problems

__all__ = ["parse_config", "validate_config"]

# Long offending values (a megabyte string where a list belongs) are cut so a
# problem document stays readable and small.
_MAX_MESSAGE = 200
_DEFAULTS: Final = Defaults()
# Path segments that read unambiguously after a dot; anything else (names may
# contain `.`) is quoted in brackets: pools["eu.cards"].channels[0].
_PLAIN_KEY = re.compile(r"[A-Za-z0-9_:-]+")
_COLLECTIONS = ("tiers", "channels", "pools", "sla_policies", "skills")
_CONDITION_LISTS = ("channel", "tier", "intent", "language", "flags")
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


def parse_config(body: bytes) -> RoutingConfig:
    """Decode and fully validate a routing config document.

    Raises `BadRequest` when the body is not JSON, `InvalidInput` listing every
    problem (schema and cross-reference alike) when it is JSON but not a valid
    config.
    """
    doc = _decode_json(body)
    problems = _schema_problems(doc)
    if problems:
        raise InvalidInput(_with_semantic_problems(doc, problems))
    # Cross-references (and checks a schema cannot express, such as a webhook
    # secret's encoding) before the typed decode, which stops at the first.
    problems = _semantic_problems(doc, frozenset())
    if problems:
        raise InvalidInput(problems)
    try:
        return CONFIG_DECODER.decode(body)
    except msgspec.ValidationError as exc:
        # The schema mirrors the Structs, so this means the two disagree on
        # some corner; still answer 422 with msgspec's own location.
        raise InvalidInput([_msgspec_problem(exc)]) from None


def validate_config(cfg: RoutingConfig) -> list[FieldProblem]:
    """Cross-reference problems of a config whose types are already valid."""
    return _semantic_problems(msgspec.to_builtins(cfg), frozenset())


# --- decoding and schema ----------------------------------------------------


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


def _schema_problems(doc: Any) -> list[FieldProblem]:
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
                yield FieldProblem(_path([*path, key]), "required field is missing")
    elif _parent_keyword(error) == "propertyNames":
        # A bad key is reported under the object holding it, as the key itself.
        yield FieldProblem(_path([*path, instance]), _clip(f"invalid name: {error.message}"))
    elif keyword in ("anyOf", "oneOf"):
        yield from _alternative_problems(error, path)
    elif keyword == "type":
        yield FieldProblem(_path(path), f"expected {_expected(error)}, got {_json_type(instance)}")
    elif keyword == "enum":
        options = ", ".join(map(str, value))
        yield FieldProblem(_path(path), _clip(f"expected one of: {options}; got {instance!r}"))
    else:
        yield FieldProblem(_path(path), _clip(error.message))


def _unknown_fields(error: ValidationError, path: list[str | int]) -> Iterator[FieldProblem]:
    # One jsonschema error covers all unknown fields of an object; name each so
    # the caller sees exactly which keys to remove, and which ones exist.
    schema: Any = error.schema
    known = schema.get("properties", {})
    hint = f"unknown field; expected one of: {', '.join(known)}" if known else "unknown field"
    instance: Any = error.instance
    for key in instance:
        if key not in known:
            yield FieldProblem(_path([*path, key]), hint)


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
    yield FieldProblem(_path(path), f"expected {expected}, got {_json_type(error.instance)}")


def _parent_keyword(error: ValidationError) -> str | int | None:
    schema_path = error.absolute_schema_path
    return schema_path[-2] if len(schema_path) >= 2 else None


def _expected(error: ValidationError) -> str:
    value = error.validator_value
    return " or ".join(value) if isinstance(value, list) else str(value)


def _json_type(value: object) -> str:
    return _JSON_TYPES.get(type(value), type(value).__name__)


def _clip(message: str) -> str:
    return message if len(message) <= _MAX_MESSAGE else message[: _MAX_MESSAGE - 3] + "..."


def _msgspec_problem(exc: msgspec.ValidationError) -> FieldProblem:
    # msgspec says "Expected `int`, got `float` - at `$.pools[...].max_queue`"
    # (or "... - at `key` in `$.tiers`" for a bad key); keep the path it knows.
    message, _, where = str(exc).partition(" - at `")
    where = where.rstrip("`")
    if where.startswith("key` in `"):
        where = where.removeprefix("key` in `")
    return FieldProblem(where.removeprefix("$").removeprefix("."), message)


def _path(parts: Iterable[str | int]) -> str:
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _PLAIN_KEY.fullmatch(part):
            out += f".{part}" if out else part
        else:
            out += f"[{json.dumps(part)}]"
    return out


# --- cross-references -------------------------------------------------------


def _with_semantic_problems(doc: object, problems: list[FieldProblem]) -> list[FieldProblem]:
    """Schema problems plus the cross-reference problems not already covered."""
    if not isinstance(doc, dict) or any(not p.field for p in problems):
        return problems
    # A collection that is itself missing or mistyped declares nothing, and
    # every reference into it would be a spurious echo of that one problem.
    broken = frozenset(p.field for p in problems if p.field in _COLLECTIONS)
    covered = [p.field for p in problems]
    extra = [
        p
        for p in _semantic_problems(doc, broken)
        if not any(_is_within(p.field, field) for field in covered)
    ]
    return problems + extra


def _is_within(path: str, prefix: str) -> bool:
    return path == prefix or (path.startswith(prefix) and path[len(prefix)] in ".[")


class _Declared:
    """Names a config declares; `None` where the collection is unusable."""

    def __init__(self, doc: dict[str, Any], broken: frozenset[str]) -> None:
        def names(key: str, kind: type[dict[Any, Any]] | type[list[Any]]) -> frozenset[str] | None:
            # An optional collection left out is empty, not unknown; a required
            # one left out has a schema problem and is in `broken`.
            value = doc.get(key, kind())
            if key in broken or not isinstance(value, kind):
                return None
            return frozenset(n for n in value if isinstance(n, str))

        self.tiers = names("tiers", dict)
        self.channels = names("channels", dict)
        self.skills = names("skills", list)
        self.pools = names("pools", dict)
        self.sla_policies = names("sla_policies", dict)
        # pool -> channels it serves, to spot stages that can never serve a rule
        self.pool_channels = {
            name: frozenset(c for c in _seq(_obj(pool).get("channels")) if isinstance(c, str))
            for name, pool in _obj(doc.get("pools")).items()
        }


def _semantic_problems(doc: dict[str, Any], broken: frozenset[str]) -> list[FieldProblem]:
    declared = _Declared(doc, broken)
    problems: list[FieldProblem] = []
    problems += _duplicate_skills(doc.get("skills"))
    for name, pool in _obj(doc.get("pools")).items():
        problems += _pool_problems(["pools", name], _obj(pool), declared)
    problems += _rules_problems(_seq(doc.get("rules")), declared)
    problems += _defaults_problems(_obj(doc.get("defaults")), declared)
    problems += _retention_problems(_obj(doc.get("retention")), _obj(doc.get("defaults")))
    problems += (FieldProblem(_path(where), msg) for where, msg in sla_problems(doc))
    return problems


def _retention_problems(
    retention: dict[str, Any], defaults: dict[str, Any]
) -> Iterator[FieldProblem]:
    for name, window in retention.items():
        # the schema checks the spelling; only the length is left
        if (
            isinstance(window, str)
            and window[-1:] in WINDOW_UNITS
            and window[:-1].isdigit()
            and window_seconds(window) > MAX_WINDOW_S
        ):
            yield FieldProblem(_path(["retention", name]), "at most 3650 days")
    if retention.get("contacts") == "keep":
        yield FieldProblem(
            "retention.contacts", 'contact data must expire: give a window such as "30d"'
        )
    if retention.get("contacts") is not None and defaults.get("retention") is not None:
        yield FieldProblem(
            "defaults.retention", "superseded by retention.contacts: give only one of them"
        )


def _duplicate_skills(skills: object) -> Iterator[FieldProblem]:
    seen: set[str] = set()
    for i, skill in enumerate(_seq(skills)):
        if not isinstance(skill, str):
            continue
        if skill in seen:
            yield FieldProblem(_path(["skills", i]), f"skill {skill!r} is declared twice")
        seen.add(skill)


def _pool_problems(
    base: list[str | int], pool: dict[str, Any], declared: _Declared
) -> Iterator[FieldProblem]:
    required: set[str] = set()
    for i, req in enumerate(_seq(pool.get("skills"))):
        skill = _obj(req).get("skill")
        if not isinstance(skill, str):
            continue
        where = _path([*base, "skills", i, "skill"])
        if declared.skills is not None and skill not in declared.skills:
            yield FieldProblem(where, f"unknown skill {skill!r}; declare it in skills")
        elif skill in required:
            yield FieldProblem(where, f"skill {skill!r} is required twice")
        required.add(skill)
    yield from _unknown_names(
        [*base, "channels"], pool.get("channels"), declared.channels, "channel", "channels"
    )


def _rules_problems(rules: Sequence[object], declared: _Declared) -> Iterator[FieldProblem]:
    first_use: dict[str, int] = {}
    catch_all: int | None = None
    for i, value in enumerate(rules):
        rule = _obj(value)
        name = rule.get("name")
        if isinstance(name, str):
            if name in first_use:
                yield FieldProblem(
                    _path(["rules", i, "name"]),
                    f"rule name {name!r} is already used by rules[{first_use[name]}]",
                )
            first_use.setdefault(name, i)
        if catch_all is not None:
            yield FieldProblem(
                _path(["rules", i]),
                f"never reached: rules[{catch_all}] matches every contact and does not merge",
            )
        yield from _rule_problems(i, rule, declared)
        if catch_all is None and _matches_everything(rule):
            catch_all = i


def _matches_everything(rule: dict[str, Any]) -> bool:
    when = _obj(rule.get("when"))
    return rule.get("merge") is not True and all(v is None for v in when.values())


def _rule_problems(i: int, rule: dict[str, Any], declared: _Declared) -> Iterator[FieldProblem]:
    base: list[str | int] = ["rules", i]
    when = _obj(rule.get("when"))
    yield from _conditions_problems([*base, "when"], when, declared)
    stages = rule.get("stages")
    if isinstance(stages, list) and not stages:
        yield FieldProblem(
            _path([*base, "stages"]),
            "must list at least one stage; omit it to leave routing to later rules or defaults",
        )
    channels = _seq(when.get("channel"))
    serves = frozenset(c for c in channels if isinstance(c, str)) if channels else None
    yield from _stages_problems([*base, "stages"], stages, declared, serves)
    yield from _unknown_name([*base, "sla"], rule.get("sla"), declared.sla_policies, "SLA policy")


def _conditions_problems(
    base: list[str | int], when: dict[str, Any], declared: _Declared
) -> Iterator[FieldProblem]:
    for key in _CONDITION_LISTS:
        if when.get(key) == []:
            yield FieldProblem(
                _path([*base, key]), "an empty list never matches; omit the condition instead"
            )
    for attribute, accepted in _obj(when.get("attributes")).items():
        if accepted == []:
            yield FieldProblem(
                _path([*base, "attributes", attribute]),
                "an empty list never matches; omit the attribute instead",
            )
    yield from _unknown_names(
        [*base, "channel"], when.get("channel"), declared.channels, "channel", "channels"
    )
    yield from _unknown_names([*base, "tier"], when.get("tier"), declared.tiers, "tier", "tiers")


def _stages_problems(
    base: list[str | int],
    stages: object,
    declared: _Declared,
    rule_channels: frozenset[str] | None,
) -> Iterator[FieldProblem]:
    previous = 0.0
    for j, value in enumerate(_seq(stages)):
        stage = _obj(value)
        after = stage.get("after", 0.0)
        if _is_number(after):
            if j == 0 and after != 0:
                yield FieldProblem(
                    _path([*base, 0, "after"]),
                    f"the first stage must start at once (after 0), not after {after:g}",
                )
            elif after < previous:
                yield FieldProblem(
                    _path([*base, j, "after"]),
                    f"stages must not start earlier than the one before ({after:g} < {previous:g})",
                )
            previous = max(previous, after)
        yield from _stage_pool_problems(
            [*base, j, "pools"], stage.get("pools"), declared, rule_channels
        )


def _stage_pool_problems(
    base: list[str | int],
    pools: object,
    declared: _Declared,
    rule_channels: frozenset[str] | None,
) -> Iterator[FieldProblem]:
    for k, pool in enumerate(_seq(pools)):
        if not isinstance(pool, str) or declared.pools is None:
            continue
        if pool not in declared.pools:
            yield FieldProblem(_path([*base, k]), f"unknown pool {pool!r}; declare it in pools")
        elif rule_channels is not None and not rule_channels & declared.pool_channels[pool]:
            # The pool would be dropped for every contact this rule matches.
            yield FieldProblem(
                _path([*base, k]),
                f"pool {pool!r} serves none of this rule's channels "
                f"({', '.join(sorted(rule_channels))})",
            )


def _defaults_problems(defaults: dict[str, Any], declared: _Declared) -> Iterator[FieldProblem]:
    tier = defaults.get("tier", _DEFAULTS.tier)
    yield from _unknown_name(["defaults", "tier"], tier, declared.tiers, "tier")
    yield from _unknown_name(
        ["defaults", "sla"], defaults.get("sla"), declared.sla_policies, "SLA policy"
    )
    yield from _stages_problems(["defaults", "stages"], defaults.get("stages"), declared, None)


def _unknown_names(
    base: list[str | int],
    values: object,
    known: frozenset[str] | None,
    what: str,
    collection: str,
) -> Iterator[FieldProblem]:
    if known is None:
        return
    for k, value in enumerate(_seq(values)):
        if isinstance(value, str) and value not in known:
            yield FieldProblem(
                _path([*base, k]), f"unknown {what} {value!r}; declare it in {collection}"
            )


def _unknown_name(
    where: list[str | int], value: object, known: frozenset[str] | None, what: str
) -> Iterator[FieldProblem]:
    if known is not None and isinstance(value, str) and value not in known:
        names = ", ".join(sorted(known)) or "none declared"
        yield FieldProblem(_path(where), _clip(f"unknown {what} {value!r} (known: {names})"))


def _obj(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _seq(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
