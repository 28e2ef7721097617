"""Run every benchmark, print one summary table, write ``benchmarks/results/latest.json``.

Each benchmark module exposes ``run(quick: bool) -> dict`` whose ``goals`` entry lists
the verdicts it printed. A benchmark that is missing or fails is reported and skipped;
the others still run.

Run: ``python benchmarks/run_all.py [--quick]``.
"""

from __future__ import annotations

import argparse
import importlib
import time
import traceback

import _common

BENCHMARKS = [
    "bench_polling",
    "bench_cpu_per_poll",
    "bench_throughput",
    "bench_scale",
    "bench_stampede",
]


def _goals(result: object) -> list[dict[str, object]]:
    """The goal verdicts of a result: a ``goals`` list, or one ``goal`` text + ``goal_met``."""
    if not isinstance(result, dict):
        return []
    if "goals" in result:
        return list(result["goals"])
    if "goal_met" in result:
        return [{"label": str(result.get("goal", "goal")), "met": bool(result["goal_met"])}]
    return []


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller, faster runs")
    args = parser.parse_args()
    machine = _common.machine_info()
    print("machine: " + ", ".join(f"{k}={v}" for k, v in machine.items()))
    runs: dict[str, object] = {}
    for name in BENCHMARKS:
        print(f"\n=== {name} {'(quick)' if args.quick else ''}".rstrip())
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as error:
            if error.name != name:
                raise
            print(f"skipped: benchmarks/{name}.py does not exist yet")
            runs[name] = {"status": "missing"}
            continue
        started = time.perf_counter()
        try:
            result = module.run(args.quick)
            # A benchmark whose run() only returns figures prints them with report().
            if callable(getattr(module, "report", None)):
                print(module.report(result))
        except Exception:
            traceback.print_exc()
            runs[name] = {"status": "failed", "error": traceback.format_exc(limit=3)}
            continue
        runs[name] = {
            "status": "ok",
            "seconds": round(time.perf_counter() - started, 1),
            "result": result,
        }
    rows = []
    for name, entry in runs.items():
        assert isinstance(entry, dict)
        if entry["status"] != "ok":
            rows.append([name, entry["status"], "", "", ""])
            continue
        goals = _goals(entry["result"])
        if not goals:
            rows.append([name, "ok (no goals reported)", "", "", f"{entry['seconds']:.0f}"])
        rows.extend(
            [
                name,
                g["label"],
                f"{g['value']:.3g}{g['unit']}" if "value" in g else "see above",
                f"<= {g['limit']:g}{g['unit']}" if "limit" in g else "",
                "met" if g["met"] else "NOT met",
            ]
            for g in goals
        )
    _common.print_table(
        "Summary" + (" (quick)" if args.quick else ""),
        ["benchmark", "goal", "measured", "goal", "verdict"],
        rows,
    )
    _common.write_json(
        _common.RESULTS_DIR / "latest.json",
        {"machine": machine, "quick": args.quick, "runs": runs},
    )


if __name__ == "__main__":
    main()
