"""PRB load from the traffic each cell carries.

Each subscriber's expected data demand per hour (usage, segment, the local-time profile of the
day) is put on the cell serving the place they are likely to be at that hour (home, work,
leisure, as the sessions are drawn). A cell's load is its demand over its capacity; the
capacity is calibrated once so that nine cells in ten stay under 85 % at their busiest hour
(one in ten runs hot: ordinary busy-hour load, no fault). A cell that is down passes its
users' demand to the cells they fall back to; a sleeping cell carries little; a congestion
event multiplies the cell's demand. The subscribers each cell serves per period (where they
are likely to be, whatever their usage) are kept too: PM counters model the phones' own
signalling connections from them (network_pm.py).
"""

from __future__ import annotations

import numpy as np

from .calendar import hour_weights, working_hours
from .config import SimConfig, rng_for
from .faults import PERIODS_PER_DAY, FaultPlan
from .geography import Network
from .population import Population

HOT_SHARE, HOT_LOAD = 0.10, 0.85  # one cell in ten above 85 % at its busy hour
SEGMENT_DATA = np.array([1.4, 1.0, 0.7, 1.5, 1.0])  # as frame.SEGMENT_DATA
CONTROL_LOAD = 0.03  # reference signals and control channels: PRBs used with no traffic


def place_weights(has_job: np.ndarray, working: bool, evening: bool) -> np.ndarray:
    """(subscribers, 3) probability of being at home, work, leisure in an hour of that kind
    (the rules ``frame.draw_frame`` draws sessions by)."""
    p_work = np.where(has_job & working, 0.7, 0.1 if evening else 0.0)
    p_leisure = np.where(has_job & working, 0.1, 0.3 if evening else 0.1)
    return np.stack([1 - p_work - p_leisure, p_work, p_leisure], axis=1)


def offered_load(cfg: SimConfig, net: Network, pop: Population, plan: FaultPlan) -> None:
    """Set ``plan.cell_load`` (cells x periods, 0..1), ``plan.cell_overload`` (demand over
    capacity, unclipped), ``plan.cell_demand`` (the expected data sessions a cell carries per
    period) and ``plan.cell_users`` (the expected subscribers it serves in the period)."""
    rng = rng_for(cfg.seed, "cell-load")
    n_cells = net.n_cells
    per_sub = cfg.services.data_per_day * pop.usage_factor * SEGMENT_DATA[pop.segment]
    kinds, present = {}, {}
    for working, evening in ((False, False), (True, False), (False, True)):
        where = place_weights(pop.has_job, working, evening)
        w = where * per_sub[:, None]
        kinds[(working, evening)] = sum(np.bincount(pop.link[a].cell, weights=w[:, a], minlength=n_cells)
                                        for a in range(3))
        present[(working, evening)] = sum(np.bincount(pop.link[a].cell, weights=where[:, a], minlength=n_cells)
                                          for a in range(3))
    demand = np.zeros((n_cells, plan.n_periods), np.float32)
    users = np.zeros((n_cells, plan.n_periods), np.float32)
    for day in range(cfg.days):
        w, volume = hour_weights(cfg, day, "data")
        working, evening = working_hours(cfg, day)
        for h in range(24):
            kind = (bool(working[h]), bool(evening[h]) and not working[h])
            p = day * PERIODS_PER_DAY + 4 * h
            demand[:, p:p + 4] = (kinds[kind] * w[h] * volume / 4)[:, None]
            users[:, p:p + 4] = present[kind][:, None]
    demand *= rng.lognormal(0, 0.12, demand.shape).astype(np.float32)  # minute-to-minute variation
    usual_peak = demand.max(axis=1)  # before any crowd: capacity is built for the usual busy hour
    if plan.cell_surge is not None:  # a crowd: more people, each using more
        demand *= plan.cell_surge
        users *= plan.cell_surge

    # Capacity: 5G cells carry five times a 4G carrier (100 vs 20 MHz); a third of 4G cells
    # have a second carrier.
    carriers = np.where(net.cell_tech == 1, 5.0, np.where(rng.random(n_cells) < 0.33, 2.0, 1.0))
    busiest = usual_peak / carriers
    unit = np.quantile(busiest[busiest > 0], 1 - HOT_SHARE) / (HOT_LOAD - CONTROL_LOAD) if (busiest > 0).any() else 1.0
    capacity = carriers * unit

    # A cell down sends its users to their fallback cells, in the shares they fall back.
    down = plan.cell_down
    if down.any():
        serving = np.concatenate([pop.link[a].cell for a in range(3)])
        fallback = np.concatenate([pop.link[a].fallback_cell for a in range(3)])
        order = np.argsort(serving, kind="stable")
        bounds = np.searchsorted(serving[order], np.arange(n_cells + 1))
        for c in np.flatnonzero(down.any(axis=1)):
            periods = np.flatnonzero(down[c])
            row = fallback[order[bounds[c]:bounds[c + 1]]]
            targets, counts = np.unique(row, return_counts=True)
            share = counts / max(len(row), 1)
            for grid in (demand, users):
                grid[np.ix_(targets, periods)] += share[:, None] * grid[c, periods][None, :]
                grid[c, periods] = 0
    sleeping = plan.severity_grid["cell_sleep"]
    demand *= 1 - sleeping
    users *= 1 - sleeping  # a sleeping cell still broadcasts, but phones barely get through it
    plan.cell_demand = demand
    plan.cell_users = users
    plan.cell_overload = (demand / capacity[:, None]).astype(np.float32)
    # a congestion event exhausts the cell whatever its usual load: demand above capacity
    surge = plan.severity_grid["cell_congestion"]
    plan.cell_overload = np.where(surge > 0, np.maximum(plan.cell_overload, 1.05 + 0.5 * surge),
                                  plan.cell_overload).astype(np.float32)
    plan.cell_load = np.clip(CONTROL_LOAD + plan.cell_overload, 0.01, 0.99).astype(np.float32)
    plan.cell_load[down] = 0.0
