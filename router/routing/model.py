"""Wire types of the HTTP API (requests and responses), validated at the edge."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from msgspec import UNSET, Meta, Struct, UnsetType

from router.routing.config import AttributeValue, Name, Proficiency, SkillRequirement
from router.routing.surveys import SurveyKind

Id = Annotated[str, Meta(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:@-]+$")]
ShortText = Annotated[str, Meta(max_length=256)]
AgentStateName = Literal["offline", "available", "break", "missed"]
ContactState = Literal[
    "queued", "scheduled", "offered", "assigned", "wrap_up", "completed", "abandoned", "expired"
]
TERMINAL_STATES = frozenset({"completed", "abandoned", "expired"})
MAX_ATTRIBUTES = 32


# --- agents -----------------------------------------------------------------


class AgentIn(Struct, forbid_unknown_fields=True, frozen=True):
    skills: dict[Name, Proficiency]
    capacity: Annotated[int, Meta(ge=1, le=10_000)] = 100
    team: Name | None = None
    supervisor: Id | None = None


class AgentStateIn(Struct, forbid_unknown_fields=True, frozen=True):
    state: Literal["offline", "available", "break"]
    reason: ShortText | None = None


class AgentOut(Struct, frozen=True):
    id: str
    state: str
    reason: str | None
    skills: dict[str, int]
    capacity: int
    load: int
    team: str | None
    supervisor: str | None
    pools: list[str]
    contacts: list[str]
    idle_since: float | None
    missed_offers: int


class HeldContact(Struct, frozen=True):
    id: str
    state: str


class AgentListItem(Struct, frozen=True):
    """An agent as a supervisor's list shows it: `since` is when it entered its
    state (null for an agent not changed since before it was recorded) and
    `time_in_state` the seconds since then, by Redis TIME."""

    id: str
    state: str
    reason: str | None
    since: float | None
    time_in_state: float | None
    load: int
    capacity: int
    team: str | None
    supervisor: str | None
    pools: list[str]
    contacts: list[HeldContact]


class AgentPage(Struct, frozen=True):
    """One page, by agent id; `next` is the cursor of the next page (null: the last)."""

    agents: list[AgentListItem]
    next: str | None


# --- contacts ---------------------------------------------------------------


# Personal data (router/security/privacy.py): kept in the contact record only, never in
# events, timelines, webhooks, metrics or logs; shown in full only to the agent
# holding the contact.
PersonName = Annotated[str, Meta(min_length=1, max_length=256)]
Phone = Annotated[str, Meta(min_length=1, max_length=40, pattern=r"^\+?[0-9(][0-9 ()./-]*$")]
NationalId = Annotated[
    str, Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9 ./-]*$")
]
Note = Annotated[str, Meta(max_length=4096)]


class Customer(Struct, forbid_unknown_fields=True, frozen=True):
    id: Id
    tier: Name | None = None
    language: Name | None = None
    flags: Annotated[list[Name], Meta(max_length=16)] = []
    name: PersonName | None = None
    phone: Phone | None = None
    national_id: NationalId | None = None


# --- callbacks (router/routing/callbacks.py) ---------------------------------

# An ISO date-time (2026-12-05T10:00, local to the workspace's `timezone`
# unless it carries an offset such as +01:00 or Z).
LocalTime = Annotated[
    str,
    Meta(
        min_length=16,
        max_length=40,
        pattern=r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]{1,6})?)?"
        r"(Z|[+-][0-9]{2}:[0-9]{2})?$",
    ),
]


class CallbackIn(Struct, forbid_unknown_fields=True, frozen=True):
    """A call back instead of holding: the number to call (personal data, like
    `customer.phone`) and, optionally, the window the customer asked for."""

    phone: Phone
    not_before: LocalTime | None = None
    not_after: LocalTime | None = None


class CallbackAttemptIn(Struct, forbid_unknown_fields=True, frozen=True):
    """The holding agent's outcome of one dial."""

    agent_id: Id
    outcome: Literal["answered", "no_answer", "busy"]


class CallbackWindow(Struct, frozen=True):
    not_before: float | None  # seconds since the epoch
    not_after: float | None


class CallbackOut(Struct, frozen=True):
    """A contact to call back. `phone` as the caller may see it (`masked`: its
    last 2 digits); `reached` once an attempt was answered; `next_attempt_at`
    while it waits for the window or the retry gap (not in any queue)."""

    phone: str | None
    masked: bool
    attempts: int
    max_attempts: int
    retry_gap: float
    window: CallbackWindow | None
    reached: bool
    next_attempt_at: float | None


# --- bot hand-off (router/routing/handoff.py) ---------------------------------

# A URL or an id of the transcript in the bot platform (never the transcript).
TranscriptRef = Annotated[str, Meta(min_length=1, max_length=512, pattern=r"^[^\s]+$")]


class HandoffIn(Struct, forbid_unknown_fields=True, frozen=True):
    """What a bot hands over with the contact. `bot`, `intent` and
    `confidence` route it (rules' `when.handoff`) and are not personal; the
    `summary` and the collected `fields` are (customer data): stored with the
    personal fields and masked like them."""

    bot: Name
    intent: Name | None = None
    confidence: Annotated[float, Meta(ge=0, le=1)] | None = None
    summary: Annotated[str, Meta(max_length=2048)] | None = None
    fields: Annotated[dict[Name, Annotated[str, Meta(max_length=256)]], Meta(max_length=32)] = {}
    transcript: TranscriptRef | None = None


class HandoffOut(Struct, frozen=True):
    """A contact's bot hand-off as the caller may see it (`masked`: the summary
    as "[redacted]", every collected field's value as "***");
    `agent_intent`: the intent the agent gave when completing it."""

    bot: str
    intent: str | None
    confidence: float | None
    transcript: str | None
    masked: bool
    summary: str | None = None
    fields: dict[str, str] = {}
    agent_intent: str | None = None


class ContactIn(Struct, forbid_unknown_fields=True, frozen=True):
    id: Id
    channel: Name
    customer: Customer
    intent: Name | None = None
    skills: Annotated[list[SkillRequirement], Meta(max_length=16)] = []
    # Free-form routing attributes; never logged.
    attributes: dict[Name, AttributeValue | Annotated[str, Meta(max_length=1024)]] = {}
    # Free text about the contact: personal data, shown as "[redacted]" when masked.
    note: Note | None = None
    # A customer who asked to be called (e.g. tomorrow 10:00-11:00) and never waited.
    callback: CallbackIn | None = None
    # Handed over by a chatbot: what it understood and collected.
    handoff: HandoffIn | None = None


AttributeIn = AttributeValue | Annotated[str, Meta(max_length=1024)]


class ContactPatch(Struct, forbid_unknown_fields=True, frozen=True):
    """Body of PATCH /contacts/{id}: JSON Merge Patch (RFC 7396). A field left
    out stays as it is; null clears it (`tier`: the default tier, `intent`:
    none, `boost`: 0, `skills`: none, `attributes`: all removed). `attributes`
    merge name by name: a value replaces that attribute, null removes it.
    `skills` replaces the whole list. `boost`: extra priority offset in seconds
    (set, not added: the same patch sent twice boosts once)."""

    tier: Name | UnsetType | None = UNSET
    intent: Name | UnsetType | None = UNSET
    boost: Annotated[float, Meta(ge=0, le=86400)] | UnsetType | None = UNSET
    skills: Annotated[list[SkillRequirement], Meta(max_length=16)] | UnsetType | None = UNSET
    attributes: dict[Name, AttributeIn | None] | UnsetType | None = UNSET


class AgentRef(Struct, forbid_unknown_fields=True, frozen=True):
    """Body of accept / reject / complete: the agent acting on its offer."""

    agent_id: Id


class CompleteIn(Struct, forbid_unknown_fields=True, frozen=True):
    """Body of complete: the agent, and optionally the contact's real intent
    as the agent found it (the disposition; for a bot hand-off it tells whether
    the bot's intent was right)."""

    agent_id: Id
    intent: Name | None = None


class ClockIn(Struct, forbid_unknown_fields=True, frozen=True):
    """Body of SLA pause / resume."""

    clock: Literal["answer", "first_response", "resolve"] = "resolve"
    reason: ShortText | None = None


class RatingIn(Struct, forbid_unknown_fields=True, frozen=True):
    """A customer's answer to one survey about a served contact (no free text).

    `kind` `csat`: `score` 1..5 (4 and 5 satisfied); `nps`: 0..10 (9 and 10
    promoters, 0..6 detractors); the workspace must collect the kind
    (`surveys.kinds` in its config). Without `kind`: the workspace's default
    survey (`surveys.default`, else its first kind; clients written before
    ratings had kinds). One rating per kind and contact: the same score again
    is a retry (200), another score 409."""

    score: Annotated[int, Meta(ge=0, le=10)]
    kind: SurveyKind | None = None


class ReasonIn(Struct, forbid_unknown_fields=True, frozen=True):
    reason: ShortText | None = None


class AbandonIn(Struct, forbid_unknown_fields=True, frozen=True):
    reason: ShortText | None = None


class TransferIn(Struct, forbid_unknown_fields=True, frozen=True):
    """Exactly one of `pool` or `agent_id`."""

    pool: Name | None = None
    agent_id: Id | None = None
    reason: ShortText | None = None


class AssignIn(Struct, forbid_unknown_fields=True, frozen=True):
    """Body of assign: the agent a supervisor hands the waiting contact to."""

    agent_id: Id


class Explanation(Struct, frozen=True, omit_defaults=True):
    pool: str | None = None
    strategy: str | None = None
    winner: str | None = None
    why: str | None = None
    rank: dict[str, float] | None = None
    candidates: list[dict[str, Any]] = []


class TimelineEntry(Struct, frozen=True, omit_defaults=True):
    at: float  # seconds since the epoch (Redis TIME)
    type: str
    actor: str
    state: str | None = None
    agent: str | None = None
    pool: str | None = None
    reason: str | None = None
    # SLA events: which clock and ladder step, and how late the step fired.
    clock: str | None = None
    step: int | None = None
    late_ms: int | None = None
    explain: dict[str, Any] | None = None
    # contact.rated: which survey and the score given (not personal data)
    kind: str | None = None
    score: int | None = None
    # contact.callback_attempted: which dial and what came of it
    attempt: int | None = None
    outcome: str | None = None


class SlaClockOut(Struct, frozen=True):
    """One SLA clock of a contact: `status` is active, warned, breached, paused,
    met, missed (reached after the breach) or cancelled (the contact ended)."""

    status: str
    policy: str
    started_at: float
    due_at: float
    ended_at: float | None
    paused_ms: int
    # When the first ladder step fired (a warning, or the breach itself).
    warned_at: float | None


class PersonalOut(Struct, frozen=True, omit_defaults=True):
    """Personal fields of a contact. `masked`: name as initials, phone as its last
    2 digits, national_id as its last 4 characters, note as "[redacted]"."""

    masked: bool
    name: str | None = None
    phone: str | None = None
    national_id: str | None = None
    note: str | None = None


class ContactOut(Struct, frozen=True):
    id: str
    state: str
    channel: str
    tier: str
    intent: str | None
    customer_id: str
    agent: str | None
    pools: list[str]
    stages: list[dict[str, Any]]
    stage: int
    rank: float
    priority_offset: float
    enqueued_at: float
    created_at: float
    offer_expires_at: float | None
    sla: str | None
    rules: list[str]
    created: bool
    timeline: list[TimelineEntry] | None = None
    sla_clocks: dict[str, SlaClockOut] | None = None
    # The gateway (token name) that created the contact.
    gateway: str | None = None
    # Personal fields given at creation, as the caller's role may see them.
    personal: PersonalOut | None = None
    # Set when the contact is a callback (its phone masked like `personal`).
    callback: CallbackOut | None = None
    # Set when a bot handed the contact over (its personal parts masked like `personal`).
    handoff: HandoffOut | None = None


class WaitingContact(Struct, frozen=True):
    """A contact waiting in a pool, as a supervisor sees it (personal fields masked).
    `position` counts from 1 in rank order; `waited` is seconds since it was
    enqueued; `rank` (seconds) is `enqueued_at - priority_offset`."""

    position: int
    id: str
    channel: str
    tier: str
    intent: str | None
    customer_id: str
    rank: float
    priority_offset: float
    enqueued_at: float
    waited: float
    stage: int
    pools: list[str]
    sla: str | None
    personal: PersonalOut | None = None


class WaitingPage(Struct, frozen=True):
    """One page of a pool's waiting contacts in rank order; `next` is the cursor
    of the next page (null: the last)."""

    pool: str
    waiting: list[WaitingContact]
    next: str | None


class PoolPosition(Struct, frozen=True):
    """Where a waiting contact stands in one pool it waits in.

    `place` counts from 1 among every contact waiting in the pool, across the
    pool's channels, in rank order (ties by id): the order the pool's agents
    pull in. `expected_wait` (seconds from now): `place * observed /
    answered_recently` from the answers of the last 15 minutes, `observed`
    being the seconds since the start of the oldest of those minutes with an
    answer, at least 60 (`basis` "recent_service"); without answers
    `place * handle_time / max(1, agents_signed_in)` (`basis` "handle_time").
    Plus `overtakers`: contacts expected to arrive while it waits and rank
    ahead of it (a higher offset), from the pool's arrivals of the same 15
    minutes over `arrivals_observed` seconds (README "Queue position")."""

    pool: str
    place: int
    ahead: int
    waiting: int
    expected_wait: float
    basis: Literal["recent_service", "handle_time"]
    answered_recently: int
    observed: float | None
    agents_signed_in: int
    handle_time: float
    overtakers: float = 0.0
    arrivals_observed: float | None = None


class PositionOut(Struct, frozen=True):
    """A waiting contact's place in each pool it waits in; `expected_wait` is
    the shortest of them (the first pool to reach it serves it)."""

    contact_id: str
    state: str
    channel: str
    waited: float
    expected_wait: float | None
    pools: list[PoolPosition]
