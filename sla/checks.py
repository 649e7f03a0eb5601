"""Cross-reference checks of the SLA parts of a routing config document.

Run by `router.routing.validation` on the decoded JSON (also when the schema found
other problems), so they must cope with any shape: they look only at values of
the right type. Each problem is `(path parts, message)`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import msgspec

from sla.calendar import calendar_problems
from sla.signing import Webhook

Problem = tuple[tuple[str | int, ...], str]


def _obj(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _seq(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


class Known:
    """Names the rest of the document declares (None: that part is unusable)."""

    def __init__(self, doc: dict[str, Any]) -> None:
        def names(key: str) -> frozenset[str] | None:
            value = doc.get(key, {})
            if not isinstance(value, dict | list):
                return None
            return frozenset(n for n in value if isinstance(n, str))

        self.pools = names("pools")
        self.channels = names("channels")
        self.policies = names("sla_policies")
        self.calendars = names("calendars")


def webhook_problems(doc: dict[str, Any]) -> Iterator[Problem]:
    """A subscription's own checks (`Webhook.__post_init__`), named by its path."""
    for name, hook in _obj(doc.get("webhooks")).items():
        try:
            msgspec.convert(hook, Webhook)
        except msgspec.ValidationError as exc:
            # messages read "field: what is wrong" and never repeat a secret
            text = str(exc).split(" - at `")[0]
            field, sep, message = text.partition(": ")
            if sep and field.isidentifier():
                yield ("webhooks", name, field), message
            else:
                yield ("webhooks", name), text


def sla_problems(doc: dict[str, Any]) -> Iterator[Problem]:
    yield from webhook_problems(doc)
    known = Known(doc)
    for name, cal in _obj(doc.get("calendars")).items():
        yield from calendar_problems(cal, ("calendars", name))
    for name, policy in _obj(doc.get("sla_policies")).items():
        yield from _policy_problems(("sla_policies", name), _obj(policy), known)


def _unknown(
    where: tuple[str | int, ...],
    value: object,
    names: frozenset[str] | None,
    what: str,
    collection: str,
) -> Iterator[Problem]:
    if names is not None and isinstance(value, str) and value not in names:
        yield where, f"unknown {what} {value!r}; declare it in {collection}"


def _policy_problems(
    base: tuple[str | int, ...], policy: dict[str, Any], known: Known
) -> Iterator[Problem]:
    yield from _unknown(
        (*base, "calendar"), policy.get("calendar"), known.calendars, "calendar", "calendars"
    )
    clocks = [c for c in ("answer", "first_response", "resolve") if policy.get(c) is not None]
    if not clocks and isinstance(policy, dict):
        yield base, "a policy needs at least one clock: answer, first_response or resolve"
    for clock in clocks:
        value = policy[clock]
        if isinstance(value, dict):
            yield from _ladder_problems((*base, clock, "ladder"), _seq(value.get("ladder")), known)
    rating = _obj(policy.get("low_rating"))
    yield from _actions_problems((*base, "low_rating", "actions"), rating.get("actions"), known)
    yield from _low_rating_problems((*base, "low_rating"), rating)


def _low_rating_problems(base: tuple[str | int, ...], rating: dict[str, Any]) -> Iterator[Problem]:
    if not rating:
        return
    if rating.get("below") is not None:
        # The old 1..10 scale maps onto neither survey exactly: the operator
        # decides, rather than a silent guess changing who gets called back.
        yield (
            (*base, "below"),
            "ratings carry a survey kind now: give csat_below (CSAT 1..5) and/or "
            "nps_below (NPS 0..10) instead of below",
        )
    elif rating.get("csat_below") is None and rating.get("nps_below") is None:
        yield base, "give csat_below and/or nps_below: the scores that count as low"


def _ladder_problems(
    base: tuple[str | int, ...], steps: list[Any], known: Known
) -> Iterator[Problem]:
    seen: dict[tuple[str, float], int] = {}
    for i, step in enumerate(steps):
        step = _obj(step)
        has_at, has_after = step.get("at") is not None, step.get("after") is not None
        if has_at == has_after:
            yield (*base, i), "give exactly one of at (fraction of the target) or after (s)"
        key = ("at", step.get("at")) if has_at else ("after", step.get("after"))
        if isinstance(key[1], int | float) and key in seen:
            yield (*base, i), f"same {key[0]} as step {seen[key]}; merge their actions"
        elif isinstance(key[1], int | float):
            seen[key] = i  # type: ignore[index]
        yield from _actions_problems((*base, i, "actions"), step.get("actions"), known)


def _actions_problems(
    base: tuple[str | int, ...], actions: object, known: Known
) -> Iterator[Problem]:
    for i, action in enumerate(_seq(actions)):
        action = _obj(action)
        where = (*base, i)
        if action.get("do") == "expand":
            for k, pool in enumerate(_seq(action.get("pools"))):
                yield from _unknown((*where, "pools", k), pool, known.pools, "pool", "pools")
        elif action.get("do") == "create_followup":
            yield from _unknown(
                (*where, "channel"), action.get("channel"), known.channels, "channel", "channels"
            )
            yield from _unknown(
                (*where, "sla"), action.get("sla"), known.policies, "SLA policy", "sla_policies"
            )
