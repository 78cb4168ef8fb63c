"""Start-up time of the ``opencem`` command against a bare Python, measured in the same run.

    .venv/bin/python benchmarks/cli_startup.py [--repeat 15]

Each case is a fresh process timed from spawn to exit; the cases run interleaved, --repeat
times, and the median and best are reported, with each median as a ratio to ``python -c pass``
(the floor no command can beat) from the same rounds, since this machine's timings drift.
Target (issue 9): ``--help``, ``qoe web`` and ``qoe voice`` under 0.25 s. ``sql`` also opens the
lake and DuckDB; it runs on a one-table workspace made in benchmarks/out/cli_startup/.
Results go to benchmarks/out/cli_startup/results.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
PY = sys.executable
TARGET_S = 0.25


def cases(workspace: Path) -> dict[str, list[str]]:
    cli = [PY, "-m", "opencem"]
    return {
        "python -c pass": [PY, "-c", "pass"],
        "opencem --help": [*cli, "--help"],
        "opencem qoe web": [*cli, "qoe", "web", "--page-load-ms", "2500"],
        "opencem qoe voice": [*cli, "qoe", "voice", "--one-way-delay-ms", "150"],
        "opencem qoe voice --json": [*cli, "qoe", "voice", "--json"],
        "opencem sql": [*cli, "-w", str(workspace), "sql", "SELECT count(*) FROM cells", "--format", "csv"],
    }


def make_workspace(folder: Path) -> Path:
    """A workspace holding a small cells table, loaded with opencem itself."""
    ws = folder / "ws"
    if not (ws / "lake" / "_manifest.json").exists():
        cells = folder / "cells.csv"
        cells.write_text("cell_id,site_id,technology,vendor\n" +
                         "".join(f"C{i},S{i // 3},4G,alpha\n" for i in range(300)))
        subprocess.run([PY, "-m", "opencem", "-w", str(ws), "ingest", str(cells), "--as-of", "2026-11-02"],
                       check=True, capture_output=True)
    return ws


def time_once(argv: list[str]) -> float:
    started = time.perf_counter()
    proc = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    elapsed = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed: {proc.stderr.decode()[-500:]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--workdir", type=Path, default=HERE / "out" / "cli_startup")
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    runs = cases(make_workspace(args.workdir))
    for argv in runs.values():  # warm the file cache and .pyc files
        time_once(argv)
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(args.repeat):
        for name, argv in runs.items():
            times[name].append(time_once(argv))
    floor = statistics.median(times["python -c pass"])
    results = {}
    print(f"{'case':28} {'median s':>9} {'best s':>8} {'x python':>9}  target")
    for name, values in times.items():
        median = statistics.median(values)
        target = "" if name in ("python -c pass", "opencem sql") else \
            ("ok" if median < TARGET_S else f"over {TARGET_S} s")
        results[name] = {"median_s": median, "best_s": min(values), "ratio_to_python": median / floor}
        print(f"{name:28} {median:9.3f} {min(values):8.3f} {median / floor:9.1f}  {target}")
    (args.workdir / "results.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
