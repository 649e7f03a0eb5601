"""Every Redis key the engine uses, in one place.

All keys of a workspace start with the hash tag `{ws:<name>}` so that every
multi-key Lua script runs on one Redis Cluster slot. The Lua library
(`router/routing/lua/lib/00_state.lua`) builds the same names from the tag it is given in
KEYS[1]; keep both in step.
"""

from __future__ import annotations

import zlib

# Set of workspace names (outside every workspace tag, so written on its own,
# never by a script beside a workspace's keys): lets timer workers and config
# watchers find workspaces without SCAN.
WORKSPACES = "router:workspaces"
# Pub/sub channel of config changes (`<tag>|<version>`), rare: a classic
# channel, which a cluster forwards to every node.
CONFIG_CHANNEL = "router:config"

# Consumer group of the history archive on each workspace's event stream
# (router/archive/events.py): retention never trims past what it has written.
ARCHIVE_GROUP = "archive"

# Length cap of the per-workspace event stream (approximate trimming).
EVENTS_MAXLEN = 1_000_000

# Streams of denied requests (401 and 403), all workspaces: at (ms), actor,
# method, route template, status, reason, remote address; never the token.
# ACCESS_SHARDS streams, each in a slot of its own, so a flood of denials (a
# scan, a guessed token tried again and again) spreads over a cluster's shards
# instead of landing on one; a client's denials stay in order in one stream,
# picked by its address. `router:access` is where they went before: still
# sealed and verified, no longer written.
ACCESS_SHARDS = 8
ACCESS_STREAM = "router:access"
ACCESS_MAXLEN = 100_000  # per stream


def access_stream(shard: int) -> str:
    return ACCESS_STREAM + ":{" + str(shard) + "}"


def access_shard(remote: str) -> int:
    return zlib.crc32(remote.encode()) % ACCESS_SHARDS


class WsKeys:
    """Key names of one workspace."""

    __slots__ = ("name", "tag")

    def __init__(self, name: str) -> None:
        self.name = name
        self.tag = "{ws:" + name + "}"

    # Hash: version, doc (JSON), updated_at, actor.
    @property
    def config(self) -> str:
        return self.tag + ":config"

    # Hash: every accepted config version, written by `config_put.lua` in the
    # call that bumps the version: `<v>` the document JSON, `<v>:meta` its
    # metadata JSON (version, updated_at ms, actor, description, rollback_of).
    # A version older than the history (stored before it was kept) is not in it.
    @property
    def config_versions(self) -> str:
        return self.tag + ":config:versions"

    # Hash: the numbers Lua needs from the config (channel weights, timeouts,
    # pool strategies); written atomically with the config document.
    @property
    def runtime(self) -> str:
        return self.tag + ":rt"

    # Set of agent ids known to the workspace.
    @property
    def agents(self) -> str:
        return self.tag + ":agents"

    # Sharded pub/sub channel (SPUBLISH) of the workspace's notifications to
    # replicas: `<tag>|a|<agent>` (offers, state), `<tag>|t` (an earlier timer).
    # On a cluster only the shard that holds the workspace carries it.
    @property
    def notify(self) -> str:
        return self.tag + ":notify"

    # Stream of events (CloudEvents-shaped JSON in field `e`).
    @property
    def events(self) -> str:
        return self.tag + ":events"

    # Sorted set of timers: member `kind|contact|arg`, score = due ms.
    @property
    def timers(self) -> str:
        return self.tag + ":timers"

    # Sorted set of leased timers: score = lease expiry ms.
    @property
    def timer_leases(self) -> str:
        return self.tag + ":timers:leased"

    # Hash: leased timer -> "owner|due ms", to hand leases back and measure lag.
    @property
    def timer_lease_info(self) -> str:
        return self.tag + ":timers:lease"

    # Hash: owner -> its last claim ("claim id|members"), so a retried claim
    # whose reply was lost gets the same timers back.
    @property
    def timer_claims(self) -> str:
        return self.tag + ":timers:claims"

    # Sorted set: webhook deliveries to retry (JSON member, score = next attempt ms).
    @property
    def webhook_retry(self) -> str:
        return self.tag + ":wh:retry"

    # List: webhook deliveries that failed for longer than their max age.
    @property
    def webhook_dead(self) -> str:
        return self.tag + ":wh:dead"

    def agent(self, agent_id: str) -> str:
        return self.tag + ":a:" + agent_id

    def contact(self, contact_id: str) -> str:
        return self.tag + ":c:" + contact_id

    # List of timeline entries (JSON) of one contact, expires with it.
    def timeline(self, contact_id: str) -> str:
        return self.tag + ":c:" + contact_id + ":tl"

    # Set: contacts with an SLA clock running or paused, to re-plan them when a
    # config changes a clock's definition (no SCAN on a live path).
    @property
    def sla_running(self) -> str:
        return self.tag + ":sla:run"

    # The contact's SLA clocks (`<clock>.<field>`, the policy being the record's
    # `sla`) are fields of its record: one key less per queued contact (no
    # other field has a dot). A name of its own for the code that reads clocks.
    def sla(self, contact_id: str) -> str:
        return self.contact(contact_id)

    # Sorted set: contact -> rank (virtual arrival ms), one per pool and channel so
    # an agent with room for a chat finds the best chat without skipping calls.
    def queue(self, pool: str, channel: str) -> str:
        return self.tag + ":q:" + pool + ":" + channel

    # Sorted set: contact -> enqueued_at ms, all channels (depth, longest wait).
    def queue_age(self, pool: str) -> str:
        return self.tag + ":qa:" + pool

    # Sorted set: agents able to take a contact of `channel` now, by strategy score.
    def ready(self, pool: str, channel: str) -> str:
        return self.tag + ":r:" + pool + ":" + channel

    # Set: agents whose skills qualify them for the pool.
    def members(self, pool: str) -> str:
        return self.tag + ":m:" + pool

    # Set: members who are not offline (staffed), for expected wait.
    def staffed(self, pool: str) -> str:
        return self.tag + ":s:" + pool

    # Hash: per-minute statistics of a pool (answered, within, wait_ms, abandoned,
    # abandon_wait_ms, handled, handle_ms, arrived); `minute` = epoch ms // 60000.
    # Kept two hours after its minute (expiry set once, when the key is created):
    # sliding service-level windows are sums of these.
    def pool_minute(self, pool: str, minute: int) -> str:
        return self.tag + ":sl:" + pool + ":" + str(minute)

    # Hash: running counts of contact and SLA events by labels (metrics):
    # "type|pool|channel|tier" and "sla.type|policy|clock".
    @property
    def event_counts(self) -> str:
        return self.tag + ":stats:counts"

    # Hash: arrivals of a pool on one UTC day (`day` = epoch ms // 86_400_000),
    # field "<channel>|<15-minute interval 0..95>"; kept ten weeks after its day
    # (expiry set once, when the key is created) for forecasts.
    def arrivals(self, pool: str, day: int) -> str:
        return self.tag + ":arr:" + pool + ":" + str(day)

    # Hash: counts of one UTC day (`day` = epoch ms // 86_400_000), such as
    # "breached|<pool>" for the wallboard; kept three days.
    def day_counts(self, day: int) -> str:
        return self.tag + ":stats:day:" + str(day)

    # Hash: running pool statistics (aht EWMA, counters).
    def pool_stats(self, pool: str) -> str:
        return self.tag + ":ps:" + pool

    # Sorted set: contacts transferred to one named agent, by rank.
    def agent_queue(self, agent_id: str) -> str:
        return self.tag + ":aq:" + agent_id

    # String: the agent who last served a customer (TTL = continuity window).
    def last_agent(self, customer_id: str) -> str:
        return self.tag + ":la:" + customer_id
