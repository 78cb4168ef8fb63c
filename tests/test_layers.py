"""The layering contract: imports flow one way, down the floors of ../shared/STYLE.md.

Every import of every module counts, including those inside functions (they are how the
command line stays fast, and they must obey the same rules). A package may import its own
modules and any package on a lower floor, never one on its own floor or above.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "opencem"

# Lowest first. Packages on one floor are independent of each other.
FLOORS = [
    {"opencem", "errors"},
    {"specfile", "geo", "folders"},
    {"schema"},
    {"lake"},
    {"store"},
    {"engines"},
    {"ingest", "simulate", "indicators"},
    {"stream", "rules", "diagnose", "analytics"},
    {"workflow"},
    {"workspace"},
    {"cli", "api", "web"},
    {"__main__"},
]
FLOOR = {name: i for i, names in enumerate(FLOORS) for name in names}
# Third-party packages only one face may use.
ONLY_IN = {"typer": "cli", "rich": "cli", "click": "cli", "fastapi": "api", "jinja2": "web",
           # persistence stays behind the store's repositories (the rest get sessions and models)
           "sqlalchemy": "store", "alembic": "store"}


def unit_of(module: str) -> str:
    """The package (or top-level module) an ``opencem.x.y`` module belongs to."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "opencem"


def modules() -> list[tuple[str, Path]]:
    found = []
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC.parent).with_suffix("")
        name = ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)
        found.append((name, path))
    return found


def imports(module: str, path: Path) -> list[tuple[int, str]]:
    """(line, imported module) for every import statement, relative ones made absolute."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
                # "from . import x" imports the submodule x, if there is one (else a name of the package)
                out += [(node.lineno, f"{target}.{a.name}" if not node.module and (SRC.parent / target.replace(".", "/") / a.name).with_suffix(".py").exists()
                         or (SRC.parent / target.replace(".", "/") / a.name).is_dir() else target)
                        for a in node.names]
            else:
                out.append((node.lineno, node.module or ""))
    return out


def test_every_package_has_a_floor():
    units = {unit_of(m) for m, _ in modules()}
    assert units <= set(FLOOR), f"packages without a floor in this test: {sorted(units - set(FLOOR))}"


def test_imports_flow_down_the_floors():
    wrong = []
    for module, path in modules():
        mine = unit_of(module)
        for line, target in imports(module, path):
            if not target.startswith("opencem"):
                continue
            theirs = unit_of(target)
            if theirs == mine or theirs == "opencem":
                continue
            if FLOOR[theirs] >= FLOOR[mine]:
                wrong.append(f"{path.relative_to(SRC)}:{line} ({mine}, floor {FLOOR[mine]}) imports "
                             f"{target} ({theirs}, floor {FLOOR[theirs]})")
    assert not wrong, "imports against the layering:\n" + "\n".join(wrong)


def test_face_libraries_stay_in_their_face():
    wrong = []
    for module, path in modules():
        for line, target in imports(module, path):
            face = ONLY_IN.get(target.split(".")[0])
            if face and unit_of(module) != face:
                wrong.append(f"{path.relative_to(SRC)}:{line} imports {target} (only {face}/ may)")
    assert not wrong, "\n".join(wrong)


def test_no_import_circles_between_modules_of_a_package():
    graph: dict[str, set[str]] = {}
    names = {m for m, _ in modules()}
    for module, path in modules():
        graph[module] = {t for _, t in imports(module, path) if t in names and t != module
                         and not module.startswith(t + ".")}  # a package's __init__ is not a cycle

    def cycle_from(start: str) -> list[str] | None:
        stack, seen = [(start, [start])], set()
        while stack:
            node, trail = stack.pop()
            for nxt in graph.get(node, ()):
                if nxt == start:
                    return trail + [start]
                if nxt not in seen:
                    seen.add(nxt)
                    stack.append((nxt, trail + [nxt]))
        return None

    cycles = {" -> ".join(c) for m in graph if (c := cycle_from(m))}
    assert not cycles, "import circles:\n" + "\n".join(sorted(cycles))


def test_no_source_file_looks_like_a_test_to_pytest():
    odd = [str(p.relative_to(SRC)) for p in SRC.rglob("*.py") if p.name.startswith("test_") or p.stem.endswith("_test")]
    assert not odd, f"pytest would collect these as tests: {odd}"


@pytest.mark.parametrize("command", ["opencem.cli.main", "opencem.cli.qoe"])
def test_the_command_line_starts_without_the_heavy_libraries(command):
    # --help and the one-number calculators must not pay for DuckDB, Arrow, SQLGlot, NumPy or SQLAlchemy.
    code = (f"import sys, {command}; heavy = [m for m in ('duckdb', 'pyarrow', 'sqlglot', 'numpy', 'pydantic', "
            "'yaml', 'sqlalchemy', 'alembic') if m in sys.modules]; print(','.join(heavy))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert loaded == "", f"importing {command} loads {loaded}"
