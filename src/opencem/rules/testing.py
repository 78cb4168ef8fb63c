"""Unit tests of rules, modelled on ``promtool test rules``: input series (cube values per
window) and input records, and the alerts expected to be firing at given times.

```yaml
rule_files: [video.rules.yaml]       # relative to this file
tests:
  - name: a stalling cell
    start: 2026-01-05T00:00:00Z      # the first window (default: Monday 2026-01-05 00:00 UTC)
    input_series:                    # <cube>.<column>{<dimension>="<value>", ...}
      - series: 'cube_cell_15min.stall_ratio_pct{cell_id="C1"}'
        values: '1 1 5 5 5 1'        # one value per window; 'a+bxn' and '_' (no value) as promtool
    input_records:                   # rows of event tables, at an offset from start
      - table: xdr_voice
        rows:
          - {at: 10m, subscriber_id: S1, dropped: true}
    cells:                           # the inventory, for topology labels (optional)
      - {cell_id: C1, site_id: SITE1, city: Rome, province: Lazio}
    alert_rule_test:
      - eval_time: 45m
        alertname: CellVideoStallHigh
        exp_alerts:
          - exp_labels: {cell_id: C1, severity: major}
            exp_annotations: {summary: "..."}
```
At ``eval_time`` the windows that closed by then have been evaluated and the records up to it
counted; the alerts expected are those firing then (promtool's meaning).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator

from ..specfile import Issue, SpecError, issue_of, read_yaml
from .catalog import RuleContext, load_rules
from .evaluate import Relations, RuleEngine
from .sql import q
from .expr import CubeQuery
from .spec import Strict, parse_duration

KIND = "Rule test file"
SERIES_RE = re.compile(r"^\s*([a-z_][a-z0-9_]*)\.([a-z_][a-z0-9_]*)\s*(?:\{(.*)\})?\s*$")
LABEL_RE = re.compile(r'\s*([a-z_][a-z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*(?:,|$)')
DEFAULT_START = datetime(2026, 1, 5, tzinfo=UTC)  # a Monday


class SeriesModel(Strict):
    series: str
    values: str


class RecordsModel(Strict):
    table: str
    rows: list[dict[str, Any]]


class ExpectedAlert(Strict):
    exp_labels: dict[str, str] = Field(default_factory=dict)
    exp_annotations: dict[str, str] = Field(default_factory=dict)

    @field_validator("exp_labels", "exp_annotations", mode="before")
    @classmethod
    def _text(cls, value):
        if isinstance(value, dict):
            return {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in value.items()}
        return value


class AlertTest(Strict):
    eval_time: str
    alertname: str
    exp_alerts: list[ExpectedAlert] = Field(default_factory=list)


class TestCase(Strict):
    name: str = ""
    start: datetime = DEFAULT_START
    input_series: list[SeriesModel] = Field(default_factory=list)
    input_records: list[RecordsModel] = Field(default_factory=list)
    cells: list[dict[str, Any]] = Field(default_factory=list)
    alert_rule_test: list[AlertTest] = Field(min_length=1)


class TestFile(Strict):
    rule_files: list[str] = Field(min_length=1)
    tests: list[TestCase] = Field(min_length=1)


@dataclass
class Failure:
    test: str
    alertname: str
    eval_time: str
    expected: list[dict]
    got: list[dict]

    def __str__(self) -> str:
        def show(alerts):
            return "\n".join(f"      labels: {a['labels']}" + (f", annotations: {a['annotations']}" if a.get("annotations") else "")
                             for a in alerts) or "      (none)"
        return (f"  {self.test or 'test'}: alertname {self.alertname} at {self.eval_time}\n    expected:\n"
                f"{show(self.expected)}\n    got:\n{show(self.got)}")


def expand_values(text: str) -> list[float | None]:
    """promtool's value notation: ``1 2 3``, ``_`` (no value), ``5x3`` (5 four times),
    ``1+2x3`` (1 3 5 7), ``10-1x2`` (10 9 8)."""
    out: list[float | None] = []
    for token in text.split():
        if token == "_":
            out.append(None)
            continue
        m = re.fullmatch(r"(-?[0-9.]+(?:e-?\d+)?)(?:([+-])([0-9.]+))?x(\d+)", token)
        if m:
            a, sign, b, n = float(m[1]), m[2], float(m[3] or 0), int(m[4])
            step = -b if sign == "-" else b
            out += [a + step * i for i in range(n + 1)]
            continue
        m = re.fullmatch(r"_x(\d+)", token)
        if m:
            out += [None] * (int(m[1]) + 1)
            continue
        try:
            out.append(float(token))
        except ValueError:
            raise ValueError(f"{token!r} is not a value (a number, _, NxK or A+BxK)") from None
    return out


def run_rule_tests(path: Path, ctx: RuleContext) -> tuple[int, list[Failure]]:
    """Run the tests of ``path``: (checks run, failures). A bad test or rule file is a SpecError."""
    path = Path(path)
    root, data = read_yaml(path, KIND)
    from pydantic import ValidationError

    try:
        doc = TestFile.model_validate(data)
    except ValidationError as exc:
        raise SpecError(sorted((issue_of(KIND, path, root, e) for e in exc.errors()),
                               key=lambda i: (i.line or 0, str(i)))) from None
    rule_paths = [(path.parent / f).resolve() for f in doc.rule_files]
    rules, issues = load_rules(rule_paths, ctx)
    errors = [i for i in issues if i.level == "error"]
    if errors:
        raise SpecError(errors)
    checks, failures = 0, []
    for t, case in enumerate(doc.tests):
        try:
            n, fails = _run_case(case, rules, ctx)
        except ValueError as err:
            raise SpecError([Issue(str(err).rstrip("."), kind=KIND, file=path, field=f"tests[{t}]")]) from None
        checks += n
        failures += fails
    return checks, failures


def _run_case(case: TestCase, rules, ctx: RuleContext) -> tuple[int, list[Failure]]:
    import duckdb
    import pyarrow as pa

    start_ms = int(case.start.timestamp() * 1000)
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    rel = Relations()
    # Cubes: one row per window and series labels, the columns the series give, the rest null.
    rows: dict[str, dict[tuple, dict[str, Any]]] = {}
    for s in case.input_series:
        m = SERIES_RE.match(s.series)
        if m is None:
            raise ValueError(f"series {s.series!r} is not <cube>.<column>{{<dimension>=\"<value>\", ...}}")
        cube, column, body = m[1], m[2], m[3] or ""
        found = ctx.cube(cube)
        if found is None:
            raise ValueError(f"series {s.series!r}: {cube!r} is no configured cube table")
        dims, columns = found
        if column not in columns:
            raise ValueError(f"series {s.series!r}: {cube} has no column {column!r}")
        labels = dict(LABEL_RE.findall(body))
        if set(labels) != set(dims):
            raise ValueError(f"series {s.series!r} must give exactly the dimensions of {cube}: {', '.join(dims)}")
        window_ms = _grain_s(ctx, cube) * 1000
        for i, v in enumerate(expand_values(s.values)):
            key = (start_ms + i * window_ms, *(labels[d] for d in dims))
            rows.setdefault(cube, {}).setdefault(key, {})[column] = v
    for cube, by_key in rows.items():
        dims, columns = ctx.cube(cube)
        con.execute(f"CREATE TABLE {q(cube)} (" + ", ".join(f"{q(c)} {t}" for c, t in columns.items()) + ")")
        records = [{"period_start": datetime.fromtimestamp(k[0] / 1000, UTC), **dict(zip(dims, k[1:], strict=True)), **v}
                   for k, v in by_key.items()]
        con.register("_in", pa.Table.from_pylist(records))
        con.execute(f"INSERT INTO {q(cube)} BY NAME SELECT * FROM _in")
        con.unregister("_in")
        rel.cubes[cube] = q(cube)
        rel.window_s[cube] = _grain_s(ctx, cube)
    for cube in {cr.query.cube for cr in rules if isinstance(cr.query, CubeQuery)} - set(rel.cubes):
        dims, columns = ctx.cube(cube)
        con.execute(f"CREATE TABLE {q(cube)} (" + ", ".join(f"{q(c)} {t}" for c, t in columns.items()) + ")")
        rel.cubes[cube], rel.window_s[cube] = q(cube), _grain_s(ctx, cube)
    for block in case.input_records:
        if block.table not in ctx.tables or not ctx.tables[block.table].time_column:
            raise ValueError(f"input_records table {block.table!r} is no table with event times")
        spec = ctx.tables[block.table]
        _records_table(con, "_all_" + block.table, spec)
        for n, row in enumerate(block.rows):
            row = dict(row)
            at = row.pop("at", None)
            if at is None:
                raise ValueError(f"input_records {block.table} row {n + 1} has no at: (an offset such as 10m)")
            t = start_ms + parse_duration(str(at)) * 1000
            unknown = sorted(set(row) - set(spec.schema.names))
            if unknown:
                raise ValueError(f"input_records {block.table} row {n + 1}: no column {', '.join(unknown)}")
            row[spec.time_column] = datetime.fromtimestamp(t / 1000, UTC)
            names = list(row)
            con.execute(f"INSERT INTO {q('_all_' + block.table)} ({', '.join(q(c) for c in names)}, _t, _id) "
                        f"VALUES ({', '.join('?' * len(names))}, ?, ?)", [*row.values(), t, f"{block.table}-{n}"])
    if case.cells:
        con.register("_cells_in", pa.Table.from_pylist([{k: str(v) for k, v in c.items()} for c in case.cells]))
        con.execute("CREATE TABLE cells AS SELECT * FROM _cells_in")
        rel.cells = "cells"
    tables = [b.table for b in case.input_records]
    con.execute("CREATE TABLE _now (t BIGINT, prev BIGINT)")
    con.execute("INSERT INTO _now VALUES (0, -9223372036854775807)")
    for name in tables:
        con.execute(f"CREATE OR REPLACE VIEW {q('rec_' + name)} AS SELECT * FROM {q('_all_' + name)} WHERE _t <= (SELECT t FROM _now)")
        con.execute(f"CREATE OR REPLACE VIEW {q('new_' + name)} AS SELECT _id FROM {q('_all_' + name)} "
                    "WHERE _t <= (SELECT t FROM _now) AND _t > (SELECT prev FROM _now)")
        rel.records[name], rel.changed[name] = q("rec_" + name), q("new_" + name)
    for cr in rules:
        if not isinstance(cr.query, CubeQuery) and cr.query.table not in rel.records:
            _records_table(con, "rec_" + cr.query.table, ctx.tables[cr.query.table])
            rel.records[cr.query.table] = q("rec_" + cr.query.table)
            rel.changed[cr.query.table] = None
    engine = RuleEngine(con, rules, rel, {c: ctx.better(c) for cr in rules if isinstance(cr.query, CubeQuery)
                                          for c in cr.query.anomaly_of})
    firing: dict[tuple[str, str], Any] = {}
    checks, failures = 0, []
    prev = None
    for test in sorted(case.alert_rule_test, key=lambda a: parse_duration(a.eval_time)):
        t = start_ms + parse_duration(test.eval_time) * 1000
        if prev is None or t > prev:
            con.execute("UPDATE _now SET prev = t, t = ?", [t])
            for e in engine.step({**{c: t for c in rel.cubes}, **{n: t for n in rel.records}}):
                if e.state.value == "firing":
                    firing[(e.rule_name, e.fingerprint)] = e
                else:
                    firing.pop((e.rule_name, e.fingerprint), None)
            prev = t
        got = sorted(({"labels": e.labels, "annotations": e.annotations} for (r, _), e in firing.items()
                      if r == test.alertname), key=lambda a: sorted(a["labels"].items()))
        expected = sorted(({"labels": {**a.exp_labels, "alertname": test.alertname}, "annotations": a.exp_annotations}
                           for a in test.exp_alerts), key=lambda a: sorted(a["labels"].items()))
        checks += 1
        got_cmp = [{"labels": g["labels"], "annotations": {k: v for k, v in g["annotations"].items()
                                                           if k in _annotation_keys(expected)}} for g in got]
        if got_cmp != expected:
            failures.append(Failure(case.name, test.alertname, test.eval_time, expected, got))
    con.close()
    return checks, failures


def _annotation_keys(expected: list[dict]) -> set[str]:
    return {k for a in expected for k in a["annotations"]}


def _grain_s(ctx: RuleContext, cube: str) -> int:
    from ..indicators.spec import GRAINS

    return GRAINS[ctx.cube_names()[cube][1]]


def _records_table(con, name: str, spec) -> None:
    """An empty table of ``spec``'s columns plus the stream's ``_t`` and ``_id``."""
    con.register("_schema", spec.schema.empty_table())
    con.execute(f"CREATE TABLE IF NOT EXISTS {q(name)} AS SELECT *, NULL::BIGINT AS _t, NULL::VARCHAR AS _id FROM _schema")
    con.unregister("_schema")
