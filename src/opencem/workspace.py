"""Where opencem keeps its lake and settings: ``--workspace``, else ``$OPENCEM_WORKSPACE``,
else ``./opencem-workspace``.

    lake/       the Parquet lake and its manifest
    sources/    schema files of the workspace's own tables (``*.schema.yaml``)
    rejected/   copies of files that could not be read, each with a ``.reason.txt``
    dictionaries/  the workspace's own vendor counter dictionaries (``<vendor>.yaml``)
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .ingest.lake import Lake
from .schema import TABLES, Table
from .schema.user import load_user_tables

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
    def sources_dir(self) -> Path:
        return self.root / "sources"

    @property
    def rejected_dir(self) -> Path:
        return self.root / "rejected"

    @property
    def dictionaries_dir(self) -> Path:
        return self.root / "dictionaries"

    def tables(self) -> dict[str, Table]:
        """Canonical tables plus the ones the workspace defines in ``sources/``."""
        return {**TABLES, **load_user_tables(self.sources_dir, TABLES)}

    @property
    def lake(self) -> Lake:
        return Lake(self.root / "lake", self.tables())
