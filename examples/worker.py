"""A worker that waits for many tasks, checkpoints on SIGTERM and resumes after a restart.

Run the whole story against the embedded emulator with one command::

    python examples/worker.py [--tasks 500] [--stops 2]

It starts an emulator with ``--tasks`` package tasks, then runs the worker as a child
process, stops it with SIGTERM ``--stops`` times at random moments and starts it again
each time; at the end it checks that every task's outcome was recorded exactly once.

The worker itself (``python examples/worker.py work URL TOKEN TASKS STATE RESULTS``):

- hands the tasks to ``kd.pool(max_waits=50)``, which runs at most 50 waits at once and
  makes the producer wait while it is full;
- records each outcome in ``RESULTS`` (JSON lines) keyed by task id, and skips a task
  already recorded: an idempotent consumer, because delivery after a restart is at
  least once (an outcome recorded just before the stop may come again);
- on SIGTERM stops reading, writes ``kd.checkpoint([pool])`` (running and queued tasks,
  not the ones delivered) and the tasks never handed to the pool to ``STATE``, and exits;
  on start it resumes from ``STATE`` if there is one.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import signal
import sys
import tempfile
import time
from pathlib import Path

from koodrive_tasks import BearerToken, KooDriveClient, TaskOutcome, TaskRef, TaskWaiter, WorkPool
from koodrive_tasks.emulator import Emulator, RandomScripts

SHARE_ID = "share-1"


# --- the worker -------------------------------------------------------------------------------


def load_recorded(results: Path) -> set[str]:
    """The task ids whose outcome the consumer has recorded (the idempotency key)."""
    if not results.exists():
        return set()
    return {json.loads(line)["task_id"] for line in results.read_text().splitlines() if line}


def load_state(tasks: Path, state: Path) -> tuple[str | None, list[str]]:
    """(checkpoint or None, task ids never handed to the pool) to start from."""
    if state.exists():
        saved = json.loads(state.read_text())
        return saved["checkpoint"], saved["unsent"]
    return None, json.loads(tasks.read_text())


def save_state(state: Path, checkpoint: str | None, unsent: list[str]) -> None:
    """Keep what the next run starts from (nothing: the work is done)."""
    if checkpoint is None:
        state.unlink(missing_ok=True)
    else:
        state.write_text(json.dumps({"checkpoint": checkpoint, "unsent": unsent}))


async def work(url: str, token: str, tasks: Path, state: Path, results: Path) -> int:
    """Wait for every task listed in ``tasks`` not yet recorded in ``results``."""
    recorded = load_recorded(results)
    checkpoint, unsent = load_state(tasks, state)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    print("ready", flush=True)  # the driver stops us only from now on
    async with KooDriveClient(url, auth=BearerToken(token), allow_insecure_urls=True) as kd:
        todo: list[TaskRef | TaskWaiter] = [
            *(kd.resume(checkpoint) if checkpoint else ()),
            *(TaskRef(SHARE_ID, task_id) for task_id in unsent),
        ]
        sent = 0
        with open(results, "a") as out:  # noqa: ASYNC230 - a small local file, line-buffered
            async with kd.pool(max_waits=50) as pool:

                async def produce(pool: WorkPool = pool) -> None:
                    nonlocal sent
                    for task in todo:
                        await pool.submit(task)
                        sent += 1
                    pool.finish()

                async def consume(pool: WorkPool = pool) -> None:
                    async for outcome in pool:
                        record(outcome)

                def record(outcome: TaskOutcome) -> None:
                    if outcome.ref.task_id in recorded:
                        return  # delivered again after a restart: already done
                    out.write(json.dumps(outcome.to_dict()) + "\n")
                    out.flush()
                    recorded.add(outcome.ref.task_id)

                workers = [asyncio.ensure_future(produce()), asyncio.ensure_future(consume())]
                stopping = asyncio.ensure_future(stop.wait())
                await asyncio.wait([workers[1], stopping], return_when=asyncio.FIRST_COMPLETED)
                for task in (*workers, stopping):
                    task.cancel()
                await asyncio.gather(*workers, stopping, return_exceptions=True)
                if stop.is_set():
                    unsent = [
                        (t.ref if isinstance(t, TaskWaiter) else t).task_id for t in todo[sent:]
                    ]
                    save_state(state, kd.checkpoint([pool]), unsent)
                    return 143
    save_state(state, None, [])
    return 0


# --- the driver: emulator, worker, SIGTERM, restart, check ------------------------------------


async def drive(task_count: int, stops: int, seed: int, workdir: Path, scale: float) -> int:
    """Run the worker to the end with ``stops`` SIGTERMs; check every outcome came once."""
    rng = random.Random(seed)
    scripts = RandomScripts(
        min_duration_s=1 * scale,
        max_duration_s=20 * scale,
        median_duration_s=4 * scale,
        max_pending_s=1 * scale,
        cancel_rate=0.05,
    )
    async with Emulator(seed=seed, random_scripts=scripts) as emu:
        ids = [emu.add_task(share_id=SHARE_ID) for _ in range(task_count)]
        tasks, state, results = (
            workdir / "tasks.json",
            workdir / "state.json",
            workdir / "results.jsonl",
        )
        tasks.write_text(json.dumps(ids))
        for path in (state, results):
            path.unlink(missing_ok=True)
        command = [
            sys.executable, __file__, "work", emu.url, emu.token, str(tasks), str(state), str(results)
        ]  # fmt: skip
        runs = 0
        while True:
            runs += 1
            worker = await asyncio.create_subprocess_exec(*command, stdout=asyncio.subprocess.PIPE)
            if worker.stdout is not None:
                await worker.stdout.readline()  # "ready": its SIGTERM handler is in place
            if runs <= stops:
                await asyncio.sleep(rng.uniform(1.0, 4.0) * max(scale, 0.3))
                if worker.returncode is None:
                    worker.send_signal(signal.SIGTERM)
            code = await worker.wait()
            print(
                f"worker run {runs}: exit {code}, {len(load_recorded(results))}/{task_count} recorded"
            )
            if code == 0:
                break
            if code != 143 or runs > stops + 5:
                print("the worker failed", file=sys.stderr)
                return 1
    lines = [json.loads(line) for line in results.read_text().splitlines() if line]
    outcomes: dict[str, int] = {}
    for line in lines:
        outcomes[line["outcome"]] = outcomes.get(line["outcome"], 0) + 1
    ids_recorded = [line["task_id"] for line in lines]
    once = len(ids_recorded) == len(set(ids_recorded)) == task_count and set(ids_recorded) == set(
        ids
    )
    print(f"{task_count} tasks, {runs} worker runs, outcomes {outcomes}")
    print(
        "every outcome recorded exactly once" if once else "MISMATCH: some outcome missing or twice"
    )
    return 0 if once else 1


def main() -> int:
    """Drive the demo, or run one worker (``work ...``)."""
    if len(sys.argv) > 1 and sys.argv[1] == "work":
        url, token, tasks, state, results = sys.argv[2:7]
        return asyncio.run(work(url, token, Path(tasks), Path(state), Path(results)))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=500)
    parser.add_argument("--stops", type=int, default=2, help="SIGTERMs sent to the worker")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--time-scale", type=float, default=1.0, help="shrink task durations (0.2 = 5x faster)"
    )
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()) / "kd-worker")
    args = parser.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    code = asyncio.run(drive(args.tasks, args.stops, args.seed, args.dir, args.time_scale))
    print(f"{time.monotonic() - started:.1f} s")
    return code


if __name__ == "__main__":
    sys.exit(main())
