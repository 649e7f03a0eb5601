"""Which Redis the service talks to, read from one URL.

| scheme | topology |
|---|---|
| `redis://`, `rediss://` | one server (TLS with `rediss`) |
| `redis+sentinel://`, `rediss+sentinel://` | the primary that Sentinel names for a service |
| `redis+cluster://`, `rediss+cluster://` | a Redis Cluster, from one or more seed nodes |

Sentinel and Cluster URLs list their nodes comma-separated, e.g.
`redis+sentinel://router:secret@10.0.0.1:26379,10.0.0.2:26379/contacts/0`
(user and password are the data nodes' ACL user; the path is the Sentinel
service name, then the database). Query parameters are redis-py's own
(`ssl_ca_certs`, `ssl_certfile`, `ssl_keyfile`, `ssl_cert_reqs`, ...), plus
`sentinel_username` / `sentinel_password` when the sentinels require their own
ACL user. Parsing is pure: clients are built in `router/store/client.py`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import quote, unquote, urlsplit

from redis.connection import parse_url

from router.runtime.settings import SettingsError

Kind = Literal["standalone", "sentinel", "cluster"]
_SCHEMES: dict[str, tuple[Kind, bool]] = {
    "redis": ("standalone", False),
    "rediss": ("standalone", True),
    "unix": ("standalone", False),
    "redis+sentinel": ("sentinel", False),
    "rediss+sentinel": ("sentinel", True),
    "redis+cluster": ("cluster", False),
    "rediss+cluster": ("cluster", True),
}
# Options for the sentinels' own connections, not the data nodes'.
_SENTINEL_ONLY = ("sentinel_username", "sentinel_password")
DEFAULT_SENTINEL_PORT = 26379
DEFAULT_PORT = 6379


class TopologyError(SettingsError):
    """A Redis URL that names no usable topology; the message names the fix."""


@dataclass(frozen=True)
class Topology:
    kind: Kind
    url: str = field(repr=False)  # as given (standalone: handed to redis-py as it is)
    tls: bool = False
    nodes: tuple[tuple[str, int], ...] = ()  # sentinels, or cluster seed nodes
    service: str = ""  # Sentinel: the monitored primary's name
    # redis-py connection keywords for the data nodes (user, password, db, TLS files ...)
    options: dict[str, Any] = field(default_factory=dict, repr=False)
    sentinel_options: dict[str, Any] = field(default_factory=dict, repr=False)


def parse(url: str) -> Topology:
    scheme = url.partition("://")[0].lower()
    if scheme not in _SCHEMES or "://" not in url:
        known = ", ".join(f"{s}://" for s in _SCHEMES)
        raise TopologyError(f"REDIS_URL must start with one of {known} (got {scheme!r})")
    kind, tls = _SCHEMES[scheme]
    if kind == "standalone":
        return Topology("standalone", url, tls)
    parts = urlsplit(url)
    userinfo, _, hostlist = parts.netloc.rpartition("@")
    default_port = DEFAULT_SENTINEL_PORT if kind == "sentinel" else DEFAULT_PORT
    nodes = tuple(_node(n, default_port) for n in hostlist.split(",") if n.strip())
    if not nodes:
        raise TopologyError(f"REDIS_URL: a {scheme}:// URL lists its nodes as host:port,host:port")
    segments = [unquote(s) for s in parts.path.split("/") if s]
    service, db = "", ""
    if kind == "sentinel":
        if not segments:
            raise TopologyError(
                "REDIS_URL: a Sentinel URL names the service after the nodes, "
                "e.g. redis+sentinel://host:26379/mymaster"
            )
        service, db = segments[0], (segments[1] if len(segments) > 1 else "")
    elif segments:
        raise TopologyError("REDIS_URL: a Cluster URL has no path (a cluster has database 0 only)")
    # redis-py parses user, password, database and query options of a one-node URL.
    first_host, first_port = nodes[0]
    one = f"{'rediss' if tls else 'redis'}://{userinfo + '@' if userinfo else ''}"
    one += f"{first_host}:{first_port}/{quote(db)}"
    if parts.query:
        one += "?" + parts.query
    try:
        options: dict[str, Any] = parse_url(one)  # type: ignore[no-untyped-call]
    except ValueError as exc:
        raise TopologyError(f"REDIS_URL: {exc}") from None
    for key in ("host", "port", "connection_class"):
        options.pop(key, None)
    if tls:
        options["ssl"] = True
    sentinel_options = {
        k.removeprefix("sentinel_"): options.pop(k) for k in _SENTINEL_ONLY if k in options
    }
    return Topology(kind, url, tls, nodes, service, options, sentinel_options)


def _node(text: str, default_port: int) -> tuple[str, int]:
    host, sep, port = text.strip().rpartition(":")
    if not sep:
        return text.strip(), default_port
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise TopologyError(f"REDIS_URL: {text.strip()!r} is not host:port")
    return host.strip("[]"), int(port)
