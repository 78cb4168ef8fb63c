"""Output folders opencem replaces: never a user's own.

A command that fills a folder from scratch (``opencem simulate --out DIR``, the demo's
simulated operator) first writes a marker file naming the command. Later runs may replace
a folder only if it is new, empty, or carries that marker; anything else needs ``force``,
and even then the file system root, the home folder, the current folder and its parents
are refused, whatever the flag says.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from .errors import FolderInUse


def replace_folder(path: Path, marker: str, written_by: str, force: bool = False) -> Path:
    """Empty ``path`` (creating it) so ``written_by`` can fill it, and mark it as its own.

    Raises :class:`FolderInUse` if the folder holds anything not marked with ``marker``
    (unless ``force``) or is one no command may delete."""
    path = Path(path).expanduser()
    folder = path.resolve()
    if folder.exists() and not folder.is_dir():
        raise FolderInUse(f"{path} is a file, not a folder; choose a new folder for {written_by}")
    cwd, home = Path.cwd().resolve(), Path.home().resolve()
    protected = {Path(folder.anchor), home, *home.parents, cwd, *cwd.parents}
    if folder in protected:  # empty or not: `--out .` must not work once and be refused the next time
        raise FolderInUse(f"{path} ({folder}) is the current folder, one of its parents, the home "
                          f"folder or the root, so {written_by} will not replace it, even with --force; "
                          "choose a new folder")
    if folder.is_dir() and any(folder.iterdir()):
        lake = _workspace_inside(folder)
        if lake is not None:
            raise FolderInUse(f"{path} holds an opencem lake ({lake}), so {written_by} will not replace it, "
                              "even with --force; choose a folder outside your workspaces")
        own = (folder / marker).is_file() and not (folder / marker).is_symlink()
        if not own and not force:
            raise FolderInUse(f"{path} is not empty and was not written by {written_by} (no {marker} "
                              "file in it); choose a new or empty folder, or pass --force to replace it")
        shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / marker).write_text(json.dumps({"written_by": written_by, "pid": os.getpid()}) + "\n")
    return folder


def _workspace_inside(folder: Path) -> Path | None:
    """The first lake manifest (``lake/_manifest.json``) at or below ``folder``, if any."""
    for root, dirs, files in os.walk(folder):
        if "_manifest.json" in files and Path(root).name == "lake":
            return Path(root) / "_manifest.json"
        dirs[:] = [d for d in dirs if not d.startswith(".")]
    return None
