"""`router token`: a signed (HS256) agent or supervisor token, for development and
the demo. Production tokens come from the bank's identity provider; this signs
with ROUTER_JWT_SECRET (or, with --demo, the demo's well-known secret) and adds
ROUTER_JWT_ISSUER / ROUTER_JWT_AUDIENCE when set, so the service accepts it."""

from __future__ import annotations

import argparse
import os
import sys

from router.runtime.settings import DEMO_JWT_SECRET
from router.security.auth import JWT_ROLES, mint, parse_ttl


def _names(text: str | None) -> list[str] | None:
    return None if text is None else [t.strip() for t in text.split(",") if t.strip()]


def _run(args: argparse.Namespace) -> int:
    secret = DEMO_JWT_SECRET if args.demo else os.environ.get("ROUTER_JWT_SECRET", "")
    if not secret:
        print("ROUTER_JWT_SECRET is not set (or pass --demo for the demo's)", file=sys.stderr)
        return 2
    try:
        token = mint(
            secret,
            args.sub,
            args.role,
            teams=_names(args.teams),
            workspaces=_names(args.ws),
            ttl=parse_ttl(args.ttl),
            issuer=os.environ.get("ROUTER_JWT_ISSUER") or None,
            audience=os.environ.get("ROUTER_JWT_AUDIENCE") or None,
        )
    except ValueError as exc:
        print(f"router token: {exc}", file=sys.stderr)
        return 2
    print(token)  # the one place a token is printed: it is what was asked for
    return 0


def add_cli(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("token", help="mint a signed agent or supervisor token (development)")
    p.add_argument("--sub", required=True, help="agent or supervisor id, e.g. a001")
    p.add_argument("--role", required=True, choices=JWT_ROLES)
    p.add_argument("--teams", help='teams a supervisor sees (comma list, "*" for all)')
    p.add_argument("--ws", help="workspaces the token is valid for (comma list; default all)")
    p.add_argument("--ttl", default="8h", help="lifetime: 90s, 30m, 8h, 1d (default 8h)")
    p.add_argument("--demo", action="store_true", help="sign with the demo's secret")
    p.set_defaults(fn=_run)
