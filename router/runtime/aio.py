"""Small asyncio helpers shared by the background loops."""

from __future__ import annotations

import asyncio


def cancel_requested() -> bool:
    """True once the current task was asked to stop.

    Background loops check this as well as catching CancelledError: a client
    library that wraps its reads in its own timeout can turn a cancellation
    into a TimeoutError, and a loop that suppresses timeouts would then never
    stop.
    """
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0
