"""5,000 waits hit a 30-second window of HTTP 429: our client vs naive per-task loops.

Virtual time: one ``VirtualClock`` drives the client (``clock=``) and the emulator
(``clock=``), both in this process, so minutes of task time pass
in seconds. All tasks run for the whole scenario. From virtual ``T0`` for 30 s a
middleware in front of the emulator's app answers every ``taskDetail`` with 429
(``APIGW.0308``, ``Retry-After: 30``); the same middleware counts every detail
request per virtual second, 429s included. The emulator's code is not changed.

Waiters compared (each gets a fresh emulator and clock):

- ours (default Limits): ``kd.wait_many``; shared pause after 429, spread resume, 50 req/s.
- ours (rate=None): the same without the rate limit, to isolate pause + spread.
- naive, honours Retry-After: per task, ``while True: post; if 429: sleep(retry_after);
  elif done: break; else: sleep(next(backoff.expo(base=1.5, max_value=30)))``.
- naive, backoff only: the same, but a 429 sleeps ``backoff.full_jitter(next(expo))``
  (what ``@backoff.on_exception(backoff.expo, ...)`` does) and ignores Retry-After.

Reported: detail requests received during the window, the peak per 1-s bucket in the
10 s after it (the recovery burst), and requests per second around the window.
The naive loops poll in lockstep (no jitter), so their bursts land where their
schedule puts them: the peak over the 40 s after the window catches the return of
every wait throttled in it. Goal (ours, default Limits): no more requests during the
window than ``max_in_flight`` (those in flight when the first 429 came back), and a
recovery peak <= 2x the rate limit.

Run: ``python benchmarks/bench_stampede.py [--quick] [--json PATH]``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import _common
import aiohttp
import backoff
from aiohttp import web

from koodrive_tasks import BearerToken, KooDriveClient, Limits
from koodrive_tasks.emulator import Emulator, TaskScript
from koodrive_tasks.testing import VirtualClock

DETAIL_PATH = "/koodrive/ose/v1/share/taskDetail"
SHARE_ID = "share-1"
WINDOW = 30.0
RETRY_AFTER = 30
AFTER = 10  # seconds after the window in which the recovery burst is measured
# Waits throttled late in the window come back up to Retry-After (x1.2 for ours) later:
# the run goes on long enough after the window for every one of them to return.
TAIL = 40
THROTTLED = json.dumps(
    {"error_code": "APIGW.0308", "error_msg": "The throttling threshold has been reached"}
).encode()

Waiters = Callable[[str, str, list[str], VirtualClock], Awaitable[None]]


async def ours(url: str, token: str, ids: list[str], clock: VirtualClock, limits: Limits) -> None:
    async with KooDriveClient(
        url, auth=BearerToken(token), allow_insecure_urls=True, clock=clock, limits=limits
    ) as kd:
        await kd.wait_many([(SHARE_ID, task_id) for task_id in ids], timeout=None)


async def naive(
    url: str, token: str, ids: list[str], clock: VirtualClock, honour_retry_after: bool
) -> None:
    """One loop per task, as a user would write it with aiohttp and ``backoff``."""
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

    async def wait_one(session: aiohttp.ClientSession, task_id: str) -> None:
        body = json.dumps({"taskId": task_id, "shareId": SHARE_ID}).encode()
        poll_delays = backoff.expo(base=1.5, factor=1, max_value=30)
        retry_delays = backoff.expo(base=2, factor=1, max_value=60)
        next(poll_delays), next(retry_delays)  # backoff's generators start with a bare yield
        while True:
            async with session.post(url + DETAIL_PATH, data=body, headers=headers) as r:
                answer = await r.json(content_type=None)
                retry_after = r.headers.get("Retry-After")
            if r.status == 429:
                if honour_retry_after:
                    await clock.sleep(float(retry_after or 1))
                else:
                    await clock.sleep(backoff.full_jitter(next(retry_delays)))
            elif answer["jobInfo"]["taskStatus"] in (2, 3):
                break
            else:
                await clock.sleep(next(poll_delays))

    async with aiohttp.ClientSession() as session:
        await asyncio.gather(*(wait_one(session, task_id) for task_id in ids))


WAITERS: dict[str, Waiters] = {
    "ours (default Limits)": lambda u, t, i, c: ours(u, t, i, c, Limits()),
    "ours (rate=None)": lambda u, t, i, c: ours(u, t, i, c, Limits(rate=None)),
    "naive, honours Retry-After": lambda u, t, i, c: naive(u, t, i, c, honour_retry_after=True),
    "naive, backoff only": lambda u, t, i, c: naive(u, t, i, c, honour_retry_after=False),
}


async def scenario(waiters: Waiters, count: int, t0: float, seed: int) -> dict[str, Any]:
    """Run one kind of waiter through the 429 window; return per-second request counts."""
    clock = VirtualClock()
    per_second: Counter[int] = Counter()
    throttled = 0

    @web.middleware
    async def throttle_window(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        nonlocal throttled
        if request.path != DETAIL_PATH:
            return await handler(request)
        now = clock.monotonic()
        per_second[math.floor(now)] += 1
        if t0 <= now < t0 + WINDOW:
            throttled += 1
            return web.Response(
                status=429,
                body=THROTTLED,
                content_type="application/json",
                headers={"Retry-After": str(RETRY_AFTER)},
            )
        return await handler(request)

    emu = Emulator(shape="B", seed=seed, clock=clock)
    emu.app.middlewares.append(throttle_window)  # before start: the app is not frozen yet
    rng = random.Random(seed)
    end = t0 + WINDOW + TAIL
    ids = [
        emu.add_task(
            # Every task outlives the scenario: all waits are running throughout.
            TaskScript(pending_s=rng.uniform(0, 5), duration_s=rng.uniform(3 * end, 6 * end)),
            share_id=SHARE_ID,
        )
        for _ in range(count)
    ]
    started = time.perf_counter()
    async with emu:
        job = asyncio.create_task(waiters(emu.url, emu.token, ids, clock))
        await clock.sleep(end)
        job.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await job
    first_after = math.floor(t0 + WINDOW)
    return {
        "per_second": dict(sorted(per_second.items())),
        "in_window": throttled,
        "recovery_peak": max(per_second[s] for s in range(first_after, first_after + AFTER)),
        "tail_peak": max(per_second[s] for s in range(first_after, first_after + TAIL)),
        "before_peak": max(per_second[s] for s in range(math.floor(t0) - 10, math.floor(t0))),
        "total": sum(per_second.values()),
        "real_seconds": time.perf_counter() - started,
    }


def sparkline(counts: list[int]) -> str:
    """One character per second, scaled to the row's own maximum."""
    bars = " ▁▂▃▄▅▆▇█"
    top = max(counts) or 1
    return "".join(bars[math.ceil(c / top * (len(bars) - 1))] for c in counts)


def run(quick: bool) -> dict[str, object]:
    """Run every kind of waiter through the window; print the tables and the goals."""
    count = 500 if quick else 5_000
    # Full: at T0 the default rate limit (50/s) is still working through the first
    # round of 5,000 polls, a client busy at its limit, as in production.
    # Quick: 500 polls take 10 s, so at T0 the client polls at its steady pace.
    t0 = 20.0 if quick else 60.0
    results = {name: asyncio.run(scenario(w, count, t0, seed=7)) for name, w in WAITERS.items()}
    baseline = results["naive, honours Retry-After"]
    _common.print_table(
        f"{count:,} waits, every taskDetail answered 429 (Retry-After: {RETRY_AFTER}) "
        f"from virtual t={t0:g} s for {WINDOW:g} s",
        [
            "waiters",
            "requests in window",
            "vs naive",
            f"peak/s in {AFTER} s after",
            f"peak/s in {TAIL} s after",
            "vs naive",
            "peak/s in 10 s before",
            "real s",
        ],
        [
            [
                name,
                r["in_window"],
                f"{r['in_window'] / max(1, baseline['in_window']):.2f}x",
                r["recovery_peak"],
                r["tail_peak"],
                f"{r['tail_peak'] / max(1, baseline['tail_peak']):.2f}x",
                r["before_peak"],
                f"{r['real_seconds']:.1f}",
            ]
            for name, r in results.items()
        ],
    )
    start, stop = math.floor(t0) - 5, math.floor(t0 + WINDOW) + TAIL
    seconds = list(range(start, stop))
    print(
        f"\nRequests per virtual second, t={start}..{stop - 1} "
        f"(window = [{t0:g}, {t0 + WINDOW:g}); each row scaled to its own peak)"
    )
    marks = "".join("|" if s in (math.floor(t0), math.floor(t0 + WINDOW)) else " " for s in seconds)
    width = max(len(n) for n in results)
    print(f"{'':{width}}  {marks}")
    for name, r in results.items():
        counts = [r["per_second"].get(s, 0) for s in seconds]
        print(f"{name:{width}}  {sparkline(counts)}  peak {max(counts):,}/s")
    _common.print_table(
        "Requests per virtual second around the window (every 5th second)",
        ["t (s)", *results],
        [[s, *(r["per_second"].get(s, 0) for r in results.values())] for s in seconds[::5]],
    )
    ours_default = results["ours (default Limits)"]
    goals = [
        # Once the first 429 is back, only requests already in flight may follow it.
        _common.goal(
            "ours (default Limits): requests during the 429 window",
            ours_default["in_window"],
            Limits().max_in_flight,
        ),
        _common.goal(
            "ours (default Limits): recovery peak / rate limit",
            ours_default["recovery_peak"] / Limits().rate,  # type: ignore[operator]
            2.0,
            "x",
        ),
    ]
    for r in results.values():  # JSON keys must be strings
        r["per_second"] = {str(k): v for k, v in r["per_second"].items()}
    return {"waits": count, "t0": t0, "window_s": WINDOW, "results": results, "goals": goals}


if __name__ == "__main__":
    _common.main(run, __doc__ or "")
