"""`router health [--ready]`: asks the local replica's /healthz (or /readyz), for
container health checks and Kubernetes exec probes.

It follows the same settings as `router serve`: the port (`ROUTER_PORT`), HTTPS
when `ROUTER_TLS_CERT` is set (the replica's own certificate is the one trusted,
so no name needs to match 127.0.0.1), and, when the replica requires client
certificates (`ROUTER_TLS_CLIENT_CA`), the certificate in
`ROUTER_HEALTH_CLIENT_CERT` / `ROUTER_HEALTH_CLIENT_KEY`. Exit status 0 when
the answer is 200, else 1 (with the reason on stderr).
"""

from __future__ import annotations

import argparse
import os
import ssl
import sys
import urllib.error
import urllib.request
from typing import Any


def _context(env: dict[str, str]) -> ssl.SSLContext | None:
    cert = env.get("ROUTER_TLS_CERT")
    if not cert:
        return None
    ctx = ssl.create_default_context(cafile=cert)
    # the replica's own certificate is trusted as it is: on loopback no name matches it
    ctx.check_hostname = False
    ctx.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    client_cert = env.get("ROUTER_HEALTH_CLIENT_CERT")
    if client_cert:
        ctx.load_cert_chain(client_cert, env.get("ROUTER_HEALTH_CLIENT_KEY") or None)
    return ctx


def check(ready: bool, env: dict[str, str], timeout: float = 2.0) -> tuple[bool, str]:
    ctx = _context(env)
    scheme = "https" if ctx is not None else "http"
    url = (
        f"{scheme}://127.0.0.1:{env.get('ROUTER_PORT', '8080')}/{'readyz' if ready else 'healthz'}"
    )
    try:
        with urllib.request.urlopen(url, timeout=timeout, context=ctx) as resp:  # noqa: S310  # fixed loopback URL
            return resp.status == 200, f"{resp.status}"
    except urllib.error.HTTPError as exc:
        return False, f"{exc.code}"
    except (urllib.error.URLError, OSError) as exc:
        return False, type(getattr(exc, "reason", exc)).__name__


def _health(args: argparse.Namespace) -> int:
    ok, why = check(args.ready, dict(os.environ))
    if not ok:
        print(
            f"router health: {'/readyz' if args.ready else '/healthz'} answered {why}",
            file=sys.stderr,
        )
    return 0 if ok else 1


def add_cli(sub: Any) -> None:
    p = sub.add_parser("health", help="ask the local replica's /healthz (or /readyz with --ready)")
    p.add_argument("--ready", action="store_true", help="/readyz: Redis reachable, code loaded")
    p.set_defaults(fn=_health)
