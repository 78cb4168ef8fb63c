"""Helpers for the vendor PM tests: the library's RAN KPIs of a lake, computed by opencem."""

from __future__ import annotations

import pytest

from opencem.indicators.catalog import load_catalog
from opencem.indicators.evaluate import run_plan
from opencem.indicators.plan import compile_cube
from opencem.indicators.spec import Cube
from opencem.lake import Lake

RAN_KPIS = ["rrc_setup_success_pct", "erab_setup_success_pct", "initial_erab_establishment_success_pct",
            "erab_drop_pct", "erab_drops_per_session_hour", "dl_user_throughput_mbps", "ho_success_pct",
            "cell_availability_pct", "prb_utilisation_dl_pct", "rrc_connected_users_mean",
            "nr_qos_flow_setup_success_pct", "bearer_accessibility_pct", "bearer_drop_pct", "nr_qos_flow_drop_pct"]


def ran_kpis(lake: Lake, dimensions: tuple[str, ...] = ("cell_id",), grain: str = "15min") -> dict[tuple, dict]:
    """(period_start, *dimensions) -> {KPI: value} for the library's RAN KPIs, as opencem
    computes them (the standard catalogue compiled to a cube and run on DuckDB)."""
    cat = load_catalog(lake.tables)
    plan = compile_cube(cat, lake.tables, Cube(dimensions=list(dimensions)), grain, kpis=RAN_KPIS)
    out = run_plan(lake, plan).to_pylist()
    return {(r["period_start"], *(r[d] for d in dimensions)): {k: r[k] for k in RAN_KPIS} for r in out}


@pytest.fixture
def kpis():
    """:func:`ran_kpis`; compare with ``pytest.approx`` (None for a null KPI)."""
    return ran_kpis
