"""Cell PM counters aggregated from the sessions each cell carried, and FM alarms.

Counters are computed per (cell, 15-minute period) with ``np.bincount`` over the session
outcomes, so a fault that hurts sessions shows in the counters of the same cell and period.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from ..schema.network import ALARMS
from .faults import PERIOD_MS, PERIODS_PER_DAY, FaultPlan
from .geography import PROVINCES, VENDOR_BY_PROVINCE, Network
from .ids import ids, timestamps_ms
from .mobile import Outcome

GRANULARITY_S = 900


class CellTraffic:
    """Per (cell, 15-minute period) sums of what one day's sessions did, added service by
    service so each service's session arrays can be freed before the next is generated."""

    def __init__(self, n_cells: int, day: int):
        self.n_cells, self.p0 = n_cells, day * PERIODS_PER_DAY
        size = n_cells * PERIODS_PER_DAY
        self.sessions, self.failed, self.abnormal = np.zeros(size), np.zeros(size), np.zeros(size)
        self.kbit, self.transfer_ms, self.connected_s = np.zeros(size), np.zeros(size), np.zeros(size)

    def add(self, o: Outcome) -> None:
        key = o.frame.cell * PERIODS_PER_DAY + (o.frame.period - self.p0)
        size = len(self.sessions)
        for total, weights in ((self.sessions, None), (self.failed, o.setup_failed),
                               (self.abnormal, o.abnormal_release), (self.kbit, o.bytes_dl * 0.008),
                               (self.transfer_ms, o.transfer_ms), (self.connected_s, o.connected_s)):
            w = None if weights is None else np.asarray(weights, float)
            total += np.bincount(key, weights=w, minlength=size)

    def grid(self, name: str) -> np.ndarray:
        return getattr(self, name).reshape(self.n_cells, PERIODS_PER_DAY)


def pm_counters(net: Network, plan: FaultPlan, traffic: CellTraffic, day: int,
                rng: np.random.Generator) -> pa.Table:
    """Wide counter table (one row per radio cell and period of ``day``) in canonical names."""
    per_day = PERIODS_PER_DAY
    p0 = day * per_day
    n_cells = net.n_cells
    size = n_cells * per_day
    sessions, failed, abnormal = traffic.grid("sessions"), traffic.grid("failed"), traffic.grid("abnormal")
    kbit, thp_ms, connected_s = traffic.grid("kbit"), traffic.grid("transfer_ms"), traffic.grid("connected_s")

    down = plan.cell_down[:, p0:p0 + per_day]
    load = plan.cell_load[:, p0:p0 + per_day]
    up = ~down
    # Signalling-only connections (TAU, keep-alives) ride on top of the sampled sessions.
    background = rng.poisson(4 + 30 * load) * up
    rrc_att = sessions + background
    rrc_fail = np.minimum(failed + rng.binomial(background, 0.003), rrc_att)
    rrc_succ = rrc_att - rrc_fail
    erab_fail = rng.binomial(rrc_succ.astype(np.int64), 0.002 + 0.2 * plan.province_core[
        net.site_province[net.cell_site]][:, p0:p0 + per_day])
    erab_succ = rrc_succ - erab_fail
    ho_att = rng.poisson(0.3 * rrc_succ + 1) * up
    interfered = plan.cell_interference_db[:, p0:p0 + per_day] > 0
    ho_fail = rng.binomial(ho_att.astype(np.int64), np.where(interfered, 0.08, 0.01))

    period_start = plan.start_ms + (p0 + np.arange(per_day)) * PERIOD_MS
    cell_province = net.site_province[net.cell_site]
    vendor = np.array([VENDOR_BY_PROVINCE[p] for p in PROVINCES])[cell_province]
    site_ids = net.site_ids[net.cell_site]
    rep = lambda a: np.repeat(a, per_day)  # noqa: E731 - per-cell value on every period row
    cols = {
        "cell_id": rep(net.cell_ids),
        "site_id": rep(site_ids),
        "managed_element": rep(np.char.add("ME-", site_ids)),
        "technology": rep(np.array(["4G", "5G"])[net.cell_tech]),
        "vendor": rep(vendor),
        "period_start": timestamps_ms(np.tile(period_start, n_cells)),
        "granularity_s": np.full(size, GRANULARITY_S, np.int32),
        "RRC.ConnEstabAtt": rrc_att,
        "RRC.ConnEstabSucc": rrc_succ,
        "ERAB.EstabInitAttNbr": rrc_succ,
        "ERAB.EstabInitSuccNbr": erab_succ,
        "ERAB.RelActNbr": erab_succ,
        "ERAB.RelAbnormalEnbAct": np.minimum(abnormal, erab_succ),
        "DRB.UEThpVolDl": np.round(kbit, 3),
        "DRB.UEThpTimeDl": np.round(thp_ms),
        "RRU.PrbTotDl": np.round(np.where(down, 0, load * 100), 2),
        "RRC.ConnMean": np.round(connected_s / GRANULARITY_S + background * 0.05, 3),
        "HO.ExeAtt": ho_att,
        "HO.ExeSucc": ho_att - ho_fail,
        "RRU.CellUnavailableTime": down * float(GRANULARITY_S),
    }
    for name, values in cols.items():
        if isinstance(values, np.ndarray) and values.ndim == 2:
            cols[name] = values.ravel().astype(np.float64)
    return pa.table(cols)


ALARM_NOISE = (
    ("minor", "vswr-high", "VSWR over threshold on RF port"),
    ("warning", "high-temperature", "Board temperature high"),
    ("minor", "fan-failure", "Fan unit degraded"),
    ("warning", "license-capacity", "Licensed capacity usage above 90%"),
    ("major", "gps-sync-loss", "GPS synchronisation lost, holdover"),
)


def alarms(net: Network, plan: FaultPlan, days: int, rng: np.random.Generator) -> pa.Table:
    """Alarms raised by the faults (outages, OLT failures, most backhaul faults) plus the
    everyday noise every NOC sees; alarms still active at the end have no clear time."""
    end_ms = plan.start_ms + plan.n_periods * PERIOD_MS
    cell_index = {c: i for i, c in enumerate(net.cell_ids)}
    olt_index = {c: i for i, c in enumerate(net.olt_ids)}
    site_index = {s: i for i, s in enumerate(net.site_ids)}
    site_vendor = np.array([VENDOR_BY_PROVINCE[p] for p in PROVINCES])[net.site_province]
    olt_vendor = np.array([VENDOR_BY_PROVINCE[p] for p in PROVINCES])[net.olt_province]
    rows = []

    def add(t0, t1, severity, probable, alarm_text, dn, site_id, cell_id, vendor):
        rows.append((int(t0), None if t1 >= end_ms else int(t1), severity, probable, alarm_text,
                     dn, site_id, cell_id, vendor))

    for f in plan.faults:
        t0 = plan.period_ms(f.start_period) + int(rng.integers(0, 120_000))
        t1 = plan.period_ms(f.end_period) + int(rng.integers(0, 120_000))
        if f.fault_type == "cell_outage":
            c = cell_index[f.location_id]
            s = net.cell_site[c]
            add(t0, t1, "critical", "cell-unavailable", "Cell out of service",
                f"ManagedElement=ME-{net.site_ids[s]},Cell={f.location_id}", net.site_ids[s],
                f.location_id, site_vendor[s])
        elif f.fault_type == "olt_outage":
            add(t0, t1, "critical", "pon-port-down", "PON port down, ONUs unreachable",
                f"ManagedElement=ME-{f.location_id}", f.location_id, f.location_id,
                olt_vendor[olt_index[f.location_id]])
        elif f.fault_type == "backhaul_degradation" and rng.random() < 0.7:
            s = site_index[f.location_id]
            add(t0, t1, "major", "transmission-degraded", "Backhaul errored seconds over threshold",
                f"ManagedElement=ME-{f.location_id}", f.location_id, None, site_vendor[s])

    n_noise = rng.poisson(0.05 * len(net.site_x) * days)
    noise_site = rng.integers(0, len(net.site_x), n_noise)
    kind = rng.integers(0, len(ALARM_NOISE), n_noise)
    start = rng.integers(plan.start_ms, end_ms, n_noise)
    stop = start + rng.exponential(3 * 3600_000, n_noise).astype(np.int64)
    for s, k, t0, t1 in zip(noise_site, kind, start, stop):
        sid = net.site_ids[s]
        add(t0, t1, *ALARM_NOISE[k], f"ManagedElement=ME-{sid}", sid, None, site_vendor[s])

    rows.sort(key=lambda r: r[0])
    names = ["raised_at", "cleared_at", "severity", "probable_cause", "alarm_text", "object_dn",
             "site_id", "cell_id", "vendor"]
    cols = {name: [r[i] for r in rows] for i, name in enumerate(names)}
    ts = pa.timestamp("ms", tz="UTC")
    cols["raised_at"] = pa.array(cols["raised_at"], pa.int64()).cast(ts)
    cols["cleared_at"] = pa.array(cols["cleared_at"], pa.int64()).cast(ts)
    cols["vendor"] = [str(v) for v in cols["vendor"]]
    cols["alarm_id"] = ids("A", np.arange(len(rows)), 7)
    return pa.table(cols).select(ALARMS.schema.names).cast(ALARMS.schema)
