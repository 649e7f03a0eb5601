"""Command line: serve, validate, seed, simulate, stats."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import msgspec

from router.runtime.errors import RouterError

if TYPE_CHECKING:
    from router.archive.local import LocalPostgres


def _serve(args: argparse.Namespace) -> int:
    import uvloop

    from router.api.app import create_app
    from router.api.server import (
        SERVER_LIMITS,
        RouteAccessLogger,
        install_log_filters,
        server_ssl_context,
    )
    from router.runtime.pauses import apply_gc_policy
    from router.runtime.serving import run_app
    from router.runtime.settings import DEMO_JWT_SECRET, Settings, SettingsError, demo_token_spec
    from router.store.local import LocalRedis

    # Private servers start (and stop, below) outside the event loop: they block.
    # A SIGTERM before the server's own handler is in place (while they start,
    # the demo seeds, the app starts up) exits through the `finally` below,
    # which stops them, rather than killing this process and leaving them running.
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    local: LocalRedis | None = None
    archive: LocalPostgres | None = None
    try:
        url = os.environ.get("REDIS_URL")
        if not url:
            local = LocalRedis()
            url = local.url
        env = dict(os.environ)
        if args.demo and not env.get("ROUTER_ARCHIVE_URL") and not args.no_archive:
            archive = _private_archive()
            env["ROUTER_ARCHIVE_URL"] = archive.url
        if args.demo and not env.get("ROUTER_TOKENS"):
            env["ROUTER_TOKENS"] = demo_token_spec()
        if args.demo and not (env.get("ROUTER_JWT_SECRET") or env.get("ROUTER_JWT_PUBLIC_KEY")):
            env["ROUTER_JWT_SECRET"] = DEMO_JWT_SECRET  # `router token --demo` signs with it
        settings = Settings.from_env(env, redis_url=url, host=args.host, port=args.port)
        ssl_context = server_ssl_context(settings)
        if args.demo:
            asyncio.run(_seed(url))
            _banner(
                settings.host, settings.port, url, settings.archive_url, ssl_context is not None
            )
        app = create_app(settings)
        install_log_filters()
        apply_gc_policy(settings.gc_thresholds)  # router/runtime/pauses.py: after the app is built
        run_app(  # router/runtime/serving.py: a drain lets every request in flight finish
            app,
            host=settings.host,
            port=settings.port,
            print=None,
            loop=uvloop.new_event_loop(),
            access_log=logging.getLogger("aiohttp.access") if settings.access_log else None,
            access_log_class=RouteAccessLogger,
            shutdown_timeout=10,
            ssl_context=ssl_context,
            **SERVER_LIMITS,
        )
    except SettingsError as exc:
        print(f"router serve: {exc}", file=sys.stderr)
        return 2
    finally:
        if archive:  # after the app's tasks ended: the archiver is not cut mid-batch
            archive.close()
        if local:
            local.stop()
    return 0


def _exit_on_sigterm(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def _private_archive() -> LocalPostgres:
    """The demo's own PostgreSQL (Debian's binaries), its schema applied, when
    ROUTER_ARCHIVE_URL is not set; as the private redis-server, gone on exit."""
    from psycopg import AsyncConnection

    from router.archive.local import LocalPostgres
    from router.archive.schema import migrate

    archive = LocalPostgres()

    async def schema() -> None:
        async with await AsyncConnection.connect(archive.url, connect_timeout=10) as conn:
            await migrate(conn)

    try:
        asyncio.run(schema())
    except BaseException:
        archive.close()
        raise
    return archive


def _banner(host: str, port: int, url: str, archive: str | None, https: bool = False) -> None:
    from router.runtime.settings import DEMO_TOKENS, redacted_url

    base = f"{'https' if https else 'http'}://{host}:{port}"
    print(f"contact router listening on {base}  (Redis: {redacted_url(url)})")
    if archive:
        print(f"history archive (PostgreSQL): {redacted_url(archive)}")
    print("demo tokens (demo only):")
    for tok, (_name, role) in DEMO_TOKENS.items():
        print(f"  {role:<11} {tok}")
    print("agent desktops (agents a001..a060) and team supervisors (sup1..sup6) use signed")
    print("tokens: python -m router token --demo --sub a001 --role agent")
    print("try:")
    print(f"  curl -s -H 'Authorization: Bearer demo-supervisor' {base}/v1/workspaces/demo/pools")
    print(
        f"  curl -s -X POST -H 'Authorization: Bearer demo-gateway' "
        f"-H 'Content-Type: application/json' {base}/v1/workspaces/demo/contacts \\\n"
        '    -d \'{"id":"c1","channel":"voice","intent":"card",'
        '"customer":{"id":"cust1","tier":"vip"}}\''
    )
    sys.stdout.flush()


async def _seed(url: str) -> None:
    from router.cli.demo import DEMO_WORKSPACE, demo_agents, demo_config
    from router.routing.engine import Engine
    from router.routing.model import AgentStateIn
    from router.store.client import open_shards

    shards = await open_shards(url, 10.0)
    engine = Engine(shards)
    try:
        for client in shards.primaries():
            await engine.scripts.load_all(client)
        await engine.put_config(DEMO_WORKSPACE, demo_config(), "admin:seed")
        for aid, agent in demo_agents():
            await engine.upsert_agent(DEMO_WORKSPACE, aid, agent, "admin:seed")
            await engine.set_agent_state(
                DEMO_WORKSPACE, aid, AgentStateIn(state="available"), "admin:seed"
            )
    finally:
        await engine.close()
        await shards.aclose()


def _validate(args: argparse.Namespace) -> int:
    from router.routing.validation import parse_config

    try:
        parse_config(Path(args.file).read_bytes())
    except RouterError as exc:
        problems = getattr(exc, "problems", None) or []
        print(f"{args.file}: invalid: {exc.detail}")
        for p in problems:
            print(f"  {p.field or '(document)'}: {p.message}")
        return 1
    print(f"{args.file}: valid")
    return 0


def _seed_cmd(args: argparse.Namespace) -> int:
    url = os.environ.get("REDIS_URL")
    if not url:
        print("REDIS_URL is not set: give the Redis to seed", file=sys.stderr)
        return 2
    asyncio.run(_seed(url))
    print("seeded workspace 'demo'")
    return 0


def _stats(args: argparse.Namespace) -> int:
    from router.routing.configstore import ConfigStore
    from router.store.client import open_shards
    from router.store.keys import WsKeys
    from router.wfm.pools import pool_stats

    async def run() -> None:
        shards = await open_shards(os.environ["REDIS_URL"], 10.0)
        cfg = (await ConfigStore(shards).get(args.workspace)).config
        client = shards.of(WsKeys(args.workspace).tag)
        for pid, pool in cfg.pools.items():
            s = await pool_stats(client, args.workspace, pid, pool)
            print(msgspec.json.encode(s).decode())
        await shards.aclose()

    asyncio.run(run())
    return 0


def _webhooks_replay(args: argparse.Namespace) -> int:
    from router.store.client import open_shards
    from router.store.keys import WsKeys
    from sla.webhook_store import replay_dead_letters

    url = os.environ.get("REDIS_URL")
    if not url:
        print("REDIS_URL is not set: give the Redis holding the workspace", file=sys.stderr)
        return 2

    async def run() -> int:
        shards = await open_shards(url, 10.0)
        try:
            client = shards.of(WsKeys(args.workspace).tag)
            return await replay_dead_letters(client, args.workspace, args.limit)
        finally:
            await shards.aclose()

    n = asyncio.run(run())
    print(f"{n} dead letter(s) of workspace {args.workspace!r} queued for delivery again")
    return 0


def _simulate(args: argparse.Namespace) -> int:
    from router.cli.simulate import simulate
    from router.runtime.settings import DEMO_JWT_SECRET

    # each agent desktop signs in as its agent; the demo's secret unless one is set
    secret = os.environ.get("ROUTER_JWT_SECRET") or DEMO_JWT_SECRET
    return asyncio.run(
        simulate(args.url, args.token, secret, args.contacts, args.rate, args.workspace)
    )


def main(argv: list[str] | None = None) -> int:
    level = os.environ.get("ROUTER_LOG_LEVEL", "INFO").upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        print(
            f"ROUTER_LOG_LEVEL must be DEBUG, INFO, WARNING or ERROR (got {level!r})",
            file=sys.stderr,
        )
        return 2
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    p = argparse.ArgumentParser(prog="router", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve", help="run the HTTP service")
    s.add_argument("--host", default=os.environ.get("ROUTER_HOST", "127.0.0.1"))
    s.add_argument("--port", type=int, default=int(os.environ.get("ROUTER_PORT", "8080")))
    s.add_argument("--demo", action="store_true", help="seed the demo workspace, demo tokens")
    s.add_argument(
        "--no-archive",
        action="store_true",
        help="with --demo: no private PostgreSQL when ROUTER_ARCHIVE_URL is not set",
    )
    s.set_defaults(fn=_serve)
    v = sub.add_parser("validate", help="validate a routing config file")
    v.add_argument("file")
    v.set_defaults(fn=_validate)
    sd = sub.add_parser("seed", help="seed the demo workspace into REDIS_URL")
    sd.set_defaults(fn=_seed_cmd)
    st = sub.add_parser("stats", help="print pool statistics")
    st.add_argument("--workspace", default="demo")
    st.set_defaults(fn=_stats)
    sm = sub.add_parser("simulate", help="send demo traffic to a running service")
    sm.add_argument("--url", default="http://127.0.0.1:8080")
    sm.add_argument("--workspace", default="demo")
    sm.add_argument("--token", default="demo-gateway")
    sm.add_argument("--contacts", type=int, default=200)
    sm.add_argument("--rate", type=float, default=20.0, help="contacts per second")
    sm.set_defaults(fn=_simulate)
    from router.cli.forecast import add_cli as add_forecast_cli
    from router.cli.staffing import add_cli as add_staffing_cli
    from router.cli.token import add_cli as add_token_cli

    add_token_cli(sub)  # `router token`: a signed agent or supervisor token

    add_staffing_cli(sub)  # `router staffing`: what-if Erlang C / A
    add_forecast_cli(sub)  # `router forecast`: a day's arrivals and agents needed
    from router.cli.audit import add_cli as add_audit_cli
    from router.cli.health import add_cli as add_health_cli

    add_audit_cli(sub)  # `router audit verify|export`: the tamper-evident audit trail
    from router.cli.archive import add_cli as add_archive_cli

    add_archive_cli(sub)  # `router archive migrate`: the history archive's schema
    from router.cli.config import add_cli as add_config_cli

    add_config_cli(sub)  # `router config versions|show|diff|rollback`: config history
    add_health_cli(sub)  # `router health [--ready]`: container and probe checks
    wh = sub.add_parser("webhooks", help="webhook delivery: replay dead letters")
    wh_sub = wh.add_subparsers(dest="webhooks_cmd", required=True)
    rp = wh_sub.add_parser("replay", help="send dead letters again (oldest first)")
    rp.add_argument("--workspace", required=True)
    rp.add_argument("--limit", type=int, default=1000)
    rp.set_defaults(fn=_webhooks_replay)
    args = p.parse_args(argv)
    return int(args.fn(args))


if __name__ == "__main__":
    sys.exit(main())
