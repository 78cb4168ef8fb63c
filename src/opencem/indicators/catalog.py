"""All definitions in force: the standard library plus the workspace's own files (layer 3).

Semantic rules run across files: a KPI's source and columns exist, a KQI names defined KPIs,
the CEI names defined KQIs, a cube names defined dimensions. Each rule adds issues (error or
warning) naming the file, line and field; nothing stops at the first problem. A workspace
definition with the same name as a library one replaces it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path

import yaml
from pydantic import ValidationError

from ..schema import Table
from ..schema.base import unit_of
from ..specfile import Issue, SpecError, field_path, issue_of, line_of, read_yaml
from .expr import Checked, check_filter, check_kpi, check_kqi, suggest
from .spec import CEI, KPI, KQI, Cube, CubeSection, Dimension

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
    # (section, name) -> (file, its YAML tree, path to the item); sections also cei_index (node
    # name) and cei_kqi (node.kqi), for what a mode: extend section changed, and cubes (position)
    origin: dict[tuple[str, str], tuple[Path, yaml.Node, list[str]]] = field(default_factory=dict)
    cube_origins: list[tuple[Path, yaml.Node, list[str]]] = field(default_factory=list)
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
    definitions replacing earlier ones by name, then check everything together. A file given
    twice (the workspace's own, named again on the command line) is read once."""
    cat = Catalog()
    paths = list(dict.fromkeys(Path(p).resolve() for p in [*(library_files() if library else []), *files]))
    for path in paths:
        try:
            root, doc, issues = read_definitions(path)
        except SpecError as err:
            cat.issues += err.issues
            continue
        cat.issues += issues
        _merge(cat, path, root, doc)
    for i, origin in enumerate(cat.cube_origins):
        cat.origin[("cubes", str(i))] = origin
    _check_names(cat)
    _check_kpis(cat, tables)
    _check_kqis(cat)
    _check_cei(cat)
    _check_dimensions(cat, tables)
    _check_cubes(cat)
    return cat


SECTIONS = {"kpis": KPI, "kqis": KQI, "dimensions": Dimension}


@dataclass
class Parsed:
    """One definition file, item by item: an item with a problem is left out (and reported),
    so the others are still checked and every problem of a file is reported at once."""

    items: dict[str, list[tuple[int, object]]] = field(default_factory=dict)  # section -> (position, model)
    cei: CEI | None = None
    cubes: list[tuple[int, Cube]] | None = None
    cubes_mode: str | None = None
    cubes_loc: list[str] = field(default_factory=lambda: ["cubes"])


def read_definitions(path: Path) -> tuple[yaml.Node, Parsed, list[Issue]]:
    """Layers 1 and 2 of a definition file: YAML (a :class:`SpecError` if it is not) and each
    item's shape, every problem an :class:`Issue`."""
    root, data = read_yaml(path, KIND)
    issues: list[Issue] = []
    out = Parsed()

    def validate(model, value, loc: list):
        try:
            return model.model_validate(value)
        except ValidationError as exc:
            for e in exc.errors():
                issues.append(issue_of(KIND, path, root, {**e, "loc": (*loc, *e["loc"])}))
            return None

    def as_list(section: str, value) -> list:
        if value is None:
            return []
        if not isinstance(value, list):
            issues.append(Issue("must be a list of definitions", "error", KIND, path, line_of(root, [section]), section))
            return []
        return value

    known = [*SECTIONS, "cei", "cubes"]
    for key in data:
        if key not in known:
            issues.append(Issue(f"unknown section{suggest(str(key), known)}; sections are {', '.join(known)}",
                                "error", KIND, path, line_of(root, [str(key)]), str(key)))
    for section, model in SECTIONS.items():
        items = [(i, validate(model, item, [section, i])) for i, item in enumerate(as_list(section, data.get(section)))]
        out.items[section] = [(i, m) for i, m in items if m is not None]
    if data.get("cei") is not None:
        out.cei = validate(CEI, data["cei"], ["cei"])
    cubes = data.get("cubes")
    if isinstance(cubes, dict):
        section = validate(CubeSection, {**cubes, "list": []}, ["cubes"])
        if section is not None:
            out.cubes_mode, out.cubes_loc = section.mode, ["cubes", "list"]
            cubes = cubes.get("list")
        else:
            cubes = None
    if cubes is not None or "cubes" in data:
        listed = [(i, validate(Cube, c, [*out.cubes_loc, i])) for i, c in enumerate(as_list(".".join(out.cubes_loc), cubes))]
        out.cubes = [(i, c) for i, c in listed if c is not None]
    return root, out, issues


def _merge(cat: Catalog, path: Path, root: yaml.Node, doc: Parsed) -> None:
    stores = {"kpis": cat.kpis, "kqis": cat.kqis, "dimensions": cat.dimensions}
    for section, items in doc.items.items():
        seen: set[str] = set()
        for i, item in items:
            key = (section, item.name)
            if item.name in seen:
                cat.issues.append(Issue(f"{item.name} is defined twice in this file", "error", KIND, path,
                                        line_of(root, [section, str(i)]), f"{section}[{i}].name"))
                continue
            seen.add(item.name)
            stores[section][item.name] = item
            cat.origin[key] = (path, root, [section, str(i)])
    if doc.cei is not None:
        _merge_cei(cat, path, root, doc.cei)
    if doc.cubes is not None:
        _merge_cubes(cat, path, root, doc)


def _merge_cei(cat: Catalog, path: Path, root: yaml.Node, cei: CEI) -> None:
    where = Issue("", "warning", KIND, path, line_of(root, ["cei"]), "cei")
    names = [n.name for n in cei.indices]
    for i, name in enumerate(names):
        if names.index(name) != i:
            cat.issues.append(Issue(f"index {name} is listed twice in this section", "error", KIND, path,
                                    line_of(root, ["cei", "indices", str(i)]), f"cei.indices[{i}].name"))
    if cei.mode == "extend" and cat.cei is not None:
        nodes = {n.name: n for n in cat.cei.indices}
        for i, node in enumerate(cei.indices):
            old = nodes.get(node.name)
            if old is None:
                nodes[node.name] = node
            else:
                given = node.model_fields_set - {"name", "kqis"}
                nodes[node.name] = old.model_copy(update={**{k: getattr(node, k) for k in given},
                                                          "kqis": {**old.kqis, **node.kqis}})
            for kqi in node.kqis:
                cat.origin[("cei_kqi", f"{node.name}.{kqi}")] = (path, root, ["cei", "indices", str(i), "kqis", kqi])
            if old is None or node.model_fields_set - {"name", "kqis"}:
                cat.origin[("cei_index", node.name)] = (path, root, ["cei", "indices", str(i)])
        top = {k: getattr(cei, k) for k in cei.model_fields_set - {"mode", "indices"}}
        cat.cei = cat.cei.model_copy(update={**top, "indices": list(nodes.values())})
        return
    if cei.mode is None and cat.cei is not None:
        old = cat.origin[("cei", "cei")][0]
        cat.issues.append(replace(where, message=(
            f"this cei: section replaces the whole CEI tree in force (from {_short(old)}: indices "
            f"{', '.join(n.name for n in cat.cei.indices)}); write mode: extend to add to it, or "
            "mode: replace to say the replacement is meant")))
    cat.cei = cei
    for key in [k for k in cat.origin if k[0] in ("cei_index", "cei_kqi")]:
        del cat.origin[key]
    for i, node in enumerate(cei.indices):
        cat.origin[("cei_index", node.name)] = (path, root, ["cei", "indices", str(i)])
        for kqi in node.kqis:
            cat.origin[("cei_kqi", f"{node.name}.{kqi}")] = (path, root, ["cei", "indices", str(i), "kqis", kqi])
    cat.origin[("cei", "cei")] = (path, root, ["cei"])


def _merge_cubes(cat: Catalog, path: Path, root: yaml.Node, doc: Parsed) -> None:
    new = [(c, (path, root, [*doc.cubes_loc, str(i)])) for i, c in doc.cubes]
    where = line_of(root, doc.cubes_loc)
    if not new and doc.cubes_mode != "extend":
        cat.issues.append(Issue("lists no cube, so evaluate would compute nothing; list at least one (or leave "
                                "the section out to keep the cubes in force)", "error", KIND, path, where,
                                ".".join(doc.cubes_loc)))
        return
    if doc.cubes_mode == "extend":
        by_table = {c.table(g): (c, o) for c, o in zip(cat.cubes, cat.cube_origins) for g in c.grains}
        for cube, (_, _, loc) in new:
            for g in cube.grains:
                old = by_table.get(cube.table(g))
                if old is not None and list(old[0].dimensions) != list(cube.dimensions):
                    cat.issues.append(Issue(
                        f"{cube.table(g)} is written by the cube at {_short(old[1][0])} line {line_of(old[1][1], old[1][2])} "
                        f"with dimensions {', '.join(old[0].dimensions)}; this one ({', '.join(cube.dimensions)}) "
                        "would replace it under the same name: give it other dimensions or a grain of its own",
                        "error", KIND, path, line_of(root, loc), field_path(loc)))
        replaced = {c.table(g) for c, _ in new for g in c.grains}
        kept = []
        for cube, origin in zip(cat.cubes, cat.cube_origins):
            grains = [g for g in cube.grains if cube.table(g) not in replaced]
            if grains:
                kept.append((cube.model_copy(update={"grains": grains}) if grains != cube.grains else cube, origin))
        new = kept + new
    elif doc.cubes_mode is None and cat.cubes:
        cat.issues.append(Issue(
            f"this cubes: list replaces the {len(cat.cubes)} cubes in force (from "
            f"{', '.join(dict.fromkeys(_short(o[0]) for o in cat.cube_origins))}); write cubes: {{mode: extend, "
            "list: [...]} to add to them, or mode: replace to say the replacement is meant",
            "warning", KIND, path, line_of(root, ["cubes"]), "cubes"))
    cat.cubes = [c for c, _ in new]
    cat.cube_origins = [o for _, o in new]


def _short(path: Path) -> str:
    return f"library/{path.name}" if path.parent == LIBRARY else str(path)


# Columns every cube writes beside the definitions' own: a definition by one of these names
# would overwrite or duplicate it.
WRITTEN = {"period_start": "the start of each time bucket", "cei": "the Customer Experience Index",
           "poor_experience": "the CEI's poor-experience flag",
           "evidence_pooled": "whether a thin group's scores came from the pool grain"}
SUFFIXES = {"_score": "KQI scores", "_index": "CEI index values", "_poor": "index poor-experience flags"}


def reserved(name: str) -> str | None:
    """Why ``name`` cannot name a KPI, KQI, dimension or index node, or None."""
    if name in WRITTEN:
        return f"{name} is reserved: every cube writes {WRITTEN[name]} under it"
    if name.startswith("records_"):
        return f"{name} is reserved: records_<source> columns count each source's rows in a group"
    for suffix, what in SUFFIXES.items():
        if name.endswith(suffix):
            return f"{name} is reserved: names ending in {suffix} are the cubes' {what}"
    if not _is_identifier(name):
        return f"{name} is a word of SQL and cannot name a column in an expression"
    return None


def _is_identifier(name: str) -> bool:
    import sqlglot
    from sqlglot import exp

    for dialect in ("duckdb", "spark"):
        try:
            tree = sqlglot.parse_one(name, read=dialect)
        except sqlglot.errors.SqlglotError:
            return False
        if not isinstance(tree, exp.Column) or tree.name != name or tree.table:
            return False
        try:  # and inside an expression too: interval alone is a column, interval + 1 is not
            tree = sqlglot.parse_one(f"{name} + 1", read=dialect)
        except sqlglot.errors.SqlglotError:
            return False
        if not (isinstance(tree, exp.Add) and isinstance(tree.this, exp.Column) and tree.this.name == name):
            return False
    return True


def _check_names(cat: Catalog) -> None:
    dims = set(cat.dimensions)
    for section, store, what in (("kpis", cat.kpis, "KPI"), ("kqis", cat.kqis, "KQI"),
                                 ("dimensions", cat.dimensions, "dimension")):
        for name in store:
            why = reserved(name)
            if why is None and section != "dimensions" and name in dims:
                why = f"{name} is a dimension; a cube by {name} would have two columns of that name"
            if why:
                cat.add("error", section, name, ("name",), f"{why}; choose another {what} name")
    if cat.cei is not None:
        for node in cat.cei.indices:
            why = reserved(node.name) if node.name not in ("cei",) else f"{node.name} is reserved: it names the whole index"
            if why is None and not _is_identifier(f"{node.name}_index"):
                why = f"{node.name} cannot name an index"
            if why:
                cat.add("error", "cei_index", node.name, ("name",), f"{why}; choose another index name")


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
        if table.domain == "indicators":
            cat.add("error", "kpis", name, ("source",), f"{kpi.source} is a cube opencem writes; a KPI reads a "
                    "source table (a cube reading cubes would depend on what was evaluated before)")
            continue
        if kpi.better is None:
            cat.add("warning", "kpis", name, ("better",), "declare better: higher, lower or neither (a volume), so "
                    "kpi preview --worst and diagnosis know which way is bad")
        long_format = kpi.source in COUNTER_SOURCES
        names = COUNTER_SOURCES[kpi.source] if long_format else table.schema.names
        columns = {f.name: f.type for f in table.columns if f.name in names}
        units = {f.name: unit_of(f) for f in table.columns if unit_of(f)}
        checked = cat.checked[name] = _guarded(check_kpi, kpi.expr, columns, counters=long_format, units=units)
        for problem in checked.issues:
            cat.add("error", "kpis", name, ("expr",), problem)
        for warning in checked.warnings:
            cat.add("warning", "kpis", name, ("expr",), warning)
        for counter in sorted(checked.counters - counters):
            cat.add("warning", "kpis", name, ("expr",), f"counter {counter} is not produced by any "
                    f"bundled vendor dictionary{suggest(counter, counters)}: unless a workspace dictionary "
                    "maps it, no row has it, so a sum or average of it is empty (null) and a count of it 0")
        if kpi.filter:
            filt = cat.filters[name] = _guarded(check_filter, kpi.filter, columns, counters=False, units=units)
            for problem in filt.issues:
                cat.add("error", "kpis", name, ("filter",), problem)
            for warning in filt.warnings:
                cat.add("warning", "kpis", name, ("filter",), warning)


def _guarded(check, text: str, *args, **kwargs) -> Checked:
    """``check(text, ...)``, with Python's recursion limit as one more refused expression (the
    depth limits in :mod:`.expr` should come first)."""
    try:
        return check(text, *args, **kwargs)
    except RecursionError:
        return Checked(text, issues=[f"expression {text[:40]!r}... is nested too deeply to check"])


def _check_kqis(cat: Catalog) -> None:
    for name, kqi in cat.kqis.items():
        checked = cat.kqi_checked[name] = _guarded(check_kqi, kqi.expr, cat.kpis, cat.kqis)
        for problem in checked.issues:
            cat.add("error", "kqis", name, ("expr",), problem)
        if name in cat.kpis:
            cat.add("error", "kqis", name, ("name",), f"{name} is already a KPI name; KQIs and KPIs share "
                    "one namespace in result tables")


def _check_cei(cat: Catalog) -> None:
    if cat.cei is None:
        return
    if not cat.cei.indices:
        cat.add("error", "cei", "cei", ("indices",), "list at least one index node with its weight and KQIs")
    seen: set[str] = set()
    for node in cat.cei.indices:
        if node.name in seen:
            cat.add("error", "cei_index", node.name, ("name",), f"index {node.name} is defined twice")
        seen.add(node.name)
        if node.weight is None:
            cat.add("error", "cei_index", node.name, ("weight",), f"index {node.name} needs a weight (a positive number)")
        if not node.kqis:
            cat.add("error", "cei_index", node.name, ("kqis",), f"index {node.name} needs at least one KQI with its weight")
        for kqi in node.kqis:
            if kqi not in cat.kqis:
                why = f"{kqi} is a KPI; an index weighs KQIs (scored 0-100), so define a KQI over it" \
                    if kqi in cat.kpis else f"unknown KQI {kqi}{suggest(kqi, cat.kqis)}"
                cat.add("error", "cei_kqi", f"{node.name}.{kqi}", (), why)


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
        _check_dimension_type(cat, name, dim, tables)


def _check_dimension_type(cat: Catalog, name: str, dim: Dimension, tables: dict[str, Table]) -> None:
    """Every way of resolving a dimension gives one type: the sources of a cube are joined on
    it, and text against a number fails on both engines."""
    from .expr import WORDS, type_family

    kinds: dict[str, str] = {}  # type -> where it comes from
    for r in dim.resolve:
        if r.grid:
            kinds.setdefault("text", "grid")
        elif r.lookup is not None:
            if r.lookup in tables and r.column in tables[r.lookup].schema.names:
                kinds.setdefault(type_family(tables[r.lookup].column(r.column).type), f"{r.lookup}.{r.column}")
        else:
            for table in tables.values():
                if not table.is_snapshot and r.column in table.schema.names:
                    kinds.setdefault(type_family(table.column(r.column).type), f"{table.name}.{r.column}")
    kinds.pop("any", None)
    if len(kinds) > 1:
        (a, wa), (b, wb) = list(kinds.items())[:2]
        cat.add("error", "dimensions", name, ("resolve",), f"resolves to {WORDS.get(a, a)} ({wa}) and to "
                f"{WORDS.get(b, b)} ({wb}); a dimension has one type in every source")


def _check_cubes(cat: Catalog) -> None:
    tables_seen: dict[str, int] = {}
    for i, cube in enumerate(cat.cubes):
        for j, dim in enumerate(cube.dimensions):
            if dim not in cat.dimensions:
                cat.add("error", "cubes", str(i), ("dimensions", str(j)),
                        f"unknown dimension {dim}{suggest(dim, cat.dimensions)}")
        if len(set(cube.dimensions)) != len(cube.dimensions):
            cat.add("error", "cubes", str(i), ("dimensions",), "a dimension is listed twice")
        if len(set(cube.grains)) != len(cube.grains):
            cat.add("error", "cubes", str(i), ("grains",), "a grain is listed twice")
        for grain in dict.fromkeys(cube.grains):
            table = cube.table(grain)
            if table in tables_seen:
                first = cat.issue("error", "cubes", str(tables_seen[table]), (), "")
                cat.add("error", "cubes", str(i), ("dimensions",),
                        f"{table} is also written by the cube at {_short(first.file)} line {first.line}; "
                        "two cubes may not write one table (give them other dimensions or grains)")
            tables_seen.setdefault(table, i)
