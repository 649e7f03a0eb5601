"""The route table under /v1/workspaces/{ws}: one module per resource."""

from __future__ import annotations

from aiohttp import web

from router.api.agents import agent_ws, get_agent, get_offers, post_agent_state, put_agent
from router.api.callbacks import setup_callback_routes
from router.api.config_history import setup_config_history_routes
from router.api.contact_updates import patch_contact
from router.api.contacts import CONTACT_ACTIONS, get_contact, post_contact
from router.api.events import setup_event_routes
from router.api.openapi import openapi
from router.api.pools import get_pool, get_pools
from router.api.position import get_position
from router.api.probes import healthz, metrics, readyz
from router.api.reports import setup_report_routes
from router.api.supervise import contact_assign, list_agents, pool_waiting
from router.api.wallboard import setup_wallboard_routes
from router.api.wfm import setup_wfm_routes
from router.api.workspace import get_config, put_config


def setup_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/healthz", healthz)
    r.add_get("/readyz", readyz)
    r.add_get("/openapi.json", openapi)
    r.add_get("/metrics", metrics)
    base = "/v1/workspaces/{ws}"
    # aiohttp tries every route under /v1/workspaces in the order added (a
    # regex match each, ~0.6 µs), so a contact's lifecycle goes first: creation
    # was the 11th tried and completion the 16th, 6 and 10 µs a request
    # (benchmarks/history/2026-12.md). No two patterns match the same path, so
    # the order changes no answer.
    r.add_post(base + "/contacts", post_contact)
    hot = ("accept", "complete")
    for name in (*hot, *(n for n in CONTACT_ACTIONS if n not in hot)):
        r.add_post(base + "/contacts/{contact_id}/" + name, CONTACT_ACTIONS[name])
    r.add_post(base + "/agents/{agent_id}/state", post_agent_state)
    r.add_get(base + "/contacts/{contact_id}", get_contact)
    r.add_patch(base + "/contacts/{contact_id}", patch_contact)
    r.add_put(base, put_config)
    r.add_get(base, get_config)
    r.add_get(base + "/agents", list_agents)
    setup_config_history_routes(app)
    r.add_put(base + "/agents/{agent_id}", put_agent)
    r.add_get(base + "/agents/{agent_id}", get_agent)
    r.add_get(base + "/agents/{agent_id}/offers", get_offers)
    r.add_get(base + "/agents/{agent_id}/ws", agent_ws)
    r.add_get(base + "/contacts/{contact_id}/position", get_position)
    r.add_post(base + "/contacts/{contact_id}/assign", contact_assign)
    setup_callback_routes(app)
    r.add_get(base + "/pools", get_pools)
    r.add_get(base + "/pools/{pool_id}", get_pool)
    r.add_get(base + "/pools/{pool_id}/waiting", pool_waiting)
    setup_event_routes(app)
    setup_wfm_routes(app)
    setup_wallboard_routes(app)
    setup_report_routes(app)
