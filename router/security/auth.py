"""Who is calling: static service tokens (hashes only) and signed tokens of people.

- **Static tokens** (`ROUTER_TOKENS`, `ROUTER_TOKENS_FILE`) are for services:
  channel gateways, dashboards, operators. Only their SHA-256 is configured; the
  file is re-read when it changes (a rotated Kubernetes secret takes effect
  without a restart).
- **Signed tokens** (JWT) are for people, issued by the bank's identity provider:
  HS256 with `ROUTER_JWT_SECRET` or RS256/ES256 with `ROUTER_JWT_PUBLIC_KEY`;
  `exp`, `sub` and `role` (agent or supervisor) are required; `teams` (list, `"*"`
  for all) and `ws` (workspaces) narrow what the token sees. A verified token is
  cached by its hash until it expires, so the hot path costs one SHA-256 and a
  dict lookup.
- **Denials** (401 and 403) go to the global stream `router:access` without the
  token: written in the background so a denial waits for no Redis round trip;
  a write that fails or is dropped under a flood is counted
  (`router_access_log_failures_total`).

Token values and secrets are never logged, stored or repr'd.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import time
from collections import OrderedDict
from collections.abc import Iterable
from typing import Any

import jwt
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from prometheus_client import CollectorRegistry, Counter

from router.runtime.errors import Forbidden, RouterError, Unauthorized
from router.runtime.settings import Settings, SettingsError, Token, read_tokens_file, token_hash
from router.store.keys import ACCESS_MAXLEN, access_shard, access_stream
from router.store.shards import Shards

log = logging.getLogger(__name__)

# Roles a signed token may carry: people. Gateways and admins are services or
# operators with static tokens, so a leaked identity-provider key cannot mint them.
JWT_ROLES = ("agent", "supervisor")
ALL = "*"
CACHE_SIZE = 10_000
LEEWAY = 30.0  # seconds of clock skew allowed on exp / nbf
MAX_PENDING_WRITES = 1_000
_ID = re.compile(r"^[A-Za-z0-9_.:@-]{1,128}$")
_JWT_ERRORS: tuple[tuple[type[Exception], str], ...] = (
    (jwt.ExpiredSignatureError, "token expired"),
    (jwt.ImmatureSignatureError, "token not valid yet"),
    (jwt.InvalidAudienceError, "token audience is not accepted"),
    (jwt.InvalidIssuerError, "token issuer is not accepted"),
    (jwt.InvalidSignatureError, "token signature is invalid"),
)


def _names(value: Any, claim: str) -> frozenset[str] | None:
    """A list claim (`teams`, `ws`): None means all (absent `ws`, or `"*"`)."""
    if value == ALL:
        return None
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise Unauthorized(f'claim {claim!r} must be a list of names or "*"')
    return None if ALL in value else frozenset(value)


def identity_from_claims(claims: dict[str, Any]) -> Token:
    sub, role = claims.get("sub"), claims.get("role")
    if not isinstance(sub, str) or not _ID.match(sub):
        raise Unauthorized("claim 'sub' must be an agent or supervisor id")
    if role not in JWT_ROLES:
        raise Unauthorized(f"claim 'role' must be one of {', '.join(JWT_ROLES)}")
    teams = _names(claims.get("teams", []), "teams")
    ws = _names(claims["ws"], "ws") if "ws" in claims else None
    # an agent acts only as itself: teams mean nothing for it
    return Token(sub, role, teams=frozenset() if role == "agent" else teams, workspaces=ws)


def _pem_blocks(text: str) -> list[str]:
    """Each `-----BEGIN ...-----` ... `-----END ...-----` block of a PEM bundle."""
    marker = "-----END PUBLIC KEY-----"
    return [b.strip() + "\n" + marker for b in text.split(marker) if b.strip()]


class JwtVerifier:
    """Verifies signed tokens; the algorithm is fixed by the configured key, never
    taken from the token alone (no algorithm confusion)."""

    def __init__(self, settings: Settings) -> None:
        # Several keys per algorithm while one is rotated out: the current and the
        # previous HS256 secret, or every PEM block of ROUTER_JWT_PUBLIC_KEY (the
        # identity provider publishes the next key before it signs with it).
        self._keys: dict[str, list[Any]] = {}
        for secret in (settings.jwt_secret, settings.jwt_previous_secret):
            if secret:
                self._keys.setdefault("HS256", []).append(secret)
        for pem in _pem_blocks(settings.jwt_public_key):
            try:
                key = load_pem_public_key(pem.encode())
            except ValueError:
                raise SettingsError("ROUTER_JWT_PUBLIC_KEY is not a PEM public key") from None
            if isinstance(key, rsa.RSAPublicKey):
                self._keys.setdefault("RS256", []).append(key)
            elif isinstance(key, ec.EllipticCurvePublicKey):
                self._keys.setdefault("ES256", []).append(key)
            else:
                raise SettingsError("ROUTER_JWT_PUBLIC_KEY must be an RSA or EC (P-256) key")
        self._issuer = settings.jwt_issuer
        self._audience = settings.jwt_audience

    def __bool__(self) -> bool:
        return bool(self._keys)

    def __repr__(self) -> str:
        return f"JwtVerifier(algorithms={sorted(self._keys)})"

    def _decode(self, value: str, alg: str, keys: list[Any]) -> dict[str, Any]:
        """Claims checked with the first key whose signature matches."""
        for i, key in enumerate(keys):
            try:
                claims: dict[str, Any] = jwt.decode(
                    value,
                    key,
                    algorithms=[alg],
                    audience=self._audience,
                    issuer=self._issuer,
                    leeway=LEEWAY,
                    options={"require": ["exp", "sub"]},
                )
                return claims
            except jwt.InvalidSignatureError:
                if i == len(keys) - 1:
                    raise
        raise jwt.InvalidSignatureError("no key")  # unreachable: keys is never empty

    def verify(self, value: str) -> tuple[Token, float]:
        """The token's identity and expiry (epoch seconds), or Unauthorized."""
        try:
            header_alg = jwt.get_unverified_header(value).get("alg")
            alg = header_alg if isinstance(header_alg, str) else ""
            keys = self._keys.get(alg)
            if not keys:
                raise Unauthorized(f"token algorithm must be one of {', '.join(self._keys)}")
            claims = self._decode(value, alg, keys)
        except jwt.MissingRequiredClaimError as exc:
            raise Unauthorized(f"token lacks the required claim {exc.claim!r}") from None
        except jwt.PyJWTError as exc:
            for kind, reason in _JWT_ERRORS:
                if isinstance(exc, kind):
                    raise Unauthorized(reason) from None
            raise Unauthorized("token is malformed") from None
        exp = claims.get("exp")
        if not isinstance(exp, int | float):
            raise Unauthorized("claim 'exp' must be a number")
        return identity_from_claims(claims), float(exp) + LEEWAY


class Authenticator:
    """Bearer token -> Token (the caller), from static hashes or a verified JWT."""

    def __init__(self, settings: Settings, registry: CollectorRegistry | None = None) -> None:
        self._env_tokens = dict(settings.tokens)
        self._file = settings.tokens_file
        self._file_stamp = self._stamp()
        file_tokens = read_tokens_file(self._file) if self._file else {}
        self._static = {**file_tokens, **self._env_tokens}
        self._jwt = JwtVerifier(settings)
        # token hash -> (identity, expiry); least recently used first
        self._cache: OrderedDict[str, tuple[Token, float]] = OrderedDict()
        self.access_failures = Counter(
            "router_access_log_failures_total",
            "Denied requests that could not be written to the router:access stream",
            registry=registry,
        )
        self._pending: set[asyncio.Task[None]] = set()

    def __repr__(self) -> str:
        return f"Authenticator(static={len(self._static)}, jwt={self._jwt!r})"

    def identify(self, header: str) -> Token:
        scheme, _, value = header.partition(" ")
        value = value.strip()
        if scheme.lower() != "bearer" or not value:
            raise Unauthorized("a bearer token is required (Authorization: Bearer <token>)")
        digest = token_hash(value)
        static = self._static.get(digest)
        if static is not None:
            return static
        hit = self._cache.get(digest)
        now = time.time()
        if hit is not None:
            if hit[1] > now:
                self._cache.move_to_end(digest)
                return hit[0]
            del self._cache[digest]
            raise Unauthorized("token expired")
        if not self._jwt or value.count(".") != 2:
            raise Unauthorized("unknown token")
        ident, expires = self._jwt.verify(value)
        if expires > now:
            self._cache[digest] = (ident, expires)
            if len(self._cache) > CACHE_SIZE:
                self._cache.popitem(last=False)
        return ident

    # --- static tokens file ---------------------------------------------------

    def _stamp(self) -> tuple[float, int] | None:
        if not self._file:
            return None
        try:
            st = os.stat(self._file)
        except OSError:
            return None
        return (st.st_mtime, st.st_size)

    def _reload(self) -> bool:
        stamp = self._stamp()
        if stamp is None or stamp == self._file_stamp or not self._file:
            return False
        try:
            tokens = read_tokens_file(self._file)
        except SettingsError as exc:  # keep the tokens we have; say why (no token in it)
            log.warning("tokens file not reloaded: %s", exc)
            return False
        self._static = {**tokens, **self._env_tokens}
        self._file_stamp = stamp
        return True

    async def watch_file(self, every: float = 5.0) -> None:
        """Re-reads ROUTER_TOKENS_FILE when it changes (off the event loop)."""
        if not self._file:
            return
        while True:
            await asyncio.sleep(every)
            if await asyncio.to_thread(self._reload):
                log.info("tokens file reloaded: %d static tokens", len(self._static))

    # --- denied requests --------------------------------------------------------

    def denied(
        self, shards: Shards | None, request: web.Request, token: Token | None, exc: RouterError
    ) -> None:
        """Records a 401/403 in an access stream in the background (never the token)."""
        info = request.match_info.route.resource
        fields = {
            "at": str(int(time.time() * 1000)),
            "actor": f"{token.role}:{token.name}" if token else "anonymous",
            "method": request.method,
            "route": info.canonical if info is not None else "unmatched",
            "status": str(exc.status),
            "reason": exc.detail[:256],
            "remote": request.remote or "",
        }
        if shards is None or len(self._pending) >= MAX_PENDING_WRITES:
            self.access_failures.inc()
            return
        task = asyncio.create_task(self._write(shards, fields))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _write(self, shards: Shards, fields: dict[str, str]) -> None:
        try:
            stream = access_stream(access_shard(fields["remote"]))
            client = shards.of(stream)
            await client.xadd(stream, fields, maxlen=ACCESS_MAXLEN, approximate=True)  # type: ignore[arg-type]
        except Exception as exc:  # counted; the denial itself was already answered
            self.access_failures.inc()
            log.warning("access log write failed (%s)", type(exc).__name__)

    async def drain(self) -> None:
        """Waits for the denials still being written (shutdown)."""
        if self._pending:
            with contextlib.suppress(Exception):
                await asyncio.wait(list(self._pending), timeout=2.0)


AUTH = web.AppKey("auth", Authenticator)


def authorize(token: Token, handler: object, ws: str | None) -> None:
    """The route's roles (admin passes all; a route declaring none is closed to
    everyone) and the token's workspaces."""
    roles = getattr(handler, "roles", None)
    if roles is None:
        raise Forbidden("this route declares no role; nobody may call it")
    if token.role != "admin" and token.role not in roles:
        raise Forbidden(f"role {token.role!r} may not do this; needs one of {sorted(roles)}")
    if ws is not None and token.workspaces is not None and ws not in token.workspaces:
        raise Forbidden(f"this token is not valid for workspace {ws!r}", field="ws")


def parse_ttl(text: str) -> int:
    """`90s`, `30m`, `8h`, `2d` or plain seconds -> seconds."""
    m = re.fullmatch(r"\s*(\d+)\s*([smhd]?)\s*", text)
    if not m or int(m.group(1)) <= 0:
        raise ValueError(f"not a duration: {text!r} (e.g. 30m, 8h, 1d)")
    return int(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]


def mint(
    secret: str,
    sub: str,
    role: str,
    *,
    teams: Iterable[str] | None = None,
    workspaces: Iterable[str] | None = None,
    ttl: int = 8 * 3600,
    issuer: str | None = None,
    audience: str | None = None,
) -> str:
    """An HS256 token for development, the demo and tests (production tokens come
    from the identity provider)."""
    if role not in JWT_ROLES:
        raise ValueError(f"role must be one of {', '.join(JWT_ROLES)}")
    if not _ID.match(sub):
        raise ValueError(f"sub {sub[:32]!r} is not a valid id")
    now = int(time.time())
    claims: dict[str, Any] = {"sub": sub, "role": role, "iat": now, "exp": now + ttl}
    if teams is not None:
        claims["teams"] = list(teams)
    if workspaces is not None:
        claims["ws"] = list(workspaces)
    if issuer:
        claims["iss"] = issuer
    if audience:
        claims["aud"] = audience
    return jwt.encode(claims, secret, algorithm="HS256")
