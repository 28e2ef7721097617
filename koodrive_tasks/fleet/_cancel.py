"""Cancellation that redis-py may lose on Python < 3.12, found again.

With a ``socket_timeout`` redis-py sends each command under ``asyncio.wait_for``,
which before Python 3.12 drops a cancellation that arrives as the send completes:
the command returns normally and the caller's task runs on as if never cancelled
(measured here: most cancellations of a task in its first loop steps of a command).
A wait cancelled by its caller must stop, so every await on Redis goes through
:func:`guarded`, which raises the cancellation that was requested meanwhile
(Python 3.11 counts requests; 3.10 cannot tell, and 3.12+ loses none).
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable
from typing import TypeVar

T = TypeVar("T")

if sys.version_info >= (3, 11):

    async def guarded(awaitable: Awaitable[T]) -> T:
        """Await ``awaitable``; raise ``CancelledError`` if the task was cancelled meanwhile."""
        task = asyncio.current_task()
        before = task.cancelling() if task is not None else 0
        result = await awaitable
        if task is not None and task.cancelling() > before:
            raise asyncio.CancelledError
        return result

else:

    async def guarded(awaitable: Awaitable[T]) -> T:
        """Await ``awaitable`` (Python 3.10 cannot tell a lost cancellation)."""
        return await awaitable


async def stop(task: asyncio.Task[None] | None) -> None:
    """Cancel ``task`` and wait for its end, cancelling again if a cancellation was lost."""
    if task is None:
        return
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=0.1)
    if not task.cancelled():
        task.exception()  # retrieved: it failed before, and was reported then
