"""A chatbot's hand-off: what a contact's record keeps of it, its metric
labels, and the `handoff` block read back.

The bot, its intent and confidence route the contact (`when.handoff` in the
rules, `router/routing/rules.py`) and are not personal: they are record fields
(`hbot`, `hint`, `hconf`) and the created event's explanation carries them.
The transcript reference (`htr`) is a record field too but is never put in
an event. The summary and the collected fields are personal
(`router/routing/personal.py`, masked by `router/security/privacy.py`).

Metric labels: bots and intents are client text, so a label is the name only
when the workspace's config names it in a rule's condition, else `other`
(`hbl`, `hil`, fixed at creation so the outcome counted when the contact
ends uses the same series; `lua/lib/75_handoff.lua`).
"""

from __future__ import annotations

from router.routing.config import RoutingConfig
from router.routing.model import HandoffIn, HandoffOut
from router.routing.personal import handoff_personal

OTHER = "other"


def known_names(cfg: RoutingConfig) -> tuple[frozenset[str], frozenset[str]]:
    """The bots and intents the config's rules name: the only label values."""
    bots: set[str] = set()
    intents: set[str] = set()
    for rule in cfg.rules:
        if rule.when.intent:
            intents.update(rule.when.intent)
        h = rule.when.handoff
        if h is not None:
            bots.update(h.bot or ())
            intents.update(h.intent or ())
    return frozenset(bots), frozenset(intents)


def handoff_fields(cfg: RoutingConfig, h: HandoffIn) -> dict[str, object]:
    """The record fields of a new contact's hand-off (its personal parts go in `pii`)."""
    bots, intents = known_names(cfg)
    fields: dict[str, object] = {
        "hbot": h.bot,
        "hbl": h.bot if h.bot in bots else OTHER,
        "hil": h.intent if h.intent in intents else OTHER,
    }
    if h.intent is not None:
        fields["hint"] = h.intent
    if h.confidence is not None:
        fields["hconf"] = repr(h.confidence)
    if h.transcript is not None:
        fields["htr"] = h.transcript
    return fields


def _stored(raw: dict[str, str]) -> tuple[str, str | None, float | None] | None:
    """Bot, intent and confidence of a contact record's hand-off (None: none)."""
    if not raw.get("hbot"):
        return None
    conf = raw.get("hconf")
    return raw["hbot"], raw.get("hint") or None, float(conf) if conf else None


def handoff_in(raw: dict[str, str]) -> HandoffIn | None:
    """A stored contact's hand-off as the rules read it (for an update)."""
    stored = _stored(raw)
    if stored is None:
        return None
    bot, intent, confidence = stored
    _, fields = handoff_personal(raw.get("pii"))
    return HandoffIn(bot=bot, intent=intent, confidence=confidence, fields=fields)


def handoff_out(raw: dict[str, str]) -> HandoffOut | None:
    """The full hand-off of a contact record (responses mask it by caller)."""
    stored = _stored(raw)
    if stored is None:
        return None
    bot, intent, confidence = stored
    summary, fields = handoff_personal(raw.get("pii"))
    return HandoffOut(
        bot=bot,
        intent=intent,
        confidence=confidence,
        transcript=raw.get("htr") or None,
        masked=False,
        summary=summary,
        fields=fields,
        agent_intent=raw.get("aint") or None,
    )
