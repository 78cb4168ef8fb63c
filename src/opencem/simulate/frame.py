"""When and where sessions happen, and the radio and network conditions they meet.

A :class:`Frame` is the common part of every mobile session record: subscriber, time,
serving cell and radio context after faults, plus the impairments the service models read.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import numpy as np

from .config import SimConfig
from .faults import FaultPlan
from .geography import BANDWIDTH_MHZ, Network
from .population import Population

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

    def __len__(self) -> int:
        return len(self.sub)

    def capacity_kbps(self) -> np.ndarray:
        cap = capacity_kbps(self.sinr_db, self.tech, self.load, self.backhaul)
        return np.where(self.throttled, np.minimum(cap, self.policer_kbps), cap)

    def rtt_ran_ms(self, rng: np.random.Generator) -> np.ndarray:
        base = np.where(self.tech == 1, 12.0, 22.0)
        radio = 15 * np.clip(3 - self.sinr_db, 0, 25) / 3
        return (base + 90 * self.load ** 4 + radio + 70 * self.backhaul
                + rng.exponential(4, len(self)))

    def radio_failure_prob(self) -> np.ndarray:
        """Probability a setup fails for radio/transport/core reasons."""
        return (0.003 + 0.35 * sigmoid((-118 - self.rsrp_dbm) / 3) + 0.10 * sigmoid((-8 - self.sinr_db) / 2)
                + 0.30 * self.core + 0.05 * self.backhaul)

    def drop_prob(self) -> np.ndarray:
        """Probability an established session is released abnormally (radio link failure)."""
        return 0.002 + 0.35 * sigmoid((-4 - self.sinr_db) / 1.5) + 0.05 * self.backhaul


def sinr_db(rsrp_dbm: np.ndarray, load: np.ndarray, interference_db: np.ndarray,
            rng: np.random.Generator) -> np.ndarray:
    """SINR from signal level, cell load and external interference, with 2.5 dB fading."""
    sinr = 10 + 0.45 * (rsrp_dbm + 95) - 10 * load ** 2 - interference_db + rng.normal(0, 2.5, len(rsrp_dbm))
    return np.clip(sinr, -20, 30)


def cqi_of(sinr: np.ndarray) -> np.ndarray:
    return np.clip(np.round((sinr + 7) / 2.2), 0, 15).astype(np.int8)


def capacity_kbps(sinr: np.ndarray, tech: np.ndarray, load: np.ndarray, backhaul: np.ndarray | float = 0.0
                  ) -> np.ndarray:
    """Throughput the radio and transport can give one user now (Shannon with 75%
    implementation efficiency, capped at 256QAM-like 5.5 b/s/Hz, shared by load)."""
    se = np.minimum(np.log2(1 + 10 ** (sinr / 10)) * 0.75, 5.5)
    bw = np.where(tech == 1, BANDWIDTH_MHZ["5G"], BANDWIDTH_MHZ["4G"])
    return se * bw * 1000 * np.maximum(0.04, 1 - load) * (1 - 0.7 * backhaul)


def day_start_ms(cfg: SimConfig, day: int) -> int:
    start = cfg.start_date + timedelta(days=day)
    return int((np.datetime64(start, "ms") - np.datetime64(0, "ms")).astype(np.int64))


def hourly_profile(peak_hours: tuple[float, ...], night: float = 0.08) -> np.ndarray:
    hour = np.arange(24) + 0.5
    w = night + sum(np.exp(-((hour - h) / 2.5) ** 2) for h in peak_hours)
    return w / w.sum()


def draw_frame(cfg: SimConfig, net: Network, pop: Population, plan: FaultPlan, day: int,
               per_day: float, hours: np.ndarray, rng: np.random.Generator,
               segment_factor: np.ndarray, subscribers: slice) -> Frame:
    """Sessions of one day for a range of subscribers: counts per subscriber (Poisson on
    usage), times from the hourly profile, place from the daily routine, radio from the
    serving cell after faults."""
    lo, hi, _ = subscribers.indices(pop.n)
    rate = per_day * pop.usage_factor[lo:hi] * segment_factor[pop.segment[lo:hi]]
    counts = rng.poisson(rate)
    sub = lo + np.repeat(np.arange(hi - lo), counts)
    n = len(sub)
    hour = rng.choice(24, size=n, p=hours)
    t_ms = day_start_ms(cfg, day) + hour * HOUR_MS + rng.integers(0, HOUR_MS, n)
    order = np.argsort(t_ms, kind="stable")
    sub, hour, t_ms = sub[order], hour[order], t_ms[order]

    weekday = (cfg.start_date + timedelta(days=day)).weekday() < 5
    working = pop.has_job[sub] & weekday & (hour >= 9) & (hour < 18)
    evening = (hour >= 18) & (hour < 23)
    p_work = np.where(working, 0.7, np.where(evening, 0.1, 0.0))
    p_leisure = np.where(working, 0.1, np.where(evening, 0.3, 0.1))
    u = rng.random(n)
    anchor = np.where(u < p_work, 1, np.where(u < p_work + p_leisure, 2, 0))

    cell = np.empty(n, np.int64)
    rsrp = np.empty(n, np.float64)
    fb_cell = np.empty(n, np.int64)
    fb_rsrp = np.empty(n, np.float64)
    for a in range(3):
        m = anchor == a
        link = pop.link[a]
        cell[m], rsrp[m] = link.cell[sub[m]], link.rsrp_dbm[sub[m]] - plan.anchor_hole_db[sub[m], a]
        fb_cell[m], fb_rsrp[m] = link.fallback_cell[sub[m]], link.fallback_rsrp_dbm[sub[m]]
    rsrp += rng.normal(0, 3, n)  # small-scale movement around the place
    period = plan.period_of(t_ms)
    down = plan.cell_down[cell, period]
    planned = cell
    cell = np.where(down, fb_cell, cell)
    rsrp = np.where(down, fb_rsrp + rng.normal(0, 3, n) - 3, rsrp)
    frame = finish_frame(net, pop, plan, sub, t_ms, period, cell, rsrp, rng)
    frame.anchor, frame.planned_cell = anchor, planned
    return frame


def finish_frame(net: Network, pop: Population, plan: FaultPlan, sub: np.ndarray, t_ms: np.ndarray,
                 period: np.ndarray, cell: np.ndarray, rsrp: np.ndarray,
                 rng: np.random.Generator) -> Frame:
    rsrp = np.clip(rsrp, -140, -44)
    load = plan.cell_load[cell, period]
    sinr = sinr_db(rsrp, load, plan.cell_interference_db[cell, period], rng)
    site = net.cell_site[cell]
    return Frame(
        sub=sub, t_ms=t_ms, period=period, cell=cell, site=site, tech=net.cell_tech[cell],
        rsrp_dbm=rsrp, sinr_db=sinr, cqi=cqi_of(sinr),
        load=load, backhaul=plan.site_backhaul[site, period],
        core=plan.province_core[net.site_province[site], period],
        suspended=t_ms >= plan.suspended_from_ms[sub], throttled=t_ms >= plan.throttled_from_ms[sub],
        policer_kbps=POLICER_KBPS[pop.segment[sub], pop.plan[sub]] * rng.uniform(0.8, 0.97, len(sub)),
    )


# Session rate multipliers per segment, in the order of population.SEGMENTS.
SEGMENT_VOICE = np.array([1.3, 1.0, 0.8, 0.7, 2.0])
SEGMENT_DATA = np.array([1.4, 1.0, 0.7, 1.5, 1.0])
