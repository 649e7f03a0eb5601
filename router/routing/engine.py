"""Routing operations: thin async wrappers that run one Lua script each.

Pure decisions that need no shared state (rule matching, membership) happen
here in Python; everything that must be atomic across replicas happens in
the script.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, cast

import msgspec
from prometheus_client import Histogram
from redis.asyncio import Redis

from router.routing.callbacks import CallbackOps, callback_fields
from router.routing.config import CONFIG_ENCODER, RoutingConfig, StoredConfig
from router.routing.confighistory import ConfigHistory
from router.routing.configstore import ConfigStore
from router.routing.library import Scripts
from router.routing.membership import agent_pools
from router.routing.model import (
    AgentIn,
    AgentOut,
    AgentStateIn,
    ContactIn,
    ContactOut,
)
from router.routing.records import agent_out, contact_out, contact_record, pairs, timeline_entry
from router.routing.rules import plan_route
from router.routing.runtime_hash import runtime_fields
from router.routing.slaops import SlaOps, sla_clocks, start_plan
from router.routing.updates import ContactUpdates
from router.runtime.errors import (
    Conflict,
    FieldProblem,
    InvalidInput,
    NotFound,
    QueueFull,
    StillHolding,
)
from router.store.batch import ScriptBatcher
from router.store.keys import WsKeys
from router.store.shards import Shards
from sla.webhook_store import create_group

_JSON = msgspec.json.Encoder()
# an agent notification's view: [agent pairs, offered contact pairs...]
_VIEW = msgspec.json.Decoder(list[list[str]])


class Engine:
    def __init__(
        self,
        shards: Shards,
        observe: Histogram | None = None,
        wait_replicas: int = 0,
        wait_timeout: float = 1.0,
        versions_kept: int = 100,
    ) -> None:
        """`wait_replicas`: the write guarantee, the Redis replicas every
        acknowledged change must reach first (`router/store/batch.py`);
        `versions_kept`: config versions kept in Redis (`confighistory.py`)."""
        self.shards = shards
        self._observe = observe  # decision latency by operation (per replica)
        self._observed: dict[str, Histogram] = {}
        self.scripts = Scripts()
        self.batcher = ScriptBatcher(shards, wait_replicas=wait_replicas, wait_timeout=wait_timeout)
        self.configs = ConfigStore(shards)
        self.sla = SlaOps(self)
        self.history = ConfigHistory(self, versions_kept)
        self.updates = ContactUpdates(self)  # PATCH /contacts/{id}
        self.callbacks = CallbackOps(self)

    def client(self, ws_name: str) -> Redis:
        """The Redis that holds the workspace (a cluster's primary for its slot)."""
        return self.shards.of(WsKeys(ws_name).tag)

    async def _run(self, name: str, ws: WsKeys, key: str, args: Sequence[Any]) -> Any:
        start = time.perf_counter()
        res = await self.batcher.call(self.scripts[name], (ws.runtime, key), args)
        if self._observe is not None:
            child = self._observed.get(name)  # looked up once per operation, not per call
            if child is None:
                child = self._observed[name] = self._observe.labels(name)
            child.observe(time.perf_counter() - start)
        return res

    # --- config ---------------------------------------------------------------

    async def put_config(
        self,
        ws_name: str,
        cfg: RoutingConfig,
        actor: str,
        expected: int | None = None,
        rollback_of: int | None = None,
    ) -> StoredConfig:
        ws = WsKeys(ws_name)
        try:  # running SLA clocks keep the budget they used under the old rules
            previous: StoredConfig | None = await self.configs.get(ws_name)
        except NotFound:
            previous = None
        doc = CONFIG_ENCODER.encode(cfg)
        # listed first, apart (another slot): a config nobody finds would serve no timers
        await self.configs.workspaces.register(ws_name)
        # rollback_of: the version whose document this restores (confighistory.py)
        exp, back = ("" if v is None else v for v in (expected, rollback_of))
        kept = self.history.kept
        args = [actor, ws_name, doc, exp, cfg.description, back, kept, *runtime_fields(cfg)]
        res = await self.batcher.call(self.scripts["config_put"], (ws.runtime, ws.config), args)
        if res[0] == -2:
            raise Conflict(f"config is at version {res[1]}, not {expected}", field="If-Match")
        if cfg.webhooks:  # from now on every event is kept for the webhooks
            await create_group(self.client(ws_name), ws_name)
        stored = StoredConfig(version=res[0], updated_at=res[1] / 1000, actor=actor, config=cfg)
        self.configs.remember(ws_name, stored)
        self.configs.workspaces.add(ws_name)
        await self._resync_agents(ws, cfg, actor)
        await self.sla.replan(ws_name, previous.config if previous else None, cfg, actor)
        return stored

    async def _resync_agents(self, ws: WsKeys, cfg: RoutingConfig, actor: str) -> None:
        """Recomputes every agent's pools after a config change."""
        client = self.client(ws.name)
        ids = sorted(cast(set[str], await client.smembers(ws.agents)))
        for i in range(0, len(ids), 200):
            pipe = client.pipeline(transaction=False)
            for aid in ids[i : i + 200]:
                pipe.hmget(ws.agent(aid), "skills", "cap", "team", "sup")
            rows = await pipe.execute()
            for aid, (skills, cap, team, sup) in zip(ids[i : i + 200], rows, strict=True):
                body = AgentIn(
                    skills=msgspec.json.decode(skills or "{}"),
                    capacity=int(cap or 100),
                    team=team or None,
                    supervisor=sup or None,
                )
                await self._upsert(ws, cfg, aid, body, actor)

    # --- agents ---------------------------------------------------------------

    async def upsert_agent(self, ws_name: str, aid: str, body: AgentIn, actor: str) -> AgentOut:
        stored = await self.configs.get(ws_name)
        unknown = [
            FieldProblem(f"skills.{s}", "skill is not declared in the routing config")
            for s in body.skills
            if s not in stored.config.skills
        ]
        if unknown:
            raise InvalidInput(unknown)
        return await self._upsert(WsKeys(ws_name), stored.config, aid, body, actor)

    async def _upsert(
        self, ws: WsKeys, cfg: RoutingConfig, aid: str, body: AgentIn, actor: str
    ) -> AgentOut:
        pools = agent_pools(cfg, body.skills)
        res = await self.batcher.call(
            self.scripts["agent_upsert"],
            (ws.runtime, ws.agent(aid), ws.agents),
            [
                actor,
                aid,
                body.capacity,
                body.team or "",
                body.supervisor or "",
                _JSON.encode(body.skills),
                ",".join(f"{p}={s}" for p, s in pools.items()),
                ",".join(f"{k}={v}" for k, v in body.skills.items()),
            ],
        )
        return agent_out(pairs(res[1]))

    async def set_agent_state(
        self, ws_name: str, aid: str, body: AgentStateIn, actor: str, signout: bool = False
    ) -> AgentOut:
        """`signout`: a supervisor's, which returns pending offers (agent_state.lua)."""
        cfg = (await self.configs.get(ws_name)).config
        if refused := cfg.agent_states.reason_problem(body.state, body.reason):
            raise InvalidInput([refused])
        ws = WsKeys(ws_name)
        args = [actor, body.state, body.reason or "", "1" if signout else ""]
        res = await self._run("agent_state", ws, ws.agent(aid), args)
        if res[0] == -1:
            raise NotFound(f"agent {aid!r} does not exist", field="agent_id")
        if res[0] == -2:
            raise Conflict(res[2], state=res[1], field="state")
        if res[0] == -4:
            raise StillHolding(state=res[1], contacts=list(res[2]))
        return agent_out(pairs(res[1]))

    async def get_agent(self, ws_name: str, aid: str) -> AgentOut:
        await self.configs.get(ws_name)
        raw = cast(dict[str, str], await self.client(ws_name).hgetall(WsKeys(ws_name).agent(aid)))
        if not raw:
            raise NotFound(f"agent {aid!r} does not exist", field="agent_id")
        return agent_out(raw)

    async def agent_view(self, ws_name: str, aid: str) -> tuple[AgentOut, list[ContactOut]]:
        """The agent and the contacts currently offered to it (not yet accepted),
        read in one script call that shares the replica's pipeline."""
        await self.configs.get(ws_name)
        ws = WsKeys(ws_name)
        keys = (ws.runtime, ws.agent(aid))
        res = await self.batcher.call(self.scripts["agent_view"], keys, (aid,))
        if not res:
            raise NotFound(f"agent {aid!r} does not exist", field="agent_id")
        return agent_out(pairs(res[0])), [contact_out(pairs(r), False) for r in res[1:]]

    @staticmethod
    def pushed_view(payload: str) -> tuple[AgentOut, list[ContactOut]] | None:
        """The view an agent notification carried (`lib/20_events.lua`
        publish_views), as agent_view returns it; None when it cannot be read,
        and the caller reads the agent instead."""
        try:
            res = _VIEW.decode(payload)
        except msgspec.DecodeError:
            return None
        if not res:
            return None
        return agent_out(pairs(res[0])), [contact_out(pairs(r), False) for r in res[1:]]

    async def agent_offers(self, ws_name: str, aid: str) -> list[ContactOut]:
        """Contacts currently offered to the agent (not yet accepted)."""
        return (await self.agent_view(ws_name, aid))[1]

    # --- contacts -------------------------------------------------------------

    async def create_contact(
        self,
        ws_name: str,
        body: ContactIn,
        actor: str,
        sla_override: str | None = None,
        gateway: str | None = None,
    ) -> ContactOut:
        """`gateway`: the creating token's name, recorded so that gateway alone sees it."""
        stored = await self.configs.get(ws_name)
        cfg = stored.config
        plan = plan_route(
            cfg,
            channel=body.channel,
            tier=body.customer.tier,
            intent=body.intent,
            language=body.customer.language,
            flags=body.customer.flags,
            attributes=body.attributes,
            skills=body.skills,
            handoff=body.handoff,
        )
        sla, sla_plan = start_plan(cfg, plan, body.channel, body.intent, sla_override)
        payload = contact_record(cfg, body, plan, sla, stored.version, gateway)
        if body.callback is not None:
            payload |= callback_fields(cfg, body)
        ws = WsKeys(ws_name)
        res = await self._run(
            "create", ws, ws.contact(body.id), [actor, _JSON.encode(payload), sla_plan]
        )
        if res[0] == -1:
            if res[1] == "queue_full":
                raise QueueFull(f"pool {res[2]!r} has reached its maximum queue length")
            raise InvalidInput([FieldProblem("channel", "channel is not configured")])
        return contact_out(pairs(res[1]), created=res[0] == 1)

    async def get_contact(self, ws_name: str, cid: str, timeline: bool = True) -> ContactOut:
        await self.configs.get(ws_name)
        ws = WsKeys(ws_name)
        pipe = self.client(ws_name).pipeline(transaction=False)
        pipe.hgetall(ws.contact(cid))  # its SLA clocks included
        pipe.lrange(ws.timeline(cid), 0, -1)
        raw, tl = await pipe.execute()
        if not raw or raw.get("restored"):  # (restored: read it from the archive)
            raise NotFound(f"contact {cid!r} does not exist", field="contact_id")
        out = contact_out(raw, False)
        clocks = sla_clocks(raw) if raw.get("sla") else None
        if clocks:
            out = msgspec.structs.replace(out, sla_clocks=clocks)
        if timeline:
            out = msgspec.structs.replace(out, timeline=[timeline_entry(e) for e in tl])
        return out

    async def restore_contact(self, ws_name: str, cid: str, fields: dict[str, str]) -> bool:
        """An archived contact back in Redis for a late action (restore.lua)."""
        ws = WsKeys(ws_name)
        res = await self._run(
            "restore", ws, ws.contact(cid), ["system:archive", _JSON.encode(fields)]
        )
        return bool(res[0])

    async def contact_action(
        self, ws_name: str, cid: str, action: str, args: Sequence[Any], actor: str
    ) -> ContactOut:
        """accept / reject / complete / abandon / transfer: one script each."""
        await self.configs.get(ws_name)
        ws = WsKeys(ws_name)
        res = await self._run(action, ws, ws.contact(cid), [actor, *args])
        code = res[0]
        if code == -1:
            raise NotFound(f"contact {cid!r} does not exist", field="contact_id")
        if code == -2:
            raise Conflict(f"cannot {action}: {res[2]}", state=res[1])
        if code == -3:
            raise InvalidInput([FieldProblem(res[1], res[2])])
        if code == -4:
            raise Conflict("the clock changed while resuming; retry", state="paused")
        return contact_out(pairs(res[1]), False)

    async def fire_timers(self, ws: WsKeys, timers: list[tuple[str, int]]) -> object:
        """Applies and acknowledges due timers (`sla.timers.TimerWorker`'s effect):
        follow-ups here in Python, every other kind in one `fire` script call."""
        args: list[object] = []
        for member, due in timers:
            if member.startswith("followup|"):
                # Python effect, acknowledged after it: a crash in between re-fires
                # it, and the follow-up's id is derived from the timer (idempotent).
                await self.sla.create_followup(ws.name, member)
                await self.batcher.call(
                    self.scripts["ack"], (ws.timer_leases, ws.timer_lease_info), [member]
                )
            else:
                args += (member, due)
        if not args:
            return None
        keys = (ws.runtime, ws.timer_leases, ws.timer_lease_info)
        return await self.batcher.call(self.scripts["fire"], keys, args)

    async def close(self) -> None:
        await self.batcher.close()
