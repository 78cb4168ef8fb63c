"""A simulated operator, simulated and ingested once per configuration and simulator version,
for the benchmarks that score on it (cei_separation.py, leakage.py)."""

from __future__ import annotations

import argparse
import hashlib
import shutil
import sys
import time
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "opencem"
# What decides the lake: a change to any of these rebuilds it (a stale lake from an older
# simulator would score the old world silently).
INPUTS = ("simulate", "schema", "ingest", "geo.py")


def operator_args(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--subscribers", type=int, default=10_000)
    ap.add_argument("--days", type=int, default=2)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--fault-rate", type=float, default=1.0,
                    help="multiplier on the number of faults (more instances of each to score)")


def simulator_version() -> str:
    digest = hashlib.sha256()
    for name in INPUTS:
        for path in sorted((SRC / name).rglob("*.py")) if (SRC / name).is_dir() else [SRC / name]:
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def simulated_workspace(workdir: Path, args: argparse.Namespace):
    """The workspace of the operator ``args`` describe (its truth loaded into the truth area),
    built unless this simulator built it."""
    from opencem.ingest.load import ingest
    from opencem.simulate.config import SimConfig
    from opencem.simulate.run import simulate
    from opencem.simulate.truth import load_truth
    from opencem.workspace import Workspace

    rate = "" if args.fault_rate == 1 else f"-rate{args.fault_rate:g}"
    stamp = workdir / f"lake-{args.subscribers}-{args.days}-{args.seed}{rate}"
    version = simulator_version()
    done = stamp / "done"
    if not done.exists() or done.read_text() != version:
        shutil.rmtree(stamp, ignore_errors=True)
        stamp.mkdir(parents=True)
        started = time.perf_counter()
        cfg = SimConfig(subscribers=args.subscribers, days=args.days, seed=args.seed, fault_rate=args.fault_rate)
        simulate(cfg, stamp / "sim")
        ingest(Workspace(stamp).lake, [stamp / "sim"])
        load_truth(stamp / "sim" / "truth", Workspace(stamp).truth_dir)
        print(f"simulated and ingested {args.subscribers:,} subscribers x {args.days} days in "
              f"{time.perf_counter() - started:.0f} s", file=sys.stderr)
        done.write_text(version)
    return Workspace(stamp)
