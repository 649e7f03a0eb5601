"""One settings object built from the environment at startup.

A bad value stops the process with a message naming the variable and the fix.
Token hashes are secrets' digests; the tokens themselves are never stored.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field

ROLES = ("gateway", "agent", "supervisor", "admin")


class SettingsError(ValueError):
    pass


@dataclass(frozen=True)
class Token:
    name: str
    role: str


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def parse_tokens(spec: str) -> dict[str, Token]:
    """`name:role:sha256hex,...` -> {hash: Token}."""
    out: dict[str, Token] = {}
    for item in filter(None, (s.strip() for s in spec.split(","))):
        parts = item.split(":")
        if len(parts) != 3 or parts[1] not in ROLES or len(parts[2]) != 64:
            raise SettingsError(
                "ROUTER_TOKENS: each entry must be name:role:sha256hex with role one of "
                f"{', '.join(ROLES)} (got an entry starting {parts[0][:16]!r})"
            )
        out[parts[2].lower()] = Token(parts[0], parts[1])
    return out


@dataclass(frozen=True)
class Settings:
    redis_url: str = field(repr=False)
    host: str = "127.0.0.1"
    port: int = 8080
    tokens: dict[str, Token] = field(default_factory=dict, repr=False)
    max_body: int = 64 * 1024
    long_poll_max: float = 60.0
    timer_poll: float = 0.02
    redis_timeout: float = 2.0
    # Seconds a webhook delivery read by a replica may stay unacknowledged
    # before another replica takes it over (the first one is presumed dead).
    webhook_claim_idle: float = 60.0
    # Replicas exporting metrics together: one of them exports the shared Redis
    # state (a lease per group). Only distinct deployments on one Redis differ.
    metrics_group: str = "default"

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None, **overrides: object) -> Settings:
        e = dict(os.environ if env is None else env)
        url = str(overrides.pop("redis_url", None) or e.get("REDIS_URL", ""))
        if not url:
            raise SettingsError("REDIS_URL is not set: give redis://host:port/db")

        def num(name: str, default: float) -> float:
            try:
                return float(e.get(name, default))
            except ValueError:
                raise SettingsError(f"{name} must be a number (got {e[name]!r})") from None

        values: dict[str, object] = {
            "redis_url": url,
            "host": e.get("ROUTER_HOST", "127.0.0.1"),
            "port": int(num("ROUTER_PORT", 8080)),
            "tokens": parse_tokens(e.get("ROUTER_TOKENS", "")),
            "max_body": int(num("ROUTER_MAX_BODY", 64 * 1024)),
            "timer_poll": num("ROUTER_TIMER_POLL", 0.02),
            "redis_timeout": num("ROUTER_REDIS_TIMEOUT", 2.0),
            "webhook_claim_idle": num("ROUTER_WEBHOOK_CLAIM_IDLE", 60.0),
            "metrics_group": e.get("ROUTER_METRICS_GROUP", "default"),
        }
        values.update(overrides)
        return cls(**values)  # type: ignore[arg-type]


DEMO_TOKENS = {
    "demo-gateway": ("gateway", "gateway"),
    "demo-agent": ("agent-desktop", "agent"),
    "demo-supervisor": ("supervisor", "supervisor"),
    "demo-admin": ("admin", "admin"),
}


def demo_token_spec() -> str:
    """Token spec for the demo only: well-known tokens, never for production."""
    return ",".join(f"{name}:{role}:{token_hash(tok)}" for tok, (name, role) in DEMO_TOKENS.items())
