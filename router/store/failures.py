"""Which Redis failures mean "the state store is unavailable for a moment".

During a Sentinel or Cluster failover a call can fail in many ways: the
connection drops or times out, the old primary answers READONLY once it is
demoted, a cluster node answers MOVED/ASK/TRYAGAIN/CLUSTERDOWN while slots
move, a restarting server answers LOADING, `min-replicas-to-write` answers
NOREPLICAS. All of them are transient: the caller gets 503 with Retry-After
and retries (creation is idempotent on the contact id), never a 500.
"""

from __future__ import annotations

from redis.exceptions import (
    AskError,
    BusyLoadingError,
    ClusterDownError,
    MasterDownError,
    MovedError,
    ReadOnlyError,
    ResponseError,
    SlotNotCoveredError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

TRANSIENT: tuple[type[BaseException], ...] = (
    RedisConnectionError,
    RedisTimeoutError,
    BusyLoadingError,
    ReadOnlyError,
    ClusterDownError,
    MasterDownError,
    MovedError,
    AskError,
    TryAgainError,
    SlotNotCoveredError,
    ConnectionError,
    TimeoutError,
    OSError,
)
# Replies redis-py leaves as a plain ResponseError, by their error code.
_CODES = ("READONLY", "NOREPLICAS", "MASTERDOWN", "LOADING", "CLUSTERDOWN", "TRYAGAIN")


def store_unavailable(exc: BaseException) -> bool:
    """Is `exc` a transient failure of the state store (answer 503, retry)?"""
    if isinstance(exc, TRANSIENT):
        return True
    return isinstance(exc, ResponseError) and str(exc).startswith(_CODES)
