"""Simulator bugs named by the twin v2 review (issue 11): fault rate 0 is a network without
injected faults, any rate over any window plans without crashing, throttling follows the
rate, and only customers with a line complain about broadband."""

from __future__ import annotations

import numpy as np
import pytest

from opencem.engines.duckdb import connect
from opencem.simulate.config import SimConfig
from opencem.simulate.faults import plan_faults
from opencem.simulate.frame import day_start_ms
from opencem.simulate.geography import build_network
from opencem.simulate.population import build_population


def planned(**config):
    cfg = SimConfig(**{"subscribers": 1500, "days": 1, "seed": 3, **config})
    net = build_network(cfg, int(cfg.subscribers * cfg.broadband_share))
    pop = build_population(cfg, net)
    return plan_faults(cfg, net, pop, day_start_ms(cfg, 0)), pop


def test_fault_rate_zero_injects_nothing():
    plan, _ = planned(fault_rate=0)
    assert plan.faults == []
    assert not plan.firmware_bug.any() and not plan.volte_off.any() and not plan.wrong_apn.any()
    assert np.isinf(plan.throttled_from_ms).all() and np.isinf(plan.suspended_from_ms).all()
    assert not plan.cell_down.any() and not plan.cell_interference_db.any()


@pytest.mark.parametrize("rate", [0.5, 3.0, 20.0])
def test_any_rate_over_a_week_plans_without_crashing(rate):
    # "Cannot take a larger sample than population": more faults asked than busy cells.
    plan, _ = planned(days=7, fault_rate=rate)
    types = {f.fault_type for f in plan.faults}
    assert {"cell_outage", "interference", "congestion", "backhaul_degradation"} <= types
    for f in plan.faults:
        assert 0 <= f.start_period < f.end_period <= plan.n_periods, f


def test_throttling_follows_the_fault_rate():
    counts = {}
    for rate in (1.0, 3.0):
        plan, pop = planned(subscribers=4000, fault_rate=rate)
        counts[rate] = int(np.isfinite(plan.throttled_from_ms).sum())
        throttled = sum(f.fault_type == "data_cap_throttling" for f in plan.faults)
        assert throttled == counts[rate]
        assert np.isfinite(pop.data_cap_gb[np.isfinite(plan.throttled_from_ms)]).all()  # capped plans only
    assert counts[1.0] > 0 and 2.4 < counts[3.0] / counts[1.0] < 3.6, counts


def test_only_customers_with_a_line_complain_about_broadband(lake):
    db = connect(lake)  # its own connection: the shared one may hold another test's result
    without, total = db.sql("""SELECT count_if(NOT s.has_broadband), count(*) FROM complaints c
                               JOIN subscribers s USING (subscriber_id) WHERE c.category = 'broadband'""").fetchall()[0]
    assert without == 0 and total > 0
    lines = db.sql("SELECT count_if(has_broadband), count(*) FROM subscribers").fetchall()[0]
    assert 0 < lines[0] < lines[1]
