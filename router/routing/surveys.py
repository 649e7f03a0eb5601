"""Customer surveys: the kinds a workspace collects, their scales, and the
summaries (CSAT, NPS) a wallboard or a report reads from counts of scores.

Two kinds, each on its industry-standard scale, which is why scales are not
configurable (a CSAT of 80% or an NPS of +40 must mean the same in every
workspace and in every report):

- `csat` (customer satisfaction): 1..5; 4 and 5 are "satisfied", and CSAT is
  their share of the answers.
- `nps` (net promoter score): 0..10; 9 and 10 are promoters, 0..6 detractors;
  NPS is the percentage of promoters minus that of detractors (-100..+100).

A rating is stored on the contact as `rating:<kind>` and announced as a
`contact.rated` event with `kind` and `score` (router/routing/lua/rate.lua);
ratings are not personal data. Pure code, no I/O.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Annotated, Any, Final, Literal, get_args

from msgspec import Meta, Struct

from router.runtime.errors import FieldProblem, InvalidInput

SurveyKind = Literal["csat", "nps"]
KINDS: Final[tuple[SurveyKind, ...]] = get_args(SurveyKind)
# (lowest, highest) score of each kind
SCALES: Final[dict[str, tuple[int, int]]] = {"csat": (1, 5), "nps": (0, 10)}
CSAT_SATISFIED_FROM: Final = 4
NPS_PROMOTER_FROM: Final = 9
NPS_DETRACTOR_UP_TO: Final = 6


class Surveys(Struct, forbid_unknown_fields=True, frozen=True):
    """The survey kinds a workspace collects (`csat` 1..5, `nps` 0..10).

    A rating of a kind not listed is refused (422). `default` is the kind of a
    rating that names none (clients written before ratings had kinds); null:
    the first of `kinds`."""

    kinds: Annotated[tuple[SurveyKind, ...], Meta(min_length=1, max_length=len(KINDS))] = ("csat",)
    default: SurveyKind | None = None

    @property
    def default_kind(self) -> SurveyKind:
        return self.default or self.kinds[0]


def checked_rating(surveys: Surveys, kind: SurveyKind | None, score: int) -> tuple[str, int]:
    """The kind and score a rating body stands for, or 422 naming `kind` or `score`.
    Messages never repeat the score given (the problem-document rule)."""
    kind = kind or surveys.default_kind
    if kind not in surveys.kinds:
        detail = f"this workspace does not collect {kind}; it collects {', '.join(surveys.kinds)}"
        raise InvalidInput([FieldProblem("kind", detail)])
    low, high = SCALES[kind]
    if not low <= score <= high:
        raise InvalidInput([FieldProblem("score", f"a {kind} score is {low} to {high}")])
    return kind, score


def survey_problems(doc: dict[str, Any]) -> Iterator[tuple[list[str | int], str]]:
    """What the schema cannot say about `surveys` and the policies' `low_rating`
    thresholds: repeats, a default not collected, a threshold for a kind the
    workspace does not collect (it could never fire). Works on any JSON shape."""
    surveys = doc.get("surveys")
    surveys = surveys if isinstance(surveys, dict) else {}
    raw = surveys.get("kinds", ["csat"])
    kinds = [k for k in raw if isinstance(k, str)] if isinstance(raw, list) else None
    if kinds is None:
        return  # the schema names the problem; nothing to compare with
    for i, kind in enumerate(kinds):
        if kind in kinds[:i]:
            yield ["surveys", "kinds", i], f"{kind!r} is listed twice"
    default = surveys.get("default")
    if isinstance(default, str) and default in KINDS and default not in kinds:
        yield ["surveys", "default"], f"{default!r} is not among surveys.kinds"
    policies = doc.get("sla_policies")
    for name, policy in (policies if isinstance(policies, dict) else {}).items():
        low = policy.get("low_rating") if isinstance(policy, dict) else None
        for kind in KINDS:
            if isinstance(low, dict) and low.get(f"{kind}_below") is not None and kind not in kinds:
                yield (
                    ["sla_policies", name, "low_rating", f"{kind}_below"],
                    f"the workspace does not collect {kind}: add it to surveys.kinds",
                )


# --- summaries ----------------------------------------------------------------


class CsatSummary(Struct, frozen=True):
    """CSAT answers: their mean (1..5) and the share of satisfied ones (4, 5)."""

    responses: int
    mean: float | None  # None: no answers
    satisfied: float | None  # 0..1


class NpsSummary(Struct, frozen=True):
    """NPS answers by class and the score: % promoters - % detractors."""

    responses: int
    promoters: int  # 9, 10
    passives: int  # 7, 8
    detractors: int  # 0..6
    score: float | None  # -100..100; None: no answers


def csat_summary(counts: Mapping[int, int]) -> CsatSummary:
    """From answers by score."""
    n = sum(counts.values())
    if not n:
        return CsatSummary(responses=0, mean=None, satisfied=None)
    total = sum(score * k for score, k in counts.items())
    happy = sum(k for score, k in counts.items() if score >= CSAT_SATISFIED_FROM)
    return CsatSummary(responses=n, mean=total / n, satisfied=happy / n)


def nps_summary(counts: Mapping[int, int]) -> NpsSummary:
    """From answers by score."""
    n = sum(counts.values())
    promoters = sum(k for score, k in counts.items() if score >= NPS_PROMOTER_FROM)
    detractors = sum(k for score, k in counts.items() if score <= NPS_DETRACTOR_UP_TO)
    return NpsSummary(
        responses=n,
        promoters=promoters,
        passives=n - promoters - detractors,
        detractors=detractors,
        score=100 * (promoters - detractors) / n if n else None,
    )


def add_counts(into: dict[str, dict[int, int]], more: Mapping[str, Mapping[int, int]]) -> None:
    """Adds answers by kind and score (pools summed into a workspace's total)."""
    for kind, by_score in more.items():
        mine = into.setdefault(kind, {})
        for score, k in by_score.items():
            mine[score] = mine.get(score, 0) + k
