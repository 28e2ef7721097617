"""Test support for the web tests: an SSE parser and client, scripted tasks, the examples."""

from __future__ import annotations

import importlib.util
import json
import sys
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import aiohttp
from aioresponses import CallbackResult
from kd_fakes import PACKAGE_URL, shape_b, task_id_of

from koodrive_tasks.testing import VirtualClock

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"


@dataclass(frozen=True)
class Event:
    """One dispatched event (a comment or a retry field is an Event too, named so)."""

    name: str
    data: Any = None
    id: str | None = None

    @property
    def json(self) -> dict[str, Any]:
        assert isinstance(self.data, dict)
        return self.data


def parse(text: str) -> list[Event]:
    """Parse an event stream as a browser would, keeping comments and retry fields.

    Comments come out as ``Event(":", text)`` and retry fields as
    ``Event("retry", milliseconds)``; data is decoded as JSON.
    """
    events: list[Event] = []
    name, data, event_id = "message", [], None
    for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        if line == "":
            if data:
                events.append(Event(name, json.loads("\n".join(data)), event_id))
            name, data, event_id = "message", [], None
            continue
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "":
            events.append(Event(":", value))
        elif field == "event":
            name = value
        elif field == "data":
            data.append(value)
        elif field == "id":
            event_id = value
        elif field == "retry":
            events.append(Event("retry", int(value)))
        else:
            raise AssertionError(f"unknown field in {line!r}")
    return events


def events_of(chunks: Sequence[bytes]) -> list[Event]:
    return parse(b"".join(chunks).decode())


async def read_events(response: aiohttp.ClientResponse) -> AsyncIterator[Event]:
    """The events of a streaming response, as they arrive."""
    block: list[str] = []
    async for raw in response.content:
        line = raw.decode().rstrip("\r\n")
        block.append(line)
        if line == "":
            for event in parse("\n".join(block) + "\n"):
                yield event
            block = []


class ScriptedTasks:
    """A mocked taskDetail: each task's state as a function of virtual time.

    ``add(task_id, (0, 0, 0), (5, 1, 20), (9, 2, 100))`` means pending from t=0,
    processing at 20 % from t=5, completed from t=9 (all files succeeded, with a URL).
    """

    def __init__(self, clock: VirtualClock) -> None:
        self.clock = clock
        self.steps: dict[str, list[tuple[float, int, int, int]]] = {}
        self.polls: Counter[str] = Counter()

    def add(self, task_id: str, *steps: tuple[float, int, int], result: int = 1) -> None:
        self.steps[task_id] = [
            (t, status, progress, result if status == 2 else 0) for t, status, progress in steps
        ]

    def linear(self, task_id: str, *, start: float, end: float, result: int = 1) -> None:
        """Pending until ``start``, then 10 % steps, completed at ``end``."""
        span = end - start
        steps = [(0.0, 0, 0)] + [(start + span * k / 10, 1, 10 * k) for k in range(10)]
        self.add(task_id, *steps, (end, 2, 100), result=result)

    def __call__(self, url: object, **kwargs: Any) -> CallbackResult:
        task_id = task_id_of(kwargs)
        self.polls[task_id] += 1
        now = self.clock.monotonic()
        _, status, progress, result = [s for s in self.steps[task_id] if s[0] <= now][-1]
        url_ = PACKAGE_URL if status == 2 and result in (1, 2) else ""
        return CallbackResult(
            payload=shape_b(status, progress, result=result, url=url_, task_id=task_id)
        )


def load_example(name: str) -> ModuleType:
    """Import ``examples/<name>.py`` (the examples are scripts, not a package)."""
    module_name = f"koodrive_example_{name}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, EXAMPLES / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module
