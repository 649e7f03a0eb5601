"""What a webhook receiver gets: the subscription config, the body and its signature.

Pure code with no I/O, so the events API can render the same CloudEvents and
tests can check the format without Redis or HTTP.

Signatures follow Standard Webhooks (https://www.standardwebhooks.com/):
`webhook-id`, `webhook-timestamp` (seconds) and `webhook-signature`, a
space-separated list of `v1,<base64 HMAC-SHA256>` over `{id}.{timestamp}.{body}`
keyed with the base64-decoded part of a `whsec_<base64>` secret.

Secret rotation: a subscription carries `secret` (the new one) and, while
receivers move over, `previous_secret`. Every request is then signed with both,
so a receiver that still verifies with the old secret and one that already
verifies with the new one both accept it; drop `previous_secret` once every
receiver uses the new secret.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import msgspec

SECRET_PREFIX = "whsec_"  # noqa: S105 (the prefix, not a secret)
# Standard Webhooks recommends secrets of 24 to 64 random bytes.
SECRET_MIN_BYTES = 24
SECRET_MAX_BYTES = 64
# The spec asks senders to keep retrying for at least an hour; a week bounds
# how long one broken receiver can grow the retry set.
MIN_MAX_AGE = 3600
MAX_MAX_AGE = 7 * 86400
DEFAULT_MAX_AGE = 86400
# Above this a slow receiver holds a delivery slot (and a lease) too long.
MAX_TIMEOUT = 30.0

# `*`, an exact dotted type (`sla.breached`) or a prefix (`sla.*`).
_PATTERN = re.compile(r"\*|[a-z][a-z0-9_]*(?:\.[a-z][a-z0-9_]*)*(?:\.\*)?")


def decode_secret(value: str) -> bytes:
    """The HMAC key of a `whsec_<base64>` secret; messages never include the value."""
    if not value.startswith(SECRET_PREFIX):
        raise ValueError(f"must be `{SECRET_PREFIX}` followed by base64")
    text = value[len(SECRET_PREFIX) :]
    try:
        # Tolerate missing padding (some generators strip it); reject anything else.
        key = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"the part after `{SECRET_PREFIX}` is not valid base64") from None
    if not SECRET_MIN_BYTES <= len(key) <= SECRET_MAX_BYTES:
        raise ValueError(
            f"must decode to {SECRET_MIN_BYTES}-{SECRET_MAX_BYTES} bytes, not {len(key)}"
        )
    return key


class Webhook(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """One webhook subscription as configured (wire form).

    Validated on decode and on construction alike (`__post_init__`), so no code
    path gets an unchecked subscription. The secrets are kept out of `repr`.
    """

    url: str
    events: list[str]
    secret: str
    previous_secret: str | None = None
    # Seconds a failing delivery is retried before it goes to the dead letters.
    max_age: int = DEFAULT_MAX_AGE
    # Seconds one HTTP attempt may take.
    timeout: float = 5.0

    def __post_init__(self) -> None:
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("url: must be an absolute http:// or https:// URL")
        if not self.events:
            raise ValueError("events: must list at least one type, prefix (`sla.*`) or `*`")
        for pattern in self.events:
            if not _PATTERN.fullmatch(pattern):
                raise ValueError(
                    f"events: {pattern!r} is not an event type, a prefix like `sla.*` or `*`"
                )
        for field, value in (("secret", self.secret), ("previous_secret", self.previous_secret)):
            if value is not None:
                try:
                    decode_secret(value)
                except ValueError as exc:
                    raise ValueError(f"{field}: {exc}") from None
        if not MIN_MAX_AGE <= self.max_age <= MAX_MAX_AGE:
            raise ValueError(f"max_age: must be {MIN_MAX_AGE}-{MAX_MAX_AGE} seconds")
        if not 0 < self.timeout <= MAX_TIMEOUT:
            raise ValueError(f"timeout: must be more than 0 and at most {MAX_TIMEOUT} seconds")

    def __repr__(self) -> str:
        # msgspec's default repr lists every field, the secrets included.
        return (
            f"Webhook(url={self.url!r}, events={self.events!r}, secret=<redacted>, "
            f"max_age={self.max_age!r}, timeout={self.timeout!r})"
        )

    def __rich_repr__(self) -> list[tuple[str, Any]]:
        # msgspec defines this too (rich and some loggers use it): same redaction.
        return [("url", self.url), ("events", self.events), ("max_age", self.max_age),
                ("timeout", self.timeout)]  # fmt: skip

    def keys(self) -> list[bytes]:
        """HMAC keys to sign with: the current secret, then the one being rotated out."""
        keys = [decode_secret(self.secret)]
        if self.previous_secret is not None:
            keys.append(decode_secret(self.previous_secret))
        return keys


def matches(patterns: Iterable[str], event_type: str) -> bool:
    """True when an event type is selected by exact type, `prefix.*` or `*`."""
    for pattern in patterns:
        if pattern in ("*", event_type):
            return True
        # `sla.*` keeps its dot, so it selects `sla.breached` but not `slash.x`.
        if pattern.endswith(".*") and event_type.startswith(pattern[:-1]):
            return True
    return False


def sign(msg_id: str, timestamp: int, body: bytes, keys: Iterable[bytes]) -> str:
    """The `webhook-signature` value: one `v1,<base64>` per key, space-separated."""
    content = f"{msg_id}.{timestamp}.".encode() + body
    return " ".join(
        "v1," + base64.b64encode(hmac.new(key, content, hashlib.sha256).digest()).decode()
        for key in keys
    )


def signature_headers(
    msg_id: str, timestamp: int, body: bytes, keys: Iterable[bytes]
) -> dict[str, str]:
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(msg_id, timestamp, body, keys),
    }


def stream_ms(stream_id: str) -> int:
    """The time part (ms, Redis clock) of a stream entry id `<ms>-<seq>`."""
    return int(stream_id.partition("-")[0])


def rfc3339(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


def cloudevent(ws: str, stream_id: str, event: Mapping[str, Any]) -> dict[str, Any]:
    """An engine event (as appended to the workspace stream) as a CloudEvents 1.0 JSON object.

    `id` is the stream entry id, so it is unique per workspace and the same on
    every retry; `data` is the event without the attributes that moved into the
    envelope (`type`, `at`).
    """
    at = event.get("at")
    out: dict[str, Any] = {
        "specversion": "1.0",
        "id": stream_id,
        "source": f"/v1/workspaces/{ws}",
        "type": str(event.get("type", "")),
        # `at` is Redis TIME when the event was recorded; the entry id carries the
        # same clock, for an event written without `at`.
        "time": rfc3339(int(at) if isinstance(at, int | float) else stream_ms(stream_id)),
        "datacontenttype": "application/json",
    }
    subject = event.get("contact") or event.get("agent")
    if subject:
        out["subject"] = str(subject)
    # CloudEvents extension attribute: who caused it, also kept in `data`.
    if isinstance(event.get("actor"), str):
        out["actor"] = event["actor"]
    out["data"] = {k: v for k, v in event.items() if k not in ("type", "at")}
    return out
