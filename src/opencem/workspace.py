"""Where opencem keeps its lake and settings: ``--workspace``, else ``$OPENCEM_WORKSPACE``,
else ``./opencem-workspace``."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .ingest.lake import Lake

DEFAULT_WORKSPACE = "opencem-workspace"
ENV_VAR = "OPENCEM_WORKSPACE"


@dataclass(frozen=True)
class Workspace:
    root: Path

    @classmethod
    def resolve(cls, path: str | Path | None = None) -> Workspace:
        chosen = path or os.environ.get(ENV_VAR) or DEFAULT_WORKSPACE
        return cls(Path(chosen).expanduser().resolve())

    @property
    def lake(self) -> Lake:
        return Lake(self.root / "lake")

    def exists(self) -> bool:
        return (self.root / "lake" / "_manifest.json").exists()
