"""`router config versions|show|diff|rollback`: a workspace's config history,
through a running router's HTTP API.

Through the API rather than Redis directly: the history is read with the
caller's token and role like any client's (supervisor to read, admin to roll
back), and a roll-back goes the way of every config change (validated, agents
re-synced, SLA clocks re-planned, recorded with the token's actor) on the
replica that serves it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from datetime import UTC, datetime
from typing import Any


class ApiError(Exception):
    """A problem+json answer (or none at all): what to print, and why."""


def _call(args: argparse.Namespace, method: str, path: str, body: Any = None) -> Any:
    base = args.url.rstrip("/") + "/v1/workspaces/" + urllib.parse.quote(args.workspace)
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(base + path, data=data, method=method)  # noqa: S310 (http/https only, checked in run)
    req.add_header("Authorization", "Bearer " + args.token)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    if getattr(args, "if_match", None) is not None:
        req.add_header("If-Match", str(args.if_match))
    try:
        with urllib.request.urlopen(req, timeout=args.timeout) as resp:  # noqa: S310
            return json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        try:
            problem = json.loads(exc.read())
            detail = problem.get("detail", exc.reason)
        except ValueError:
            detail = exc.reason
        raise ApiError(f"{exc.code}: {detail}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise ApiError(f"cannot reach {args.url}: {getattr(exc, 'reason', exc)}") from None


def _when(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _line(v: dict[str, Any]) -> str:
    origin = f"  (rollback of {v['rollback_of']})" if v.get("rollback_of") else ""
    return f"{v['version']:>6}  {_when(v['updated_at'])}  {v['actor']}{origin}  {v['description']}"


def _versions(args: argparse.Namespace) -> None:
    query = {"limit": args.limit} | ({"before": args.before} if args.before else {})
    page = _call(args, "GET", "/config/versions?" + urllib.parse.urlencode(query))
    for v in page["versions"]:
        print(_line(v).rstrip())
    if page["next"] is not None:
        print(f"(older: --before {page['next']})")


def _show(args: argparse.Namespace) -> None:
    print(json.dumps(_call(args, "GET", f"/config/versions/{args.version}"), indent=2))


def _diff(args: argparse.Namespace) -> None:
    query = urllib.parse.urlencode({"from": args.from_version, "to": args.to_version})
    diff = _call(args, "GET", "/config/diff?" + query)
    print(f"from {_line(diff['from']).strip()}\nto   {_line(diff['to']).strip()}")
    for op in diff["patch"]:
        value = f" {json.dumps(op['value'])}" if "value" in op else ""
        source = f" from {op['from']}" if "from" in op else ""
        print(f"  {op['op']:<8} {op['path']}{source}{value}")


def _rollback(args: argparse.Namespace) -> None:
    got = _call(args, "POST", "/config/rollback", {"version": args.version})
    print(f"version {got['version']} is version {got['rollback_of']}'s config again")


_COMMANDS = {"versions": _versions, "show": _show, "diff": _diff, "rollback": _rollback}


def _run(args: argparse.Namespace) -> int:
    if urllib.parse.urlsplit(args.url).scheme not in ("http", "https"):
        print("router config: --url must be an http:// or https:// URL", file=sys.stderr)
        return 2
    try:
        _COMMANDS[args.config_cmd](args)
    except ApiError as exc:
        print(f"router config {args.config_cmd}: {exc}", file=sys.stderr)
        return 1
    return 0


def add_cli(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("config", help="config history: versions, show, diff, rollback")
    p.add_argument("--url", default=os.environ.get("ROUTER_URL", "http://127.0.0.1:8080"))
    p.add_argument(
        "--token",
        default=os.environ.get("ROUTER_TOKEN", "demo-admin"),
        help="bearer token (ROUTER_TOKEN; default the demo's admin)",
    )
    p.add_argument("--workspace", default="demo")
    p.add_argument("--timeout", type=float, default=10.0, help=argparse.SUPPRESS)
    cmds = p.add_subparsers(dest="config_cmd", required=True)
    v = cmds.add_parser("versions", help="versions, newest first")
    v.add_argument("--limit", type=int, default=20)
    v.add_argument("--before", type=int, help="versions older than this one")
    s = cmds.add_parser("show", help="one version, whole (secrets redacted)")
    s.add_argument("version", type=int)
    d = cmds.add_parser("diff", help="JSON Patch from one version to another")
    d.add_argument("from_version", type=int, metavar="FROM")
    d.add_argument("to_version", type=int, metavar="TO")
    r = cmds.add_parser("rollback", help="put a version's config back as a new version")
    r.add_argument("version", type=int)
    r.add_argument("--if-match", type=int, help="only if the current version is this one")
    p.set_defaults(fn=_run)
