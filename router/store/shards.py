"""Which Redis server holds a key: the one server, or a cluster's primaries.

Every key of a workspace carries the hash tag `{ws:<name>}` (`keys.py`), so a
workspace lives whole on one cluster slot, and so on one primary. The engine
therefore talks to that primary with a plain client, exactly as it talks to a
single server: the same pipelines of FCALL and EVALSHA, `WAIT` on the same
connection as the writes it covers, `TIME`, blocking `XREAD`, sharded pub/sub.
redis-py's cluster client cannot do all of that in one pipeline (it resolves
the keys of every FCALL with an extra `COMMAND GETKEYS` round trip, and sends
keyless commands such as `WAIT` or `TIME` to any node), so it is used here for
what it is good at: discovering the nodes and the slot map, from the seed
nodes and again whenever the map may have changed.

The map may have changed when a call fails with MOVED, ASK, CLUSTERDOWN, a
dropped connection or a timeout (a failover, a reshard): callers answer 503
as for any unavailable store (`failures.py`) and report the error with
`suspect()`, which reads the map again in the background, at most every
`REFRESH_MIN` seconds. The retry then goes to the primary that serves the slot
now, never to a demoted one (a demoted primary answers MOVED, not data).

One server and Sentinel are the degenerate case: one client for every key.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.crc import key_slot
from redis.exceptions import ConnectionError as RedisConnectionError

from router.store.failures import store_unavailable

log = logging.getLogger(__name__)
REFRESH_MIN = 0.25  # seconds between two reads of the slot map after errors


class Shards:
    """One Redis for every key (a standalone server or Sentinel's primary)."""

    clustered = False

    def __init__(self, client: Redis) -> None:
        self._client = client

    def of(self, key: str) -> Redis:
        """The client of the primary that holds `key` (a workspace's tag will do)."""
        return self._client

    def primaries(self) -> list[Redis]:
        """One client per primary, for what must happen on each (loading code, probes)."""
        return [self._client]

    @property
    def single(self) -> Redis:
        """The one client (tools and benchmarks on one server); a cluster has none."""
        return self._client

    async def start(self) -> None:
        """Learns the topology (a cluster's slot map); a no-op for one server."""

    def suspect(self, exc: BaseException) -> None:
        """`exc` failed a call: when it means the topology may have moved, learn it again."""

    async def aclose(self) -> None:
        await self._client.aclose()


class ClusterShards(Shards):
    """The primaries of a Redis Cluster, found by redis-py's cluster client."""

    clustered = True

    def __init__(self, discovery: RedisCluster, node_client: Callable[[str, int], Redis]) -> None:
        self._discovery = discovery
        self._node_client = node_client  # a plain client for one node, same options
        self._clients: dict[str, Redis] = {}
        self._refreshing: asyncio.Task[bool] | None = None
        self._refreshed_at = float("-inf")
        self._started = False
        self.refreshes = 0  # reads of the slot map (tests read it)

    def of(self, key: str) -> Redis:
        slot = key_slot(key.encode())  # CRC16 of the hash tag, in C
        try:
            node = self._discovery.nodes_manager.get_node_from_slot(slot)
        except Exception as exc:  # not initialised yet, or the slot is not covered
            self.suspect(exc)
            raise RedisConnectionError(f"no Redis Cluster primary known for slot {slot}") from exc
        return self._client_for(node)

    def _client_for(self, node: ClusterNode) -> Redis:
        client = self._clients.get(node.name)
        if client is None:
            client = self._clients[node.name] = self._node_client(node.host, int(node.port))
        return client

    @property
    def single(self) -> Redis:
        raise TypeError("a Redis Cluster has no single client: ask of(key)")

    def primaries(self) -> list[Redis]:
        nodes = self._discovery.nodes_manager.get_nodes_by_server_type("primary")
        return [self._client_for(n) for n in sorted(nodes, key=lambda n: n.name)]

    async def start(self) -> None:
        if not await self._refresh():
            raise RedisConnectionError("no Redis Cluster node answered with the slot map")

    def suspect(self, exc: BaseException) -> None:
        if not store_unavailable(exc):
            return  # a script's own error says nothing about the topology
        if self._refreshing is not None and not self._refreshing.done():
            return
        if time.monotonic() - self._refreshed_at < REFRESH_MIN:
            return
        self._refreshing = asyncio.get_running_loop().create_task(self._refresh())

    async def _refresh(self) -> bool:
        """Reads the slot map; False when no node answered (the old map stays)."""
        self._refreshed_at = time.monotonic()
        self.refreshes += 1
        try:
            if not self._started:  # the client's own start: its close then closes the nodes
                await self._discovery.initialize()
                self._started = True
            else:
                await self._discovery.nodes_manager.initialize()
        except Exception as exc:  # every node unreachable: the next error asks again
            log.warning("reading the Redis Cluster slot map failed (%s)", type(exc).__name__)
            self._refreshed_at = time.monotonic()
            return False
        return True

    async def aclose(self) -> None:
        if self._refreshing is not None:
            self._refreshing.cancel()
            with contextlib.suppress(BaseException):
                await self._refreshing
        for client in self._clients.values():
            with contextlib.suppress(Exception):
                await client.aclose()
        with contextlib.suppress(Exception):
            await self._discovery.aclose()


def cluster_shards(
    seeds: list[tuple[str, int]], common: dict[str, Any], options: dict[str, Any]
) -> ClusterShards:
    """`common`: the service's client settings; `options`: the URL's (ACL user, TLS)."""
    node_options = {k: v for k, v in options.items() if k != "db"}  # a cluster has db 0 only
    discovery = RedisCluster(
        startup_nodes=[ClusterNode(host, port) for host, port in seeds],
        decode_responses=True,
        socket_timeout=common["socket_timeout"],
        socket_connect_timeout=common["socket_connect_timeout"],
        driver_info=common["driver_info"],
        require_full_coverage=False,  # a slot without a primary fails alone, not every call
        **node_options,
    )

    def node_client(host: str, port: int) -> Redis:
        # No retries inside redis-py: they would go to the same node, which in a
        # failover is the dead one (a request then hung for seconds). A failed
        # call answers 503 at once and has the slot map read again, so the
        # client's retry reaches the primary that serves the slot by then.
        return Redis(host=host, port=port, retry=Retry(NoBackoff(), 0), **common, **node_options)

    return ClusterShards(discovery, node_client)
