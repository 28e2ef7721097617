"""Close a client under load and time it; run by test_close_ends_everything under -X dev -W error.

Usage: ``python -X dev -W error close_at_scale.py WAITS BATCHES BATCH_SIZE DEBUG``. Against
the emulator on a virtual clock (tasks run for hours), it starts WAITS lone waits (each
awaited by a task of its own) and BATCHES batches of BATCH_SIZE tasks (wait_many,
as_completed and watch_many in turn) plus one batch created and not started, lets them
poll for a while, then closes the client. It prints one JSON line: how long ``close()``
took, how long until every wait and batch had ended, and how each ended. Anything on
stderr (a warning, an unclosed resource, asyncio's debug-mode report of a step slower
than 100 ms) fails the calling test.

DEBUG (``on``/``off``) sets asyncio's debug mode, which ``-X dev`` turns on by default.
It records a stack trace for every callback: on the CI machine that alone costs about
110 microseconds per task woken, so 10,000 bare asyncio tasks woken by bare futures
take 1.4 s to end (and asyncio reports its own gather of them as a slow step). The
10,000-wait run therefore turns it off and keeps the rest of ``-X dev``; a smaller run
keeps it on, with asyncio's slow-step report raised from 0.1 s to 0.5 s (on a shared
2-core machine a garbage collection alone can take 0.1 s).

Times are given as wall clock and as this process's CPU time: the second does not
count the time other processes (a parallel test run) held the CPU.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

from rel_support import QUICK, SHARE, client_for, emulator

from koodrive_tasks import ClientClosedError, TaskOutcome
from koodrive_tasks.emulator import TaskScript
from koodrive_tasks.testing import VirtualClock

STEP = 250  # work done between yields, so that no step trips debug mode's slow-step report


async def consume(kind: str, batch: Any) -> dict[Any, TaskOutcome]:
    if kind == "wait_many":
        return dict(await batch)
    async with batch:
        async for _ in batch.events():
            pass
    return dict(batch.outcomes)


async def main(waits: int, batches: int, batch_size: int) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    if loop.get_debug():
        loop.slow_callback_duration = 0.5
    clock = VirtualClock()
    script = TaskScript(pending_s=1, duration_s=10 * 3600)
    async with emulator(clock) as emu:
        ids = []
        for i in range(waits + (batches + 1) * batch_size):
            ids.append(emu.add_task(script))
            if i % STEP == 0:
                await asyncio.sleep(0)
        kd = client_for(emu, clock, policy=QUICK)
        waiters = []
        for i in range(waits):
            waiters.append(asyncio.ensure_future(kd.wait_for_task(SHARE, ids[i]).download_url()))
            if i % STEP == 0:
                await asyncio.sleep(0)
        kinds = ["wait_many", "as_completed", "watch_many"]
        consumers = []
        for b in range(batches):
            first = waits + b * batch_size
            refs = [(SHARE, t) for t in ids[first : first + batch_size]]
            kind = kinds[b % 3]
            batch: Any = {
                "wait_many": kd.wait_many,
                "as_completed": kd.as_completed,
                "watch_many": kd.watch_many,
            }[kind](refs)
            consumers.append(asyncio.ensure_future(consume(kind, batch)))
        unstarted = kd.as_completed([(SHARE, t) for t in ids[-batch_size:]])
        await clock.sleep(20)  # virtual seconds: the gate (50/s) has sent part of the first polls
        polls = kd.stats.polls

        started, started_cpu = time.perf_counter(), time.process_time()
        await kd.close()
        close_s, close_cpu_s = time.perf_counter() - started, time.process_time() - started_cpu
        wait_results = await asyncio.gather(*waiters, return_exceptions=True)
        batch_results = await asyncio.gather(*consumers)
        unstarted_results = await consume("as_completed", unstarted)
        all_ended_s = time.perf_counter() - started
        all_ended_cpu_s = time.process_time() - started_cpu

    batch_outcomes = [o for r in batch_results for o in r.values()]
    current = asyncio.current_task()
    return {
        "waits": waits,
        "polls_before_close": polls,
        "close_s": round(close_s, 4),
        "close_cpu_s": round(close_cpu_s, 4),
        "all_ended_s": round(all_ended_s, 4),
        "all_ended_cpu_s": round(all_ended_cpu_s, 4),
        "waits_closed": sum(isinstance(r, ClientClosedError) for r in wait_results),
        "batches_ended": len(batch_results),
        "batch_tasks": len(batch_outcomes),
        "batch_outcomes_closed": sum(
            isinstance(o.error, ClientClosedError) for o in batch_outcomes
        ),
        "unstarted_batch_closed": all(
            isinstance(o.error, ClientClosedError) for o in unstarted_results.values()
        )
        and len(unstarted_results) == batch_size,
        "leftover_tasks": len([t for t in asyncio.all_tasks() if t is not current]),
    }


if __name__ == "__main__":
    waits, batches, batch_size = (int(arg) for arg in sys.argv[1:4])
    report = asyncio.run(main(waits, batches, batch_size), debug=sys.argv[4] == "on")
    print(json.dumps(report))
