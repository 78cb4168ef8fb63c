"""Two small simulated operators of the shipped benchmark scenario: one to train the learned
layer on, one to score on (never trained on), each with its truth read the way the command line
reads it and handed to diagnosis as plain tables."""

from __future__ import annotations

from pathlib import Path

import pytest

from opencem.ingest.load import ingest
from opencem.simulate.config import SimConfig
from opencem.simulate.run import simulate
from opencem.simulate.truth import load_truth
from opencem.workspace import Workspace

# At fault rate 4 a 2,500-subscriber day holds every fault type (at least one of each is drawn).
TRAIN = SimConfig(subscribers=2500, days=1, seed=41, fault_rate=4)
SCORE = SimConfig(subscribers=2500, days=1, seed=43, fault_rate=4)


def _workspace(config: SimConfig, root: Path) -> Workspace:
    out = simulate(config, root / "sim").out_dir
    ws = Workspace(root / "ws")
    ingest(ws.lake, [out])
    load_truth(out / "truth", ws.truth_dir)
    return ws


@pytest.fixture(scope="session")
def train_ws(tmp_path_factory) -> Workspace:
    return _workspace(TRAIN, tmp_path_factory.mktemp("diag-train"))


@pytest.fixture(scope="session")
def score_ws(tmp_path_factory) -> Workspace:
    return _workspace(SCORE, tmp_path_factory.mktemp("diag-score"))


def truth_tables(ws: Workspace):
    from opencem.cli.diagnose import read_truth

    return read_truth(ws.truth_dir)
