"""The pooling evidence rule (issue 10): a thin quarter-hour takes its session KQIs' scores from
its hour, a quarter-hour without records stays unscored, and everything else is untouched."""

from __future__ import annotations

import math

import pytest

from opencem.indicators.catalog import load_catalog
from opencem.indicators.evaluate import run_plan
from opencem.indicators.plan import compile_cube
from opencem.indicators.spec import Cube


def by_key(table) -> dict:
    return {(r["cell_id"], r["period_start"]): r for r in table.to_pylist()}


def test_thin_quarter_hours_take_the_hours_scores(lake):
    cat = load_catalog(lake.tables)
    pooled = by_key(run_plan(lake, compile_cube(cat, lake.tables, Cube(dimensions=["cell_id"], grains=["15min"],
                                                                         min_samples=10, pool="hour"), "15min")))
    plain = by_key(run_plan(lake, compile_cube(cat, lake.tables, Cube(dimensions=["cell_id"], min_samples=10), "15min")))
    hour = by_key(run_plan(lake, compile_cube(cat, lake.tables, Cube(dimensions=["cell_id"], min_samples=10), "hour")))
    assert pooled.keys() == plain.keys()
    taken = kept = empty = 0
    for key, row in pooled.items():
        base, cell, start = plain[key], key[0], key[1]
        hr = hour[(cell, start.replace(minute=0))]
        n = row["records_xdr_voice"]
        if 0 < n < 10:
            assert row["voice_retainability_score"] == hr["voice_retainability_score"]
            if hr["voice_retainability_score"] is not None:
                assert row["evidence_pooled"] is True
            taken += hr["voice_retainability_score"] is not None
        elif n == 0:
            assert row["voice_retainability_score"] is None  # a cell without calls (down) stays unscored
            empty += 1
        else:
            assert row["voice_retainability_score"] == base["voice_retainability_score"]
            kept += 1
        # KPI and KQI values stay the quarter-hour's own; only scores are pooled.
        assert row["call_drop_pct"] == base["call_drop_pct"] or (row["call_drop_pct"] is None and base["call_drop_pct"] is None)
        # The CEI is recomputed from the scores in force.
        if not row["evidence_pooled"]:
            assert row["cei"] == pytest.approx(base["cei"], rel=1e-12) if base["cei"] is not None else row["cei"] is None
    assert taken > 100 and kept > 100 and empty > 0
    # A pooled row's CEI differs from the plain one where a pooled score entered it.
    assert any(r["evidence_pooled"] and not math.isclose(r["cei"], plain[k]["cei"] or -1) for k, r in pooled.items())


def test_pool_needs_a_coarser_grain_and_an_evidence_rule():
    with pytest.raises(ValueError, match="needs min_samples above 1"):
        Cube(dimensions=["cell_id"], grains=["15min"], pool="hour")
    with pytest.raises(ValueError, match="must be coarser than a grain of the cube"):
        Cube(dimensions=["cell_id"], grains=["day"], min_samples=10, pool="hour")
