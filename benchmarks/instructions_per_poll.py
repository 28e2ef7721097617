"""Client CPU instructions per poll, counted by valgrind: a cross-check that ignores load.

``bench_cpu_per_poll.py`` times CPU, which a shared VM makes noisy. This counts the
instructions the client process executes (valgrind's callgrind) for the same two calls,
``kd.get_share_task()`` and a raw aiohttp POST + ``json()``, against the same loopback
server in another process (not counted). Each client runs in its own process at two
sizes, 300 and 1,300 requests; the difference divided by 1,000 is the cost of one
request, with start-up and warm-up cancelled out. Counts still vary by about 1 % from
run to run (how the event loop happens to meet the socket). About 2 minutes.

Run: ``python benchmarks/instructions_per_poll.py`` (needs ``valgrind`` on the PATH).
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
import sys

import aiohttp
from bench_cpu_per_poll import DETAIL_PATH, SHARE_ID, TASK_ID, server_process

from koodrive_tasks import BearerToken, KooDriveClient, Limits

SIZES = (300, 1300)
GOAL_RATIO = 1.15


async def requests(kind: str, count: int, base_url: str) -> None:
    """The measured process: ``count`` sequential requests of one client."""
    body = json.dumps({"taskId": TASK_ID, "shareId": SHARE_ID}, separators=(",", ":")).encode()
    headers = {"Content-Type": "application/json", "Authorization": "Bearer t"}
    async with (
        aiohttp.ClientSession() as session,
        KooDriveClient(
            base_url, auth=BearerToken("t"), allow_insecure_urls=True, limits=Limits(rate=None)
        ) as kd,
    ):
        for _ in range(count):
            if kind == "raw":
                async with session.post(base_url + DETAIL_PATH, data=body, headers=headers) as r:
                    await r.json()
            else:
                await kd.get_share_task(SHARE_ID, TASK_ID)


def instructions(kind: str, count: int, base_url: str) -> int:
    result = subprocess.run(  # noqa: S603 - valgrind on our own interpreter and file
        [  # noqa: S607 - valgrind from the PATH, checked in main()
            "valgrind",
            "--tool=callgrind",
            "--callgrind-out-file=/dev/null",
            sys.executable,
            __file__,
            "--requests",
            kind,
            str(count),
            base_url,
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    found = re.search(r"Collected : (\d+)", result.stderr)
    if found is None:
        raise RuntimeError(f"no instruction count in valgrind's output:\n{result.stderr[-2000:]}")
    return int(found.group(1))


def main() -> None:
    if shutil.which("valgrind") is None:
        sys.exit("valgrind is not installed: this cross-check needs it")
    per_request = {}
    with server_process() as base_url:
        for kind in ("raw", "ours"):
            small, large = (instructions(kind, n, base_url) for n in SIZES)
            per_request[kind] = (large - small) / (SIZES[1] - SIZES[0])
    ratio = per_request["ours"] / per_request["raw"]
    print(f"raw aiohttp + json():   {per_request['raw']:>9,.0f} instructions per request")
    print(f"ours (get_share_task):  {per_request['ours']:>9,.0f} instructions per request")
    print(f"ratio: {ratio:.3f}x (goal of the CPU benchmark: <= {GOAL_RATIO}x)")


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--requests":
        asyncio.run(requests(sys.argv[2], int(sys.argv[3]), sys.argv[4]))
    else:
        main()
