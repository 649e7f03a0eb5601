"""How `router serve` listens: TLS, the HTTP parser's limits, what it logs.

Settings are checked here before the server starts, so a bad certificate,
key or CA file stops the process with a message naming the variable rather
than failing the first handshake.
"""

from __future__ import annotations

import logging
import ssl
from pathlib import Path
from typing import Final, NoReturn, TypedDict

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.http_exceptions import HttpProcessingError

from router.api.appkeys import TOKEN
from router.runtime.settings import Settings, SettingsError


# Limits of aiohttp's request parser, enforced before the application sees a
# request (over one, it answers 400 and closes the connection). The request
# line holds the URL: the longest route with two 128-character ids and a query
# is well under 4 KiB. 8 KiB per header leaves room for identity-provider
# JWTs with many claims; 64 headers is far more than any client here sends.
class ParserLimits(TypedDict):
    max_line_size: int
    max_field_size: int
    max_headers: int


SERVER_LIMITS: Final = ParserLimits(max_line_size=4096, max_field_size=8190, max_headers=64)

# TLS 1.2 suites with forward secrecy and AEAD only (TLS 1.3's are all so).
CIPHERS: Final = "ECDHE+AESGCM:ECDHE+CHACHA20"


def _readable(variable: str, path: str) -> None:
    try:
        with Path(path).open("rb") as f:
            f.read(1)
    except OSError as exc:
        raise SettingsError(f"{variable}: cannot read {path!r} ({exc.strerror})") from None


def _encrypted_key() -> NoReturn:
    # Called by OpenSSL instead of prompting on the terminal.
    raise SettingsError(
        "ROUTER_TLS_KEY: the key is encrypted; give an unencrypted PEM key "
        "(protected by its file permissions or the secret store mounting it)"
    )


def server_ssl_context(settings: Settings) -> ssl.SSLContext | None:
    """The HTTPS context from ROUTER_TLS_*; None when TLS is not configured."""
    cert, key, client_ca = settings.tls_cert, settings.tls_key, settings.tls_client_ca
    if not cert:
        if key or client_ca:
            raise SettingsError(
                "ROUTER_TLS_KEY and ROUTER_TLS_CLIENT_CA need ROUTER_TLS_CERT "
                "(the server certificate chain, PEM)"
            )
        return None
    _readable("ROUTER_TLS_CERT", cert)
    if key:
        _readable("ROUTER_TLS_KEY", key)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers(CIPHERS)
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE
    ctx.options |= ssl.OP_NO_RENEGOTIATION
    try:
        ctx.load_cert_chain(cert, key, password=_encrypted_key)
    except ssl.SSLError as exc:
        raise SettingsError(_chain_problem(exc, cert, key)) from None
    if client_ca:
        _readable("ROUTER_TLS_CLIENT_CA", client_ca)
        try:
            ctx.load_verify_locations(cafile=client_ca)
        except ssl.SSLError as exc:
            raise SettingsError(
                f"ROUTER_TLS_CLIENT_CA: {client_ca!r} holds no PEM CA certificate "
                f"({exc.reason or exc.__class__.__name__})"
            ) from None
        ctx.verify_mode = ssl.CERT_REQUIRED  # mutual TLS: no certificate, no handshake
    return ctx


def _chain_problem(exc: ssl.SSLError, cert: str, key: str | None) -> str:
    reason = exc.reason or "not readable as PEM"
    if reason == "KEY_VALUES_MISMATCH":
        return f"ROUTER_TLS_KEY does not match the certificate in ROUTER_TLS_CERT ({cert!r})"
    if b"CERTIFICATE-----" not in Path(cert).read_bytes():
        return f"ROUTER_TLS_CERT: {cert!r} holds no PEM certificate ({reason})"
    if key is None:
        return (
            f"ROUTER_TLS_KEY is not set and {cert!r} holds no private key ({reason}); "
            "give the key file in ROUTER_TLS_KEY"
        )
    return f"ROUTER_TLS_KEY: {key!r} holds no usable PEM private key ({reason})"


class MalformedRequestFilter(logging.Filter):
    """aiohttp's parser errors quote the request bytes they stopped at (a header
    line with its bearer token, a URL, a body length) and reach the log with a
    traceback. The record keeps the client's address and the kind of error."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError):
            remote = record.args[0] if isinstance(record.args, tuple) and record.args else "?"
            record.msg = "malformed HTTP request from %s refused (%s, status %s)"
            record.args = (remote, type(exc).__name__, exc.code)
            record.exc_info, record.exc_text = None, None
            record.levelno, record.levelname = logging.INFO, "INFO"
        return True


def install_log_filters() -> None:
    logging.getLogger("aiohttp.server").addFilter(MalformedRequestFilter())


class RouteAccessLogger(AbstractAccessLogger):
    """ROUTER_ACCESS_LOG: the route template, never the path or query string
    (they carry contact, agent and customer-facing ids), and the caller's token
    name, never the token."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        route = "unmatched"
        try:
            resource = request.match_info.route.resource  # type: ignore[attr-defined]
        except (AssertionError, AttributeError):
            resource = None  # refused by the parser: never routed (aiohttp asserts)
        if resource is not None:
            route = resource.canonical
        token = request.get(TOKEN)
        caller = f"{token.role}:{token.name}" if token is not None else "-"
        self.logger.info(
            "%s %s %s %.1fms %s", request.method, route, response.status, time * 1000, caller
        )
