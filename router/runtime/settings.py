"""One settings object built from the environment at startup.

A bad value stops the process with a message naming the variable and the fix.
Token hashes are secrets' digests; the tokens themselves are never stored.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

ROLES = ("gateway", "agent", "supervisor", "admin")


class SettingsError(ValueError):
    pass


# Requests per token (router/api/ratelimit.py), by role. A gateway token
# serves a whole channel (every node of an IVR or chat platform), so its limit
# is sized for the fleet; an agent token is one person's desktop (it acts only
# as that agent), whom even a reconnect storm keeps far below 100 a second.
# Supervisor tokens also feed dashboards. ROUTER_RATE_LIMIT_OVERRIDES sets
# limits for single tokens by name.
DEFAULT_RATE_LIMITS = {
    "gateway": "5000/second",
    "agent": "100/second",
    "supervisor": "500/second",
    "admin": "100/second",
}


@dataclass(frozen=True)
class Token:
    """An authenticated caller. `name` is the static token's name or, for a signed
    token, its subject (the agent or supervisor id). Holds no secret."""

    name: str
    role: str
    # Teams a supervisor sees (None: every team) and workspaces the token is
    # valid for (None: every workspace); signed tokens narrow both.
    teams: frozenset[str] | None = None
    workspaces: frozenset[str] | None = None


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def redacted_url(url: str) -> str:
    """A Redis URL fit for messages: its passwords (the ACL user's, the
    sentinels' `sentinel_password`) replaced."""
    scheme, sep, rest = url.partition("://")
    rest, q, query = rest.partition("?")
    if query:
        query = "&".join(
            f"{k}=<redacted>" if k.lower().endswith("password") else f"{k}{eq}{v}"
            for k, eq, v in (item.partition("=") for item in query.split("&"))
        )
    userinfo, at, hostpart = rest.rpartition("@")
    if at and ":" in userinfo:
        rest = f"{userinfo.partition(':')[0]}:<redacted>@{hostpart}"
    return f"{scheme}{sep}{rest}{q}{query}"


def parse_tokens(spec: str, variable: str = "ROUTER_TOKENS", sep: str = ",") -> dict[str, Token]:
    """`name:role:sha256hex,...` -> {hash: Token}."""
    out: dict[str, Token] = {}
    entries = (s.strip() for s in spec.split(sep))
    for n, item in enumerate((e for e in entries if e and not e.startswith("#")), 1):
        parts = item.split(":")
        if (
            len(parts) != 3
            or parts[1] not in ROLES
            or len(parts[2]) != 64
            or not all(c in "0123456789abcdefABCDEF" for c in parts[2])
        ):
            # names the entry by position: a mistyped entry may be a raw token
            raise SettingsError(
                f"{variable}: each entry must be name:role:sha256hex with role one of "
                f"{', '.join(ROLES)} (entry {n} is not)"
            )
        out[parts[2].lower()] = Token(parts[0], parts[1])
    return out


def read_tokens_file(path: str) -> dict[str, Token]:
    """ROUTER_TOKENS_FILE: the same entries one per line (`#` comments), e.g. a
    mounted Kubernetes secret; re-read while running when it changes."""
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise SettingsError(f"ROUTER_TOKENS_FILE: cannot read {path!r} ({exc.strerror})") from None
    return parse_tokens(text, "ROUTER_TOKENS_FILE", sep="\n")


def _public_key(value: str) -> str:
    """ROUTER_JWT_PUBLIC_KEY: a PEM document, or the path of one."""
    if not value or value.lstrip().startswith("-----BEGIN"):
        return value
    try:
        return Path(value).read_text()
    except OSError as exc:
        raise SettingsError(
            f"ROUTER_JWT_PUBLIC_KEY: not a PEM key and cannot read {value!r} ({exc.strerror})"
        ) from None


def parse_rate_limits(
    variable: str, spec: str, roles: tuple[str, ...] | None = None
) -> dict[str, str]:
    """`key=N/unit;...` -> {key: "N/unit" or "off"}; keys are roles when `roles` is given."""
    from limits import parse_many

    out: dict[str, str] = {}
    for item in filter(None, (s.strip() for s in spec.split(";"))):
        key, sep, value = (part.strip() for part in item.partition("="))
        if not sep or not key or (roles is not None and key not in roles):
            what = f"a role ({', '.join(roles)})" if roles else "a token name"
            raise SettingsError(
                f"{variable}: each entry must be KEY=N/unit or KEY=off with KEY {what}, "
                f"entries separated by ';' (got an entry starting {item[:16]!r})"
            )
        if value.lower() != "off":
            try:
                items = parse_many(value)
            except ValueError:
                items = []
            if len(items) != 1 or items[0].amount < 1:
                raise SettingsError(
                    f"{variable}: {key}={value[:32]!r} is not one rate such as "
                    "100/second, 20/minute or 1000/hour (use off for no limit)"
                )
        out[key] = value.lower() if value.lower() == "off" else value
    return out


def rate_limits_from(env: dict[str, str]) -> dict[str, str]:
    """The role limits: defaults, then ROUTER_RATE_LIMITS (`off` alone: none at all)."""
    spec = env.get("ROUTER_RATE_LIMITS", "").strip()
    if spec.lower() == "off":
        return {}
    merged = {**DEFAULT_RATE_LIMITS, **parse_rate_limits("ROUTER_RATE_LIMITS", spec, ROLES)}
    return {role: value for role, value in merged.items() if value != "off"}


@dataclass(frozen=True)
class Settings:
    redis_url: str = field(repr=False)
    host: str = "127.0.0.1"
    port: int = 8080
    tokens: dict[str, Token] = field(default_factory=dict, repr=False)
    # Static tokens also read from this file (one entry per line), re-read on change;
    # `tokens` holds those of ROUTER_TOKENS only.
    tokens_file: str | None = None
    # Signed bearer tokens (JWT) of people from the bank's identity provider:
    # HS256 with the shared secret, RS256/ES256 with the public key (PEM text).
    jwt_secret: str = field(default="", repr=False)
    # While the HS256 secret rotates: tokens signed with the previous one still verify.
    jwt_previous_secret: str = field(default="", repr=False)
    jwt_public_key: str = field(default="", repr=False)
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    max_body: int = 64 * 1024
    long_poll_max: float = 60.0
    timer_poll: float = 0.02
    # Seconds a claimed timer stays leased to its replica: one that dies holding
    # it has it re-fired by another after this (a clean shutdown hands it back).
    timer_lease: float = 5.0
    # Garbage-collector thresholds (router/runtime/pauses.py): CPython's young ones
    # (short pauses), and full collections a hundred times rarer than its 10.
    gc_thresholds: tuple[int, int, int] = (700, 10, 1000)
    redis_timeout: float = 2.0
    # What a 2xx promises: the change reached this many Redis replicas (WAIT)
    # within `redis_wait_timeout` seconds, else the answer is 503. 0: the
    # primary alone (a failover may lose the last writes it acknowledged).
    redis_wait_replicas: int = 0
    redis_wait_timeout: float = 1.0
    # Seconds a webhook delivery read by a replica may stay unacknowledged
    # before another replica takes it over (the first one is presumed dead).
    webhook_claim_idle: float = 60.0
    # seconds before another replica archives a batch a dead one read and never wrote
    archive_claim_idle: float = 60.0
    # Replicas exporting metrics together: one of them exports the shared Redis
    # state (a lease per group). Only distinct deployments on one Redis differ.
    metrics_group: str = "default"
    # Requests per token by role, and by token name (a name's limit replaces
    # its role's; "off" exempts it). No role limits: rate limiting is off.
    rate_limits: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_RATE_LIMITS))
    rate_limit_overrides: dict[str, str] = field(default_factory=dict)
    # HTTPS: PEM certificate chain and key; with a client CA every client must
    # present a certificate it signed (mutual TLS, e.g. for channel gateways).
    tls_cert: str | None = None
    tls_key: str | None = None
    tls_client_ca: str | None = None
    # One line per request: method, route template, status, duration, caller.
    access_log: bool = False
    # Audit trail export (router/security/audit/segments.py): directory of segment files
    # (None: no export; sealing in Redis runs regardless), and when a segment
    # is closed and the next begun.
    audit_dir: str | None = None
    audit_segment_records: int = 100_000
    audit_segment_seconds: float = 3600.0
    # History archive (router/archive/): a PostgreSQL URL; None: no archive.
    archive_url: str | None = field(default=None, repr=False)
    # Config versions kept in Redis per workspace (the latest ones): Redis holds
    # live work, not history; with an archive every version is also in PostgreSQL.
    config_versions_kept: int = 100

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
            "tokens_file": e.get("ROUTER_TOKENS_FILE") or None,
            "jwt_secret": e.get("ROUTER_JWT_SECRET", ""),
            "jwt_previous_secret": e.get("ROUTER_JWT_PREVIOUS_SECRET", ""),
            "jwt_public_key": _public_key(e.get("ROUTER_JWT_PUBLIC_KEY", "")),
            "jwt_issuer": e.get("ROUTER_JWT_ISSUER") or None,
            "jwt_audience": e.get("ROUTER_JWT_AUDIENCE") or None,
            "max_body": int(num("ROUTER_MAX_BODY", 64 * 1024)),
            "timer_poll": num("ROUTER_TIMER_POLL", 0.02),
            "timer_lease": max(0.1, num("ROUTER_TIMER_LEASE", 5.0)),
            "redis_timeout": num("ROUTER_REDIS_TIMEOUT", 2.0),
            "redis_wait_replicas": _whole("ROUTER_REDIS_WAIT_REPLICAS", e, 0, 16),
            "redis_wait_timeout": num("ROUTER_REDIS_WAIT_TIMEOUT", 1.0),
            "gc_thresholds": _gc_thresholds(e.get("ROUTER_GC_THRESHOLDS", "")),
            "webhook_claim_idle": num("ROUTER_WEBHOOK_CLAIM_IDLE", 60.0),
            "archive_claim_idle": num("ROUTER_ARCHIVE_CLAIM_IDLE", 60.0),
            "metrics_group": e.get("ROUTER_METRICS_GROUP", "default"),
            "rate_limits": rate_limits_from(e),
            "rate_limit_overrides": parse_rate_limits(
                "ROUTER_RATE_LIMIT_OVERRIDES", e.get("ROUTER_RATE_LIMIT_OVERRIDES", "")
            ),
            "tls_cert": e.get("ROUTER_TLS_CERT") or None,
            "tls_key": e.get("ROUTER_TLS_KEY") or None,
            "tls_client_ca": e.get("ROUTER_TLS_CLIENT_CA") or None,
            "access_log": e.get("ROUTER_ACCESS_LOG", "off").lower() in ("on", "1", "true", "yes"),
            "audit_dir": e.get("ROUTER_AUDIT_DIR") or None,
            "audit_segment_records": max(1, int(num("ROUTER_AUDIT_SEGMENT_RECORDS", 100_000))),
            "audit_segment_seconds": max(1.0, num("ROUTER_AUDIT_SEGMENT_SECONDS", 3600.0)),
            "archive_url": e.get("ROUTER_ARCHIVE_URL") or None,
            "config_versions_kept": _whole("ROUTER_CONFIG_VERSIONS_KEPT", e, 1, 100_000, 100),
        }
        values.update(overrides)
        if not 0.01 <= float(values["redis_wait_timeout"]) <= 60:  # type: ignore[arg-type]
            raise SettingsError("ROUTER_REDIS_WAIT_TIMEOUT must be between 0.01 and 60 seconds")
        if values.get("tokens_file"):  # checked now; read by router/security/auth.py (and re-read)
            read_tokens_file(str(values["tokens_file"]))
        if values.get("jwt_secret") and len(str(values["jwt_secret"])) < 32:
            raise SettingsError("ROUTER_JWT_SECRET must be at least 32 characters (HS256 key)")
        if values.get("jwt_previous_secret") and len(str(values["jwt_previous_secret"])) < 32:
            raise SettingsError("ROUTER_JWT_PREVIOUS_SECRET must be at least 32 characters")
        return cls(**values)  # type: ignore[arg-type]


def _whole(name: str, env: dict[str, str], low: int, high: int, default: int | None = None) -> int:
    text = env.get(name, "").strip() or str(low if default is None else default)
    if not text.isdigit() or not low <= int(text) <= high:
        raise SettingsError(f"{name} must be a whole number from {low} to {high} (got {text!r})")
    return int(text)


def _gc_thresholds(text: str) -> tuple[int, int, int]:
    if not text:
        return Settings.gc_thresholds
    parts = text.split(",")
    if len(parts) != 3 or not all(p.strip().isdigit() for p in parts) or int(parts[0]) < 1:
        raise SettingsError(
            f"ROUTER_GC_THRESHOLDS must be three whole numbers, the first above 0 (got {text!r})"
        )
    return int(parts[0]), int(parts[1]), int(parts[2])


DEMO_TOKENS = {
    "demo-gateway": ("gateway", "gateway"),
    "demo-agent": ("agent-desktop", "agent"),
    "demo-supervisor": ("supervisor", "supervisor"),
    "demo-admin": ("admin", "admin"),
}


# Signs the demo's agent and supervisor tokens (`router token --demo`); well
# known, so never for production.
DEMO_JWT_SECRET = "demo-jwt-secret-not-for-production-0123456789"  # noqa: S105  # demo only


def demo_token_spec() -> str:
    """Token spec for the demo only: well-known tokens, never for production."""
    return ",".join(f"{name}:{role}:{token_hash(tok)}" for tok, (name, role) in DEMO_TOKENS.items())
