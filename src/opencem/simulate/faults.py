"""Injected faults across cloud, pipe, device and account, and the network state they create.

Every fault becomes one ``truth/faults`` row and an imprint on a grid indexed by (object,
15-minute period): which fault is there (``fault_grid``, -1 none) and how strong
(``severity_grid``). Faults start and end at any minute, not on period boundaries: sessions
ask :meth:`FaultPlan.hit`, which checks the exact window and the share of the object's
sessions the fault reaches (a partial fault: one carrier of a cell, a share of a CDN node's
sessions). Shapes: constant, intermittent (on and off by periods) and ramping (severity
growing over the window). PM counters, alarms and drive tests read the per-period views.

How many faults of each type, how long and how strong come from the scenario
(:class:`~opencem.simulate.config.FaultSpec` per type, defaults in :data:`FAULT_TYPES`), scaled
by the size of the network: a rate is per cell, site, province, CDN node, program source,
application host, OLT or device model and day.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone

import numpy as np
import pyarrow as pa

from ..errors import ConfigError
from ..schema.truth import FAULTS
from .calendar import local_hour_of_day
from .config import DEFAULT_FAULTS, FaultSpec, SimConfig, rng_for
from .geography import Network, h3_cells, to_latlon
from .ids import ids
from .population import DEVICES, Population
from .services import CDN_NODES, HOSTS, PROGRAM_SOURCES  # noqa: F401 - re-exported

PERIOD_MS = 15 * 60 * 1000
PERIODS_PER_DAY = 96
HOUR_MS = 3_600_000
HOLE_RESOLUTION = 9


@dataclass(frozen=True)
class FaultType:
    domain: str
    cause: str
    location_type: str
    services: str
    description: str
    grid: str | None  # the grid it imprints (None: per subscriber, device model or place)
    default: FaultSpec  # config.DEFAULT_FAULTS


FAULT_TYPES: dict[str, FaultType] = {name: FaultType(*what, DEFAULT_FAULTS[name]) for name, what in {
    "cell_outage": ("pipe", "RAN equipment failure (cell out of service)", "cell", "voice,mobile_data,video,iot",
                    "cell unavailable; users fall back", "cell_down"),
    "sleeping_cell": ("pipe", "sleeping cell (in service but carrying no traffic)", "cell",
                      "voice,mobile_data,video,iot", "cell stays on air, most setups fail, no alarm", "cell_sleep"),
    "interference": ("pipe", "external uplink/downlink interference", "cell", "voice,mobile_data,video",
                     "SINR degraded with good RSRP", "cell_interference"),
    "congestion": ("pipe", "cell capacity exhausted (demand surge)", "cell", "mobile_data,video,voice",
                   "demand 1.7-3x the cell's usual in busy hours", "cell_congestion"),
    "backhaul_degradation": ("pipe", "transport link errors between site and core", "site",
                             "voice,mobile_data,video", "packet loss and delay on backhaul", "site_backhaul"),
    "core_degradation": ("pipe", "core network (IMS/UPF) overload", "region", "voice,mobile_data,video,iot",
                         "setup failures and latency in region", "province_core"),
    "dns_failure": ("cloud", "DNS resolution failures", "region", "mobile_data,video",
                    "a share of name lookups time out in the region", "province_dns"),
    "app_server_fault": ("cloud", "application server errors and slow responses", "host", "mobile_data",
                         "an application's servers answer slowly or with 5xx", "host"),
    "cdn_degradation": ("cloud", "CDN edge node overloaded", "cdn_node", "video",
                        "slow segment delivery from CDN node", "cdn"),
    "program_source_fault": ("cloud", "content origin / encoder problem", "program_source", "video",
                             "program source fails to start or stalls", "source"),
    "olt_outage": ("pipe", "OLT / PON port failure", "olt", "home_broadband",
                   "broadband lines on the OLT lose service", "olt"),
    "coverage_hole": ("pipe", "coverage hole (weak signal in area)", "grid", "voice,mobile_data,video",
                      f"RSRP 8-20 dB lower inside an H3 res {HOLE_RESOLUTION} cell", None),
    "firmware_bug": ("device", "firmware VoLTE stack defect", "device_model", "voice",
                     "call drops 2-3x and more setup failures on one firmware", None),
    "volte_off": ("device", "VoLTE switched off in handset settings", "subscriber", "voice",
                  "VoLTE switched off in handset settings", None),
    "wrong_apn": ("device", "wrong APN configured on the handset", "subscriber", "mobile_data,video",
                  "wrong APN configured on the handset", None),
    "data_cap_throttling": ("account", "monthly data cap reached", "subscriber", "mobile_data,video",
                            "monthly data cap reached", None),
    "suspension": ("account", "account suspended for non-payment", "subscriber", "voice,mobile_data,video",
                   "account suspended for non-payment", None),
}.items()}
# Which fault labels a case when several are on the path of its poor sessions (first wins):
# the account (it blocks everything, and care fixes it in one step), then the handset's own
# settings, then the network from the widest element down, then the cloud, then the device
# model's defect (the narrowest effect: one service on one firmware).
PRECEDENCE = ("suspension", "wrong_apn", "volte_off", "data_cap_throttling", "core_degradation",
              "olt_outage", "backhaul_degradation", "cell_outage", "sleeping_cell", "congestion", "interference",
              "coverage_hole", "dns_failure", "program_source_fault", "cdn_degradation", "app_server_fault",
              "firmware_bug")
assert set(PRECEDENCE) == set(FAULT_TYPES) == set(DEFAULT_FAULTS)
RANK = {name: i + 1 for i, name in enumerate(PRECEDENCE)}
GRIDS = ("cell_down", "cell_sleep", "cell_interference", "cell_congestion", "site_backhaul", "province_core",
         "province_dns", "cdn", "source", "host", "olt")
OUTAGES = ("cell_outage", "olt_outage")
SUBSCRIBER_FAULTS = ("firmware", "volte_off", "wrong_apn", "throttle", "suspension")


@dataclass
class Fault:
    fault_type: str
    domain: str
    cause: str
    location_type: str
    location_id: str
    start_ms: int
    end_ms: int  # exclusive
    severity: float
    services: str
    description: str
    shape: str = "constant"
    partial: float = 1.0
    start_period: int = 0  # the periods it touches (alarms and PM read these)
    end_period: int = 0


@dataclass
class FaultPlan:
    """Faults and the grids (objects x periods) they imprint."""

    start_ms: int
    n_periods: int
    faults: list[Fault] = field(default_factory=list)
    fault_grid: dict[str, np.ndarray] = field(default_factory=dict)  # fault index, -1 none
    severity_grid: dict[str, np.ndarray] = field(default_factory=dict)  # 0..1, 0 where off
    cell_load: np.ndarray | None = None  # (cells, periods) PRB load 0..1, from traffic (load.py)
    cell_surge: np.ndarray | None = None  # (cells, periods) demand multiplier of congestion
    cell_demand: np.ndarray | None = None  # (cells, periods) expected data sessions carried
    cell_users: np.ndarray | None = None  # (cells, periods) expected subscribers the cell serves
    cell_overload: np.ndarray | None = None  # (cells, periods) demand over capacity
    anchor_hole_db: np.ndarray | None = None  # (subscribers, 3) extra path loss at the place
    anchor_hole_share: np.ndarray | None = None  # share of the place's sessions inside the hole
    anchor_hole_fault: np.ndarray | None = None  # (subscribers, 3) int32
    iot_hole_db: np.ndarray | None = None
    firmware_bug: np.ndarray | None = None  # per subscriber: severity of the firmware defect
    volte_off: np.ndarray | None = None
    wrong_apn: np.ndarray | None = None
    throttled_from_ms: np.ndarray | None = None  # per subscriber, inf = never
    suspended_from_ms: np.ndarray | None = None
    subscriber_fault: dict[str, np.ndarray] = field(default_factory=dict)  # fault index per subscriber

    def period_of(self, t_ms: np.ndarray) -> np.ndarray:
        return ((t_ms - self.start_ms) // PERIOD_MS).astype(np.int64)

    def period_ms(self, period: int) -> int:
        return self.start_ms + period * PERIOD_MS

    @property
    def rank(self) -> np.ndarray:
        """Precedence rank per fault index (lower wins), as :data:`PRECEDENCE`."""
        return np.array([RANK[f.fault_type] for f in self.faults], np.int16)

    def arrays(self) -> None:
        """Per-fault arrays for :meth:`hit` (call after the last fault is added)."""
        self._start = np.array([f.start_ms for f in self.faults] + [0], np.int64)
        self._end = np.array([f.end_ms for f in self.faults] + [0], np.int64)
        self._partial = np.array([f.partial for f in self.faults] + [0], np.float64)

    def hit(self, grid: str, obj: np.ndarray, t_ms: np.ndarray, u: np.ndarray | None = None
            ) -> tuple[np.ndarray, np.ndarray]:
        """(fault index or -1, severity) of the fault of ``grid`` on each session's object at
        its time: inside the fault's exact window, on a period it is on, and within the share
        of sessions it reaches (``u``: one uniform draw per session)."""
        period = self.period_of(t_ms)
        f = self.fault_grid[grid][obj, period]
        active = f >= 0
        fi = np.where(active, f, -1)
        active &= (t_ms >= self._start[fi]) & (t_ms < self._end[fi])
        if u is not None:
            active &= u < self._partial[fi]
        return np.where(active, f, -1).astype(np.int32), np.where(active, self.severity_grid[grid][obj, period], 0.0)

    def overlap_s(self, grid: str, obj: np.ndarray, period: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(fault index or -1, seconds of the period it was on) for objects at periods."""
        f = self.fault_grid[grid][obj, period]
        fi = np.where(f >= 0, f, -1)
        start = self.start_ms + period.astype(np.int64) * PERIOD_MS
        overlap = np.minimum(self._end[fi], start + PERIOD_MS) - np.maximum(self._start[fi], start)
        return f, np.where(f >= 0, np.clip(overlap, 0, PERIOD_MS) / 1000, 0.0)

    def reach(self, fault: np.ndarray) -> np.ndarray:
        """Share of its object's sessions each fault index reaches (0 for -1)."""
        return self._partial[np.where(fault >= 0, fault, -1)]

    def covered_s(self, grid: str, p0: int, p1: int) -> np.ndarray:
        """(objects, periods p0..p1) seconds of each period a fault of ``grid`` was on, times the
        share of the object it reached (one carrier of two down: half)."""
        f = self.fault_grid[grid][:, p0:p1]
        fi = np.where(f >= 0, f, -1)
        start = self.start_ms + np.arange(p0, p1, dtype=np.int64) * PERIOD_MS
        overlap = np.minimum(self._end[fi], start + PERIOD_MS) - np.maximum(self._start[fi], start)
        return np.where(f >= 0, np.clip(overlap, 0, PERIOD_MS) / 1000 * self._partial[fi], 0.0)

    # Per-period views (PM counters, alarms, drive tests)
    @property
    def cell_down(self) -> np.ndarray:
        return self.fault_grid["cell_down"] >= 0

    @property
    def olt_down(self) -> np.ndarray:
        return self.fault_grid["olt"] >= 0

    @property
    def cell_interference_db(self) -> np.ndarray:
        return interference_db(self.severity_grid["cell_interference"])

    @property
    def site_backhaul(self) -> np.ndarray:
        return self.severity_grid["site_backhaul"]

    @property
    def province_core(self) -> np.ndarray:
        return self.severity_grid["province_core"]

    @property
    def cdn_bad(self) -> np.ndarray:
        return self.severity_grid["cdn"]

    @property
    def source_bad(self) -> np.ndarray:
        return self.severity_grid["source"]


def interference_db(severity: np.ndarray) -> np.ndarray:
    """External interference rise in dB for a severity 0..1 (0 where there is none)."""
    return np.where(severity > 0, 6 + 10 * severity, 0.0).astype(np.float32)


def surge_of(severity: np.ndarray) -> np.ndarray:
    """Demand multiplier of a congestion event of severity 0..1."""
    return np.where(severity > 0, 1.7 + 1.3 * severity, 1.0).astype(np.float32)


class Planner:
    """Places fault instances on objects and periods, without two of one type overlapping on
    one object."""

    def __init__(self, cfg: SimConfig, plan: FaultPlan, rng: np.random.Generator):
        self.cfg, self.plan, self.rng = cfg, plan, rng
        self.end_ms = plan.start_ms + plan.n_periods * PERIOD_MS

    def count(self, fault_type: str, units: float) -> int:
        """Instances over the window: rate x units x days x fault rate, at least one when the
        rate is not 0 (every type shows up in a small run)."""
        spec, rate = self.cfg.fault_spec(fault_type), self.cfg.fault_rate
        expected = spec.rate * units * self.cfg.days * rate
        if expected <= 0:
            return 0
        return max(1, int(self.rng.poisson(expected)) if expected < 20 else int(round(expected)))

    def window(self, spec: FaultSpec) -> tuple[int, int]:
        """(start, end) in ms: any minute, at the time of day the spec asks for (local time)."""
        rng, cfg = self.rng, self.cfg
        length = int(rng.uniform(*spec.duration_h) * HOUR_MS)
        if spec.time_of_day == "any":
            start = int(rng.integers(self.plan.start_ms, max(self.plan.start_ms + 1, self.end_ms - length)))
        else:
            lo, hi = {"busy": (16.5, 20.0), "day": (8.0, 17.0), "night": (0.5, 5.0)}[spec.time_of_day]
            day = int(rng.integers(0, cfg.days))
            offset_h = local_hour_of_day(cfg, day)[0]  # local hour at 00:00 UTC
            start_h = (rng.uniform(lo, hi) - offset_h) % 24
            start = self.plan.start_ms + day * 86_400_000 + int(start_h * HOUR_MS)
        return start, min(self.end_ms, start + length)

    def shape_of(self, spec: FaultSpec, fault_type: str = "") -> str:
        shape = spec.shape if spec.shape != "mixed" else \
            str(self.rng.choice(["constant", "intermittent", "ramping"], p=[0.5, 0.25, 0.25]))
        # an outage is on or off: it comes and goes, but it does not grow
        return "constant" if shape == "ramping" and fault_type in OUTAGES else shape

    def free(self, grid: str, obj: int, start_ms: int, end_ms: int) -> bool:
        p0, p1 = self.periods(start_ms, end_ms)
        return bool((self.plan.fault_grid[grid][obj, p0:p1] < 0).all())

    def periods(self, start_ms: int, end_ms: int) -> tuple[int, int]:
        p0 = (start_ms - self.plan.start_ms) // PERIOD_MS
        p1 = -(-(end_ms - self.plan.start_ms) // PERIOD_MS)
        return int(max(0, p0)), int(min(self.plan.n_periods, p1))

    def add(self, fault_type: str, location_id: str, start_ms: int, end_ms: int, severity: float,
            shape: str = "constant", partial: float = 1.0, grid_obj: int | None = None) -> int:
        """Record a fault and imprint it on its grid (when it has one); returns its index."""
        kind = FAULT_TYPES[fault_type]
        index = len(self.plan.faults)
        p0, p1 = self.periods(start_ms, end_ms)
        if kind.grid is not None and grid_obj is not None:
            profile = np.full(p1 - p0, severity, np.float32)
            on = np.ones(p1 - p0, bool)
            if shape == "ramping":
                profile *= np.linspace(0.25, 1.0, p1 - p0, dtype=np.float32)
            elif shape == "intermittent":
                on = self.on_off(p1 - p0)
            sl = slice(p0, p1)
            self.plan.fault_grid[kind.grid][grid_obj, sl] = np.where(on, index, self.plan.fault_grid[kind.grid][grid_obj, sl])
            self.plan.severity_grid[kind.grid][grid_obj, sl] = np.where(on, profile, self.plan.severity_grid[kind.grid][grid_obj, sl])
        self.plan.faults.append(Fault(fault_type, kind.domain, kind.cause, kind.location_type, str(location_id),
                                      int(start_ms), int(end_ms), float(severity), kind.services, kind.description,
                                      shape, float(partial), p0, p1))
        return index

    def on_off(self, n: int) -> np.ndarray:
        """An intermittent fault's periods: on and off in runs of about 30 minutes, on first."""
        out, on, i = np.zeros(n, bool), True, 0
        while i < n:
            run = 1 + int(self.rng.geometric(0.5))
            out[i:i + run] = on
            i, on = i + run, not on
        return out

    def place(self, fault_type: str, objects: np.ndarray, names, units: int | None = None,
              also_free: tuple[str, ...] = (), tries: int = 6) -> None:
        """Instances of a gridded fault type on ``objects`` (indexes into its grid): the count
        is the rate times ``units`` (default: the objects), each on a free object and window."""
        kind, spec = FAULT_TYPES[fault_type], self.cfg.fault_spec(fault_type)
        if len(objects) == 0:
            return
        for _ in range(self.count(fault_type, len(objects) if units is None else units)):
            for _attempt in range(tries):
                obj = int(self.rng.choice(objects))
                start, end = self.window(spec)
                if end > start and all(self.free(g, obj, start, end) for g in (kind.grid, *also_free)):
                    self.add(fault_type, names[obj], start, end, float(self.rng.uniform(*spec.severity)),
                             self.shape_of(spec, fault_type), float(self.rng.uniform(*spec.partial)), obj)
                    break


def plan_faults(cfg: SimConfig, net: Network, pop: Population, start_ms: int) -> FaultPlan:
    rng = rng_for(cfg.seed, "faults")
    n_periods = cfg.days * PERIODS_PER_DAY
    plan = FaultPlan(start_ms=start_ms, n_periods=n_periods)
    n_cells, n_sites, n_olts = net.n_cells, len(net.site_x), len(net.olt_ids)
    sizes = {"cell_down": n_cells, "cell_sleep": n_cells, "cell_interference": n_cells, "cell_congestion": n_cells,
             "site_backhaul": n_sites, "province_core": len(net.provinces), "province_dns": len(net.provinces),
             "cdn": len(CDN_NODES), "source": len(PROGRAM_SOURCES), "host": len(HOSTS), "olt": n_olts}
    for name in GRIDS:
        plan.fault_grid[name] = np.full((sizes[name], n_periods), -1, np.int32)
        plan.severity_grid[name] = np.zeros((sizes[name], n_periods), np.float32)
    planner = Planner(cfg, plan, rng)
    by_name = {"cell_down": net.cell_ids, "cell_sleep": net.cell_ids, "cell_interference": net.cell_ids,
               "cell_congestion": net.cell_ids, "site_backhaul": net.site_ids, "province_core": net.provinces,
               "province_dns": net.provinces, "cdn": CDN_NODES, "source": PROGRAM_SOURCES, "host": HOSTS,
               "olt": net.olt_ids}
    _inject(cfg, net, pop, plan, planner, by_name)

    # Faults on busy cells, where they hurt (and are noticed).
    busy_cells = np.argsort(-np.bincount(pop.link[0].cell, minlength=n_cells))[: max(10, n_cells // 3)]
    for fault_type in ("cell_outage", "sleeping_cell", "interference", "congestion"):
        # the rate is per cell of the network; the instances go to its busy third
        planner.place(fault_type, busy_cells, net.cell_ids, units=n_cells,
                      also_free=("cell_sleep", "cell_down") if fault_type in ("cell_outage", "sleeping_cell") else ())
    planner.place("backhaul_degradation", np.unique(net.cell_site[busy_cells]), net.site_ids)
    planner.place("core_degradation", np.arange(len(net.provinces)), net.provinces)
    planner.place("dns_failure", np.arange(len(net.provinces)), net.provinces)
    planner.place("cdn_degradation", np.arange(len(CDN_NODES)), CDN_NODES)
    planner.place("program_source_fault", np.arange(len(PROGRAM_SOURCES)), PROGRAM_SOURCES)
    planner.place("app_server_fault", np.arange(len(HOSTS)), HOSTS)
    planner.place("olt_outage", np.arange(n_olts), net.olt_ids)
    plan.cell_surge = surge_of(plan.severity_grid["cell_congestion"])

    _coverage_holes(cfg, net, pop, plan, planner)
    _device_and_account(cfg, pop, plan, planner)
    plan.arrays()
    return plan


def _coverage_holes(cfg: SimConfig, net: Network, pop: Population, plan: FaultPlan, planner: Planner,
                    where: list[tuple[str, float, float]] | None = None) -> None:
    """A populated block (H3 res 9, ~0.1 km2) loses 8-20 dB (a new building, a tilt change);
    only a share of the sessions at an affected place are inside it. ``where``: the scenario's
    injected holes (permanent: a hole is a place, its start and duration are not used)."""
    injected = where is not None
    rng = planner.rng
    if plan.anchor_hole_db is None:
        plan.anchor_hole_db = np.zeros(pop.anchor_x.shape, np.float32)
        plan.anchor_hole_share = np.zeros(pop.anchor_x.shape, np.float32)
        plan.anchor_hole_fault = np.full(pop.anchor_x.shape, -1, np.int32)
        plan.iot_hole_db = np.zeros(len(pop.iot_owner), np.float32)
    spec = cfg.fault_spec("coverage_hole")
    end_ms = plan.start_ms + plan.n_periods * PERIOD_MS
    if where is None:
        where = []
        for _ in range(planner.count("coverage_hole", len(net.site_x))):
            who = int(rng.integers(0, pop.n))
            lat, lon = to_latlon(pop.anchor_x[who, 0], pop.anchor_y[who, 0])
            where.append((h3_cells(np.array([lat]), np.array([lon]), HOLE_RESOLUTION)[0],
                          float(rng.uniform(*spec.severity)), float(rng.uniform(*spec.partial))))
    all_lat, all_lon = to_latlon(pop.anchor_x.ravel(), pop.anchor_y.ravel())
    cells = h3_cells(all_lat, all_lon, HOLE_RESOLUTION) if where else None
    for grid, severity, share in where:
        inside = np.flatnonzero(cells == grid)
        if injected and not len(inside):
            raise ConfigError(f"injections: coverage_hole at {grid!r}: no home, workplace or leisure place of "
                              f"the network lies in that H3 resolution {HOLE_RESOLUTION} cell")
        inside = inside[plan.anchor_hole_fault.ravel()[inside] < 0]
        index = planner.add("coverage_hole", grid, plan.start_ms, end_ms, severity, "constant", share)
        plan.anchor_hole_db.ravel()[inside] = 8.0 + 12.0 * severity
        plan.anchor_hole_share.ravel()[inside] = share
        plan.anchor_hole_fault.ravel()[inside] = index


def _device_and_account(cfg: SimConfig, pop: Population, plan: FaultPlan, planner: Planner) -> None:
    rng, rate = planner.rng, cfg.fault_rate
    end_ms = plan.start_ms + plan.n_periods * PERIOD_MS
    # Device: the latest firmware of popular models breaks VoLTE call handling (none at fault
    # rate 0, which promises a network without injected faults).
    plan.firmware_bug = np.zeros(pop.n, np.float32)
    plan.subscriber_fault["firmware"] = np.full(pop.n, -1, np.int32)
    popular = np.argsort(-np.bincount(pop.device, minlength=len(DEVICES)))[:6]
    spec = cfg.fault_spec("firmware_bug")
    for model in rng.permutation(popular)[:planner.count("firmware_bug", len(DEVICES))]:
        firmware = DEVICES[model].firmware[-1]
        hit = (pop.device == model) & (pop.firmware == firmware) & (plan.subscriber_fault["firmware"] < 0)
        severity = float(rng.uniform(*spec.severity))
        index = planner.add("firmware_bug", DEVICES[model].name, plan.start_ms, end_ms, severity)
        plan.faults[index].cause = f"firmware {firmware} VoLTE stack defect"
        plan.firmware_bug[hit] = severity
        plan.subscriber_fault["firmware"][hit] = index

    sub_ids = pop.subscriber_ids.to_numpy(zero_copy_only=False)

    def per_subscriber(fault_type: str, stream: str) -> np.ndarray:
        return rng_for(cfg.seed, stream).random(pop.n) < cfg.fault_spec(fault_type).rate * min(rate, 5)

    def label(name: str, mask: np.ndarray, fault_type: str, from_ms: np.ndarray | None = None) -> None:
        first = len(plan.faults)
        idx = np.full(pop.n, -1, np.int32)
        idx[mask] = first + np.arange(mask.sum(), dtype=np.int32)
        plan.subscriber_fault[name] = idx
        starts = np.full(pop.n, plan.start_ms) if from_ms is None else from_ms
        for sid, s in zip(sub_ids[mask], starts[mask]):
            planner.add(fault_type, sid, int(s), end_ms, 1.0)

    plan.volte_off = per_subscriber("volte_off", "volte_off")
    plan.wrong_apn = per_subscriber("wrong_apn", "wrong_apn")
    label("volte_off", plan.volte_off, "volte_off")
    label("wrong_apn", plan.wrong_apn, "wrong_apn")

    caps = pop.data_cap_gb
    # The heaviest users on capped plans reach their cap: 1 % of the base at fault rate 1,
    # scaled by the rate like every other fault (capped at 5x, as the per-subscriber causes).
    share = cfg.fault_spec("data_cap_throttling").rate * min(rate, 5)
    heavy = np.isfinite(caps) & (pop.usage_factor > np.quantile(pop.usage_factor, 1 - min(share, 1))) & (rate > 0)
    # Account changes happen at any minute, as the BSS logs them.
    t = rng.integers(plan.start_ms, end_ms, pop.n)
    plan.throttled_from_ms = np.where(heavy, t, np.inf)
    suspended = per_subscriber("suspension", "suspension")
    plan.suspended_from_ms = np.where(suspended, rng.integers(plan.start_ms, end_ms, pop.n), np.inf)
    label("throttle", heavy, "data_cap_throttling", np.where(heavy, t, 0))
    label("suspension", suspended, "suspension", np.where(suspended, plan.suspended_from_ms, 0).astype(np.int64))


def _inject(cfg: SimConfig, net: Network, pop: Population, plan: FaultPlan, planner: Planner, by_name) -> None:
    """The scenario's explicit injections, placed before the random faults (which avoid them)."""
    end_ms = plan.start_ms + plan.n_periods * PERIOD_MS
    holes = []
    for i, inj in enumerate(cfg.injections):
        kind = FAULT_TYPES[inj.fault]
        start = inj.start if inj.start.tzinfo else inj.start.replace(tzinfo=cfg.zone)
        start_ms = int(start.astimezone(timezone.utc).timestamp() * 1000)
        stop_ms = min(end_ms, start_ms + int(inj.duration_h * HOUR_MS))
        where = f"injections[{i}]"
        if not plan.start_ms <= start_ms < end_ms:
            first = datetime.fromtimestamp(plan.start_ms / 1000, timezone.utc).isoformat()
            raise ConfigError(f"{where}.start: {inj.start} is outside the simulated window (from {first}, "
                              f"{cfg.days} days)")
        shape = "constant" if inj.fault in OUTAGES and inj.shape == "ramping" else inj.shape
        if kind.grid is not None:
            names = list(by_name[kind.grid])
            if inj.location not in names:
                raise ConfigError(f"{where}.location: no {kind.location_type} {inj.location!r} in this network "
                                  f"(e.g. {', '.join(map(str, names[:3]))})")
            obj = names.index(inj.location)
            if not planner.free(kind.grid, obj, start_ms, stop_ms):
                raise ConfigError(f"{where}: overlaps an earlier injection of {inj.fault} on {inj.location}")
            planner.add(inj.fault, inj.location, start_ms, stop_ms, inj.severity, shape, inj.partial, obj)
        elif inj.fault == "coverage_hole":
            holes.append((inj.location, inj.severity, inj.partial))
        else:
            raise ConfigError(f"{where}.fault: {inj.fault} is planned per subscriber or device model and "
                              "cannot be injected by hand yet")
    if holes:
        _coverage_holes(cfg, net, pop, plan, planner, holes)


def faults_table(plan: FaultPlan) -> pa.Table:
    """``truth/faults``: one row per injected fault."""
    f = plan.faults
    cols = {
        "fault_id": ids("F", np.arange(len(f)), 6),
        "fault_type": [x.fault_type for x in f],
        "domain": [x.domain for x in f],
        "cause": [x.cause for x in f],
        "location_type": [x.location_type for x in f],
        "location_id": [x.location_id for x in f],
        "start_time": pa.array(np.array([x.start_ms for x in f], np.int64), pa.timestamp("ms", tz="UTC")),
        "end_time": pa.array(np.array([x.end_ms for x in f], np.int64), pa.timestamp("ms", tz="UTC")),
        "severity": np.array([x.severity for x in f], np.float32),
        "shape": [x.shape for x in f],
        "reach": np.array([x.partial for x in f], np.float32),
        "affected_services": [x.services for x in f],
        "precedence": plan.rank,
        "description": [x.description for x in f],
    }
    return pa.table(cols).cast(FAULTS.schema)
