"""Rule evaluation: states in event time, at the scale of every cell and subscriber, against
references written independently here (brute force in Python over the same input)."""

from __future__ import annotations

from datetime import UTC, datetime

import duckdb
import numpy as np
import pyarrow as pa
import pytest

from opencem.rules.evaluate import Relations, RuleEngine
from opencem.rules.events import fingerprint

W = 900_000  # a quarter-hour, ms
T0 = int(datetime(2026, 1, 5, tzinfo=UTC).timestamp() * 1000)  # a Monday




def cube(con, rows: dict[str, list], name: str = "cube_cell_15min") -> None:
    con.register("_rows", pa.table(rows))
    con.execute(f"CREATE OR REPLACE TABLE {name} AS SELECT * FROM _rows")
    con.unregister("_rows")


def ts(ms) -> list[datetime]:
    return [datetime.fromtimestamp(m / 1000, UTC) for m in ms]


def engine(con, rules, **rel) -> RuleEngine:
    relations = Relations(cubes={"cube_cell_15min": "cube_cell_15min"}, window_s={"cube_cell_15min": 900}, **rel)
    return RuleEngine(con, rules, relations, {"stall_ratio_pct": "lower", "cei": "higher"})


STALL = """      - alert: Stall
        expr: cube_cell_15min.stall_ratio_pct > 3 and cube_cell_15min.records_xdr_video >= 20
        for: 30m
        keep_firing_for: 15m
"""


def test_the_sql_fingerprint_is_the_python_one():
    con = duckdb.connect()
    from opencem.rules.sql import fingerprint_sql

    got = con.execute(f"SELECT {fingerprint_sql('R', ['cell_id', 'a'])} FROM (SELECT 'C 1' AS cell_id, 'x' AS a)").fetchall()
    assert got[0][0] == fingerprint("R", {"cell_id": "C 1", "a": "x"})


def test_states_move_in_event_time_and_a_repeated_step_adds_nothing(rules_of, tmp_path):
    con = duckdb.connect()
    values = [1, 5, 5, 5, 1, 1, 1]
    cube(con, {"period_start": ts([T0 + i * W for i in range(7)]), "cell_id": ["C1"] * 7,
               "stall_ratio_pct": [float(v) for v in values], "records_xdr_video": [30] * 7})
    rules = rules_of(STALL)
    eng = engine(con, rules)
    seen = []
    for i in range(1, 8):  # the clock passes one window end at a time
        seen += [(i, e.state.value, e.window_start) for e in eng.step({"cube_cell_15min": T0 + i * W})]
    assert seen == [(2, "pending", ts([T0 + W])[0]), (3, "firing", ts([T0 + 2 * W])[0]),
                    (6, "resolved", ts([T0 + 5 * W])[0])]
    assert eng.step({"cube_cell_15min": T0 + 7 * W}) == []
    # a restarted engine on the same state goes on from there and produces nothing twice
    again = engine(con, rules)
    assert again.step({"cube_cell_15min": T0 + 7 * W}) == []
    keys = [r[0] for r in con.execute("SELECT key FROM rules_events ORDER BY seq").fetchall()]
    assert len(keys) == len(set(keys)) == 3


def test_one_step_covers_every_window_the_clock_passed(rules_of, tmp_path):
    con = duckdb.connect()
    cube(con, {"period_start": ts([T0 + i * W for i in range(7)]), "cell_id": ["C1"] * 7,
               "stall_ratio_pct": [1.0, 5, 5, 5, 1, 1, 1], "records_xdr_video": [30] * 7})
    events = engine(con, rules_of(STALL)).step({"cube_cell_15min": T0 + 7 * W})
    assert [e.state.value for e in events] == ["pending", "firing", "resolved"]
    firing = events[1]
    assert firing.episode_start == ts([T0 + W])[0] and firing.at == ts([T0 + 3 * W])[0]
    assert firing.value == 5.0 and firing.evidence["stall_ratio_pct"] == 5.0
    assert firing.evidence["records_xdr_video"] == 30 and firing.labels["cell_id"] == "C1"


def test_twenty_thousand_cells_in_one_statement_per_window(rules_of, tmp_path):
    rng = np.random.default_rng(3)
    cells = np.array([f"C{i:05d}" for i in range(20_000)])
    bad = rng.random((3, cells.size)) < 0.3  # a cell is bad in a window with probability 0.3
    rows = {"period_start": [], "cell_id": [], "stall_ratio_pct": [], "records_xdr_video": []}
    for w in range(3):
        rows["period_start"] += ts([T0 + w * W] * cells.size)
        rows["cell_id"] += cells.tolist()
        rows["stall_ratio_pct"] += np.where(bad[w], 4.0, 1.0).tolist()
        rows["records_xdr_video"] += [25] * cells.size
    con = duckdb.connect()
    cube(con, rows)
    events = engine(con, rules_of(STALL)).step({"cube_cell_15min": T0 + 3 * W})
    firing = {e.labels["cell_id"] for e in events if e.state.value == "firing"}
    # firing needs two bad windows in a row
    expected = set(cells[(bad[0] & bad[1]) | (bad[1] & bad[2])])
    assert firing == expected and len(expected) > 2000
    pending_now = {r[0] for r in con.execute("SELECT object_id FROM rules_series WHERE state = 'pending'").fetchall()}
    assert pending_now == set(cells[bad[2] & ~bad[1]])


@pytest.mark.parametrize("policy, fires", [("ok", False), ("alerting", True), ("nodata", True), ("keep_last", None)])
def test_no_data_policies(rules_of, tmp_path, policy, fires):
    con = duckdb.connect()
    # C1 reports three windows and then disappears while C2 goes on reporting
    cube(con, {"period_start": ts([T0, T0, T0 + W, T0 + W, T0 + 2 * W, T0 + 3 * W, T0 + 4 * W]),
               "cell_id": ["C1", "C2", "C1", "C2", "C2", "C2", "C2"],
               "stall_ratio_pct": [5.0, 1, 5, 1, 1, 1, 1], "records_xdr_video": [30] * 7})
    body = STALL.replace("keep_firing_for: 15m", f"no_data: {policy}").replace("for: 30m", "for: 15m")
    eng = engine(con, rules_of(body))
    events = eng.step({"cube_cell_15min": T0 + 5 * W})
    c1 = [(e.state.value, e.evidence.get("no_data", False)) for e in events if e.labels["cell_id"] == "C1"]
    if policy == "ok":
        assert c1 == [("firing", False), ("resolved", True)]
    elif policy == "keep_last":
        assert c1 == [("firing", False)]  # still firing: the last state is kept
    else:
        assert c1 == [("firing", False)]  # goes on firing on no data
        state = con.execute("SELECT state FROM rules_series WHERE object_id = 'C1'").fetchall()
        assert state == [("firing",)]


def test_a_late_revision_of_the_newest_window_is_evaluated_again(rules_of, tmp_path):
    con = duckdb.connect()
    cube(con, {"period_start": ts([T0, T0 + W]), "cell_id": ["C1", "C1"],
               "stall_ratio_pct": [5.0, 5.0], "records_xdr_video": [30, 30]})
    eng = engine(con, rules_of(STALL))
    assert [e.state.value for e in eng.step({"cube_cell_15min": T0 + 2 * W})] == ["pending", "firing"]
    # late records bring the second window under the threshold
    con.execute(f"UPDATE cube_cell_15min SET stall_ratio_pct = 1 WHERE epoch_ms(period_start) = {T0 + W}")
    events = eng.step({"cube_cell_15min": T0 + 2 * W}, revised={"cube_cell_15min": {T0 + W}})
    # re-run from the state before that window (pending after one bad window): the condition no
    # longer holds, so the firing alert resolves and the series is inactive again
    assert [(e.state.value, e.previous.value, e.window_start) for e in events] == [("resolved", "firing", ts([T0 + W])[0])]
    assert con.execute("SELECT count(*) FROM rules_series").fetchall() == [(0,)]


def test_anomaly_against_the_cells_own_hour_of_week(rules_of, tmp_path):
    rng = np.random.default_rng(11)
    cells = [f"C{i}" for i in range(40)]
    level = {c: rng.uniform(60, 90) for c in cells}  # every cell its own usual CEI
    rows = {"period_start": [], "cell_id": [], "cei": [], "stall_ratio_pct": [], "records_xdr_video": []}
    now = T0 + 28 * 86_400_000 + 10 * 3_600_000  # Monday 10:00, four weeks on
    times = [now - k * 7 * 86_400_000 + q * W for k in range(1, 5) for q in range(4)]  # same hour, 4 weeks
    for t in [*times, now]:
        for c in cells:
            v = level[c] + rng.normal(0, 1.0)
            if t == now and c == "C7":
                v = level[c] - 15  # far below its own usual, still ordinary for other cells
            rows["period_start"].append(ts([t])[0])
            rows["cell_id"].append(c)
            rows["cei"].append(v)
            rows["stall_ratio_pct"].append(0.0)
            rows["records_xdr_video"].append(30)
    con = duckdb.connect()
    cube(con, rows)
    body = """      - alert: Anomaly
        expr: anomaly(cube_cell_15min.cei) > 4
"""
    eng = engine(con, rules_of(body))
    con.execute("INSERT INTO rules_clock VALUES ('Anomaly', ?, ?)", [eng.rules[0].rule.version, now - W])
    events = eng.step({"cube_cell_15min": now + W})
    assert [e.labels["cell_id"] for e in events] == ["C7"]
    assert events[0].evidence["baseline_from_cei"] == "own hour of week"
    assert events[0].value is not None and events[0].evidence["anomaly_cei"] > 4
