"""Edge cases rendered per engine, checked against values computed by hand in Python:
division by zero, empty filters, nulls, ln outside its domain, exact percentiles with ties,
time buckets at bucket edges."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import numpy as np
import pyarrow as pa
import pytest

from opencem.indicators.catalog import library_files, load_catalog
from opencem.indicators.evaluate import run_plan
from opencem.indicators.plan import compile_cube
from opencem.indicators.spec import Cube
from opencem.lake import Lake
from opencem.schema import TABLES
from tests.conftest import spark_or_skip

T0 = datetime(2026, 1, 5, tzinfo=UTC)
DEFS = """
kpis:
  - {name: drop_pct, source: xdr_voice, expr: "100 * count_if(dropped) / count_if(setup_success)"}
  - {name: p90_setup_ms, source: xdr_voice, expr: "percentile(setup_time_ms, 0.9)"}
  - {name: median_setup_ms, source: xdr_voice, expr: "median(setup_time_ms)"}
  - {name: log_loss, source: xdr_voice, expr: "avg(ln(packet_loss_pct))"}
  - {name: mod_calls, source: xdr_voice, expr: "coalesce(sum(sip_cause_code % 0), -1) + count(*)"}
  - {name: csfb_calls, source: xdr_voice, expr: "count(*)", filter: "voice_bearer = 'CSFB'"}
  - {name: distinct_subs, source: xdr_voice, expr: "count(distinct subscriber_id)"}
  - {name: cells_seen, source: xdr_voice, expr: "count(distinct cell_id)"}
  - {name: mean_delay_ms, source: xdr_voice, expr: "avg(one_way_delay_ms)"}
kqis:
  - {name: retain, service: voice, expr: drop_pct, score: {points: [[0, 100], [1, 80], [5, 0]]}}
  - {name: delay, service: voice, expr: mean_delay_ms, score: {good: 100, bad: 400}}
cei:
  indices: [{name: voice, weight: 1, kqis: {retain: 2, delay: 1}}]
"""


def voice_rows() -> pa.Table:
    """Cell A: 4 calls in the first 15 min (2 answered, 1 dropped), one on the bucket edge.
    Cell B: 3 calls, none answered (drop rate 0/0). Setup times with ties and a null."""
    spec = TABLES["xdr_voice"]
    rows = [
        # cell, seconds after T0, setup_success, dropped, setup_ms, loss_pct, bearer, sub, delay
        ("A", 0, True, True, 100.0, 1.0, "VoLTE", "s1", 80.0),
        ("A", 899.999, True, False, 100.0, 0.0, "VoLTE", "s2", 120.0),
        ("A", 300, False, False, 300.0, -1.0, "CSFB", "s1", None),
        ("A", 600, False, False, None, None, "VoLTE", "s3", 400.0),
        ("A", 900, True, False, 50.0, 2.0, "VoLTE", "s4", 90.0),  # next bucket
        ("B", 10, False, False, 200.0, 0.5, "CSFB", "s5", 200.0),
        ("B", 20, False, False, 400.0, 0.5, "CSFB", "s5", 300.0),
        ("B", 30, False, False, 400.0, 0.5, "VoLTE", "s6", 500.0),
    ]
    n = len(rows)
    data = {f.name: pa.nulls(n, f.type) for f in spec.columns}
    data["call_id"] = pa.array([f"c{i}" for i in range(n)])
    data["cell_id"] = pa.array([r[0] for r in rows])
    data["start_time"] = pa.array([T0 + timedelta(seconds=r[1]) for r in rows], spec.column("start_time").type)
    data["setup_success"] = pa.array([r[2] for r in rows])
    data["dropped"] = pa.array([r[3] for r in rows])
    data["setup_time_ms"] = pa.array([r[4] for r in rows], pa.float32())
    data["packet_loss_pct"] = pa.array([r[5] for r in rows], pa.float32())
    data["voice_bearer"] = pa.array([r[6] for r in rows])
    data["subscriber_id"] = pa.array([r[7] for r in rows])
    data["one_way_delay_ms"] = pa.array([r[8] for r in rows], pa.float32())
    data["sip_cause_code"] = pa.array([200] * n, pa.int16())
    return pa.table([data[f.name] for f in spec.columns], schema=spec.schema)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    lake = Lake(root / "lake")
    with lake.transaction() as txn:
        txn.append(TABLES["xdr_voice"], voice_rows())
    defs = root / "defs.yaml"
    defs.write_text(DEFS)
    dims = [p for p in library_files() if p.name == "dimensions.yaml"]
    cat = load_catalog(TABLES, [*dims, defs], library=False)
    assert cat.errors == []
    return lake, cat


def expected():
    def pct(values, q):  # linear interpolation between closest ranks, as both engines
        return float(np.quantile(np.array(values, float), q))
    return {
        ("A", 0): dict(drop_pct=50.0, p90_setup_ms=pct([100, 100, 300], 0.9), median_setup_ms=100.0,
                       log_loss=0.0, mod_calls=3.0, csfb_calls=1.0, distinct_subs=3.0, mean_delay_ms=(80 + 120 + 400) / 3, cells_seen=1.0),
        ("A", 900): dict(drop_pct=0.0, p90_setup_ms=50.0, median_setup_ms=50.0, log_loss=float(np.log(2.0)),
                         mod_calls=0.0, csfb_calls=0.0, distinct_subs=1.0, mean_delay_ms=90.0, cells_seen=1.0),
        ("B", 0): dict(drop_pct=None, p90_setup_ms=pct([200, 400, 400], 0.9), median_setup_ms=400.0,
                       log_loss=float(np.log(0.5)), mod_calls=2.0, csfb_calls=2.0, distinct_subs=2.0,
                       mean_delay_ms=1000 / 3, cells_seen=1.0),
    }


@pytest.mark.parametrize("engine", ["duckdb", "spark"])
def test_edge_cases_match_hand_computed_values(tiny, engine):
    if engine == "spark":
        spark_or_skip()
    lake, cat = tiny
    plan = compile_cube(cat, TABLES, Cube(dimensions=["cell_id"]), "15min")
    out = run_plan(lake, plan, engine, date(2026, 1, 5), date(2026, 1, 5))
    got = {(r["cell_id"], int((r["period_start"] - T0).total_seconds())): r for r in out.to_pylist()}
    assert set(got) == set(expected())
    for key, values in expected().items():
        row = got[key]
        for name, value in values.items():
            if value is None:
                assert row[name] is None, (key, name)
            else:
                assert row[name] == pytest.approx(value, rel=1e-12), (key, name, row[name])
    # ln(0) and ln(-1) are NULL on both engines, so cell A's first bucket averages ln(1) only;
    # x % 0 is NULL (mod_calls = -1 + count), and 0/0 is NULL, not inf or an error.
    # Scores: drop 50% -> 0 (clamped), 0% -> 100; delay 200 ms -> 66.7; 0/0 drop rate -> no score,
    # and the index renormalises over the KQI that is present.
    assert got[("A", 900)]["retain_score"] == 100.0
    assert got[("B", 0)]["retain_score"] is None
    assert got[("B", 0)]["voice_index"] == pytest.approx(got[("B", 0)]["delay_score"])
    a = got[("A", 0)]
    assert a["voice_index"] == pytest.approx((2 * a["retain_score"] + a["delay_score"]) / 3)
    assert a["records_xdr_voice"] == 4
