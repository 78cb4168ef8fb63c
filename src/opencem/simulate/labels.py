"""What really made each poor experience poor: the truth that diagnosis and alerting are scored on.

A session is labelled with the fault on its path that impairs its service, and when several
are, the first in :data:`~opencem.simulate.faults.PRECEDENCE`. A (subscriber, service, hour) is
a *case* when at least one of its sessions is poor by the generator's rule (``Outcome.poor`` in
``mobile.py``; a line-hour with 60 s of outage or a Wi-Fi quality score under 20 for home
broadband). The case takes the label of its poor sessions by precedence; when no fault was on
the path of any of them its domain is ``none`` and its cause is the ordinary condition of its
worst poor session (weak coverage, low SINR, busy-hour load, home Wi-Fi, a CPE reboot, or
ordinary variation).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from ..schema.truth import CASES, CELL_PERIODS, FAULT_PERIODS, NO_FAULT
from .faults import PERIOD_MS, FaultPlan
from .frame import HOUR_MS, Frame
from .geography import Network
from .ids import ids

# Ordinary conditions behind poor experience with no fault, worst first.
ORDINARY = ("weak_coverage", "low_sinr", "busy_hour_load", "home_wifi", "cpe_reboot", "ordinary_variation")
ORDINARY_CAUSE = ("weak coverage at the place (no fault)", "low SINR from ordinary interference (no fault)",
                  "busy-hour load within capacity (no fault)", "weak Wi-Fi in the home (no fault)",
                  "customer equipment restarted or the home lost power (no fault)", "ordinary variation (no fault)")
ORDINARY_AT_CELL = 3  # the first three are located at the serving cell
WEAK_RSRP_DBM, LOW_SINR_DB, BUSY_LOAD = -110.0, 0.0, 0.75
NONE_RANK = np.int16(32767)


@dataclass(frozen=True)
class FaultIndex:
    """The plan's faults as arrays, for labelling whole columns at once."""

    fault_id: np.ndarray
    fault_type: np.ndarray
    domain: np.ndarray
    cause: np.ndarray
    location_type: np.ndarray
    location_id: np.ndarray
    rank: np.ndarray  # one more entry than faults: NONE_RANK, which index -1 reads

    @classmethod
    def of(cls, plan: FaultPlan) -> FaultIndex:
        f = plan.faults

        def arr(name: str) -> np.ndarray:
            return np.array([getattr(x, name) for x in f], dtype=object)

        return cls(np.asarray(ids("F", np.arange(len(f)), 6).to_numpy(zero_copy_only=False), dtype=object),
                   arr("fault_type"), arr("domain"), arr("cause"), arr("location_type"), arr("location_id"),
                   np.append(plan.rank, NONE_RANK).astype(np.int16))


def mobile_candidates(frame: Frame) -> np.ndarray:
    """(sessions, k) fault indexes on each session's path (-1: none): the faults the
    generators applied, as they recorded them in ``frame.hits``."""
    return np.stack([np.asarray(v, np.int32) for v in frame.hits.values()], axis=1)


def mobile_condition(frame: Frame) -> np.ndarray:
    """The ordinary condition (index into :data:`ORDINARY`) each session met."""
    return np.where(frame.rsrp_dbm < WEAK_RSRP_DBM, 0, np.where(
        frame.sinr_db < LOW_SINR_DB, 1, np.where(frame.load > BUSY_LOAD, 2, 5))).astype(np.int8)


def mobile_cases(service: str, frame: Frame, poor: np.ndarray, plan: FaultPlan, net: Network,
                 index: FaultIndex) -> pa.Table:
    """``truth/cases`` rows of one service's sessions (a whole day of a range of subscribers)."""
    cands = mobile_candidates(frame)
    return cases(service, frame.sub, frame.t_ms, plan.start_ms, poor, cands, mobile_condition(frame),
                 frame.cell, net.cell_ids, index)


def broadband_cases(sub: np.ndarray, t_ms: np.ndarray, olt_fault: np.ndarray, outage_s: np.ndarray,
                    wifi_quality: np.ndarray, plan: FaultPlan, index: FaultIndex) -> pa.Table:
    """``truth/cases`` rows of hourly line records (``olt_fault``: the OLT fault that took the
    line down in the hour, as the generator applied it)."""
    poor = (outage_s >= 60) | (wifi_quality < 20)
    condition = np.where(outage_s >= 60, 4, 3).astype(np.int8)
    return cases("home_broadband", sub, t_ms, plan.start_ms, poor, olt_fault[:, None].astype(np.int32),
                 condition, np.full(len(sub), -1), np.array([], object), index)


def cases(service: str, sub: np.ndarray, t_ms: np.ndarray, start_ms: int, poor: np.ndarray,
          cands: np.ndarray, condition: np.ndarray, cell: np.ndarray, cell_ids, index: FaultIndex) -> pa.Table:
    """One row per (subscriber, hour) with a poor session, labelled by precedence."""
    hour = (t_ms - start_ms) // HOUR_MS
    key = (sub.astype(np.int64) << 16) | hour
    all_keys, sessions = np.unique(key, return_counts=True)
    kp, cp, cond, cellp = key[poor], cands[poor], condition[poor], cell[poor]
    rank = index.rank[cp]  # -1 reads NONE_RANK
    best = cp[np.arange(len(cp)), np.argmin(rank, axis=1)] if cp.shape[1] else np.full(len(cp), -1)
    order_rank = np.where(best >= 0, index.rank[best].astype(np.int32), 40_000 + cond.astype(np.int32))
    order = np.lexsort((order_rank, kp))
    case_key, first, poor_n = np.unique(kp[order], return_index=True, return_counts=True)
    pick = order[first]
    fault, cond_c, cell_c = best[pick], cond[pick], cellp[pick]
    # distinct faults on the case's poor sessions
    hit = cp >= 0
    pairs = np.unique(np.stack([np.repeat(kp, hit.sum(axis=1)), cp[hit].astype(np.int64)], axis=1), axis=0) \
        if hit.any() else np.empty((0, 2), np.int64)
    per_key, overlap_n = np.unique(pairs[:, 0], return_counts=True)
    overlapping = np.zeros(len(case_key), np.int16)
    overlapping[np.searchsorted(case_key, per_key)] = overlap_n  # every pair's key is a case
    faulty = fault >= 0
    f = np.where(faulty, fault, 0)
    ordinary = np.array(ORDINARY, object)[cond_c]
    at_cell = (cond_c < ORDINARY_AT_CELL) & (cell_c >= 0)
    cell_name = np.asarray(cell_ids, dtype=object)[np.where(at_cell, cell_c, 0)] if len(cell_ids) else \
        np.full(len(cell_c), "", object)

    def pick_text(from_fault: np.ndarray, otherwise: np.ndarray) -> np.ndarray:
        return np.where(faulty, from_fault[f] if len(from_fault) else otherwise, otherwise)

    hour_start = start_ms + (case_key & 0xFFFF) * HOUR_MS
    table = pa.table({
        "subscriber_id": ids("S", case_key >> 16, 8),
        "service": pa.array(np.full(len(case_key), service, object), pa.string()),
        "hour_start": pa.array(hour_start, pa.timestamp("ms", tz="UTC")),
        "domain": pick_text(index.domain, np.full(len(f), NO_FAULT, object)),
        "cause": pick_text(index.cause, np.array(ORDINARY_CAUSE, object)[cond_c]),
        "location_type": pick_text(index.location_type, np.where(at_cell, "cell", "none").astype(object)),
        "location_id": pick_text(index.location_id, np.where(at_cell, cell_name, "").astype(object)),
        "fault_id": pa.array(pick_text(index.fault_id, np.full(len(f), None, object)), pa.string()),
        "fault_type": pick_text(index.fault_type, ordinary),
        "overlapping_faults": overlapping.astype(np.int16),
        "poor_sessions": poor_n.astype(np.int32),
        "sessions": sessions[np.searchsorted(all_keys, case_key)].astype(np.int32),
    })
    return table.cast(CASES.schema)


def cell_periods_table(plan: FaultPlan, net: Network, index: FaultIndex) -> pa.Table:
    """``truth/cell_periods``: (cell, 15 minutes, fault) where a network fault impaired the cell."""
    g = plan.fault_grid
    grids = (g["cell_down"], g["cell_sleep"], g["cell_congestion"], g["cell_interference"],
             g["site_backhaul"][net.cell_site], g["province_core"][net.site_province[net.cell_site]])
    cells, periods, faults = [], [], []
    for grid in grids:
        c, p = np.nonzero(grid >= 0)
        cells.append(c)
        periods.append(p)
        faults.append(grid[c, p])
    c, p, f = (np.concatenate(x) for x in (cells, periods, faults))
    order = np.lexsort((f, p, c))
    c, p, f = c[order], p[order], f[order]
    return pa.table({
        "cell_id": pa.array(np.asarray(net.cell_ids, object)[c], pa.string()),
        "period_start": pa.array(plan.start_ms + p.astype(np.int64) * PERIOD_MS, pa.timestamp("ms", tz="UTC")),
        "fault_id": pa.array(index.fault_id[f] if len(f) else np.array([], object), pa.string()),
        "fault_type": pa.array(index.fault_type[f] if len(f) else np.array([], object), pa.string()),
        "domain": pa.array(index.domain[f] if len(f) else np.array([], object), pa.string()),
    }).cast(CELL_PERIODS.schema)


def fault_periods_table(plan: FaultPlan, index: FaultIndex) -> pa.Table:
    """``truth/fault_periods``: every 15-minute period each network, cloud or device-model fault
    was on, on its own object (an intermittent fault has gaps; per-subscriber faults are whole
    rows of ``truth/faults``)."""
    from .faults import FAULT_TYPES

    which, period, severity = [], [], []
    for name, grid in plan.fault_grid.items():
        obj, p = np.nonzero(grid >= 0)
        which.append(grid[obj, p].astype(np.int64))
        period.append(p.astype(np.int64))
        severity.append(plan.severity_grid[name][obj, p])
    for i, f in enumerate(plan.faults):  # faults without a grid: a place or a device model, whole window
        if FAULT_TYPES[f.fault_type].grid is None and f.location_type != "subscriber":
            p = np.arange(f.start_period, f.end_period, dtype=np.int64)
            which.append(np.full(len(p), i, np.int64))
            period.append(p)
            severity.append(np.full(len(p), f.severity, np.float32))
    which, period, severity = (np.concatenate(x) if x else np.array([], np.int64) for x in (which, period, severity))
    order = np.lexsort((period, which))
    which, period, severity = which[order], period[order], severity[order]
    empty = np.array([], object)

    def text(values: np.ndarray) -> pa.Array:
        return pa.array(values[which] if len(which) else empty, pa.string())

    return pa.table({
        "fault_id": text(index.fault_id), "object_type": text(index.location_type),
        "object_id": text(index.location_id),
        "period_start": pa.array(plan.start_ms + period * PERIOD_MS, pa.timestamp("ms", tz="UTC")),
        "fault_type": text(index.fault_type),
        "severity": pa.array(severity.astype(np.float32), pa.float32()),
    }).cast(FAULT_PERIODS.schema)
