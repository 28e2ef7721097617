"""Every await on Redis is bounded in time, and never loses a cancellation.

The coordinator bounds each call itself rather than through redis-py's
``socket_timeout``: redis-py sends each command under ``asyncio.wait_for`` when that is
set, which costs a task per command (about a quarter of the client's CPU per call
here) and, before Python 3.12, drops a cancellation that arrives as the send
completes: the command returns normally and the caller's task runs on as if never
cancelled. ``asyncio.timeout`` (3.11+) does neither, and :func:`bounded` also raises a
cancellation that a caller's own client (built with a ``socket_timeout``) swallowed:
Python 3.11 counts cancellation requests. Python 3.10 has no ``asyncio.timeout`` and
cannot tell: there :func:`bounded` uses ``asyncio.wait_for``, with its flaw.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable
from typing import TypeVar

T = TypeVar("T")

if sys.version_info >= (3, 11):

    async def bounded(awaitable: Awaitable[T], seconds: float) -> T:
        """Await ``awaitable`` for at most ``seconds``.

        Raises:
            TimeoutError: If it took longer (it is cancelled).
            asyncio.CancelledError: If the task was cancelled meanwhile, even when the
                client swallowed the cancellation.
        """
        task = asyncio.current_task()
        before = task.cancelling() if task is not None else 0
        async with asyncio.timeout(seconds):
            result = await awaitable
        if task is not None and task.cancelling() > before:
            raise asyncio.CancelledError
        return result

else:

    async def bounded(awaitable: Awaitable[T], seconds: float) -> T:
        """Await ``awaitable`` for at most ``seconds`` (``asyncio.wait_for`` on 3.10)."""
        return await asyncio.wait_for(awaitable, seconds)


async def stop(task: asyncio.Task[None] | None) -> None:
    """Cancel ``task`` and wait for its end, cancelling again if a cancellation was lost."""
    if task is None:
        return
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=0.1)
    if not task.cancelled():
        task.exception()  # retrieved: it failed before, and was reported then
