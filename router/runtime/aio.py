"""Small asyncio helpers shared by the background loops."""

from __future__ import annotations

import asyncio
import os
import uuid


def cancel_requested() -> bool:
    """True once the current task was asked to stop.

    Background loops check this as well as catching CancelledError: a client
    library that wraps its reads in its own timeout can turn a cancellation
    into a TimeoutError, and a loop that suppresses timeouts would then never
    stop.
    """
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def worker_name() -> str:
    """This process's name as a lease holder or stream consumer: host and pid, and
    a random part, since a restarted process may get the same pid."""
    return f"{os.uname().nodename}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
