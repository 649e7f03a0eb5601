"""The one way the service builds its Redis client.

redis-py computes its library version for `CLIENT SETINFO` by reading the
package metadata from disk on every new connection (about a millisecond,
on the event loop). The pool grows while load ramps up and after a dropped
connection, so the identity is computed once here and shared.
"""

from __future__ import annotations

from functools import cache

from redis.asyncio import Redis
from redis.driver_info import DriverInfo


@cache
def driver_info() -> DriverInfo:
    return DriverInfo(name="contact-router")  # resolves redis-py's version once


def make_client(url: str, timeout: float | None = None, max_connections: int = 256) -> Redis:
    return Redis.from_url(
        url,
        decode_responses=True,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        health_check_interval=30,
        max_connections=max_connections,
        driver_info=driver_info(),
    )
