"""The twin's truth stays apart from what it observes (issue 11, items 1 and 2): simulate writes
it under OUT/truth/, ingest refuses it, ``opencem truth load`` keeps it in the workspace's truth
area, nothing on the lake's side can read it, and the labelled cases follow their documented
rule (one per poor subscriber-service-hour, labelled by precedence)."""

from __future__ import annotations

import ast
import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from opencem.engines.duckdb import QueryError, query_lake
from opencem.indicators.catalog import load_catalog
from opencem.ingest.load import IngestError, ingest
from opencem.lake import Lake
from opencem.schema import TABLES
from opencem.schema.truth import TRUTH_TABLES
from opencem.simulate import labels
from opencem.simulate.config import SimConfig
from opencem.simulate.faults import PRECEDENCE
from opencem.simulate.run import simulate
from opencem.simulate.truth import MARKER, TruthError, connect_with_truth, load_truth
from opencem.workspace import Workspace

SRC = Path(__file__).resolve().parents[2] / "src" / "opencem"
FAULT_COLUMNS = {"fault_id", "fault_type", "precedence", "overlapping_faults"}


def test_truth_is_written_apart_and_no_observable_file_carries_a_label(sim_dir):
    truth = sim_dir / "truth"
    assert json.loads((truth / MARKER).read_text())["complete"] is True
    assert {p.stem for p in truth.glob("*.parquet")} == {"faults", "fault_periods", "cell_periods"}
    assert sorted(truth.glob("cases/*.parquet"))
    for path in (sim_dir / "tables").rglob("*.parquet"):
        assert not FAULT_COLUMNS & set(pq.read_schema(path).names), path
    assert not set(TRUTH_TABLES) & set(TABLES) and "ground_truth" not in TABLES


def test_ingest_leaves_the_truth_out_and_refuses_it_by_name(sim_dir, lake, tmp_path):
    # The session's lake was ingested from the whole simulator folder: no table or file of it
    # holds a label.
    for path in lake.root.rglob("*.parquet"):
        assert not FAULT_COLUMNS & set(pq.read_schema(path).names), path
    assert not (set(TRUTH_TABLES) | {"ground_truth"}) & set(lake.tables)
    fresh = Lake(tmp_path / "lake")
    for target in (sim_dir / "truth", sim_dir / "truth" / "faults.parquet",
                   next((sim_dir / "truth" / "cases").glob("*.parquet"))):
        with pytest.raises(IngestError, match=r"simulator's truth.*opencem truth load"):
            ingest(fresh, [target])
    # A copy of the truth folder elsewhere is still recognised by its marker.
    copy = tmp_path / "landing" / "labels"
    shutil.copytree(sim_dir / "truth", copy)
    (tmp_path / "landing" / "cells.parquet").write_bytes((sim_dir / "tables" / "cells.parquet").read_bytes())
    report = ingest(fresh, [tmp_path / "landing"])
    assert [f.source.path.name for f in report.files] == ["cells.parquet"]


def test_nothing_on_the_lake_side_can_read_the_truth_area(sim_dir, lake, tmp_path):
    ws = Workspace(tmp_path / "ws")
    shutil.copytree(lake.root, ws.root / "lake")
    load_truth(sim_dir / "truth", ws.truth_dir)
    # The lake's SQL face: no truth tables, no file access outside the lake.
    for sql in ("SELECT * FROM truth.faults", "SELECT * FROM faults", "SELECT * FROM ground_truth",
                f"SELECT * FROM read_parquet('{ws.truth_dir}/faults.parquet')"):
        with pytest.raises(QueryError):
            query_lake(ws.lake, sql)
    # The indicator engine: a definition over a truth table is refused by name.
    defs = ws.root / "indicators"
    defs.mkdir()
    for source in ("faults", "cases", "ground_truth", "truth.faults"):
        (defs / "leak.yaml").write_text(f"kpis:\n  - name: leak_count\n    source: {source}\n"
                                        "    expr: count(*)\n    unit: count\n")
        cat = load_catalog(ws.tables(), ws.definition_files())
        assert any("unknown source table" in str(i) and "leak.yaml" in str(i) for i in cat.issues), source
    # The truth connection (demo and scoring only) does see it.
    con = connect_with_truth(ws.lake, ws.truth_dir)
    assert con.execute("SELECT count(*) FROM truth.faults").fetchone()[0] > 0


# Packages that must never read the truth: everything that turns observations into KPIs,
# alerts, diagnoses, tickets or answers. Only simulate/, the faces' demo and truth commands
# and the data-model docs may; ingest may know the marker's name, to refuse the folder.
BLIND = ("lake", "store", "engines", "ingest", "indicators", "stream", "rules", "diagnose", "analytics",
         "workflow", "api", "web")


def test_no_scoring_package_imports_the_truth():
    wrong = []
    for package in BLIND:
        for path in sorted((SRC / package).rglob("*.py")) if (SRC / package).is_dir() else []:
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.ImportFrom):
                    module = ("." * node.level) + (node.module or "")
                    names = {a.name for a in node.names}
                    if "simulate" in module.split(".") or (module.endswith("truth") and not names <= {"TRUTH_MARKER", "SIMULATION_MARKER"}):
                        wrong.append(f"{path.relative_to(SRC)}:{node.lineno} from {module} import {sorted(names)}")
                elif isinstance(node, ast.Import):
                    wrong += [f"{path.relative_to(SRC)}:{node.lineno} import {a.name}" for a in node.names
                              if a.name.startswith(("opencem.simulate", "opencem.schema.truth"))]
    assert not wrong, "\n".join(wrong)


def test_truth_load_checks_the_folder_and_replaces_the_old_truth(sim_dir, tmp_path):
    area = tmp_path / "ws" / "truth"
    with pytest.raises(TruthError, match="no such folder"):
        load_truth(tmp_path / "missing", area)
    with pytest.raises(TruthError, match="not a simulator truth folder"):
        load_truth(sim_dir / "tables", area)
    bad = tmp_path / "bad"
    shutil.copytree(sim_dir / "truth", bad)
    marker = json.loads((bad / MARKER).read_text())
    (bad / MARKER).write_text(json.dumps({**marker, "complete": False}))
    with pytest.raises(TruthError, match="did not finish"):
        load_truth(bad, area)
    (bad / MARKER).write_text(json.dumps(marker))
    pq.write_table(pq.read_table(bad / "faults.parquet").drop(["domain"]), bad / "faults.parquet")
    with pytest.raises(TruthError, match="faults.parquet: missing column domain"):
        load_truth(bad, area)
    (bad / "faults.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(TruthError, match="faults.parquet: not a readable Parquet file"):
        load_truth(bad, area)
    assert not area.exists()  # nothing half-loaded
    rows = load_truth(sim_dir / "truth", area)
    assert rows["faults"] == pq.read_metadata(sim_dir / "truth" / "faults.parquet").num_rows
    (area / "stale.txt").write_text("from an older load")
    load_truth(sim_dir / "truth", area)
    assert not (area / "stale.txt").exists()


# --- the cases -------------------------------------------------------------------------------


def test_cases_are_one_per_poor_subscriber_service_hour_and_count_the_sessions(truth_db):
    db = truth_db
    dup = db.execute("""SELECT count(*) - count(DISTINCT (subscriber_id, service, hour_start))
                        FROM truth.cases""").fetchone()[0]
    assert dup == 0
    assert db.execute("""SELECT count(*) FILTER (poor_sessions < 1 OR poor_sessions > sessions
                                               OR (domain = 'none') <> (fault_id IS NULL))
                         FROM truth.cases""").fetchone()[0] == 0
    # `sessions` is the number of records the lake holds for that subscriber, service and hour.
    for service, table in (("voice", "xdr_voice"), ("mobile_data", "xdr_data"), ("video", "xdr_video")):
        wrong, checked = db.execute(f"""
            WITH x AS (SELECT subscriber_id, date_trunc('hour', start_time) AS hour_start, count(*) AS n
                       FROM {table} GROUP BY ALL)
            SELECT count(*) FILTER (x.n IS DISTINCT FROM c.sessions), count(*)
            FROM truth.cases c LEFT JOIN x USING (subscriber_id, hour_start) WHERE c.service = '{service}'
            """).fetchone()
        assert checked > 100 and wrong == 0, service


def test_every_fault_case_lies_in_its_fault_and_carries_its_labels(truth_db):
    db = truth_db
    wrong = db.execute("""
        SELECT count(*) FROM truth.cases c JOIN truth.faults f USING (fault_id)
        WHERE NOT (c.hour_start + INTERVAL 1 HOUR > f.start_time AND c.hour_start < f.end_time)
           OR c.domain <> f.domain OR c.cause <> f.cause OR c.location_type <> f.location_type
           OR c.location_id <> f.location_id OR c.fault_type <> f.fault_type
           OR position(c.service IN f.affected_services) = 0""").fetchone()[0]
    assert wrong == 0
    assert db.execute("SELECT count(*) FROM truth.cases c ANTI JOIN truth.faults f USING (fault_id) "
                      "WHERE c.fault_id IS NOT NULL").fetchone()[0] == 0
    # a congested or interfered cell's cases come from sessions served by that cell in that hour
    unserved = db.execute("""
        SELECT count(*) FROM truth.cases c
        WHERE c.fault_type IN ('congestion', 'interference') AND c.service = 'voice' AND NOT EXISTS (
            SELECT 1 FROM xdr_voice v WHERE v.subscriber_id = c.subscriber_id AND v.cell_id = c.location_id
              AND date_trunc('hour', v.start_time) = c.hour_start)""").fetchone()[0]
    assert unserved == 0
    # account cases are the subscriber's own
    assert db.execute("""SELECT count(*) FROM truth.cases WHERE domain = 'account'
                         AND location_id <> subscriber_id""").fetchone()[0] == 0
    # both kinds exist: faults and ordinary conditions, on every mobile service
    kinds = dict(db.execute("""SELECT service, count(DISTINCT domain = 'none') FROM truth.cases
                               GROUP BY ALL""").fetchall())
    assert all(kinds[s] == 2 for s in ("voice", "mobile_data", "video", "home_broadband")), kinds


def test_cell_and_fault_periods_say_when_each_fault_was_active(truth_db):
    db = truth_db
    # every network fault on a cell: the periods it touches, none outside its window (a
    # constant fault every one, an intermittent one some: it goes off and on)
    rows = db.execute("""
        SELECT f.fault_id, f.shape,
               ceil((epoch(f.end_time) - epoch(time_bucket(INTERVAL 15 MINUTE, f.start_time))) / 900) AS touched,
               count(p.period_start) AS got,
               count(*) FILTER (p.period_start + INTERVAL 15 MINUTE <= f.start_time
                                OR p.period_start >= f.end_time) AS outside
        FROM truth.faults f LEFT JOIN truth.cell_periods p
          ON p.fault_id = f.fault_id AND p.cell_id = f.location_id
        WHERE f.fault_type IN ('cell_outage', 'congestion', 'interference', 'sleeping_cell') GROUP BY ALL""").fetchall()
    assert rows and all(outside == 0 and (got == touched if shape != "intermittent" else 0 < got < touched)
                        for _, shape, touched, got, outside in rows), rows
    assert any(shape == "intermittent" for _, shape, *_ in rows) or len(rows) < 4
    # a backhaul fault impairs every cell of its site
    site_cells = db.execute("""
        SELECT count(DISTINCT p.cell_id), (SELECT count(*) FROM cells k WHERE k.site_id = f.location_id)
        FROM truth.faults f JOIN truth.cell_periods p USING (fault_id)
        WHERE f.fault_type = 'backhaul_degradation' GROUP BY f.fault_id, f.location_id""").fetchall()
    assert site_cells and all(a == b for a, b in site_cells)
    # fault periods: one row per 15 minutes every fault that is not one subscriber's was on
    wrong = db.execute("""
        SELECT count(*) FROM (
            SELECT f.fault_id, f.shape,
                   ceil((epoch(f.end_time) - epoch(time_bucket(INTERVAL 15 MINUTE, f.start_time))) / 900) AS touched,
                   count(p.period_start) AS got
            FROM truth.faults f LEFT JOIN truth.fault_periods p USING (fault_id)
            WHERE f.location_type <> 'subscriber' GROUP BY ALL)
        WHERE NOT (got = touched OR shape = 'intermittent' AND 0 < got AND got < touched)""").fetchone()[0]
    assert wrong == 0


def _index(types: list[str]) -> labels.FaultIndex:
    n = len(types)
    obj = lambda values: np.array(values, dtype=object)  # noqa: E731
    return labels.FaultIndex(obj([f"F{i}" for i in range(n)]), obj(types), obj(["pipe"] * n), obj(types),
                             obj(["cell"] * n), obj([f"C{i}" for i in range(n)]),
                             np.append([PRECEDENCE.index(t) + 1 for t in types], labels.NONE_RANK).astype(np.int16))


def test_precedence_labels_a_case_with_overlapping_faults():
    index = _index(["interference", "core_degradation", "firmware_bug"])
    # subscriber 1, hour 0: a poor session under interference (rank 10) and one under a core
    # fault (rank 5) -> core labels the case, two faults overlap. Subscriber 2: a poor session
    # with no fault and a good one under the firmware bug -> a none case (a good session's
    # fault labels nothing). Subscriber 3: no poor session -> no case.
    sub = np.array([1, 1, 2, 2, 3])
    t_ms = np.array([10, 20, 30, 40, 50]) * 1000
    poor = np.array([True, True, True, False, False])
    cands = np.array([[0, -1], [-1, 1], [-1, -1], [2, -1], [2, 1]])
    condition = np.array([5, 5, 0, 5, 5], np.int8)
    cell = np.array([0, 0, 1, 1, 1])
    table = labels.cases("voice", sub, t_ms, 0, poor, cands, condition, cell, ["C0", "C1"], index).to_pylist()
    assert [r["subscriber_id"] for r in table] == ["S00000001", "S00000002"]
    first, second = table
    assert (first["fault_type"], first["fault_id"], first["overlapping_faults"], first["poor_sessions"],
            first["sessions"]) == ("core_degradation", "F1", 2, 2, 2)
    assert (second["domain"], second["fault_id"], second["fault_type"], second["location_type"],
            second["location_id"], second["overlapping_faults"]) == ("none", None, "weak_coverage", "cell", "C1", 0)
    # The order is the documented one: the account before settings before the network before
    # the cloud before the device model.
    assert PRECEDENCE.index("suspension") < PRECEDENCE.index("volte_off") < PRECEDENCE.index("cell_outage") \
        < PRECEDENCE.index("cdn_degradation") < PRECEDENCE.index("firmware_bug")


def test_fault_rate_zero_leaves_only_ordinary_cases(tmp_path):
    out = simulate(SimConfig(subscribers=1500, days=1, seed=3, fault_rate=0), tmp_path / "sim").out_dir
    assert pq.read_metadata(out / "truth" / "faults.parquet").num_rows == 0
    assert pq.read_metadata(out / "truth" / "cell_periods.parquet").num_rows == 0
    cases = pq.read_table(out / "truth" / "cases")
    assert cases.num_rows > 0 and set(cases.column("domain").to_pylist()) == {"none"}


def test_most_poor_experience_is_ordinary_not_injected(truth_db):
    # docs/simulator.md's target for a mid-size run: 20-50 % of poor sessions caused by
    # injected faults, the rest by ordinary conditions (weak coverage, load, interference,
    # home Wi-Fi, servers), on every service. A twin where nearly every poor session is a
    # fault would let "poor, so faulty" pass for diagnosis.
    shares = dict(truth_db.execute("""
        SELECT service, sum(poor_sessions) FILTER (domain <> 'none') / sum(poor_sessions)
        FROM truth.cases GROUP BY 1""").fetchall())
    assert set(shares) == {"voice", "mobile_data", "video", "home_broadband"}
    assert all(0.2 <= v <= 0.5 for v in shares.values()), shares
    # and the ordinary conditions are several, not one
    kinds = {r[0] for r in truth_db.execute("SELECT DISTINCT fault_type FROM truth.cases WHERE domain = 'none'").fetchall()}
    assert {"weak_coverage", "low_sinr", "busy_hour_load", "ordinary_variation", "home_wifi"} <= kinds


def test_review_holes_around_the_truth_are_closed(sim_dir, lake, tmp_path, monkeypatch):
    # a symlink to a truth file, under an innocent name, is still the truth
    link = tmp_path / "landing" / "xdr_voice.parquet"
    link.parent.mkdir()
    link.symlink_to(sim_dir / "truth" / "faults.parquet")
    with pytest.raises(IngestError, match="simulator's truth"):
        ingest(Lake(tmp_path / "lake"), [link])
    # DuckDB's default temp folder (./.tmp of the working directory) is not readable from SQL
    ws = Workspace(tmp_path / "ws")
    shutil.copytree(lake.root, ws.root / "lake")
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".tmp").mkdir()
    shutil.copy(sim_dir / "truth" / "faults.parquet", tmp_path / ".tmp" / "f.parquet")
    with pytest.raises(QueryError, match="disabled by configuration|Permission"):
        query_lake(ws.lake, "SELECT * FROM '.tmp/f.parquet'")
    # a workspace table cannot take a truth table's name
    from opencem.schema.user import load_table_spec

    spec = tmp_path / "faults.schema.yaml"
    spec.write_text("table: faults\ndomain: network\ndescription: labels\nkeys: [fault_id]\n"
                    "columns:\n  - {name: fault_id, type: string, description: id}\n")
    with pytest.raises(Exception, match="simulator truth table"):
        load_table_spec(spec, TABLES)
    # a truth file with a column of the wrong type, or an empty required value, is refused
    bad = tmp_path / "bad"
    shutil.copytree(sim_dir / "truth", bad)
    t = pq.read_table(bad / "faults.parquet")
    pq.write_table(t.set_column(t.schema.get_field_index("start_time"), "start_time",
                                t.column("start_time").cast("string")), bad / "faults.parquet")
    with pytest.raises(TruthError, match="column start_time is string"):
        load_truth(bad, tmp_path / "area")


def test_an_unfinished_simulation_is_not_ingested(tmp_path):
    out = simulate(SimConfig(subscribers=500, days=1, seed=2), tmp_path / "sim").out_dir
    (out / "manifest.json").unlink()  # as a run killed before its end leaves it
    with pytest.raises(IngestError, match="did not finish"):
        ingest(Lake(tmp_path / "lake"), [out])
