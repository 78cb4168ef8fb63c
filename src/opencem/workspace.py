"""Where opencem keeps its lake and settings: ``--workspace``, else ``$OPENCEM_WORKSPACE``,
else ``./opencem-workspace``.

    lake/       the Parquet lake and its manifest
    sources/    schema files of the workspace's own tables (``*.schema.yaml``)
    rejected/   copies of files that could not be read, each with a ``.reason.txt``
    dictionaries/  the workspace's own vendor counter dictionaries (``<vendor>.yaml``)
    indicators/    the workspace's own KPI/KQI/CEI definition files (``*.yaml``)
    truth/      a simulation's truth (``opencem truth load``), apart from the lake
    store.sqlite   the operational store (alerts, silences, actions, ...), unless
                   ``$OPENCEM_DATABASE_URL`` names another database
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import OpencemError
from .lake import MANIFEST, Lake, Manifest
from .schema import TABLES, Table
from .schema.user import load_user_tables

if TYPE_CHECKING:
    from .store import Database, Store

DEFAULT_WORKSPACE = "opencem-workspace"
ENV_VAR = "OPENCEM_WORKSPACE"


@dataclass(frozen=True)
class Workspace:
    root: Path

    @classmethod
    def resolve(cls, path: str | Path | None = None) -> Workspace:
        chosen = path or os.environ.get(ENV_VAR) or DEFAULT_WORKSPACE
        root = Path(chosen).expanduser().resolve()
        if root.exists() and not root.is_dir():
            raise NoWorkspace(f"the workspace {chosen} is a file, not a folder; point --workspace or "
                              f"${ENV_VAR} at a folder")
        return cls(root)

    @property
    def sources_dir(self) -> Path:
        return self.root / "sources"

    @property
    def rejected_dir(self) -> Path:
        return self.root / "rejected"

    @property
    def dictionaries_dir(self) -> Path:
        return self.root / "dictionaries"

    @property
    def truth_dir(self) -> Path:
        return self.root / "truth"

    @property
    def indicators_dir(self) -> Path:
        return self.root / "indicators"

    @property
    def store_file(self) -> Path:
        return self.root / "store.sqlite"

    def database(self) -> Database:
        """The operational store's database: ``$OPENCEM_DATABASE_URL``, else :attr:`store_file`."""
        from .store import database_for

        return database_for(self.store_file)

    def store(self) -> Store:
        """The operational store, opened (and created on first use); close it when done."""
        from .store import open_store

        return open_store(self.database())

    def definition_files(self) -> list[Path]:
        folder = self.indicators_dir
        return sorted(folder.glob("*.yaml")) if folder.is_dir() else []

    def tables(self) -> dict[str, Table]:
        """Canonical tables, the ones the workspace defines in ``sources/``, and the cube
        tables ``opencem evaluate`` wrote."""
        from .lake.derived import derived_tables

        sources = {**TABLES, **load_user_tables(self.sources_dir, TABLES)}
        return {**derived_tables(Manifest.load(self.root / "lake").derived), **sources}

    @property
    def lake(self) -> Lake:
        return Lake(self.root / "lake", self.tables())

    @property
    def exists(self) -> bool:
        """Whether anything was ever loaded here (the lake has a manifest)."""
        return (self.root / "lake" / MANIFEST).is_file()

    def require(self) -> Workspace:
        """This workspace, or a :class:`NoWorkspace` error if nothing was loaded into it yet."""
        if not self.exists:
            raise NoWorkspace(f"no opencem workspace in {self.root} (nothing has been loaded there); "
                              "load data with `opencem ingest PATH...` or `opencem demo`, or point "
                              f"--workspace or ${ENV_VAR} at an existing workspace")
        return self


class NoWorkspace(OpencemError):
    """A command that reads the lake, run where there is none."""
