"""What every handler uses: problem responses, JSON out, bodies in, path ids, roles."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, TypeVar

import msgspec
from aiohttp import web

from router.api.appkeys import TOKEN, Handler
from router.runtime.errors import BadRequest, FieldProblem, InvalidInput, NotFound, RouterError
from router.runtime.settings import Token

T = TypeVar("T")
_ENC = msgspec.json.Encoder()
_DECODERS: dict[type, msgspec.json.Decoder[Any]] = {}
_PATH = re.compile(r" - at `\$(.*)`$")
ID_PATTERN = re.compile(r"^[A-Za-z0-9_.:@-]{1,128}$")


def problem(status: int, title: str, detail: str, slug: str, **extra: object) -> web.Response:
    body: dict[str, object] = {
        "type": f"https://contact-router.dev/problems/{slug}",
        "title": title,
        "status": status,
        "detail": detail,
    }
    body.update({k: v for k, v in extra.items() if v is not None})
    headers = {"Retry-After": "1"} if status == 503 else None
    return web.Response(
        status=status,
        body=_ENC.encode(body),
        content_type="application/problem+json",
        headers=headers,
    )


def error_response(exc: RouterError) -> web.Response:
    return problem(exc.status, exc.title, exc.detail, exc.slug, **exc.extra())


def actor(request: web.Request) -> str:
    tok: Token = request[TOKEN]
    return f"{tok.role}:{tok.name}"


def roles(*names: str) -> Callable[[Handler], Handler]:
    def mark(fn: Handler) -> Handler:
        fn.roles = frozenset(names)  # type: ignore[attr-defined]
        return fn

    return mark


def json_response(obj: object, status: int = 200) -> web.Response:
    return web.Response(body=_ENC.encode(obj), status=status, content_type="application/json")


def decode_error(exc: msgspec.ValidationError) -> InvalidInput:
    msg = str(exc)
    m = _PATH.search(msg)
    path = m.group(1).lstrip(".") if m else ""
    text = _PATH.sub("", msg)
    unknown = re.match(r"Object contains unknown field `(.+)`", text)
    if unknown:
        path = f"{path}.{unknown.group(1)}".lstrip(".")
        text = "unknown field"
    missing = re.match(r"Object missing required field `(.+)`", text)
    if missing:
        path = f"{path}.{missing.group(1)}".lstrip(".")
        text = "required field is missing"
    if text.startswith("Invalid enum value"):
        # msgspec quotes the value; a problem names the field, never repeats input
        # (it may be personal data put in the wrong field).
        text = "not one of the allowed values"
    return InvalidInput([FieldProblem(path, text)])


async def body(request: web.Request, typ: type[T]) -> T:
    raw = await request.read()
    if not raw:
        raise BadRequest("a JSON body is required")
    dec = _DECODERS.get(typ)
    if dec is None:
        dec = _DECODERS[typ] = msgspec.json.Decoder(typ)
    try:
        return dec.decode(raw)  # type: ignore[no-any-return]
    except msgspec.ValidationError as exc:
        raise decode_error(exc) from None
    except msgspec.DecodeError as exc:
        raise BadRequest(f"malformed JSON: {exc}") from None


def path_id(request: web.Request, name: str) -> str:
    value = request.match_info[name]
    if not ID_PATTERN.match(value):
        raise NotFound(f"{name} {value[:64]!r} does not exist", field=name)
    return value
