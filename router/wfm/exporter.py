"""The shared state in Redis as Prometheus series, exported by one replica.

The holder of a Redis lease (`router:metrics:exporter:<group>`, renewed on
every scrape and by a background loop; another replica takes over within
`LEASE_MS` when it dies) reads queues, agents, service level and the event
counts the scripts keep, and hands the snapshot to the registry's `RedisState`
collector (`router/runtime/metrics.py`). The other replicas omit these series,
so sums over replicas never double count.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, cast

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from redis.asyncio import Redis

from router.routing.config import RoutingConfig
from router.routing.configstore import ConfigStore
from router.routing.surveys import SCALES
from router.runtime.aio import cancel_requested, worker_name
from router.runtime.errors import NotFound
from router.runtime.metrics import RedisState
from router.store.groups import group_info
from router.store.keys import ARCHIVE_GROUP, WsKeys
from router.store.leases import LEASE_LUA, RELEASE_LUA
from router.store.scripts import Script
from router.store.shards import Shards
from router.wfm.pools import PoolStats, all_agent_rows, pool_stats
from router.wfm.stats import WindowStats, pool_windows

LEASE_PREFIX = "router:metrics:exporter:"
LEASE_MS = 30_000
RENEW_EVERY = 10.0


class StateExporter:
    """Holds the exporter lease and builds the Redis-state snapshot on scrape."""

    def __init__(
        self, shards: Shards, configs: ConfigStore, state: RedisState, group: str = "default"
    ) -> None:
        self._key = LEASE_PREFIX + group
        self._shards = shards
        self._configs = configs
        self._state = state
        self._lease = Script(LEASE_LUA)
        self._release = Script(RELEASE_LUA)
        self.owner = worker_name()

    async def hold(self) -> bool:
        held = bool(
            await self._lease(
                keys=[self._key], args=[self.owner, LEASE_MS], client=self._shards.of(self._key)
            )
        )
        self._state.exporter = held
        return held

    async def run(self) -> None:
        """Keeps the lease warm between scrapes so the exporter does not flap."""
        while not cancel_requested():
            with contextlib.suppress(Exception):
                await self.hold()
            await asyncio.sleep(RENEW_EVERY)

    async def release(self) -> None:
        """On shutdown: let another replica take over at its next scrape."""
        with contextlib.suppress(Exception):
            await self._release(
                keys=[self._key], args=[self.owner], client=self._shards.of(self._key)
            )

    async def refresh(self) -> None:
        if not await self.hold():
            return
        families: dict[str, Metric] = {}
        names = await self._configs.workspaces.names()
        for ws in names:
            try:
                cfg = (await self._configs.get(ws)).config
            except NotFound:
                continue
            await self._workspace(ws, cfg, families)
        self._state.snapshot = list(families.values())

    async def _workspace(self, ws: str, cfg: RoutingConfig, fam: dict[str, Metric]) -> None:
        keys = WsKeys(ws)
        client = self._shards.of(keys.tag)
        secs, micros = await client.time()
        now_ms = int(secs) * 1000 + int(micros) // 1000
        pools = list(cfg.pools)
        agents = await all_agent_rows(client, ws)  # once for every pool and the states
        stats = [await pool_stats(client, ws, p, cfg.pools[p], agents) for p in pools]
        windows = await pool_windows(client, ws, pools, now_ms)
        counts = cast(dict[str, str], await client.hgetall(keys.event_counts))
        pending = int(await client.zcard(keys.timers))
        backlog = await archive_backlog(client, keys)
        if backlog is not None:
            _gauge(fam, "routerarchive_backlog_events",
                   "Events the history archive has not written yet", ["workspace"],
                   [ws], backlog)  # fmt: skip
        _gauge(fam, "router_timers_pending", "Timers waiting to come due", ["workspace"],
               [ws], pending)  # fmt: skip
        for p, s in zip(pools, stats, strict=True):
            _pool_gauges(fam, ws, s, cfg.pools[p].service_level.percent / 100)
            for w in windows[p].values():
                _window_gauges(fam, ws, p, w)
        _event_counters(fam, ws, counts)
        _survey_counters(fam, ws, cfg, counts)
        _handoff_counters(fam, ws, counts)
        _agent_state_gauges(fam, ws, cfg, [(st, reason) for st, _, _, reason in agents.values()])


async def archive_backlog(client: Redis, keys: WsKeys) -> int | None:
    """Entries of the workspace's stream the archive has not written: read and
    not acknowledged, or not read yet; None without an archive."""
    group = await group_info(client, keys.events, ARCHIVE_GROUP)
    if group is None:
        return None
    pending = int(group.get("pending", 0))
    info = await client.xinfo_stream(keys.events)
    if group.get("last-delivered-id") == info.get("last-generated-id"):
        return pending  # read to the end
    # Redis counts entries trimmed before the group read them as lag for good
    # (its read counter jumps past them by what it delivered, not by position):
    # never more than the stream holds
    lag = group.get("lag")
    length = int(info.get("length", 0))
    return pending + (length if lag is None else min(int(lag), length))


def _agent_state_gauges(
    fam: dict[str, Metric],
    ws: str,
    cfg: RoutingConfig,
    rows: list[tuple[str | None, str | None]],
) -> None:
    """Agents by state and, on break, by not-ready reason code. Only configured
    codes become labels (bounded by the config); any other reason, free text
    included, is `other`, and states without a reason `none`. Every configured
    code is exported from zero on."""
    codes = cfg.agent_states.reasons
    counts = dict.fromkeys(
        [(s, "none") for s in ("available", "missed", "offline")]
        + [("break", c) for c in codes]
        + [("break", "other")],
        0,
    )
    for st, reason in rows:
        state = st or "offline"
        label = "none" if state != "break" else (reason if reason in codes else "other")
        counts[(state, label or "other")] = counts.get((state, label or "other"), 0) + 1
    for (state, label), n in sorted(counts.items()):
        _gauge(fam, "router_agents_state",
               "Agents by state and not-ready reason (configured codes; other: any other)",
               ["workspace", "state", "reason"], [ws, state, label], n)  # fmt: skip


def _family(fam: dict[str, Metric], kind: str, name: str, doc: str, labels: list[str]) -> Any:
    f = fam.get(name)
    if f is None:
        cls = GaugeMetricFamily if kind == "gauge" else CounterMetricFamily
        f = fam[name] = cls(name, doc, labels=labels)
    return f


def _gauge(fam: dict[str, Metric], name: str, doc: str, labels: list[str],
           values: list[str], value: float | None) -> None:  # fmt: skip
    if value is not None:
        _family(fam, "gauge", name, doc, labels).add_metric(values, value)


def _pool_gauges(fam: dict[str, Metric], ws: str, s: PoolStats, target: float) -> None:
    wp = ["workspace", "pool"]
    for ch, depth in s.depth_by_channel.items():
        _gauge(fam, "router_queue_depth", "Contacts waiting, by pool and channel",
               [*wp, "channel"], [ws, s.id, ch], depth)  # fmt: skip
    _gauge(fam, "router_queue_longest_wait_seconds", "Wait of the oldest waiting contact",
           wp, [ws, s.id], s.longest_wait)  # fmt: skip
    for state in ("available", "busy", "break", "missed", "offline"):
        _gauge(fam, "router_agents", "Member agents by state (busy: available with load)",
               [*wp, "state"], [ws, s.id, state], s.agents_by_state.get(state, 0))  # fmt: skip
    _gauge(fam, "router_pool_occupancy_ratio", "Load over capacity of staffed agents", wp,
           [ws, s.id], s.occupancy)  # fmt: skip
    _gauge(fam, "router_service_level_target_ratio", "The pool's service-level target", wp,
           [ws, s.id], target)  # fmt: skip
    _gauge(fam, "router_estimated_wait_seconds", "Expected wait of a new contact", wp,
           [ws, s.id], s.estimated_wait)  # fmt: skip


def _window_gauges(fam: dict[str, Metric], ws: str, pool: str, w: WindowStats) -> None:
    labels, values = ["workspace", "pool", "window"], [ws, pool, w.window]
    _gauge(fam, "router_service_level_ratio",
           "Answered within target over answered, in a sliding window", labels, values,
           w.service_level)  # fmt: skip
    _gauge(fam, "router_service_level_with_abandons_ratio",
           "Answered within target over answered plus abandoned", labels, values,
           w.service_level_with_abandons)  # fmt: skip
    _gauge(fam, "router_average_speed_of_answer_seconds", "Mean wait of answered contacts",
           labels, values, w.average_speed_of_answer)  # fmt: skip
    _gauge(fam, "router_average_handle_time_seconds", "Mean answer-to-completion time",
           labels, values, w.average_handle_time)  # fmt: skip
    _gauge(fam, "router_abandon_rate_ratio", "Abandoned over answered plus abandoned",
           labels, values, w.abandon_rate)  # fmt: skip
    _gauge(fam, "router_arrival_rate_per_second", "Contacts arriving per second", labels,
           values, w.arrival_rate)  # fmt: skip


def _event_counters(fam: dict[str, Metric], ws: str, counts: dict[str, str]) -> None:
    for field, n in sorted(counts.items()):
        parts = field.split("|")
        if parts[0].startswith("contact.") and len(parts) == 4:
            f = _family(fam, "counter", "router_contact_events",
                        "Contact events (created, offered, assigned, abandoned, ...)",
                        ["workspace", "event", "pool", "channel", "tier"])  # fmt: skip
            f.add_metric([ws, parts[0].removeprefix("contact."), *parts[1:]], int(n))
        elif parts[0].startswith("sla.") and len(parts) == 3:
            f = _family(fam, "counter", "router_sla_events",
                        "SLA events (warning, breached, escalated, met, missed, ...)",
                        ["workspace", "event", "policy", "clock"])  # fmt: skip
            f.add_metric([ws, parts[0].removeprefix("sla."), *parts[1:]], int(n))


def _survey_counters(
    fam: dict[str, Metric], ws: str, cfg: RoutingConfig, counts: dict[str, str]
) -> None:
    """Survey answers by pool, kind and score (`survey|<kind>|<pool>|<score>`
    in the counts hash, from rate.lua), and the sum of their scores. Every
    score of every kind the workspace collects is exported from zero on, so
    `increase()` counts a series' first answer too and CSAT / NPS queries
    never miss a class that has no answers yet."""
    by_key: dict[tuple[str, str], dict[int, int]] = {}
    for pool in cfg.pools:
        for collected in cfg.surveys.kinds:
            low, high = SCALES[collected]
            by_key[(pool, collected)] = dict.fromkeys(range(low, high + 1), 0)
    for field, count in counts.items():
        parts = field.split("|")
        if parts[0] == "survey" and len(parts) == 4 and parts[3].isdigit():
            scores = by_key.setdefault((parts[2], parts[1]), {})
            scores[int(parts[3])] = scores.get(int(parts[3]), 0) + int(count)
    labels = ["workspace", "pool", "kind"]
    for (pool, kind), scores in sorted(by_key.items()):
        answers = _family(fam, "counter", "router_survey_responses",
                          "Survey answers (csat 1..5, nps 0..10) by score",
                          [*labels, "score"])  # fmt: skip
        for score, n in sorted(scores.items()):
            answers.add_metric([ws, pool, kind, str(score)], n)
        total = _family(fam, "counter", "router_survey_scores",
                        "Sum of the survey scores given (mean: scores / responses)",
                        labels)  # fmt: skip
        total.add_metric([ws, pool, kind], sum(score * n for score, n in scores.items()))


def _handoff_counters(fam: dict[str, Metric], ws: str, counts: dict[str, str]) -> None:
    """Bot hand-offs by bot and intent (`handoff|<bot>|<intent>`, create.lua)
    and the served ones by whether the agent changed the bot's intent
    (`handoff_done|<bot>|<intent>|<0|1>`, lua/lib/75_handoff.lua). Bot and
    intent are labels only when the config's rules name them, else `other`
    (router/routing/handoff.py): client text never makes a series. Both
    outcomes of a pair are exported from zero so the changed share always
    has its numerator."""
    created: dict[tuple[str, str], int] = {}
    done: dict[tuple[str, str], dict[str, int]] = {}
    for field, count in counts.items():
        parts = field.split("|")
        if parts[0] == "handoff" and len(parts) == 3:
            created[(parts[1], parts[2])] = int(count)
        elif parts[0] == "handoff_done" and len(parts) == 4:
            by = done.setdefault((parts[1], parts[2]), {"true": 0, "false": 0})
            by["true" if parts[3] == "1" else "false"] += int(count)
    labels = ["workspace", "bot", "intent"]
    for (bot, intent), total in sorted(created.items()):
        f = _family(fam, "counter", "router_handoffs", "Contacts a chatbot handed over", labels)
        f.add_metric([ws, bot, intent], total)
    for (bot, intent), by in sorted(done.items()):
        f = _family(fam, "counter", "router_handoff_outcomes",
                    "Served hand-offs by whether the agent changed the bot's intent",
                    [*labels, "changed"])  # fmt: skip
        for changed, served in sorted(by.items()):
            f.add_metric([ws, bot, intent, changed], served)
