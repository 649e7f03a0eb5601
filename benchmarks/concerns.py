"""A router's CPU by concern, from py-spy's raw (collapsed) stacks.

Each sample goes to one concern: the deepest frame of its stack that names
one (so time in redis-py under the engine is Redis' client, not the engine),
tried in the order of `CONCERNS` (specific names before the modules that
hold them). A root frame of `run_app` with nothing above it is uvloop's C
loop: socket reads, polling and callbacks, which py-spy cannot see into.
Used by `benchmarks.floor --profile`.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

# (concern, substrings of a frame "function (file:line)")
CONCERNS: list[tuple[str, tuple[str, ...]]] = [
    ("request body: read and decode (msgspec)", ("body (router/api/common.py", "msgspec")),
    ("answer: record to ContactOut to JSON", ("contact_out", "json_response", "_stages_")),
    (
        "routing: rules, SLA plan, new record",
        (
            "routing/rules.py",
            "contact_record",
            "start_plan",
            "routing/personal.py",
            "sla/",
        ),
    ),
    ("audit trail: sealing (hash chain)", ("security/audit/",)),
    ("rate limiting", ("api/ratelimit.py",)),
    ("tokens and roles", ("security/auth.py", "token_hash")),
    ("metrics (prometheus-client)", ("prometheus_client", "_observe")),
    ("Redis client: batch, send, replies (redis-py, hiredis)", ("store/batch.py", "redis/")),
    (
        "router middlewares, handler, engine (their own lines)",
        (
            "api/middlewares.py",
            "api/contacts.py",
            "routing/engine.py",
        ),
    ),
    (
        "aiohttp: response, socket writes",
        (
            "web_response.py",
            "http_writer.py",
            "asyncio/streams.py",
        ),
    ),
    (
        "aiohttp: request parsing, routing, middleware chain",
        (
            "web_protocol.py",
            "web_urldispatcher.py",
            "web_app.py",
            "web_request.py",
            "aiohttp/streams.py",
            "web_middlewares.py",
            "aiohttp/helpers.py",
        ),
    ),
    ("event loop (uvloop: socket reads, polling)", ("run_app (",)),
]
OTHER = "other"
_LINE = re.compile(r"^(?P<stack>.*) (?P<n>\d+)$")


def concern_of(frames: list[str]) -> str:
    for frame in reversed(frames):
        for name, keys in CONCERNS:
            if any(k in frame for k in keys):
                return name
    return OTHER


def shares(lines: Iterable[str]) -> dict[str, float]:
    """Each concern's share of the samples (0-1), largest first."""
    counts: Counter[str] = Counter()
    for line in lines:
        m = _LINE.match(line.rstrip("\n"))
        if m:
            counts[concern_of(m["stack"].split(";"))] += int(m["n"])
    total = sum(counts.values()) or 1
    return {name: n / total for name, n in counts.most_common()}


def report(raw: Path, us_per_request: float) -> str:
    out = ["| concern | share | µs / request |", "|---|---:|---:|"]
    with raw.open() as f:
        for name, share in shares(f).items():
            out.append(f"| {name} | {share:.1%} | {share * us_per_request:.1f} |")
    return "\n".join(out)
