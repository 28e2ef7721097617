"""10,000 concurrent waits in one process: memory per waiter, event-loop lag, request rate.

The emulator runs in a separate process (``--serve``), so its request handling does
not add to this process's event-loop lag or memory. Time is real: loop lag is only
meaningful in real time. Every task runs for 5 to 10 minutes, longer than the
measurement window, so all N waits stay live for the whole window: the figures are
for N concurrent waiters, not for a number that shrinks as tasks end.

Phases, each with a fresh client (``Limits(rate=R)``) and ``kd.wait_many`` over all tasks:

1. baseline: no waits; the lag probe alone (its p99 is the baseline of the lag ratio).
2. real: RSS sampled every 0.5 s while N waits run for the window, the lag probe
   (sleeps 10 ms, records the overshoot) running alongside; the emulator's detail
   request count before and after gives the achieved request rate.
3. Python heap: ``tracemalloc`` on, N waits started, traced memory after 3 s, and the
   allocation sites that hold the most per waiter.

Goals: memory per waiter <= 4 KiB (RSS delta / N), loop lag p99 <= 50 ms,
achieved rate within 10 % of the configured rate (the demand exceeds it here).

Run: ``python benchmarks/bench_scale.py [--quick] [--json PATH]``.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import random
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

import _common
import aiohttp
from aiohttp import web

from koodrive_tasks import BearerToken, KooDriveClient, Limits
from koodrive_tasks.emulator import Emulator, TaskScript

SHARE_ID = "share-1"
STATS_PATH = "/_bench/stats"
GOAL_BYTES_PER_WAITER = 4096
GOAL_LAG_P99 = 0.050
GOAL_RATE_SHORTFALL = 0.10
PROBE_SLEEP = 0.010
ROOT = str(Path(__file__).resolve().parent.parent) + "/"


def serve(count: int) -> None:
    """The emulator process: ``count`` long tasks; print url, token and ids; serve until stdin closes."""

    async def main() -> None:
        emu = Emulator(shape="B", seed=1)

        async def stats(_: web.Request) -> web.Response:
            return web.json_response({"detail": emu.stats.detail_polls})

        # A route of our own on the emulator's app (added before it starts), so the
        # client process can read the server-side request count.
        emu.app.router.add_get(STATS_PATH, stats)
        rng = random.Random(1)
        ids = [
            emu.add_task(
                TaskScript(pending_s=rng.uniform(0, 2), duration_s=rng.uniform(300, 600)),
                share_id=SHARE_ID,
            )
            for _ in range(count)
        ]
        async with emu:
            print(json.dumps({"url": emu.url, "token": emu.token, "ids": ids}), flush=True)
            await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)

    asyncio.run(main())


async def probe(lags: list[float], stop: asyncio.Event) -> None:
    """Sleep 10 ms again and again; record how late each wake-up is."""
    while not stop.is_set():
        started = time.perf_counter()
        await asyncio.sleep(PROBE_SLEEP)
        lags.append(time.perf_counter() - started - PROBE_SLEEP)


async def server_detail_count(session: aiohttp.ClientSession, url: str) -> int:
    async with session.get(url + STATS_PATH) as response:
        return int((await response.json())["detail"])


def new_client(url: str, token: str, rate: float) -> KooDriveClient:
    return KooDriveClient(
        url, auth=BearerToken(token), allow_insecure_urls=True, limits=Limits(rate=rate)
    )


async def start_waits(kd: KooDriveClient, ids: list[str]) -> asyncio.Task[object]:
    """Start ``kd.wait_many`` over every task, and let every waiter reach its first await."""
    task: asyncio.Task[object] = asyncio.create_task(
        kd.wait_many([(SHARE_ID, task_id) for task_id in ids], timeout=None)
    )
    for _ in range(5):
        await asyncio.sleep(0)
    return task


async def stop_waits(task: asyncio.Task[object]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def measure(
    url: str, token: str, ids: list[str], rate: float, window: float
) -> dict[str, Any]:
    count = len(ids)
    async with aiohttp.ClientSession() as stats_session:
        # 1. Baseline loop lag: the probe alone.
        stop = asyncio.Event()
        base_lags: list[float] = []
        probe_task = asyncio.create_task(probe(base_lags, stop))
        await asyncio.sleep(2.0)
        stop.set()
        await probe_task

        # 2. Real time: RSS, loop lag and request rate while N waits run.
        async with new_client(url, token, rate) as kd:
            await kd.get_share_task(SHARE_ID, ids[0])
            gc.collect()
            await asyncio.sleep(0.5)
            rss_before = _common.rss_bytes()
            detail_before = await server_detail_count(stats_session, url)
            cpu_before = time.process_time()
            polls_before = kd.stats.polls
            stop = asyncio.Event()
            lags: list[float] = []
            probe_task = asyncio.create_task(probe(lags, stop))
            started = time.perf_counter()
            waits = await start_waits(kd, ids)
            rss_samples = []
            while time.perf_counter() - started < window:
                await asyncio.sleep(0.5)
                rss_samples.append(_common.rss_bytes())
            elapsed = time.perf_counter() - started
            detail_after = await server_detail_count(stats_session, url)
            cpu = time.process_time() - cpu_before
            polls = kd.stats.polls - polls_before
            live = len(kd._streams)  # tasks still polled: all of them, none ends in the window
            stop.set()
            await probe_task
            await stop_waits(waits)
        # 3. Python heap per waiter, and where it goes. Last, because tracemalloc slows
        # everything, and because freed memory stays in the process (an RSS baseline
        # taken after this phase would be too high).
        async with new_client(url, token, rate) as kd:
            await kd.get_share_task(SHARE_ID, ids[0])  # connect, import, warm caches
            gc.collect()
            tracemalloc.start()
            heap_before = tracemalloc.take_snapshot()
            waits = await start_waits(kd, ids)
            await asyncio.sleep(3.0)
            heap_during = tracemalloc.take_snapshot()
            tracemalloc.stop()
            await stop_waits(waits)
        diff = heap_during.compare_to(heap_before, "lineno")
        heap_bytes = sum(stat.size_diff for stat in diff)
        top_sites = [
            (str(stat.traceback), stat.size_diff / count, stat.count_diff / count)
            for stat in diff[:10]
        ]
    rss_peak = max(rss_samples)
    return {
        "waits": count,
        "live_at_end": live,
        "window_s": elapsed,
        "heap_bytes_per_waiter": heap_bytes / count,
        "rss_bytes_per_waiter": (rss_peak - rss_before) / count,
        "rss_before_mib": rss_before / 2**20,
        "rss_peak_mib": rss_peak / 2**20,
        "lag_baseline_p99_ms": _common.percentile(base_lags, 0.99) * 1e3,
        "lag_p50_ms": _common.percentile(lags, 0.50) * 1e3,
        "lag_p99_ms": _common.percentile(lags, 0.99) * 1e3,
        "lag_max_ms": max(lags) * 1e3,
        "rate_configured": rate,
        "rate_server": (detail_after - detail_before) / elapsed,
        "rate_client": polls / elapsed,
        "client_cpu_share": cpu / elapsed,
        "client_cpu_us_per_request": cpu / max(1, polls) * 1e6,
        "heap_top_sites": top_sites,
    }


def run(quick: bool) -> dict[str, object]:
    """Start the emulator process, measure, print the table and the goals."""
    # Quick: 1,000 waits at 100/s still keep the demand above the rate for 10 s.
    count, rate, window = (1_000, 100.0, 10.0) if quick else (10_000, 500.0, 40.0)
    server = subprocess.Popen(  # noqa: S603 - our own interpreter and file
        [sys.executable, __file__, "--serve", str(count)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        setup = json.loads(server.stdout.readline())
        m = asyncio.run(measure(setup["url"], setup["token"], setup["ids"], rate, window))
    finally:
        assert server.stdin is not None
        server.stdin.close()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
    _common.print_table(
        f"{count:,} concurrent waits (kd.wait_many), emulator in a separate process, "
        f"{m['window_s']:.0f} s window, real time",
        ["figure", "measured", "baseline", "ratio"],
        [
            ["memory per waiter, RSS delta (bytes)", m["rss_bytes_per_waiter"], "-", "-"],
            ["memory per waiter, tracemalloc (bytes)", m["heap_bytes_per_waiter"], "-", "-"],
            [
                "RSS before / peak (MiB)",
                f"{m['rss_before_mib']:.0f} / {m['rss_peak_mib']:.0f}",
                "-",
                "-",
            ],
            ["loop lag p50 (ms)", m["lag_p50_ms"], "-", "-"],
            [
                "loop lag p99 (ms)",
                m["lag_p99_ms"],
                m["lag_baseline_p99_ms"],
                f"{m['lag_p99_ms'] / max(m['lag_baseline_p99_ms'], 1e-3):.1f}x",
            ],
            ["loop lag max (ms)", m["lag_max_ms"], "-", "-"],
            [
                "requests/s at the server (vs Limits.rate)",
                m["rate_server"],
                m["rate_configured"],
                f"{m['rate_server'] / m['rate_configured']:.2f}x",
            ],
            ["requests/s sent by the client", m["rate_client"], "-", "-"],
            ["client CPU (share of one core)", f"{m['client_cpu_share']:.0%}", "-", "-"],
            ["client CPU per request (us)", m["client_cpu_us_per_request"], "-", "-"],
            ["tasks still polled at the end", m["live_at_end"], count, "-"],
        ],
    )
    _common.print_table(
        "Python heap per waiter by allocation site (tracemalloc, top 10)",
        ["site", "bytes/waiter", "objects/waiter"],
        [[site.replace(ROOT, ""), size, objects] for site, size, objects in m["heap_top_sites"]],
    )
    goals = [
        _common.goal(
            "memory per waiter (RSS delta)", m["rss_bytes_per_waiter"], GOAL_BYTES_PER_WAITER, " B"
        ),
        _common.goal("event-loop lag p99", m["lag_p99_ms"], GOAL_LAG_P99 * 1e3, " ms"),
        _common.goal(
            "shortfall of the achieved rate vs Limits.rate",
            max(0.0, 1 - m["rate_server"] / m["rate_configured"]),
            GOAL_RATE_SHORTFALL,
        ),
    ]
    return {**m, "goals": goals}


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--serve":
        serve(int(sys.argv[2]))
    else:
        _common.main(run, __doc__ or "")
