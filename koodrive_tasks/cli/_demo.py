"""``koodrive-tasks demo``: the whole library against the embedded emulator, in under a minute."""

from __future__ import annotations

import io
import json
import statistics
import time
import zipfile
from typing import TextIO

import aiohttp

from .._auth import BearerToken
from .._client import KooDriveClient
from .._models import Ref, TaskRef, TaskType
from .._outcome import TaskOutcome
from .._policy import PollPolicy
from ..emulator import Emulator, Outcome, RandomScripts, TaskScript
from ._outcomes import classify
from ._render import JsonLines, Renderer

SHARE_ID = "demo-share"
CONTAINER_ID = "demo-space"


async def run_demo(
    *, tasks: int, seed: int, time_scale: float, renderer: Renderer, out: TextIO
) -> int:
    """Create ``tasks`` tasks on an in-process emulator, follow them, check one package.

    Durations are drawn log-normally between 2 s and 60 s (times ``time_scale``); one
    task is canceled and one partially fails, so every outcome shows.

    Returns:
        0 when every outcome matched its script and the package checked out, else 1.
    """
    scripts = RandomScripts(
        min_duration_s=2 * time_scale,
        max_duration_s=45 * time_scale,
        median_duration_s=10 * time_scale,
        max_pending_s=2 * time_scale,
    )
    # The poll policy scales with the demo so a fast run still shows polling at work.
    policy = PollPolicy.backoff(
        initial_delay=0.5 * time_scale,
        factor=1.5,
        max_delay=8 * time_scale,
        timeout=300 * time_scale + 30,
    )
    async with Emulator(seed=seed, random_scripts=scripts) as emu:
        emu.queue_script(
            TaskScript(
                pending_s=0.5 * time_scale,
                duration_s=20 * time_scale,
                cancel_after_s=8 * time_scale,
            ),
            TaskScript(
                pending_s=0.5 * time_scale,
                duration_s=6 * time_scale,
                outcome=Outcome.PARTIALLY_FAILED,
            ),
        )
        expected = {0: "canceled", 1: "partially_failed"}
        async with KooDriveClient(
            emu.url, auth=BearerToken(emu.token), allow_insecure_urls=True, policy=policy
        ) as kd:
            refs: list[TaskRef] = []
            files: dict[str, list[str]] = {}
            created_at: dict[str, float] = {}
            for index in range(tasks):
                file_ids = [f"file-{index}-{n}" for n in range(1 + index % 4)]
                task_id = await kd.create_share_task(
                    SHARE_ID,
                    file_ids,
                    container_id=CONTAINER_ID,
                    task_type=TaskType.PACKAGE_DOWNLOAD,
                    zip_name=f"demo-{index}.zip",
                )
                created_at[task_id] = time.monotonic()
                files[task_id] = file_ids
                refs.append(TaskRef(SHARE_ID, task_id))
            seen_end: dict[str, float] = {}
            async with kd.watch_many(refs) as stream:
                async for ref, update in stream:
                    renderer.update(ref.task_id, update)
                    if update.status.is_terminal:
                        seen_end[ref.task_id] = time.monotonic()
            words = []
            for ref in refs:
                word, _code, detail = classify(stream.outcomes[ref])
                renderer.finish(ref.task_id, word, detail)
                words.append(word)
            renderer.close()
            mismatched = [i for i, word in expected.items() if i < len(words) and words[i] != word]
            checked = await _check_one_package(stream.outcomes, files, out)
        lags = [
            seen_end[task_id] - (created_at[task_id] + ended)
            for task_id in seen_end
            if (ended := emu.snapshot(task_id).ended_after_s) is not None
        ]
        polls = emu.stats.detail_polls
    _summary(out, words, polls, lags, checked, as_json=isinstance(renderer, JsonLines))
    ok = not mismatched and checked is not None
    if mismatched:
        out.write(f"unexpected outcomes for scripted tasks {mismatched}\n")
    return 0 if ok else 1


async def _check_one_package(
    outcomes: dict[Ref, TaskOutcome], files: dict[str, list[str]], out: TextIO
) -> str | None:
    """Download the first finished package and check its zip lists the task's files."""
    for ref, outcome in outcomes.items():
        url, info = outcome.download_url, outcome.info
        if not url or info is None or info.failed_files:
            continue
        async with aiohttp.ClientSession() as session, session.get(url) as response:
            response.raise_for_status()
            data = await response.read()
        names = sorted(zipfile.ZipFile(io.BytesIO(data)).namelist())
        wanted = sorted(files[ref.task_id])
        if names != wanted:
            out.write(f"package of {ref.task_id} lists {names}, expected {wanted}\n")
            return None
        return f"{ref.task_id}: {len(data)} bytes, {len(names)} entries, matches its files"
    out.write("no finished package to check\n")
    return None


def _summary(
    out: TextIO,
    words: list[str],
    polls: int,
    lags: list[float],
    checked: str | None,
    *,
    as_json: bool,
) -> None:
    counts = {word: words.count(word) for word in dict.fromkeys(words)}
    if as_json:  # JSON-lines mode stays machine-readable to the last line
        summary = {
            "event": "summary",
            "tasks": len(words),
            "outcomes": counts,
            "polls_sent": polls,
            "mean_detection_lag_s": round(statistics.fmean(lags), 3) if lags else None,
            "p95_detection_lag_s": round(_p95(lags), 3) if lags else None,
            "package_check": checked,
        }
        out.write(json.dumps(summary) + "\n")
        out.flush()
        return
    rows = [
        ("tasks", str(len(words))),
        *((f"  {word.replace('_', ' ')}", str(n)) for word, n in counts.items()),
        ("polls sent", str(polls)),
        ("polls per task", f"{polls / max(1, len(words)):.1f}"),
        ("mean detection lag", f"{statistics.fmean(lags):.2f} s" if lags else "n/a"),
        ("p95 detection lag", f"{_p95(lags):.2f} s" if lags else "n/a"),
        ("package check", checked or "FAILED"),
    ]
    width = max(len(name) for name, _ in rows)
    out.write("\n" + "\n".join(f"{name:<{width}}  {value}" for name, value in rows) + "\n")
    out.flush()


def _p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
