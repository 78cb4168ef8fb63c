"""All definitions in force: the standard library plus the workspace's own files (layer 3).

Semantic rules run across files: a KPI's source and columns exist, a KQI names defined KPIs,
the CEI names defined KQIs, a cube names defined dimensions. Each rule adds issues (error or
warning) naming the file, line and field; nothing stops at the first problem. A workspace
definition with the same name as a library one replaces it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import yaml

from ..schema import Table
from ..specfile import Issue, SpecError, line_of, load_spec, read_yaml
from .expr import Checked, check_filter, check_kpi, check_kqi, suggest
from .spec import CEI, KPI, KQI, Cube, DefinitionFile, Dimension

KIND = "Definition file"
# Long-format counter tables, pivoted to one row per measured object and period before KPIs
# run: names like RRC.ConnEstabSucc are counters, and these columns stay usable beside them.
PIVOT_KEYS = ("object_dn", "managed_element", "cell_id", "period_start", "granularity_s")
COUNTER_SOURCES = {"pm_counters": PIVOT_KEYS}
SNAPSHOT_LOOKUPS = ("cells", "subscribers")


LIBRARY = Path(str(resources.files("opencem.indicators") / "library"))


def library_files() -> list[Path]:
    """The standard library shipped with opencem (src/opencem/indicators/library/*.yaml)."""
    return sorted(LIBRARY.glob("*.yaml"))


def known_counters() -> set[str]:
    """Counter names KPIs can count on: the canonical catalogue and whatever the bundled vendor
    dictionaries produce."""
    from ..schema.counters import CANONICAL_COUNTERS

    folder = resources.files("opencem.ingest") / "dictionaries"
    names: set[str] = set(CANONICAL_COUNTERS)
    for p in folder.iterdir():
        if p.name.endswith(".yaml"):
            names |= set((yaml.safe_load(p.read_text()) or {}).get("counters", {}))
    return names


def from_library(issue: Issue) -> bool:
    """Whether an issue is about a file of the standard library (its warnings are intended)."""
    return issue.file is not None and issue.file.parent == LIBRARY


@dataclass
class Catalog:
    kpis: dict[str, KPI] = field(default_factory=dict)
    kqis: dict[str, KQI] = field(default_factory=dict)
    cei: CEI | None = None
    dimensions: dict[str, Dimension] = field(default_factory=dict)
    cubes: list[Cube] = field(default_factory=list)
    checked: dict[str, Checked] = field(default_factory=dict)  # KPI name -> checked expr
    filters: dict[str, Checked] = field(default_factory=dict)  # KPI name -> checked filter
    kqi_checked: dict[str, Checked] = field(default_factory=dict)
    origin: dict[tuple[str, str], tuple[Path, yaml.Node, list[str]]] = field(default_factory=dict)
    issues: list[Issue] = field(default_factory=list)

    @property
    def errors(self) -> list[str]:
        """The sentences of the error-level issues."""
        return [str(i) for i in self.issues if i.level == "error"]

    def raise_errors(self) -> None:
        errors = [i for i in self.issues if i.level == "error"]
        if errors:
            raise SpecError(errors)

    def issue(self, level: str, kind: str, name: str, sub: tuple[str, ...], message: str) -> Issue:
        """An issue at definition ``name`` of section ``kind`` (and ``sub`` below it)."""
        path, root, loc = self.origin[(kind, name)]
        loc = [*loc, *sub]
        fld = loc[0] + "".join(f"[{p}]" if p.isdigit() else f".{p}" for p in loc[1:])
        return Issue(message, level, KIND, path, line_of(root, loc), fld)

    def add(self, level: str, kind: str, name: str, sub: tuple[str, ...], message: str) -> None:
        self.issues.append(self.issue(level, kind, name, sub, message))

    def source_of(self, kqi: str) -> set[str]:
        return {self.kpis[k].source for k in self.kqi_checked[kqi].columns if k in self.kpis}


def load_catalog(tables: dict[str, Table], files: list[Path] = (), library: bool = True) -> Catalog:
    """Read the library (unless ``library`` is False) and ``files`` in order, later
    definitions replacing earlier ones by name, then check everything together."""
    cat = Catalog()
    parse_errors: list[Issue] = []
    for path in [*(library_files() if library else []), *map(Path, files)]:
        try:
            doc = load_spec(path, DefinitionFile, KIND)
        except SpecError as err:
            parse_errors += err.issues
            continue
        root, _ = read_yaml(path, KIND)
        _merge(cat, path, root, doc)
    cat.issues += parse_errors
    _check_kpis(cat, tables)
    _check_kqis(cat)
    _check_cei(cat)
    _check_dimensions(cat, tables)
    _check_cubes(cat)
    return cat


def _merge(cat: Catalog, path: Path, root: yaml.Node, doc: DefinitionFile) -> None:
    for section, items, store in (("kpis", doc.kpis, cat.kpis), ("kqis", doc.kqis, cat.kqis),
                                  ("dimensions", doc.dimensions, cat.dimensions)):
        seen: set[str] = set()
        for i, item in enumerate(items):
            key = (section, item.name)
            if item.name in seen:
                cat.origin.setdefault(key, (path, root, [section, str(i)]))
                cat.issues.append(Issue(f"{item.name} is defined twice in this file", "error", KIND, path,
                                        line_of(root, [section, str(i)]), f"{section}[{i}].name"))
                continue
            seen.add(item.name)
            store[item.name] = item
            cat.origin[key] = (path, root, [section, str(i)])
    if doc.cei is not None:
        cat.cei = doc.cei
        cat.origin[("cei", "cei")] = (path, root, ["cei"])
    if doc.cubes:
        cat.cubes = list(doc.cubes)  # a file that lists cubes chooses the whole set
        for i, _ in enumerate(doc.cubes):
            cat.origin[("cubes", str(i))] = (path, root, ["cubes", str(i)])


def _check_kpis(cat: Catalog, tables: dict[str, Table]) -> None:
    counters = known_counters()
    for name, kpi in cat.kpis.items():
        table = tables.get(kpi.source)
        if table is None:
            cat.add("error", "kpis", name, ("source",),
                    f"unknown source table {kpi.source}{suggest(kpi.source, tables)}")
            continue
        if table.is_snapshot:
            cat.add("error", "kpis", name, ("source",),
                    f"{kpi.source} is a snapshot table without event time; KPIs need an event table")
            continue
        long_format = kpi.source in COUNTER_SOURCES
        columns = COUNTER_SOURCES[kpi.source] if long_format else table.schema.names
        checked = cat.checked[name] = check_kpi(kpi.expr, columns, counters=long_format)
        for problem in checked.issues:
            cat.add("error", "kpis", name, ("expr",), problem)
        for counter in sorted(checked.counters - counters):
            cat.add("warning", "kpis", name, ("expr",), f"counter {counter} is not produced by any "
                    f"bundled vendor dictionary{suggest(counter, counters)}; it will be null unless "
                    "a workspace dictionary maps it")
        if kpi.filter:
            filt = cat.filters[name] = check_filter(kpi.filter, columns, counters=False)
            for problem in filt.issues:
                cat.add("error", "kpis", name, ("filter",), problem)


def _check_kqis(cat: Catalog) -> None:
    for name, kqi in cat.kqis.items():
        checked = cat.kqi_checked[name] = check_kqi(kqi.expr, cat.kpis)
        for problem in checked.issues:
            cat.add("error", "kqis", name, ("expr",), problem)
        if name in cat.kpis:
            cat.add("error", "kqis", name, ("name",), f"{name} is already a KPI name; KQIs and KPIs share "
                    "one namespace in result tables")


def _check_cei(cat: Catalog) -> None:
    if cat.cei is None:
        return
    names = [n.name for n in cat.cei.indices]
    for i, node in enumerate(cat.cei.indices):
        if names.index(node.name) != i:
            cat.add("error", "cei", "cei", ("indices", str(i), "name"), f"index {node.name} is defined twice")
        for kqi in node.kqis:
            if kqi not in cat.kqis:
                cat.add("error", "cei", "cei", ("indices", str(i), "kqis", kqi),
                        f"unknown KQI {kqi}{suggest(kqi, cat.kqis)}")


def _check_dimensions(cat: Catalog, tables: dict[str, Table]) -> None:
    for name, dim in cat.dimensions.items():
        for i, r in enumerate(dim.resolve):
            if r.lookup is None:
                continue
            where = ("resolve", str(i))
            if r.lookup not in SNAPSHOT_LOOKUPS or r.lookup not in tables:
                cat.add("error", "dimensions", name, (*where, "lookup"),
                        f"lookups read a snapshot table ({', '.join(SNAPSHOT_LOOKUPS)}), not {r.lookup}")
            elif r.column not in tables[r.lookup].schema.names:
                cat.add("error", "dimensions", name, (*where, "column"), f"{r.lookup} has no column "
                        f"{r.column}{suggest(r.column, tables[r.lookup].schema.names)}")


def _check_cubes(cat: Catalog) -> None:
    tables_seen: set[str] = set()
    for i, cube in enumerate(cat.cubes):
        for j, dim in enumerate(cube.dimensions):
            if dim not in cat.dimensions:
                cat.add("error", "cubes", str(i), ("dimensions", str(j)),
                        f"unknown dimension {dim}{suggest(dim, cat.dimensions)}")
        if len(set(cube.dimensions)) != len(cube.dimensions):
            cat.add("error", "cubes", str(i), ("dimensions",), "a dimension is listed twice")
        for grain in cube.grains:
            if cube.table(grain) in tables_seen:
                cat.add("error", "cubes", str(i), ("dimensions",), f"{cube.table(grain)} is configured twice")
            tables_seen.add(cube.table(grain))
