"""A simulated day streamed to a landing folder, and the same day evaluated in batch."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

OPENCEM = [sys.executable, "-m", "opencem"]
STREAMED = ["cube_cell_15min", "cube_city_15min", "cube_program_source_15min", "cube_cdn_node_15min"]


@pytest.fixture(scope="session")
def day(tmp_path_factory) -> Path:
    """SIM (the batch output, each record once) and LAND (its stream: duplicates, out of order)."""
    root = tmp_path_factory.mktemp("streamed-day")
    subprocess.run([*OPENCEM, "simulate", "--subscribers", "1000", "--days", "1", "--out", str(root / "sim"),
                    "--stream", "--to", str(root / "land"), "--no-wait", "--every", "900"],
                   check=True, capture_output=True)
    return root


@pytest.fixture(scope="session")
def batch(day) -> Path:
    """A workspace holding the batch output of the day (tables and PM files), its streamed cubes evaluated."""
    from opencem.indicators.catalog import load_catalog
    from opencem.indicators.evaluate import evaluate
    from opencem.ingest.load import ingest
    from opencem.workspace import Workspace

    ws = Workspace.resolve(day / "batch-ws")
    report = ingest(ws.lake, [day / "sim" / "tables", day / "sim" / "pm"])
    assert report.rows().get("pm_counters"), "the day should have PM counters"
    ws = Workspace.resolve(day / "batch-ws")
    evaluate(ws.lake, load_catalog(ws.tables(), []), only=STREAMED)
    return ws.root
