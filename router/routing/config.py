"""The routing config document: a workspace's declarative, versioned routing setup.

These Structs are the wire format of `PUT/GET /v1/workspaces/{ws}`. Type checks
come from the schema (every type problem is listed by path, see
`router.routing.validation`); cross-references (a rule naming an unknown pool, a pool
serving an unknown channel) are checked there too. Adding a field with a
default keeps old documents valid (msgspec schema evolution).
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from msgspec import Meta, Struct

from router.routing.surveys import Surveys
from router.runtime.errors import FieldProblem
from sla.calendar import Calendar, TimezoneName
from sla.policy import SlaPolicy
from sla.signing import Webhook

Name = Annotated[str, Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")]
Seconds = Annotated[float, Meta(ge=0, le=31_536_000)]
Proficiency = Annotated[int, Meta(ge=1, le=10)]
Strategy = Literal["longest_idle", "most_skilled", "least_occupied"]


class Tier(Struct, forbid_unknown_fields=True, frozen=True):
    """A customer tier; its offset makes its contacts rank as if they had waited longer."""

    priority_offset: Seconds = 0.0


class Channel(Struct, forbid_unknown_fields=True, frozen=True):
    """How a media channel loads an agent and how long an offer may wait."""

    weight: Annotated[int, Meta(ge=1, le=10_000)] = 100
    offer_timeout: Annotated[float, Meta(gt=0, le=86_400)] = 20.0
    auto_accept: bool = False
    wrap_up: Seconds = 0.0
    # A contact still waiting after this long ends `expired` (None: never).
    max_wait: Seconds | None = None


class SkillRequirement(Struct, forbid_unknown_fields=True, frozen=True):
    skill: Name
    min: Proficiency = 1


class ServiceLevel(Struct, forbid_unknown_fields=True, frozen=True):
    """Target: `percent` of contacts answered within `seconds`."""

    percent: Annotated[float, Meta(gt=0, le=100)] = 80.0
    seconds: Annotated[float, Meta(gt=0, le=604_800)] = 20.0


class Pool(Struct, forbid_unknown_fields=True, frozen=True):
    skills: list[SkillRequirement]
    channels: Annotated[list[Name], Meta(min_length=1)]
    strategy: Strategy = "longest_idle"
    service_level: ServiceLevel = ServiceLevel()
    max_queue: Annotated[int, Meta(ge=1)] | None = None
    # Prior average handle time used for expected wait before real data exists.
    handle_time: Annotated[float, Meta(gt=0, le=86_400)] = 180.0


class Stage(Struct, forbid_unknown_fields=True, frozen=True):
    """Pools a contact waits in from `after` seconds past its arrival (bullseye)."""

    pools: Annotated[list[Name], Meta(min_length=1)]
    after: Seconds = 0.0


AttributeValue = str | int | float | bool


class HandoffConditions(Struct, forbid_unknown_fields=True, frozen=True, omit_defaults=True):
    """Conditions on a bot hand-off (all given must hold; a contact without a
    hand-off matches none). Confidence bounds are inclusive; a hand-off that
    gave no confidence fails any bound. `fields`: collected field name ->
    accepted values."""

    bot: list[Name] | None = None
    intent: list[Name] | None = None
    min_confidence: Annotated[float, Meta(ge=0, le=1)] | None = None
    max_confidence: Annotated[float, Meta(ge=0, le=1)] | None = None
    fields: dict[Name, list[Annotated[str, Meta(max_length=256)]]] | None = None


class Conditions(Struct, forbid_unknown_fields=True, frozen=True, omit_defaults=True):
    """All given conditions must hold; a list means any of its values."""

    channel: list[Name] | None = None
    tier: list[Name] | None = None
    intent: list[Name] | None = None
    language: list[Name] | None = None
    # Every listed flag must be present on the customer.
    flags: list[Name] | None = None
    # attribute name -> accepted values
    attributes: dict[Name, list[AttributeValue]] | None = None
    # A chatbot's hand-off: its bot, intent, confidence and collected fields.
    handoff: HandoffConditions | None = None


class Rule(Struct, forbid_unknown_fields=True, frozen=True, omit_defaults=True):
    """First matching rule wins, unless it says `merge`: then it contributes and
    evaluation goes on (offsets add up; stages and SLA come from the first rule
    that sets them)."""

    name: Name
    when: Conditions = Conditions()
    stages: list[Stage] | None = None
    priority_offset: Annotated[float, Meta(ge=-86_400, le=86_400)] = 0.0
    # Reach the next stage at once when the expected wait of the pools reached
    # so far exceeds this many seconds.
    overflow_wait: Seconds | None = None
    sla: Name | None = None
    merge: bool = False


class Defaults(Struct, forbid_unknown_fields=True, frozen=True):
    tier: Name = "standard"
    # Route for contacts no rule matches; empty means such contacts are refused.
    stages: list[Stage] = []
    sla: Name | None = None
    # A rejected or timed-out offer is not re-offered to that agent for this long.
    reoffer_after: Seconds = 60.0
    # Consecutive offer timeouts that put an agent in `missed`.
    missed_after: Annotated[int, Meta(ge=1, le=100)] = 3
    # An agent who served the customer within `continuity_window` is preferred
    # for the first `continuity_prefer` seconds of the contact's wait.
    continuity_window: Seconds = 86_400.0
    continuity_prefer: Seconds = 0.0
    # Older spelling of `retention.contacts` (seconds); give only one of them.
    retention: Annotated[float, Meta(ge=60, le=31_536_000)] | None = None


# A retention window: seconds, or a count and a unit ("90d", "12h", "30m",
# "45s"); "keep" (where allowed) keeps the data without limit.
Window = (
    Annotated[float, Meta(ge=1, le=315_360_000)]
    | Annotated[str, Meta(pattern=r"^(?:[1-9][0-9]{0,5}[smhd]|keep)$")]
)
WINDOW_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400}
MAX_WINDOW_S = 3650 * 86_400
CONTACT_RETENTION_S = 30 * 86_400


def window_seconds(window: float | str) -> int:
    """Seconds of a retention window; 0 for "keep"."""
    if isinstance(window, str):
        return 0 if window == "keep" else int(window[:-1]) * WINDOW_UNITS[window[-1]]
    return max(1, round(window))


class Retention(Struct, forbid_unknown_fields=True, frozen=True):
    """How long each class of data is kept (see README, "Retention")."""

    # Terminal contacts (completed, abandoned, expired): record, timeline and
    # SLA clocks expire from Redis this long after the end (null: 30 days, or
    # the older `defaults.retention`), and archive rows are kept this long.
    # Contact data always expires.
    contacts: Window | None = None
    # With a history archive: a finished contact leaves Redis this long after
    # its row is archived (late actions such as a rating still find it there).
    grace: Window = "1h"
    # Entries of the workspace's event stream, trimmed once sealed.
    events: Window = "90d"
    # Denied requests (`router:access`, shared by all workspaces: the longest
    # window any workspace asks for applies).
    access: Window = "365d"
    # Sealed audit records in Redis and exported segment files.
    audit: Window = "keep"

    def contacts_seconds(self, legacy: float | None) -> int:
        if self.contacts is not None:
            return window_seconds(self.contacts)
        return round(legacy) if legacy is not None else CONTACT_RETENTION_S


# A short duration: seconds, or a count and a unit ("120s", "2m", "1h").
Gap = (
    Annotated[float, Meta(ge=1, le=86_400)]
    | Annotated[str, Meta(pattern=r"^[1-9][0-9]{0,4}[smh]$")]
)


class Callbacks(Struct, forbid_unknown_fields=True, frozen=True):
    """Callbacks (README "Callbacks"): a waiting caller hangs up, keeps its place
    and is called back on `channel`; a failed attempt (no answer, busy) is
    tried again `retry_gap` later, up to `max_attempts` attempts in all."""

    max_attempts: Annotated[int, Meta(ge=1, le=20)] = 3
    retry_gap: Gap = 120.0
    channel: Name = "voice"

    def retry_gap_ms(self) -> int:
        gap = self.retry_gap
        if isinstance(gap, str):
            return int(gap[:-1]) * WINDOW_UNITS[gap[-1]] * 1000
        return round(gap * 1000)


DEFAULT_CALLBACKS = Callbacks()


class ReasonCode(Struct, forbid_unknown_fields=True, frozen=True):
    """A not-ready (break) reason an agent may give; the label is for people."""

    label: Annotated[str, Meta(max_length=128)] = ""


class AgentStates(Struct, forbid_unknown_fields=True, frozen=True):
    """Agent states: the not-ready reason codes. None configured: a break takes
    any free-text reason (as before codes existed). Configured: a break must
    name one of them, and metrics label agents on break by code."""

    reasons: dict[Name, ReasonCode] = {}

    def reason_problem(self, state: str, reason: str | None) -> FieldProblem | None:
        """Why a state change's reason is refused, if it is."""
        if state != "break" or not self.reasons or reason in self.reasons:
            return None
        return FieldProblem("reason", "a break needs one of the configured reason codes")


class RoutingConfig(Struct, forbid_unknown_fields=True, frozen=True):
    tiers: dict[Name, Tier]
    channels: dict[Name, Channel]
    skills: list[Name]
    pools: dict[Name, Pool]
    rules: list[Rule] = []
    sla_policies: dict[Name, SlaPolicy] = {}
    # Business calendars SLA policies may count in (by name).
    calendars: dict[Name, Calendar] = {}
    # Signed webhook subscriptions by name (sla/signing.py); secrets are never
    # returned by GET.
    webhooks: dict[Name, Webhook] = {}
    defaults: Defaults = Defaults()
    retention: Retention = Retention()
    # The survey kinds ratings may carry (router/routing/surveys.py); csat only
    # when left out.
    surveys: Surveys = Surveys()
    # The workspace's local time (IANA name): history reports bucket hours,
    # days and months in it. Live counters and forecasts keep UTC days.
    timezone: TimezoneName = "UTC"
    # None: callbacks on the defaults (a "voice" channel); a config that sets
    # them is checked to declare and serve their channel (an encoded default
    # block would make every config without voice invalid when read back)
    callbacks: Callbacks | None = None
    agent_states: AgentStates = AgentStates()
    description: Annotated[str, Meta(max_length=1000)] = ""

    @property
    def callback_setup(self) -> Callbacks:
        return self.callbacks or DEFAULT_CALLBACKS


class StoredConfig(Struct, frozen=True):
    """A config as stored: the document plus who set it, when and its version."""

    version: int
    updated_at: float
    actor: str
    config: RoutingConfig


CONFIG_ENCODER = msgspec.json.Encoder()
CONFIG_DECODER = msgspec.json.Decoder(RoutingConfig)
