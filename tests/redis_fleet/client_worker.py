"""One process of a client-level test fleet: a ``KooDriveClient`` with a ``RedisCoordinator``.

Started by ``tests/redis_fleet/test_client_processes.py`` and ``benchmarks/bench_fleet.py``
(through ``tests/fleet_processes.py``). It reads one JSON line of settings from stdin,
prints ``ready`` once its client exists, reads one JSON line of start times, then, from
``start_at``, watches every task of ``tasks`` with ``kd.watch_many`` until all ended or
``until`` (wall clock) came; then it prints one JSON line with what it saw and ends.
Without ``redis`` in the settings the client has no coordinator (a baseline).

Settings: ``url``, ``token``, ``share``, ``tasks``, ``name`` (the client's agent name:
the emulator logs it), ``redis``, ``namespace``, ``lease_ttl``, ``fallback_rate``,
``command_timeout``, ``rate``, ``burst``, ``max_in_flight``, ``request_timeout``,
``policy`` (``PollPolicy`` fields), ``sample_every`` (record when each n-th task's
observations were seen), ``connect_first`` (book one fleet slot before ``ready``).
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

from koodrive_tasks import BearerToken, KooDriveClient, Limits, PollPolicy, TaskRef
from koodrive_tasks.fleet import RedisCoordinator


class FleetLog(logging.Handler):
    """Counts the coordinator's outage warnings and recoveries."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.outages = 0
        self.recovered_at: list[float] = []
        self.other: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if "unreachable or failing" in text:
            self.outages += 1
            if len(self.other) < 20:
                self.other.append(text[:300])
        elif "answers again" in text:
            self.recovered_at.append(time.time())
        elif len(self.other) < 20:
            self.other.append(text[:300])


def read_line() -> dict[str, Any]:
    line = sys.stdin.readline()
    if not line:
        raise SystemExit("no settings on stdin")
    return dict(json.loads(line))


async def run(s: dict[str, Any]) -> dict[str, Any]:
    log = FleetLog()
    logging.getLogger("koodrive_tasks").addHandler(log)
    coordinator = None
    if s.get("redis"):
        coordinator = RedisCoordinator(
            s["redis"],
            namespace=s["namespace"],
            lease_ttl=s.get("lease_ttl", 5.0),
            fallback_rate=s.get("fallback_rate"),
            command_timeout=s.get("command_timeout", 1.0),
        )
    limits = Limits(
        rate=s.get("rate"), burst=s.get("burst", 1), max_in_flight=s.get("max_in_flight", 64)
    )
    kd = KooDriveClient(
        s["url"],
        auth=BearerToken(s["token"]),
        allow_insecure_urls=True,
        agent_name=s["name"],
        limits=limits,
        policy=PollPolicy(**s.get("policy", {})),
        request_timeout=s.get("request_timeout", 30.0),
        coordinator=coordinator,
    )
    refs = [TaskRef(s["share"], task_id) for task_id in s["tasks"]]
    sample_every = s.get("sample_every", 0)
    sampled = set(refs[::sample_every]) if sample_every else set()
    seen: dict[str, float] = {}
    samples: list[list[float]] = []
    outcomes: dict[str, int] = {}
    try:
        if coordinator is not None and s.get("connect_first", True):
            await coordinator.reserve(None)  # connects, starts the fleet channel
        print("ready", flush=True)
        s.update(await asyncio.to_thread(read_line))
        await asyncio.sleep(max(0.0, s["start_at"] - time.time()))

        def sample() -> None:
            round_trips = 0 if coordinator is None else coordinator.stats.round_trips
            samples.append([time.time(), kd.stats.polls, round_trips, time.process_time()])

        async def sampler() -> None:
            while True:
                sample()
                await asyncio.sleep(s.get("sample_interval", 1.0))

        sampling = asyncio.create_task(sampler())
        started = time.time()
        cpu = time.process_time()
        polls_before = kd.stats.polls
        ended = 0

        async def watch() -> None:
            nonlocal ended
            async with kd.watch_many(refs, timeout=None) as stream:
                async for ref, update in stream:
                    if ref in sampled:
                        key = f"{ref.task_id} {int(update.status)} {update.progress}"
                        seen.setdefault(key, time.time())
                    if update.status.is_terminal:
                        ended += 1
                for outcome in stream.outcomes.values():
                    outcomes[outcome.kind] = outcomes.get(outcome.kind, 0) + 1

        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(watch(), max(0.0, s["until"] - time.time()))
        sampling.cancel()
        sample()
        result = {
            "name": s["name"],
            "started": started,
            "ended_at": time.time(),
            "ended": ended,
            "outcomes": outcomes,
            "polls": kd.stats.polls - polls_before,
            "requests": kd.stats.requests,
            "rate_limited": kd.stats.rate_limited,
            "cpu": time.process_time() - cpu,
            "samples": samples,
            "seen": seen,
            "outages": log.outages,
            "recovered_at": log.recovered_at,
            "other_warnings": log.other,
            "max_rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        }
        if coordinator is not None:
            result.update(
                healthy=coordinator.healthy,
                origin=coordinator.origin,
                fleet=attrs.asdict(coordinator.stats),
            )
    finally:
        await kd.close()
        if coordinator is not None:
            await coordinator.aclose()
    return result


def main() -> None:
    settings = read_line()
    result = asyncio.run(run(settings))
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
