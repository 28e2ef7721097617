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

LATE = 0.05
"""Seconds late a deadline's timer may ring before the event loop counts as having been busy."""
GRACE = 0.25
"""Seconds more a call gets when its deadline rang that late."""

if sys.version_info >= (3, 11):

    async def bounded(awaitable: Awaitable[T], seconds: float) -> T:
        """Await ``awaitable`` for at most ``seconds`` of the event loop's attention.

        When the deadline's timer rings late, the loop was busy (other work held it, or
        the process got no CPU) and the answer may be waiting unread: the call gets
        :data:`GRACE` seconds more, once, rather than counting as a failure of Redis.

        Raises:
            TimeoutError: If it took longer (it is cancelled).
            asyncio.CancelledError: If the task was cancelled meanwhile, even when the
                client swallowed the cancellation.
        """
        task = asyncio.current_task()
        before = task.cancelling() if task is not None else 0
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(None) as timeout:

            def ring(deadline: float, graced: bool) -> None:
                now = loop.time()
                if not graced and now - deadline > LATE:
                    handle[0] = loop.call_at(now + GRACE, ring, now + GRACE, True)
                else:
                    timeout.reschedule(now)  # cancels the call at the loop's next turn

            deadline = loop.time() + seconds
            handle = [loop.call_at(deadline, ring, deadline, False)]
            try:
                result = await awaitable
            finally:
                handle[0].cancel()
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
