"""Injected faults across cloud, pipe, device and account, and the network state they create.

Every fault becomes one ``truth/faults`` row and an imprint on a state grid indexed by
(object, 15-minute period) that the traffic generators read, so sessions, PM counters and
alarms all see the same fault at the same time. Beside each state grid a fault grid holds
which fault made it (-1: none), so every session can be labelled with the fault on its path.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from ..schema.truth import FAULTS
from .config import SimConfig, rng_for
from .geography import PROVINCES, Network, h3_cells, to_latlon
from .ids import ids
from .population import DEVICES, Population

PERIOD_MS = 15 * 60 * 1000
PERIODS_PER_DAY = 96
CDN_NODES = ("cdn-coastal-01", "cdn-coastal-02", "cdn-inland-01", "cdn-national-01")
HOLE_RESOLUTION = 9
PROGRAM_SOURCES = ("ch-news", "ch-sports", "ch-kids", "ch-movies", "streamflix-catalogue", "clipshare-ugc")
# Which fault labels a case when several are on the path of its poor sessions (first wins):
# the account (it blocks everything, and care fixes it in one step), then the handset's own
# settings, then the network from the widest element down, then the cloud, then the device
# model's defect (the narrowest effect: one service on one firmware).
PRECEDENCE = ("suspension", "wrong_apn", "volte_off", "data_cap_throttling", "core_degradation",
              "olt_outage", "backhaul_degradation", "cell_outage", "congestion", "interference",
              "coverage_hole", "program_source_fault", "cdn_degradation", "firmware_bug")
RANK = {name: i + 1 for i, name in enumerate(PRECEDENCE)}
# Fault grids beside the state grids: cells x3, sites, provinces, CDN nodes, program sources, OLTs.
FAULT_GRIDS = ("cell_down", "cell_interference", "cell_congestion", "site_backhaul", "province_core",
               "cdn", "source", "olt")
SUBSCRIBER_FAULTS = ("firmware", "volte_off", "wrong_apn", "throttle", "suspension")


@dataclass
class Fault:
    fault_type: str
    domain: str
    cause: str
    location_type: str
    location_id: str
    start_period: int
    end_period: int  # exclusive
    severity: float
    services: str
    description: str


@dataclass
class FaultPlan:
    """Faults and the state grids (objects x periods) they imprint."""

    start_ms: int
    n_periods: int
    faults: list[Fault] = field(default_factory=list)
    cell_down: np.ndarray | None = None  # (cells, periods) bool
    cell_load: np.ndarray | None = None  # (cells, periods) PRB load 0..1
    cell_interference_db: np.ndarray | None = None
    site_backhaul: np.ndarray | None = None  # (sites, periods) severity 0..1
    province_core: np.ndarray | None = None  # (provinces, periods) severity 0..1
    cdn_bad: np.ndarray | None = None  # (cdn nodes, periods) severity
    source_bad: np.ndarray | None = None  # (program sources, periods) severity
    olt_down: np.ndarray | None = None  # (olts, periods) bool
    anchor_hole_db: np.ndarray | None = None  # (subscribers, 3) extra path loss
    iot_hole_db: np.ndarray | None = None
    firmware_bug: np.ndarray | None = None  # per subscriber bool
    volte_off: np.ndarray | None = None
    wrong_apn: np.ndarray | None = None
    throttled_from_ms: np.ndarray | None = None  # per subscriber, inf = never
    suspended_from_ms: np.ndarray | None = None
    # fault index (into faults) per grid cell, -1 none: {grid name: (objects, periods) int32}
    fault_grid: dict[str, np.ndarray] = field(default_factory=dict)
    anchor_hole_fault: np.ndarray | None = None  # (subscribers, 3) int32
    # fault index per subscriber, -1 none: {name in SUBSCRIBER_FAULTS: (subscribers,) int32}
    subscriber_fault: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def rank(self) -> np.ndarray:
        """Precedence rank per fault index (lower wins), as :data:`PRECEDENCE`."""
        return np.array([RANK[f.fault_type] for f in self.faults], np.int16)

    def period_of(self, t_ms: np.ndarray) -> np.ndarray:
        return ((t_ms - self.start_ms) // PERIOD_MS).astype(np.int64)

    def period_ms(self, period: int) -> int:
        return self.start_ms + period * PERIOD_MS


def diurnal_load(n_periods: int) -> np.ndarray:
    """Network load shape over the day (0..1): night trough, evening busy hour."""
    hour = (np.arange(n_periods) % PERIODS_PER_DAY) / 4.0
    shape = 0.15 + 0.55 * np.exp(-((hour - 13) / 4.5) ** 2) + 0.85 * np.exp(-((hour - 20.5) / 2.2) ** 2)
    return np.clip(shape, 0, 1)


def plan_faults(cfg: SimConfig, net: Network, pop: Population, start_ms: int) -> FaultPlan:
    rng = rng_for(cfg.seed, "faults")
    n_periods = cfg.days * PERIODS_PER_DAY
    plan = FaultPlan(start_ms=start_ms, n_periods=n_periods)
    n_cells, n_sites, n_olts = net.n_cells, len(net.site_x), len(net.olt_ids)
    rate = cfg.fault_rate

    def count(per_day: float) -> int:
        return int(max(1, round(per_day * cfg.days * rate))) if rate > 0 else 0

    def pick(population: np.ndarray, per_day: float) -> np.ndarray:
        """count(per_day) distinct members, no more than there are (a small network at a high
        fault rate over many days asked for more busy cells than it has)."""
        return rng.choice(population, min(len(population), count(per_day)), replace=False)

    def window(min_h: float, max_h: float, busy: bool = False) -> tuple[int, int]:
        length = int(rng.uniform(min_h, max_h) * 4)
        if busy:  # evening busy hours of a random day
            day = rng.integers(0, cfg.days)
            start = day * PERIODS_PER_DAY + int(rng.uniform(16.5, 19.5) * 4)
        else:
            start = int(rng.integers(0, max(1, n_periods - length)))
        return start, min(n_periods, start + length)

    load = np.clip(net.cell_base_load[:, None] * diurnal_load(n_periods)[None, :]
                   + rng.normal(0, 0.04, (n_cells, n_periods)), 0.01, 0.97)
    plan.cell_load = load
    plan.cell_down = np.zeros((n_cells, n_periods), bool)
    plan.cell_interference_db = np.zeros((n_cells, n_periods), np.float32)
    plan.site_backhaul = np.zeros((n_sites, n_periods), np.float32)
    plan.province_core = np.zeros((len(PROVINCES), n_periods), np.float32)
    plan.cdn_bad = np.zeros((len(CDN_NODES), n_periods), np.float32)
    plan.source_bad = np.zeros((len(PROGRAM_SOURCES), n_periods), np.float32)
    plan.olt_down = np.zeros((n_olts, n_periods), bool)
    for name, objects in zip(FAULT_GRIDS, (n_cells, n_cells, n_cells, n_sites, len(PROVINCES), len(CDN_NODES),
                                          len(PROGRAM_SOURCES), n_olts)):
        plan.fault_grid[name] = np.full((objects, n_periods), -1, np.int32)
    grid = plan.fault_grid
    faults = plan.faults
    # Faults on busy cells, where they hurt (and are noticed).
    busy_cells = np.argsort(-np.bincount(pop.link[0].cell, minlength=n_cells))[: max(10, n_cells // 3)]

    def add(fault_type, domain, cause, loc_type, loc_id, start, end, sev, services, text):
        faults.append(Fault(fault_type, domain, cause, loc_type, str(loc_id), int(start), int(end),
                            float(sev), services, text))

    for c in pick(busy_cells, net.n_cells / 150):
        s, e = window(1, 6)
        plan.cell_down[c, s:e] = True
        grid["cell_down"][c, s:e] = len(faults)
        add("cell_outage", "pipe", "RAN equipment failure (cell out of service)", "cell",
            net.cell_ids[c], s, e, 1.0, "voice,mobile_data,video,iot", "cell unavailable; users fall back")
    for c in pick(busy_cells, net.n_cells / 200):
        s, e = window(8, 36)
        plan.cell_interference_db[c, s:e] = rng.uniform(10, 16)
        grid["cell_interference"][c, s:e] = len(faults)
        add("interference", "pipe", "external uplink/downlink interference", "cell",
            net.cell_ids[c], s, e, 0.8, "voice,mobile_data,video", "SINR degraded with good RSRP")
    for c in pick(busy_cells, net.n_cells / 120):
        s, e = window(3, 5, busy=True)
        plan.cell_load[c, s:e] = rng.uniform(0.93, 0.99, e - s)
        grid["cell_congestion"][c, s:e] = len(faults)
        add("congestion", "pipe", "cell capacity exhausted (PRB load)", "cell",
            net.cell_ids[c], s, e, 0.7, "mobile_data,video,voice", "PRB load above 93%")
    for st in pick(np.unique(net.cell_site[busy_cells]), n_sites / 100):
        s, e = window(2, 8)
        plan.site_backhaul[st, s:e] = rng.uniform(0.6, 1.0)
        grid["site_backhaul"][st, s:e] = len(faults)
        add("backhaul_degradation", "pipe", "transport link errors between site and core", "site",
            net.site_ids[st], s, e, 0.8, "voice,mobile_data,video", "packet loss and delay on backhaul")
    for _ in range(count(0.5)):
        p = rng.integers(0, len(PROVINCES))
        s, e = window(1, 3)
        plan.province_core[p, s:e] = rng.uniform(0.5, 1.0)
        grid["province_core"][p, s:e] = len(faults)
        add("core_degradation", "pipe", "core network (IMS/UPF) overload", "region",
            PROVINCES[p], s, e, 0.8, "voice,mobile_data,video,iot", "setup failures and latency in region")
    for _ in range(count(1.0)):
        node = rng.integers(0, len(CDN_NODES))
        s, e = window(2, 5, busy=True)
        plan.cdn_bad[node, s:e] = rng.uniform(0.6, 1.0)
        grid["cdn"][node, s:e] = len(faults)
        add("cdn_degradation", "cloud", "CDN edge node overloaded", "cdn_node",
            CDN_NODES[node], s, e, 0.8, "video", "slow segment delivery from CDN node")
    for _ in range(count(0.5)):
        src = rng.integers(0, len(PROGRAM_SOURCES))
        s, e = window(1, 3)
        plan.source_bad[src, s:e] = rng.uniform(0.7, 1.0)
        grid["source"][src, s:e] = len(faults)
        add("program_source_fault", "cloud", "content origin / encoder problem", "program_source",
            PROGRAM_SOURCES[src], s, e, 0.9, "video", "program source fails to start or stalls")
    for o in rng.choice(n_olts, min(n_olts, count(n_olts / 20)), replace=False):
        s, e = window(1, 4)
        plan.olt_down[o, s:e] = True
        grid["olt"][o, s:e] = len(faults)
        add("olt_outage", "pipe", "OLT / PON port failure", "olt", net.olt_ids[o], s, e, 1.0,
            "home_broadband", "broadband lines on the OLT lose service")

    # Coverage holes: a populated block (H3 res 9, ~0.1 km2) loses ~20 dB (new building,
    # antenna tilt change).
    plan.anchor_hole_db = np.zeros(pop.anchor_x.shape, np.float32)
    plan.iot_hole_db = np.zeros(len(pop.iot_owner), np.float32)
    plan.anchor_hole_fault = np.full(pop.anchor_x.shape, -1, np.int32)
    for _ in range(count(max(0.3, n_sites / 400))):
        who = rng.integers(0, pop.n)
        lat, lon = to_latlon(pop.anchor_x[who, 0], pop.anchor_y[who, 0])
        grid = h3_cells(np.array([lat]), np.array([lon]), HOLE_RESOLUTION)[0]
        near = np.hypot(pop.anchor_x - pop.anchor_x[who, 0], pop.anchor_y - pop.anchor_y[who, 0]) < 0.6
        cand = np.flatnonzero(near.ravel())
        alat, alon = to_latlon(pop.anchor_x.ravel()[cand], pop.anchor_y.ravel()[cand])
        inside = cand[h3_cells(alat, alon, HOLE_RESOLUTION) == grid]
        plan.anchor_hole_db.ravel()[inside] = 20.0
        plan.anchor_hole_fault.ravel()[inside] = len(faults)
        add("coverage_hole", "pipe", "coverage hole (weak signal in area)", "grid", grid, 0, n_periods,
            0.8, "voice,mobile_data,video", f"RSRP -20 dB inside H3 res {HOLE_RESOLUTION} cell")

    # Device: a firmware version of one popular model breaks VoLTE call handling (none at
    # fault rate 0, which promises a network without injected faults).
    model = int(np.argmax(np.bincount(pop.device, minlength=len(DEVICES))[:5]))
    firmware = DEVICES[model].firmware[-1]
    plan.firmware_bug = (pop.device == model) & (pop.firmware == firmware) & (rate > 0)
    plan.subscriber_fault["firmware"] = np.where(plan.firmware_bug, len(faults), -1).astype(np.int32)
    if rate > 0:
        add("firmware_bug", "device", f"firmware {firmware} VoLTE stack defect", "device_model",
            DEVICES[model].name, 0, n_periods, 0.7, "voice", "call drops and setup failures on this firmware")

    # User-side settings and account causes, one ground-truth row per subscriber.
    sub_ids = pop.subscriber_ids.to_numpy(zero_copy_only=False)

    def per_subscriber(share: float, stream: str) -> np.ndarray:
        return rng_for(cfg.seed, stream).random(pop.n) < share * min(rate, 5)

    plan.volte_off = per_subscriber(0.005, "volte_off")
    plan.wrong_apn = per_subscriber(0.0015, "wrong_apn")
    def label(name: str, mask: np.ndarray) -> None:
        """Fault indexes for the subscribers of ``mask``, in the order the loop adds them."""
        ids_ = np.full(pop.n, -1, np.int32)
        ids_[mask] = len(faults) + np.arange(mask.sum(), dtype=np.int32)
        plan.subscriber_fault[name] = ids_

    for mask, ftype, cause, services in (
        (plan.volte_off, "volte_off", "VoLTE switched off in handset settings", "voice"),
        (plan.wrong_apn, "wrong_apn", "wrong APN configured on the handset", "mobile_data,video"),
    ):
        label(ftype, mask)
        for sid in sub_ids[mask]:
            add(ftype, "device", cause, "subscriber", sid, 0, n_periods, 1.0, services, cause)

    end_ms = start_ms + n_periods * PERIOD_MS
    caps = pop.data_cap_gb
    # The heaviest users on capped plans reach their cap: 1.5 % of the base at fault rate 1,
    # scaled by the rate like every other fault (capped at 5x, as the per-subscriber causes).
    share = 0.015 * min(rate, 5)
    heavy = np.isfinite(caps) & (pop.usage_factor > np.quantile(pop.usage_factor, 1 - share)) & (rate > 0)
    # Account changes take effect at a period boundary, as the ground truth records them.
    def period_start(t: np.ndarray) -> np.ndarray:
        return start_ms + (t - start_ms) // PERIOD_MS * PERIOD_MS

    t = period_start(rng.integers(start_ms, end_ms, pop.n))
    plan.throttled_from_ms = np.where(heavy, t, np.inf)
    suspended = per_subscriber(0.002, "suspension")
    plan.suspended_from_ms = np.where(suspended, period_start(rng.integers(start_ms, end_ms, pop.n)),
                                      np.inf)
    for mask, from_ms, ftype, cause, services, name in (
        (heavy, plan.throttled_from_ms, "data_cap_throttling", "monthly data cap reached",
         "mobile_data,video", "throttle"),
        (suspended, plan.suspended_from_ms, "suspension", "account suspended for non-payment",
         "voice,mobile_data,video", "suspension"),
    ):
        label(name, mask)
        for sid, f in zip(sub_ids[mask], from_ms[mask]):
            add(ftype, "account", cause, "subscriber", sid, (f - start_ms) // PERIOD_MS, n_periods,
                1.0, services, cause)
    return plan


def faults_table(plan: FaultPlan) -> pa.Table:
    """``truth/faults``: one row per injected fault."""
    f = plan.faults
    start = np.array([x.start_period for x in f], np.int64) * PERIOD_MS + plan.start_ms
    end = np.array([x.end_period for x in f], np.int64) * PERIOD_MS + plan.start_ms
    cols = {
        "fault_id": ids("F", np.arange(len(f)), 6),
        "fault_type": [x.fault_type for x in f],
        "domain": [x.domain for x in f],
        "cause": [x.cause for x in f],
        "location_type": [x.location_type for x in f],
        "location_id": [x.location_id for x in f],
        "start_time": pa.array(start, pa.timestamp("ms", tz="UTC")),
        "end_time": pa.array(end, pa.timestamp("ms", tz="UTC")),
        "severity": np.array([x.severity for x in f], np.float32),
        "affected_services": [x.services for x in f],
        "precedence": plan.rank,
        "description": [x.description for x in f],
    }
    return pa.table(cols).cast(FAULTS.schema)
