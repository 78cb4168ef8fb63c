"""Fixtures of the indicator tests."""

from __future__ import annotations

import shutil

import pytest

from opencem.workspace import Workspace


@pytest.fixture
def ws(lake, tmp_path) -> Workspace:
    """A workspace over a copy of the session's simulated lake, with an empty indicators/."""
    ws = Workspace(tmp_path / "ws")
    shutil.copytree(lake.root, ws.root / "lake")
    (ws.root / "indicators").mkdir()
    return ws
