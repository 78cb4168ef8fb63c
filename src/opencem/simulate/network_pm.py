"""Cell PM counters from the sessions each cell carried and the phones it serves, and FM alarms.

Counters are computed per (cell, 15-minute period). The sampled sessions (voice, data, video,
IoT) are added with ``np.bincount``, so a fault that hurts sessions shows in the counters of
the same cell and period. On top of them, every phone the cell serves opens connections of
its own (push notifications, app syncs, keep-alives, periodic tracking-area updates, bursts
split by the ~10 s inactivity timer), which is why a busy cell sees hundreds to thousands of
RRC setups in 15 minutes. Those connections meet the same conditions as the sessions of the
cell and period: they fail and drop with the sessions' mean probabilities. docs/simulator.md
("PM counters") gives the model and its figures.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from ..schema.network import ALARMS
from .faults import PERIOD_MS, PERIODS_PER_DAY, FaultPlan
from .geography import Network
from .ids import ids, timestamps_ms
from .mobile import Outcome

GRANULARITY_S = 900

# A phone's own connections. They follow the phone's use over the day (push and app syncs come
# with people's activity): CONNECTIONS_PER_SESSION per data session it is expected to make,
# plus a floor whatever the hour (keep-alives, periodic TAU). 8 data sessions a day make
# about 250 connections a day, 10 an hour; a busy cell's phones about 20 an hour each.
CONNECTIONS_PER_SESSION = 22.0
CONNECTIONS_PER_HOUR_FLOOR = 3.0
SIGNALLING_ONLY_SHARE = 0.25  # tracking-area updates and the like: an RRC connection, no bearer
CONNECTED_S_PER_CONNECTION = 11.0  # a burst of about 1 s, then the ~10 s inactivity timer
# A connection of seconds meets a quarter of a data session's radio-link-failure risk, and half
# of its drops have data in a buffer ("active", TS 32.425 4.2.2.6).
DROP_EXPOSURE, ACTIVE_AT_DROP = 0.25, 0.5
HO_PER_SESSION, HO_PER_CONNECTION = 0.3, 0.1  # outgoing handovers per connection set up
BASE_SETUP_FAILURE = 0.003  # where a cell carried no phone session to take conditions from
# Abnormal releases the core (MME, AMF) initiates while data is in flight: rare, more in a core fault.
CORE_DROP, CORE_DROP_PER_SEVERITY = 0.0003, 0.02


class CellTraffic:
    """Per (cell, 15-minute period) sums of what one day's sessions did, added service by
    service so each service's session arrays can be freed before the next is generated. Besides
    the outcomes it sums, over phone sessions, their setup-failure and drop probabilities: the
    conditions the cell's own background connections meet in that period."""

    def __init__(self, n_cells: int, day: int):
        self.n_cells, self.p0 = n_cells, day * PERIODS_PER_DAY
        size = n_cells * PERIODS_PER_DAY
        self.sessions, self.failed, self.abnormal = np.zeros(size), np.zeros(size), np.zeros(size)
        self.kbit, self.transfer_ms, self.connected_s = np.zeros(size), np.zeros(size), np.zeros(size)
        self.phones, self.failure_prob, self.drop_prob = np.zeros(size), np.zeros(size), np.zeros(size)

    def add(self, o: Outcome) -> None:
        key = o.frame.cell * PERIODS_PER_DAY + (o.frame.period - self.p0)
        size = len(self.sessions)
        for total, weights in ((self.sessions, None), (self.failed, o.setup_failed),
                               (self.abnormal, o.abnormal_release), (self.kbit, o.bytes_dl * 0.008),
                               (self.transfer_ms, o.transfer_ms), (self.connected_s, o.connected_s)):
            w = None if weights is None else np.asarray(weights, float)
            total += np.bincount(key, weights=w, minlength=size)
        if o.frame.anchor is None:  # IoT modules (no daily place) are not the phones that chatter
            return
        for total, weights in ((self.phones, None), (self.failure_prob, o.frame.radio_failure_prob()),
                               (self.drop_prob, o.frame.drop_prob())):
            total += np.bincount(key, weights=weights, minlength=size)

    def grid(self, name: str) -> np.ndarray:
        return getattr(self, name).reshape(self.n_cells, PERIODS_PER_DAY)

    def mean_prob(self, name: str, default: float) -> np.ndarray:
        """(cells, periods) mean of a per-session probability over the period's phone sessions;
        where there were none, the cell's mean over the day, else ``default``."""
        n, total = self.grid("phones"), self.grid(name)
        day = np.where(n.sum(axis=1) > 0, total.sum(axis=1) / np.maximum(n.sum(axis=1), 1), default)
        return np.where(n > 0, total / np.maximum(n, 1), day[:, None])


def pm_counters(net: Network, plan: FaultPlan, traffic: CellTraffic, day: int,
                rng: np.random.Generator) -> pa.Table:
    """Wide measurement table of ``day``: one row per radio cell and period, the key columns
    (pm_files.KEY_COLUMNS) and one float64 column per measurement of pm_files.MEASUREMENTS,
    which each cell reports under its technology's counter name (TS 32.425 on 4G cells,
    TS 28.552 on 5G cells). Counts are whole numbers; every identity of a real cell holds
    (successes <= attempts, drops <= releases <= successful setups)."""
    per_day = PERIODS_PER_DAY
    p0 = day * per_day
    n_cells = net.n_cells
    size = n_cells * per_day
    sessions, failed, abnormal = traffic.grid("sessions"), traffic.grid("failed"), traffic.grid("abnormal")
    kbit, thp_ms, connected_s = traffic.grid("kbit"), traffic.grid("transfer_ms"), traffic.grid("connected_s")

    down = plan.cell_down[:, p0:p0 + per_day]
    load = plan.cell_load[:, p0:p0 + per_day]
    up = ~down
    core = plan.province_core[net.site_province[net.cell_site]][:, p0:p0 + per_day]
    # The phones' own connections, from the subscribers the cell serves and their expected use.
    expected = (plan.cell_users[:, p0:p0 + per_day] * CONNECTIONS_PER_HOUR_FLOOR / 4
                + plan.cell_demand[:, p0:p0 + per_day] * CONNECTIONS_PER_SESSION)
    background = rng.poisson(expected) * up
    bg_failed = rng.binomial(background, traffic.mean_prob("failure_prob", BASE_SETUP_FAILURE))
    bg_setup = background - bg_failed
    rrc_att = sessions + background
    rrc_succ = np.maximum(sessions - failed, 0) + bg_setup
    bearer_att = rrc_succ - rng.binomial(bg_setup, SIGNALLING_ONLY_SHARE)
    bearer_succ = bearer_att - rng.binomial(bearer_att.astype(np.int64), 0.002 + 0.2 * core)
    # Drops: the sessions' own (radio link failures, active), then the background's.
    drop_p = DROP_EXPOSURE * traffic.mean_prob("drop_prob", 0.0015)
    bg_bearers = np.maximum(bearer_succ - (sessions - failed), 0).astype(np.int64)
    bg_drops = rng.binomial(rng.binomial(bg_bearers, drop_p), ACTIVE_AT_DROP)
    drops_ran = np.minimum(abnormal + bg_drops, bearer_succ)
    drops = drops_ran + rng.binomial((bearer_succ - drops_ran).astype(np.int64),
                                     CORE_DROP + CORE_DROP_PER_SEVERITY * core)
    ho_att = rng.poisson(HO_PER_SESSION * np.maximum(sessions - failed, 0) + HO_PER_CONNECTION * bg_setup + 1) * up
    interfered = plan.cell_interference_db[:, p0:p0 + per_day] > 0
    ho_fail = rng.binomial(ho_att.astype(np.int64), np.where(interfered, 0.08, 0.01))

    period_start = plan.start_ms + (p0 + np.arange(per_day)) * PERIOD_MS
    cell_province = net.site_province[net.cell_site]
    vendor = net.province_vendor[cell_province]
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
        "rrc_setup_attempts": rrc_att,
        "rrc_setup_successes": rrc_succ,
        "bearer_setup_attempts": bearer_att,
        "bearer_setup_successes": bearer_succ,
        # Every bearer set up is released, counted in the period it was set up (TS 32.401's
        # same-period rule; connections rarely outlive 15 minutes).
        "bearer_releases": bearer_succ,
        "bearer_drops_active": drops,
        "bearer_drops_ran_active": drops_ran,
        "thp_volume_dl_kbit": np.round(kbit, 3),
        "thp_time_dl_ms": np.round(thp_ms),
        "prb_usage_dl_pct": np.round(np.where(down, 0, load * 100), 2),
        "rrc_connected_mean": np.round((connected_s + background * CONNECTED_S_PER_CONNECTION) / GRANULARITY_S, 3),
        "ho_attempts": ho_att,
        "ho_successes": ho_att - ho_fail,
        "unavailable_s": np.round(plan.covered_s("cell_down", p0, p0 + per_day)),
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
# Fault management is imperfect, as a NOC sees it (issue 11, item 3; docs/simulator.md lists
# these shares). Which faults alarm at all:
SILENT_OUTAGE_SHARE = 0.15  # cell outages that raise no alarm at all: the OSS never hears, as of a sleeping cell
OLT_ALARM_SHARE = 0.95  # OLT outages mostly alarm: the PON port goes down hard
BACKHAUL_ALARM_SHARE = 0.5  # backhaul degradation crosses the transmission threshold only sometimes
FLAPPING_SHARE = 0.2  # alarmed faults whose alarm raises and clears repeatedly around the fault
# How late: raise and clear delays are lognormal (sigma 0.8), at least 10 s, at most the max.
RAISE_DELAY_MEDIAN_MS, RAISE_DELAY_MAX_MS = 2 * 60_000, 20 * 60_000
CLEAR_DELAY_MEDIAN_MS, CLEAR_DELAY_MAX_MS = 3 * 60_000, 30 * 60_000
# A threshold-crossing alarm (backhaul errored seconds) waits for the end of its 15-minute
# measurement period, to raise and to clear.
THRESHOLD_PERIOD_MS = PERIOD_MS
# Alarms with no fault behind them (a board reset, a sensor glitch, a maintenance lock), per
# object and day, each cleared within minutes; never while the object really is faulty.
FALSE_ALARMS_PER_DAY = {"cell-unavailable": 0.004, "transmission-degraded": 0.01, "pon-port-down": 0.005}
FALSE_ALARM_MEAN_MS = 6 * 60_000
FAULT_ALARMS = {  # probable cause: (severity, alarm text)
    "cell-unavailable": ("critical", "Cell out of service"),
    "pon-port-down": ("critical", "PON port down, ONUs unreachable"),
    "transmission-degraded": ("major", "Backhaul errored seconds over threshold"),
}


def fault_window_ms(plan: FaultPlan, fault) -> tuple[int, int]:
    """When ``fault`` began and ended (epoch ms)."""
    return fault.start_ms, fault.end_ms


def alarm_delays_ms(rng: np.random.Generator, median_ms: float, max_ms: float, n: int | None = None):
    """Delays in ms between an event and the OSS recording it (lognormal, 10 s to ``max_ms``)."""
    return np.clip(rng.lognormal(np.log(median_ms), 0.8, n), 10_000, max_ms).astype(np.int64)


def flapping(rng: np.random.Generator, t0: int, t1: int) -> list[tuple[int, int]]:
    """(raised, cleared) pairs of an alarm that clears and raises again 3-8 times while its
    fault lasts from ``t0`` to ``t1``, and half the time once more just after it recovered."""
    k = int(rng.integers(3, 9))
    raises = np.unique(np.r_[t0, rng.integers(t0 + 60_000, max(t0 + 120_000, t1), k - 1)])
    ends = np.r_[raises[1:], t1]
    clears = raises + ((ends - raises) * rng.uniform(0.3, 0.9, len(raises))).astype(np.int64)
    clears[-1] = t1
    pairs = list(zip(raises.tolist(), clears.tolist()))
    if rng.random() < 0.5:
        again = t1 + int(rng.integers(60_000, 600_000))
        pairs.append((again, again + int(rng.integers(60_000, 300_000))))
    return pairs


def alarms(net: Network, plan: FaultPlan, days: int, rng: np.random.Generator) -> pa.Table:
    """FM alarms as a real OSS exports them: the faults' alarms, late (raised and cleared
    minutes after the fault starts and ends), some flapping, with sleeping cells and silent
    backhaul faults raising none; false alarms with no fault behind them; and the everyday
    noise every NOC sees. Alarms still active at the end have no clear time."""
    end_ms = plan.start_ms + plan.n_periods * PERIOD_MS
    cell_index = {c: i for i, c in enumerate(net.cell_ids)}
    olt_index = {c: i for i, c in enumerate(net.olt_ids)}
    site_index = {s: i for i, s in enumerate(net.site_ids)}
    site_vendor = net.province_vendor[net.site_province]
    olt_vendor = net.province_vendor[net.olt_province]
    rows = []

    def add(t0, t1, severity, probable, alarm_text, dn, site_id, cell_id, vendor):
        if t0 < end_ms:  # an alarm raised after the window is not in its export
            rows.append((int(t0), None if t1 >= end_ms else int(t1), severity, probable, alarm_text,
                         dn, site_id, cell_id, vendor))

    def object_of(probable: str, i: int) -> tuple:
        """(DN, site id, cell id, vendor) of object ``i`` of the class the cause alarms on."""
        if probable == "cell-unavailable":
            s, cell = net.cell_site[i], net.cell_ids[i]
            return f"ManagedElement=ME-{net.site_ids[s]},Cell={cell}", net.site_ids[s], cell, site_vendor[s]
        if probable == "pon-port-down":
            return f"ManagedElement=ME-{net.olt_ids[i]}", net.olt_ids[i], net.olt_ids[i], olt_vendor[i]
        return f"ManagedElement=ME-{net.site_ids[i]}", net.site_ids[i], None, site_vendor[i]

    # Drawn first, in fixed numbers, so the ordinary alarms are the same at any fault rate.
    n_noise = rng.poisson(0.05 * len(net.site_x) * days)
    noise_site = rng.integers(0, len(net.site_x), n_noise)
    kind = rng.integers(0, len(ALARM_NOISE), n_noise)
    start = rng.integers(plan.start_ms, end_ms, n_noise)
    stop = start + rng.exponential(3 * 3600_000, n_noise).astype(np.int64)
    for s, k, t0, t1 in zip(noise_site, kind, start, stop):
        sid = net.site_ids[s]
        add(t0, t1, *ALARM_NOISE[k], f"ManagedElement=ME-{sid}", sid, None, site_vendor[s])

    faulty = {"cell-unavailable": plan.cell_down, "transmission-degraded": plan.site_backhaul > 0,
              "pon-port-down": plan.olt_down}
    for probable, per_day in FALSE_ALARMS_PER_DAY.items():
        state = faulty[probable]
        n_false = rng.poisson(per_day * len(state) * days)
        obj = rng.integers(0, len(state), n_false)
        t0 = rng.integers(plan.start_ms, end_ms, n_false)
        t1 = t0 + 60_000 + rng.exponential(FALSE_ALARM_MEAN_MS, n_false).astype(np.int64)
        clean = ~state[obj, plan.period_of(t0)] & ~state[obj, np.minimum(plan.period_of(t1), plan.n_periods - 1)]
        severity, text = FAULT_ALARMS[probable]
        for i, a, b in zip(obj[clean], t0[clean], t1[clean]):
            add(a, b, severity, probable, text, *object_of(probable, i))

    alarmed = {"cell_outage": ("cell-unavailable", 1 - SILENT_OUTAGE_SHARE, cell_index),
               "olt_outage": ("pon-port-down", OLT_ALARM_SHARE, olt_index),
               "backhaul_degradation": ("transmission-degraded", BACKHAUL_ALARM_SHARE, site_index)}
    for f in plan.faults:
        if f.fault_type not in alarmed:
            continue
        probable, share, index = alarmed[f.fault_type]
        raised = rng.random() < share
        flaps = rng.random() < FLAPPING_SHARE
        wait = THRESHOLD_PERIOD_MS if probable == "transmission-degraded" else 0
        began, ended = fault_window_ms(plan, f)
        t0 = began + wait + int(alarm_delays_ms(rng, RAISE_DELAY_MEDIAN_MS, RAISE_DELAY_MAX_MS))
        t1 = ended + wait + int(alarm_delays_ms(rng, CLEAR_DELAY_MEDIAN_MS, CLEAR_DELAY_MAX_MS))
        if not raised:
            continue
        severity, text = FAULT_ALARMS[probable]
        for a, b in flapping(rng, t0, t1) if flaps else [(t0, t1)]:
            add(a, b, severity, probable, text, *object_of(probable, index[f.location_id]))

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
