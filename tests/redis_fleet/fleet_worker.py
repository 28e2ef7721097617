"""One process of a test fleet: ``python fleet_worker.py '<json settings>'``.

Started by the multi-process tests and by ``benchmarks/bench_fleet_redis.py``. It prints
``ready`` once connected, reads one JSON line of start times from stdin (unless
``await_go`` is false), runs its scenario in a bounded loop, then prints one JSON line
with what it saw. Scenarios:

- ``rate``: ``concurrency`` loops of reserve() -> sleep -> "send" (a timestamp) from
  ``start_at`` for ``duration`` seconds, as the core would drive it: a slot booked
  before a pause that this process heard of is void and booked again. The first
  worker may pause the fleet at ``pause_at`` for ``pause_for`` seconds.
- ``hold``: claim ``tasks`` tasks and renew them every ``hold_for`` seconds until killed.
- ``take_over``: try to claim the same tasks whenever the holder's lease lapses, renew
  those taken until ``duration`` ends; report when each was taken.
- ``publish`` / ``listen``: fan-out latency of ``count`` updates.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import resource
import sys
import time
from typing import Any

import attrs

from koodrive_tasks.fleet import FleetUpdate, RedisCoordinator


class WarningCounter(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.outages = 0
        self.recovered_at: list[float] = []

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        self.outages += "unreachable" in text
        if "answers again" in text:
            self.recovered_at.append(time.time())


async def sleep_until(wall: float) -> None:
    await asyncio.sleep(max(0.0, wall - time.time()))


async def rate(fleet: RedisCoordinator, s: dict[str, Any]) -> dict[str, Any]:
    sends: list[float] = []
    waits: list[float] = []
    heard = {"pauses": 0}
    fleet.on_pause = lambda seconds: heard.__setitem__("pauses", heard["pauses"] + 1)
    end = s["start_at"] + s["duration"]
    pause_called: list[float] = []

    async def loop() -> None:
        while time.time() < end:
            epoch = heard["pauses"]
            wait = await fleet.reserve(s["rate"], s["burst"])
            waits.append(wait)
            if wait > 0:
                await asyncio.sleep(wait)
            if heard["pauses"] != epoch:
                continue  # a pause began while this slot waited: it is void
            now = time.time()
            if now < end:
                sends.append(now)

    async def pauser() -> None:
        await sleep_until(s["pause_at"])
        pause_called.append(time.time())
        heard["pauses"] += 1
        await fleet.pause(s["pause_for"])

    await sleep_until(s["start_at"])
    jobs = [loop() for _ in range(s["concurrency"])]
    if s.get("pause_at") and s["index"] == 0:
        jobs.append(pauser())
    cpu = time.process_time()
    await asyncio.gather(*jobs)
    return {
        "sends": sends,
        "reserves": len(waits),
        "cpu": time.process_time() - cpu,
        "pause_called": pause_called[0] if pause_called else None,
    }


async def hold(fleet: RedisCoordinator, s: dict[str, Any]) -> dict[str, Any]:
    tasks = [f"task-{i}" for i in range(s["tasks"])]
    claims = [await fleet.claim(task, s["hold_for"]) for task in tasks]
    assert all(claims)
    print("held", flush=True)
    while True:  # until killed
        await asyncio.sleep(s["hold_for"] / 2)
        for task in tasks:
            await fleet.claim(task, s["hold_for"])


async def take_over(fleet: RedisCoordinator, s: dict[str, Any]) -> dict[str, Any]:
    taken: dict[str, float] = {}
    end = time.time() + s["duration"]

    async def watch(task: str) -> None:
        while time.time() < end:
            claim = await fleet.claim(task, s["hold_for"])
            if claim.held:
                taken.setdefault(task, time.time())
                await asyncio.sleep(s["hold_for"] / 2)  # a holder now: renew
            else:
                await asyncio.sleep(max(0.005, claim.expires_in))

    await asyncio.gather(*(watch(f"task-{i}") for i in range(s["tasks"])))
    return {"taken": taken}


async def publish(fleet: RedisCoordinator, s: dict[str, Any]) -> dict[str, Any]:
    await sleep_until(s["start_at"])
    cpu = time.process_time()
    for i in range(s["count"]):
        await fleet.publish(f"task-{i % s['tasks']}", json.dumps(time.time()).encode(), final=False)
        await asyncio.sleep(s["interval"])
    return {"cpu": time.process_time() - cpu}


async def listen(fleet: RedisCoordinator, s: dict[str, Any]) -> dict[str, Any]:
    latencies: list[float] = []
    done = asyncio.Event()

    def receive(update: FleetUpdate) -> None:
        latencies.append(time.time() - json.loads(update.payload))
        if len(latencies) >= s["count"]:
            done.set()

    for i in range(s["tasks"]):
        await fleet.subscribe(f"task-{i}", receive)
    print("subscribed", flush=True)
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(done.wait(), s["duration"])
    return {"latencies": latencies}


SCENARIOS = {
    "rate": rate,
    "hold": hold,
    "take_over": take_over,
    "publish": publish,
    "listen": listen,
}


async def main(settings: dict[str, Any]) -> None:
    counter = WarningCounter()
    logging.getLogger("koodrive_tasks").addHandler(counter)
    fleet = RedisCoordinator(
        settings["url"],
        namespace=settings["namespace"],
        lease_ttl=settings.get("lease_ttl", 5.0),
        fallback_rate=settings.get("fallback_rate"),
    )
    try:
        if settings.get("connect_first", True):
            await fleet.reserve(None)  # connects (or finds Redis down), starts the channel
        print("ready", flush=True)
        if settings.get("await_go", True):  # the parent sends start times once all are ready
            settings.update(json.loads(await asyncio.to_thread(sys.stdin.readline)))
        result = await SCENARIOS[settings["scenario"]](fleet, settings)
        result.update(
            healthy=fleet.healthy,
            outages=counter.outages,
            recoveries=len(counter.recovered_at),
            recovered_at=counter.recovered_at,
            stats=attrs.asdict(fleet.stats),
            max_rss_kib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        )
    finally:
        await fleet.aclose()
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    asyncio.run(main(json.loads(sys.argv[1])))
