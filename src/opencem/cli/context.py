"""What a command gets from the ``opencem`` group: the workspace the global options chose.

Kept in the Click context (``ctx.obj``), never in module globals, so two invocations in one
process (tests, a notebook) cannot see each other's state.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from ..workspace import Workspace


@dataclass
class State:
    workspace_option: Path | None = None
    _workspace: Workspace | None = field(default=None, repr=False)

    @property
    def workspace(self) -> Workspace:
        """The workspace (opened on first use: it imports the lake and Arrow)."""
        if self._workspace is None:
            from ..workspace import Workspace

            self._workspace = Workspace.resolve(self.workspace_option)
        return self._workspace


def state(ctx: typer.Context) -> State:
    root = ctx.find_root()
    if not isinstance(root.obj, State):
        root.obj = State()
    return root.obj


def workspace(ctx: typer.Context) -> Workspace:
    return state(ctx).workspace
