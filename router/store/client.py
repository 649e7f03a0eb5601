"""The one way the service builds its Redis client, for every topology.

`REDIS_URL` picks the topology (`router/store/topology.py`): one server, the
primary Sentinel names, or a cluster's primaries (`router/store/shards.py`:
the service asks `make_shards` which client holds a key; `make_client` is
the one client of a single server or Sentinel, for tools and tests). The
Sentinel client is redis-py's own: every new
connection asks the sentinels where the primary is, and a connection that
meets a demoted primary (READONLY) is dropped and fails as a connection error,
so the service answers 503 and the retry goes to the new primary rather than
writing to an old one.

redis-py computes its library version for `CLIENT SETINFO` by reading the
package metadata from disk on every new connection (about a millisecond,
on the event loop). The pool grows while load ramps up and after a dropped
connection, so the identity is computed once here and shared.
"""

from __future__ import annotations

from functools import cache
from typing import Any, cast

from redis.asyncio import Redis
from redis.asyncio.sentinel import Sentinel
from redis.driver_info import DriverInfo

from router.store.shards import Shards, cluster_shards
from router.store.topology import Topology, TopologyError, parse


@cache
def driver_info() -> DriverInfo:
    return DriverInfo(name="contact-router")  # resolves redis-py's version once


class SentinelRedis(Redis):
    """The primary's client; closing it also closes its connections to the sentinels."""

    sentinels: list[Redis] = []  # set per instance

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        await super().aclose(close_connection_pool)
        for node in self.sentinels:
            await node.aclose()


def _common(timeout: float | None, max_connections: int) -> dict[str, Any]:
    return {
        "decode_responses": True,
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
        "health_check_interval": 30,
        "max_connections": max_connections,
        "driver_info": driver_info(),
    }


def make_client(url: str, timeout: float | None = None, max_connections: int = 256) -> Redis:
    """The client of one server or of Sentinel's primary (a cluster has no one client)."""
    common = _common(timeout, max_connections)
    topo = parse(url)
    if topo.kind == "standalone":
        return Redis.from_url(url, **common)
    if topo.kind == "sentinel":
        return _sentinel_client(topo, common)
    raise TopologyError("this needs one Redis server or Sentinel; REDIS_URL names a cluster")


def make_shards(url: str, timeout: float | None = None, max_connections: int = 256) -> Shards:
    """Which client holds a key, for every topology."""
    topo = parse(url)
    if topo.kind == "cluster":
        return cluster_shards(list(topo.nodes), _common(timeout, max_connections), topo.options)
    return Shards(make_client(url, timeout, max_connections))


async def open_shards(url: str, socket_timeout: float | None = None) -> Shards:
    """`make_shards`, with the cluster's slot map read (for tools: fails when unreachable)."""
    shards = make_shards(url, socket_timeout, max_connections=32)
    try:
        await shards.start()
    except BaseException:
        await shards.aclose()
        raise
    return shards


def _sentinel_client(topo: Topology, common: dict[str, Any]) -> Redis:
    tls = {k: v for k, v in topo.options.items() if k.startswith("ssl")}
    sentinel_kwargs = {
        "socket_timeout": common["socket_timeout"],
        "socket_connect_timeout": common["socket_connect_timeout"],
        "decode_responses": True,
        **tls,
        **topo.sentinel_options,
    }
    nodes = list(topo.nodes)
    sentinel = Sentinel(nodes, sentinel_kwargs=sentinel_kwargs)  # type: ignore[no-untyped-call]
    client = cast(
        SentinelRedis,
        sentinel.master_for(topo.service, redis_class=SentinelRedis, **common, **topo.options),
    )
    client.sentinels = list(sentinel.sentinels)
    return client
