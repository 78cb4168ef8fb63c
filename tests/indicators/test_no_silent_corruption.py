"""Definitions that would corrupt a cube silently are refused or made explicit (issue 10):
one table per cube, unique keys, reserved names, extend vs replace of the CEI and the cubes."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest

from opencem.engines.duckdb import run_user_sql
from opencem.indicators.catalog import load_catalog
from opencem.indicators.evaluate import evaluate
from opencem.schema import TABLES
from opencem.workspace import Workspace


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text)
    return path


def keys_unique(ws: Workspace, table: str, dims: list[str]) -> tuple[int, int]:
    keys = ", ".join(["period_start", *dims])
    return run_user_sql(ws.lake, f"SELECT count(*), count(DISTINCT ({keys})) FROM {table}").fetchone()


def test_a_grain_override_writes_each_cube_table_once_with_unique_keys(ws):
    # The library has cell_id at 15min (min_samples 10) and at day (30): --grain day made both
    # write cube_cell_day, 2 rows per key.
    cat = load_catalog(ws.tables())
    report = evaluate(ws.lake, cat, grains=["day"], only=["cube_cell_day", "cube_segment_day"])
    assert [c.table for c in report.cubes] == ["cube_cell_day", "cube_segment_day"]
    rows, distinct = keys_unique(ws, "cube_cell_day", ["cell_id"])
    assert rows == distinct > 50
    note = next(n for n in report.notes() if n.startswith("cube_cell_day:"))
    assert "the one configured at day is used (min_samples 30; the other has 10)" in note
    # The evidence rule of the day cube was used: no score on fewer than 30 voice calls.
    thin = run_user_sql(ws.lake, "SELECT count(*) FROM cube_cell_day WHERE records_xdr_voice < 30 "
                                 "AND voice_retainability_score IS NOT NULL").fetchone()[0]
    assert thin == 0
    again = evaluate(ws.lake, cat, grains=["day"], only=["cube_cell_day"])
    assert again.cubes[0].days_computed == [] and keys_unique(ws, "cube_cell_day", ["cell_id"]) == (rows, distinct)


def test_hour_override_takes_the_first_cube_and_says_so(ws):
    cat = load_catalog(ws.tables())
    report = evaluate(ws.lake, cat, grains=["hour"], only=["cube_cell_hour"])
    rows, distinct = keys_unique(ws, "cube_cell_hour", ["cell_id"])
    assert rows == distinct > 0
    assert any("the one listed first is used (min_samples 10; the other has 30)" in n for n in report.notes())


def test_every_library_cube_has_unique_keys(ws):
    cat = load_catalog(ws.tables())
    report = evaluate(ws.lake, cat)
    assert len(report.cubes) >= 8
    for cube in cat.cubes:
        for grain in cube.grains:
            table = cube.table(grain)
            if (ws.lake.root / table).exists():
                rows, distinct = keys_unique(ws, table, list(cube.dimensions))
                assert rows == distinct, table


def test_two_cubes_writing_one_table_is_a_catalog_error_naming_both(tmp_path):
    f = write(tmp_path, "cubes.yaml", """\
cubes:
  mode: extend
  list:
    - {dimensions: [cell_id], grains: [hour], min_samples: 5}
    - {dimensions: [segment], grains: [day]}
    - {dimensions: [cell_id], grains: [day, hour]}
""")
    cat = load_catalog(TABLES, [f])
    errors = [e for e in cat.errors if "cube_cell_hour" in e]
    assert errors == ["Definition file cubes.yaml, line 6, field cubes.list[2].dimensions: cube_cell_hour is also "
                      "written by the cube at " + str(f.resolve()) + " line 4; two cubes may not write one table "
                      "(give them other dimensions or grains)."]


@pytest.mark.parametrize("name, why", [
    ("cei", "cei is reserved: every cube writes the Customer Experience Index under it"),
    ("poor_experience", "reserved: every cube writes the CEI's poor-experience flag"),
    ("period_start", "reserved: every cube writes the start of each time bucket"),
    ("records_xdr_voice", "records_<source> columns count each source's rows"),
    ("drops_score", "names ending in _score are the cubes' KQI scores"),
    ("voice_index", "names ending in _index are the cubes' CEI index values"),
    ("voice_poor", "names ending in _poor"),
    ("cell_id", "cell_id is a dimension"),
    ("segment", "segment is a dimension"),
    ("select", "select is a word of SQL"),
    ("case", "case is a word of SQL"),
    ("current_date", "current_date is a word of SQL"),
])
def test_kpi_names_the_cube_writes_itself_are_reserved(tmp_path, name, why):
    f = write(tmp_path, "k.yaml", f"""\
kpis:
  - name: {name}
    source: xdr_voice
    expr: 100 * count_if(dropped) / count(*)
""")
    cat = load_catalog(TABLES, [f])
    errors = [e for e in cat.errors if "field kpis[0].name" in e]
    assert len(errors) == 1 and why in errors[0], cat.errors
    assert errors[0].startswith("Definition file k.yaml, line 2, field kpis[0].name:")
    assert errors[0].endswith("; choose another KPI name.")


def test_kqi_names_are_reserved_too(tmp_path):
    f = write(tmp_path, "k.yaml", """\
kqis:
  - {name: cei, expr: call_drop_pct, service: voice, score: {good: 0.5, bad: 3}}
""")
    assert any("field kqis[0].name: cei is reserved" in e for e in load_catalog(TABLES, [f]).errors)


def test_a_kpi_named_cei_no_longer_overwrites_the_index(ws):
    write(ws.root / "indicators", "k.yaml", """\
kpis:
  - {name: cei, source: xdr_voice, expr: 0 * count(*)}
""")
    cat = load_catalog(ws.tables(), ws.definition_files())
    assert any("cei is reserved" in e for e in cat.errors)
    with pytest.raises(Exception, match="cei is reserved"):
        evaluate(ws.lake, cat)


@pytest.mark.parametrize("engine", ["duckdb", "spark"])
def test_kpis_named_like_engine_keywords_evaluate_on_both_engines(ws, engine, engine_ready):
    # order, end, group, limit are reserved by one engine or both; identifiers are quoted.
    write(ws.root / "indicators", "k.yaml", """\
kpis:
  - {name: order, source: xdr_voice, expr: count(*)}
  - {name: end, source: xdr_voice, expr: count_if(dropped)}
  - {name: group, source: xdr_voice, expr: 100 * count_if(dropped) / count(*)}
kqis:
  - {name: limit, expr: group, service: voice, score: {good: 0, bad: 5}}
cubes:
  mode: replace
  list:
    - {dimensions: [segment], grains: [day]}
""")
    cat = load_catalog(ws.tables(), ws.definition_files())
    assert cat.errors == []
    evaluate(ws.lake, cat, engine=engine)
    got = run_user_sql(ws.lake, 'SELECT sum("order"), sum("end"), min("group"), max(limit_score) FROM cube_segment_day').fetchone()
    calls, drops = run_user_sql(ws.lake, "SELECT count(*), count_if(dropped) FROM xdr_voice").fetchone()
    assert got[0] == calls and got[1] == drops and 0 <= got[2] <= 100 and got[3] is not None


def test_a_cei_section_without_mode_replaces_the_tree_with_a_warning(tmp_path):
    f = write(tmp_path, "cei.yaml", """\
cei:
  indices:
    - {name: video, weight: 1, kqis: {video_smoothness: 1}}
""")
    cat = load_catalog(TABLES, [f])
    assert [n.name for n in cat.cei.indices] == ["video"]
    warnings = [str(i) for i in cat.issues if i.level == "warning" and i.file == f.resolve()]
    assert warnings == ["Definition file cei.yaml, line 1, field cei: this cei: section replaces the whole CEI tree "
                        "in force (from library/kqi_cei.yaml: indices voice, mobile_data, video, iot, home_broadband, "
                        "care); write mode: extend to add to it, or mode: replace to say the replacement is meant."]


def test_mode_replace_replaces_without_a_warning(tmp_path):
    f = write(tmp_path, "cei.yaml", """\
cei:
  mode: replace
  indices:
    - {name: video, weight: 1, kqis: {video_smoothness: 1}}
""")
    cat = load_catalog(TABLES, [f])
    assert [n.name for n in cat.cei.indices] == ["video"]
    assert not [i for i in cat.issues if i.file == f.resolve()]


def test_mode_extend_adds_a_kqi_and_keeps_the_rest_of_the_tree(tmp_path):
    library = load_catalog(TABLES)
    f = write(tmp_path, "cei.yaml", """\
kqis:
  - {name: video_rebuffer_ratio, expr: video_start_success_pct, service: video, score: {good: 100, bad: 90}}
cei:
  mode: extend
  indices:
    - name: video
      kqis: {video_rebuffer_ratio: 0.1}
    - name: voice
      weight: 0.5
    - name: wholesale
      weight: 0.05
      kqis: {video_rebuffer_ratio: 1}
""")
    cat = load_catalog(TABLES, [f])
    assert cat.errors == [], cat.errors
    nodes = {n.name: n for n in cat.cei.indices}
    old = {n.name: n for n in library.cei.indices}
    assert list(nodes) == [*old, "wholesale"]
    assert nodes["video"].kqis == {**old["video"].kqis, "video_rebuffer_ratio": 0.1}
    assert nodes["video"].weight == old["video"].weight
    assert nodes["voice"].weight == 0.5 and nodes["voice"].kqis == old["voice"].kqis
    assert nodes["mobile_data"] == old["mobile_data"]


def test_extend_with_a_new_node_lacking_weight_or_kqis_is_an_error(tmp_path):
    f = write(tmp_path, "cei.yaml", """\
cei:
  mode: extend
  indices:
    - {name: wholesale}
    - {name: voice, kqis: {call_drop_pct: 1}}
""")
    errors = load_catalog(TABLES, [f]).errors
    assert "Definition file cei.yaml, line 4, field cei.indices[0].weight: index wholesale needs a weight (a positive number)." in errors
    assert "Definition file cei.yaml, line 4, field cei.indices[0].kqis: index wholesale needs at least one KQI with its weight." in errors
    assert any("field cei.indices[1].kqis.call_drop_pct: call_drop_pct is a KPI; an index weighs KQIs" in e for e in errors)


def test_cubes_extend_adds_and_replaces_by_table(tmp_path):
    library = load_catalog(TABLES)
    f = write(tmp_path, "cubes.yaml", """\
cubes:
  mode: extend
  list:
    - {dimensions: [cell_id], grains: [day], min_samples: 50}
    - {dimensions: [cdn_node], grains: [hour]}
""")
    dims = write(tmp_path, "dims.yaml", """\
dimensions:
  - {name: cdn_node, resolve: [{column: cdn_node}]}
""")
    cat = load_catalog(TABLES, [dims, f])
    tables = {c.table(g): c for c in cat.cubes for g in c.grains}
    before = {c.table(g) for c in library.cubes for g in c.grains}
    assert set(tables) == before | {"cube_cdn_node_hour"}
    assert tables["cube_cell_day"].min_samples == 50 and tables["cube_cell_15min"].min_samples == 10
    assert not [i for i in cat.issues if i.file in (f.resolve(), dims.resolve())]


def test_a_bare_cubes_list_replaces_them_with_a_warning(tmp_path):
    f = write(tmp_path, "cubes.yaml", "cubes:\n  - {dimensions: [segment]}\n")
    cat = load_catalog(TABLES, [f])
    assert [c.table("day") for c in cat.cubes] == ["cube_segment_day"]
    warnings = [str(i) for i in cat.issues if i.level == "warning" and i.file == f.resolve()]
    n = len(load_catalog(TABLES).cubes)
    assert len(warnings) == 1 and f"this cubes: list replaces the {n} cubes in force (from library/dimensions.yaml)" in warnings[0]


@pytest.mark.parametrize("score", ["{good: .inf, bad: 3}", "{good: 0.5, bad: .nan}",
                                   "{points: [[0, 100], [.inf, 0]]}", "{points: [[0, .nan], [5, 0]]}"])
def test_infinite_or_nan_scores_are_one_sentence(tmp_path, score):
    f = write(tmp_path, "k.yaml", f"""\
kqis:
  - {{name: my_drops, expr: call_drop_pct, service: voice, score: {score}}}
""")
    errors = load_catalog(TABLES, [f]).errors
    assert errors and all(e.startswith("Definition file k.yaml, line 2, field kqis[0].score") for e in errors), errors
    assert any("finite number" in e for e in errors), errors


@pytest.mark.parametrize("weight", [".inf", ".nan", "-.inf"])
def test_infinite_or_nan_weights_are_refused(tmp_path, weight):
    f = write(tmp_path, "c.yaml", f"""\
cei:
  mode: extend
  indices:
    - {{name: voice, weight: {weight}}}
""")
    errors = load_catalog(TABLES, [f]).errors
    assert any(e.startswith("Definition file c.yaml, line 4, field cei.indices[0].weight") for e in errors), errors


def test_a_shape_error_does_not_hide_the_other_problems_of_the_file(tmp_path):
    f = write(tmp_path, "k.yaml", """\
kpis:
  - {name: good_one, source: xdr_voice, expr: count(*)}
  - {name: no_source, expr: count(*)}
  - {name: bad_expr, source: xdr_voice, expr: sum(droped)}
kqis:
  - {name: q, expr: good_one, service: voice, score: {good: 1, bad: 1}}
""")
    cat = load_catalog(TABLES, [f, f])  # the same file twice is read once
    assert cat.errors == [
        "Definition file k.yaml, line 3, field kpis[1].source: Field required.",
        "Definition file k.yaml, line 6, field kqis[0].score: good and bad are both 1.0; they must differ.",
        "Definition file k.yaml, line 4, field kpis[2].expr: unknown column droped (did you mean dropped?).",
    ]
    assert "good_one" in cat.kpis


def test_cube_keys_are_checked_when_written(ws, monkeypatch):
    # Two rows for a key never reach the lake: the run stops and nothing is committed.
    import pyarrow as pa

    from opencem.indicators import evaluate as ev

    real = ev.conform

    def doubled(out, spec):
        out = real(out, spec)
        return pa.concat_tables([out, out.slice(0, 1)])

    monkeypatch.setattr(ev, "conform", doubled)
    cat = load_catalog(ws.tables())
    with pytest.raises(ev.EvaluateError, match=r"cube_segment_day for 20\d\d-\d\d-\d\d has 1 rows more than keys"):
        evaluate(ws.lake, cat, only=["cube_segment_day"])
    assert not (ws.lake.root / "cube_segment_day").exists() or not list((ws.lake.root / "cube_segment_day").rglob("*.parquet"))
    assert pq  # the lake holds nothing of the failed run
