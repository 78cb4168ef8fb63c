"""Running the ``opencem`` command in-process, and workspaces to run it on."""

from __future__ import annotations

import shutil

import pytest
from typer.testing import CliRunner

from opencem.cli.main import app
from opencem.workspace import Workspace


def cli(*args: str, ws: Workspace | None = None, env: dict | None = None):
    """``opencem [--workspace WS] ARGS``; the result has exit_code, stdout and stderr apart."""
    prefix = ["--workspace", str(ws.root)] if ws is not None else []
    return CliRunner().invoke(app, [*prefix, *map(str, args)], env=env, catch_exceptions=False)


@pytest.fixture(scope="module")
def loaded(lake, tmp_path_factory) -> Workspace:
    """A workspace holding the standard simulated operator (a copy: tests may add to it)."""
    ws = Workspace(tmp_path_factory.mktemp("cli-ws"))
    shutil.copytree(lake.root, ws.root / "lake")
    return ws


@pytest.fixture(scope="module")
def evaluated(loaded) -> Workspace:
    """``loaded`` with one cube evaluated (the segment-day cube: small and quick)."""
    out = cli("evaluate", "--cube", "cube_segment_day", ws=loaded)
    assert out.exit_code == 0, out.output
    return loaded
