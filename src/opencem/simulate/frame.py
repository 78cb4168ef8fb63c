"""When and where sessions happen, and the radio and network conditions they meet.

A :class:`Frame` is the common part of every mobile session record: subscriber, time,
serving cell and radio context after faults, plus the impairments the service models read.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

import numpy as np

from .calendar import hour_weights, working_hours
from .config import SimConfig
from .faults import FaultPlan, interference_db
from .geography import BANDWIDTH_MHZ, Network
from .population import DEVICE_EFFICIENCY, DEVICE_RX_LOSS_DB, Population

DAY_MS = 86_400_000
# Policer rates once the data cap is reached, by tariff (segment x plan option, as
# population.PLANS): operators police a capped plan at 128 kbps to 1 Mbps.
POLICER_KBPS = np.array([[512.0, 1024.0], [256.0, 512.0], [128.0, 256.0], [256.0, 384.0], [512.0, 1024.0]])
HOUR_MS = 3_600_000


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


@dataclass
class Frame:
    sub: np.ndarray
    t_ms: np.ndarray
    period: np.ndarray
    cell: np.ndarray
    site: np.ndarray
    tech: np.ndarray  # 0 = 4G, 1 = 5G
    rsrp_dbm: np.ndarray
    sinr_db: np.ndarray
    cqi: np.ndarray
    load: np.ndarray  # PRB load 0..1
    overload: np.ndarray  # demand over capacity (above 1: more wanted than the cell can give)
    backhaul: np.ndarray  # severity 0..1
    core: np.ndarray  # severity 0..1
    suspended: np.ndarray
    throttled: np.ndarray
    # goodput under the subscriber's policer when throttled: below the policed rate, as TCP
    # over a token bucket is (80-97 % of it), never one exact number
    policer_kbps: np.ndarray
    anchor: np.ndarray | None = None  # 0 home, 1 work, 2 leisure: where the session was
    location: dict | None = None  # ue_lat, ue_lon, location_error_m when geolocated
    planned_cell: np.ndarray | None = None  # the cell it would have used, had that not been down
    # the faults each session met, by what they did (fault index, -1 none): the generators add
    # their service's own (cdn, source, host, dns, volte_off, firmware, ...); labels.py reads them
    hits: dict[str, np.ndarray] = field(default_factory=dict)
    sleeping: np.ndarray | None = None  # severity of a sleeping cell serving it, 0..1
    efficiency: np.ndarray | None = None  # the handset's share of the Shannon bound

    def __len__(self) -> int:
        return len(self.sub)

    def capacity_kbps(self) -> np.ndarray:
        cap = capacity_kbps(self.sinr_db, self.tech, self.load, self.backhaul, self.efficiency, self.overload)
        return np.where(self.throttled, np.minimum(cap, self.policer_kbps), cap)

    def rtt_ran_ms(self, rng: np.random.Generator) -> np.ndarray:
        base = np.where(self.tech == 1, 12.0, 22.0)
        radio = 15 * np.clip(3 - self.sinr_db, 0, 25) / 3
        return (base + 90 * self.load ** 4 + radio + 70 * self.backhaul
                + rng.exponential(4, len(self)))

    def radio_failure_prob(self) -> np.ndarray:
        """Probability a setup fails for radio/transport/core reasons."""
        return np.minimum(0.002 + 0.30 * sigmoid((-123 - self.rsrp_dbm) / 3) + 0.10 * sigmoid((-10 - self.sinr_db) / 2)
                          + 0.30 * self.core + 0.05 * self.backhaul + 0.9 * self.sleep_severity, 1.0)

    @property
    def sleep_severity(self) -> np.ndarray | float:
        return 0.0 if self.sleeping is None else self.sleeping

    def drop_prob(self) -> np.ndarray:
        """Probability an established session is released abnormally (radio link failure)."""
        return 0.0015 + 0.25 * sigmoid((-7 - self.sinr_db) / 1.5) + 0.05 * self.backhaul


NOISE_DBM = -125.0  # thermal noise per 15 kHz resource element with a 7 dB noise figure
RS_ACTIVITY = 0.15  # a cell with no traffic still transmits reference signals


def sinr_db(rsrp_dbm: np.ndarray, load: np.ndarray, interference_db: np.ndarray,
            rng: np.random.Generator) -> np.ndarray:
    """A simple SINR from signal level, own-cell load and external interference (drive tests
    use it; sessions use :func:`interference_limited_sinr_db`)."""
    sinr = 10 + 0.45 * (rsrp_dbm + 95) - 10 * load ** 2 - interference_db + rng.normal(0, 2.5, len(rsrp_dbm))
    return np.clip(sinr, -20, 30)


def interference_limited_sinr_db(rsrp_dbm: np.ndarray, serving: np.ndarray,
                                 interferers: list[tuple[np.ndarray, np.ndarray]], plan: FaultPlan,
                                 period: np.ndarray, external_db: np.ndarray,
                                 rng: np.random.Generator) -> np.ndarray:
    """SINR of the serving cell against its neighbours: each interferer weighs by its own
    load (a cell that is down sends nothing, an idle one only reference signals), plus
    thermal noise, 3 dB of fast fading, and external interference (a fault) on top."""
    total = np.full(len(rsrp_dbm), 10 ** (NOISE_DBM / 10))
    for cell, rsrp in interferers:
        load = plan.cell_load[cell, period]
        activity = np.where(load > 0, RS_ACTIVITY + (1 - RS_ACTIVITY) * load, 0.0)
        total += np.where(cell == serving, 0.0, 10 ** (rsrp / 10) * activity)
    sinr = rsrp_dbm - 10 * np.log10(total) - external_db + rng.normal(0, 3.0, len(rsrp_dbm))
    return np.clip(sinr, -20, 30)


def cqi_of(sinr: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
    """CQI the UE reports: its own SINR estimate (1.2 dB of estimation error) on the 4-bit table."""
    noisy = sinr if rng is None else sinr + rng.normal(0, 1.2, len(sinr))
    return np.clip(np.round((noisy + 7) / 2.2), 0, 15).astype(np.int8)


def capacity_kbps(sinr: np.ndarray, tech: np.ndarray, load: np.ndarray, backhaul: np.ndarray | float = 0.0,
                  efficiency: np.ndarray | float | None = None, overload: np.ndarray | None = None) -> np.ndarray:
    """Throughput the radio and transport can give one user now (Shannon at the handset's
    efficiency, 75 % by default, capped at 256QAM-like 5.5 b/s/Hz, shared by load; past the
    cell's capacity every user's share shrinks with the excess demand)."""
    eff = 0.75 if efficiency is None else efficiency
    se = np.minimum(np.log2(1 + 10 ** (sinr / 10)) * eff, 5.5)
    bw = np.where(tech == 1, BANDWIDTH_MHZ["5G"], BANDWIDTH_MHZ["4G"])
    excess = 1.0 if overload is None else np.maximum(1.0, overload) ** 2
    return se * bw * 1000 * np.maximum(0.04, 1 - load) / excess * (1 - 0.7 * backhaul)


def day_start_ms(cfg: SimConfig, day: int) -> int:
    start = cfg.start_date + timedelta(days=day)
    return int((np.datetime64(start, "ms") - np.datetime64(0, "ms")).astype(np.int64))


def hourly_profile(peak_hours: tuple[float, ...], night: float = 0.08) -> np.ndarray:
    hour = np.arange(24) + 0.5
    w = night + sum(np.exp(-((hour - h) / 2.5) ** 2) for h in peak_hours)
    return w / w.sum()


def draw_frame(cfg: SimConfig, net: Network, pop: Population, plan: FaultPlan, day: int,
               per_day: float, service: str, rng: np.random.Generator,
               segment_factor: np.ndarray, subscribers: slice) -> Frame:
    """Sessions of one day for a range of subscribers: counts per subscriber (Poisson on
    usage and the day's volume in local time), hours from the local profile, place from the
    daily routine, radio from the serving cell and its neighbours after faults."""
    weights, volume = hour_weights(cfg, day, service)
    lo, hi, _ = subscribers.indices(pop.n)
    rate = per_day * volume * pop.usage_factor[lo:hi] * segment_factor[pop.segment[lo:hi]]
    counts = rng.poisson(rate)
    sub = lo + np.repeat(np.arange(hi - lo), counts)
    n = len(sub)
    hour = rng.choice(24, size=n, p=weights)
    t_ms = day_start_ms(cfg, day) + hour * HOUR_MS + rng.integers(0, HOUR_MS, n)
    order = np.argsort(t_ms, kind="stable")
    sub, hour, t_ms = sub[order], hour[order], t_ms[order]

    work_hour, evening_hour = working_hours(cfg, day)
    working = pop.has_job[sub] & work_hour[hour]
    evening = evening_hour[hour] & ~working
    p_work = np.where(working, 0.7, np.where(evening, 0.1, 0.0))
    p_leisure = np.where(working, 0.1, np.where(evening, 0.3, 0.1))
    u = rng.random(n)
    anchor = np.where(u < p_work, 1, np.where(u < p_work + p_leisure, 2, 0))

    cell, rsrp = np.empty(n, np.int64), np.empty(n, np.float64)
    fb_cell, fb_rsrp = np.empty(n, np.int64), np.empty(n, np.float64)
    far_cell, far_rsrp = np.empty(n, np.int64), np.empty(n, np.float64)
    for a in range(3):
        m = anchor == a
        link = pop.link[a]
        cell[m], rsrp[m] = link.cell[sub[m]], link.rsrp_dbm[sub[m]]
        fb_cell[m], fb_rsrp[m] = link.fallback_cell[sub[m]], link.fallback_rsrp_dbm[sub[m]]
        far_cell[m], far_rsrp[m] = link.far_cell[sub[m]], link.far_rsrp_dbm[sub[m]]
    # A coverage hole covers part of an affected place: only that share of its sessions is in it.
    in_hole = (plan.anchor_hole_fault[sub, anchor] >= 0) & (rng.random(n) < plan.anchor_hole_share[sub, anchor])
    rsrp = rsrp - np.where(in_hole, plan.anchor_hole_db[sub, anchor], 0.0)
    moved, _ = plan.hit("cell_down", cell, t_ms, rng.random(n))
    down = moved >= 0
    planned = cell
    cell = np.where(down, fb_cell, cell)
    rsrp = np.where(down, fb_rsrp - 3, rsrp)
    movement = rng.normal(0, 3, n)  # small-scale movement around the place
    loss = DEVICE_RX_LOSS_DB[pop.device[sub]]
    frame = finish_frame(net, pop, plan, sub, t_ms, plan.period_of(t_ms), cell, rsrp + movement - loss, rng,
                         interferers=[(planned, rsrp + movement - loss), (fb_cell, fb_rsrp + movement - loss),
                                      (far_cell, far_rsrp + movement - loss)])
    frame.anchor, frame.planned_cell = anchor, planned
    frame.hits["outage"] = moved
    frame.hits["hole"] = np.where(in_hole & ~down, plan.anchor_hole_fault[sub, anchor], -1).astype(np.int32)
    return frame


def finish_frame(net: Network, pop: Population, plan: FaultPlan, sub: np.ndarray, t_ms: np.ndarray,
                 period: np.ndarray, cell: np.ndarray, rsrp: np.ndarray, rng: np.random.Generator,
                 interferers: list[tuple[np.ndarray, np.ndarray]] | None = None,
                 device: np.ndarray | None = None) -> Frame:
    """The radio and network context of sessions at ``cell``: load, SINR against the
    ``interferers`` (cell, RSRP), and the transport, core, cell and account faults they meet."""
    n = len(sub)
    rsrp = np.clip(rsrp, -140, -44)
    load = plan.cell_load[cell, period]
    overload = plan.cell_overload[cell, period]
    interference, interference_sev = plan.hit("cell_interference", cell, t_ms, rng.random(n))
    external = interference_db(interference_sev)
    if interferers is None:
        sinr = sinr_db(rsrp, load, external, rng)
    else:
        sinr = interference_limited_sinr_db(rsrp, cell, interferers, plan, period, external, rng)
    site = net.cell_site[cell]
    backhaul, backhaul_sev = plan.hit("site_backhaul", site, t_ms)
    core, core_sev = plan.hit("province_core", net.site_province[site], t_ms, rng.random(n))
    sleep, sleep_sev = plan.hit("cell_sleep", cell, t_ms)
    congestion, _ = plan.hit("cell_congestion", cell, t_ms)
    suspended = t_ms >= plan.suspended_from_ms[sub]
    throttled = t_ms >= plan.throttled_from_ms[sub]
    dev = pop.device[sub] if device is None else device
    frame = Frame(
        sub=sub, t_ms=t_ms, period=period, cell=cell, site=site, tech=net.cell_tech[cell],
        rsrp_dbm=rsrp, sinr_db=sinr, cqi=cqi_of(sinr, rng),
        load=load, overload=overload, backhaul=backhaul_sev, core=core_sev,
        suspended=suspended, throttled=throttled,
        policer_kbps=POLICER_KBPS[pop.segment[sub], pop.plan[sub]] * rng.uniform(0.8, 0.97, n),
        sleeping=sleep_sev, efficiency=DEVICE_EFFICIENCY[dev],
    )
    frame.hits.update({
        "suspension": np.where(suspended, plan.subscriber_fault["suspension"][sub], -1).astype(np.int32),
        "core": core, "backhaul": backhaul, "sleep": sleep, "congestion": congestion,
        "interference": interference,
    })
    return frame


# Session rate multipliers per segment, in the order of population.SEGMENTS.
SEGMENT_VOICE = np.array([1.3, 1.0, 0.8, 0.7, 2.0])
SEGMENT_DATA = np.array([1.4, 1.0, 0.7, 1.5, 1.0])
