"""IoT fleets (NB-IoT/LTE-M process steps) and home broadband lines (hourly CPE records)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from ..schema.sessions import BROADBAND_SESSIONS, IOT_EVENTS
from .config import rng_for
from .faults import FaultPlan
from .frame import HOUR_MS, day_start_ms, finish_frame, hourly_profile, sigmoid
from .geography import Network
from .ids import ids, take, timestamps_ms
from .mobile import Outcome, null_where
from .population import CPE_MODELS, IOT_MODULES, IOT_SERVICES, Population

# Per service: events per device per day, process steps, median latency ms.
IOT_PROFILE = {
    "smoke_sensor": (6.0, ("heartbeat",), 1500.0),
    "shared_bike": (4.0, ("unlock", "lock_report"), 2500.0),
    "smart_meter": (1.0, ("reading_upload",), 3000.0),
}


def iot_events(cfg, net: Network, pop: Population, plan: FaultPlan, day: int,
               rng: np.random.Generator, first_id: int) -> tuple[pa.Table, Outcome]:
    n_dev = len(pop.iot_owner)
    per_day = np.array([IOT_PROFILE[s][0] for s in IOT_SERVICES])[pop.iot_service]
    counts = rng.poisson(per_day)
    dev = np.repeat(np.arange(n_dev), counts)
    n = len(dev)
    service = pop.iot_service[dev]
    bike = service == IOT_SERVICES.index("shared_bike")
    hours = np.where(bike[:, None], hourly_profile((8.5, 18.0))[None, :], np.full(24, 1 / 24)[None, :])
    hour = (rng.random(n)[:, None] > np.cumsum(hours, axis=1)).sum(axis=1).clip(0, 23)
    t_ms = day_start_ms(cfg, day) + hour * HOUR_MS + rng.integers(0, HOUR_MS, n)
    order = np.argsort(t_ms, kind="stable")
    dev, service, bike, t_ms = dev[order], service[order], bike[order], t_ms[order]

    link = pop.iot_link
    period = plan.period_of(t_ms)
    cell = link.cell[dev]
    fading = rng.normal(0, 2, n)
    rsrp = link.rsrp_dbm[dev] - plan.iot_hole_db[dev] + fading
    moved, _ = plan.hit("cell_down", cell, t_ms, rng.random(n))
    down = moved >= 0
    planned = cell
    cell = np.where(down, link.fallback_cell[dev], cell)
    rsrp = np.where(down, link.fallback_rsrp_dbm[dev] - 3, rsrp)
    owner = pop.iot_owner[dev]
    frame = finish_frame(net, pop, plan, owner, t_ms, period, cell, rsrp, rng,
                         interferers=[(planned, link.rsrp_dbm[dev] + fading),
                                      (link.fallback_cell[dev], link.fallback_rsrp_dbm[dev] + fading),
                                      (link.far_cell[dev], link.far_rsrp_dbm[dev] + fading)])

    # NB-IoT copes down to about -130 dBm with coverage enhancement, at a latency cost.
    p_fail = np.minimum(0.004 + 0.5 * sigmoid((-132 - frame.rsrp_dbm) / 2.5) + 0.3 * frame.core
                        + 0.05 * frame.backhaul + 0.9 * frame.sleep_severity, 1.0)
    success = rng.random(n) >= p_fail
    ce = frame.rsrp_dbm < -115
    median = np.array([IOT_PROFILE[s][2] for s in IOT_SERVICES])[service]
    latency = median * rng.lognormal(0, 0.4, n) * np.where(ce, 3.0, 1.0) * (1 + 2 * frame.core)
    steps = [s for svc in IOT_SERVICES for s in IOT_PROFILE[svc][1]]
    first_step = np.cumsum([0] + [len(IOT_PROFILE[s][1]) for s in IOT_SERVICES])[:-1]
    step = first_step[service] + np.where(bike, rng.integers(0, 2, n), 0)
    battery = np.clip(pop.iot_battery_pct[dev] - day * 0.05 - rng.uniform(0, 0.2, n), 1, 100)

    cols = {
        "event_id": ids("I", first_id + np.arange(n), 10),
        "subscriber_id": ids("S", owner, 8),
        "iot_device_id": ids("IOT", dev, 7),
        "event_time": timestamps_ms(t_ms),
        "service": take(list(IOT_SERVICES), service),
        "process_step": take(steps, step),
        "cell_id": take(net.cell_ids, frame.cell),
        "technology": take(["4G", "5G"], frame.tech),
        "device_model": take(list(IOT_MODULES), pop.iot_module[dev]),
        "success": success,
        "latency_ms": null_where(~success, np.round(latency)),
        "battery_pct": np.round(battery, 1).astype(np.float32),
        "rsrp_dbm": np.round(frame.rsrp_dbm, 1).astype(np.float32),
        "sinr_db": np.round(frame.sinr_db, 1).astype(np.float32),
    }
    table = pa.table(cols).cast(IOT_EVENTS.schema)
    zeros = np.zeros(n)
    return table, Outcome(frame, ~success, np.zeros(n, bool), zeros + 200, zeros + 50, latency / 1000,
                          ~success | (latency > 10_000))


@dataclass
class LineHours:
    """What customer behaviour and the truth need from the hourly line records."""

    sub: np.ndarray
    t_ms: np.ndarray
    olt: np.ndarray
    outage_s: np.ndarray
    wifi_quality: np.ndarray
    olt_fault: np.ndarray  # the OLT fault that took the line down in the hour, -1 none


def broadband_sessions(cfg, net: Network, pop: Population, plan: FaultPlan, day: int,
                       rng: np.random.Generator) -> tuple[pa.Table, LineHours]:
    """Hourly line records: the table, and per row the subscriber index, OLT and outage seconds."""
    lines = np.flatnonzero(pop.has_broadband)
    hours = np.arange(24)
    sub = np.repeat(lines, 24)
    hour = np.tile(hours, len(lines))
    n = len(sub)
    t_ms = day_start_ms(cfg, day) + hour * HOUR_MS
    olt = pop.line_olt[sub]
    first_period = plan.period_of(t_ms)
    # Seconds of the hour the line's OLT port was down (4 periods of 15 minutes per hour): a
    # partial OLT fault takes down some of its PON ports, so only that share of its lines.
    port = rng_for(cfg.seed, "pon-port").random(pop.n)[sub]
    fault = np.full(n, -1, np.int32)
    outage_s = np.zeros(n)
    for k in range(4):
        f, seconds = plan.overlap_s("olt", olt, np.minimum(first_period + k, plan.n_periods - 1))
        on_port = (f >= 0) & (port < plan.reach(f))
        outage_s += np.where(on_port, seconds, 0.0)
        fault = np.where(on_port & (fault < 0), f, fault)
    reboot = (rng.random(n) < 0.002) * rng.uniform(30, 600, n)  # CPE reboots
    # and the home's own outages: a power cut, the box unplugged, a cut drop cable (median 25 min)
    home = (rng.random(n) < 0.0005) * rng.lognormal(np.log(1500), 0.8, n)
    outage_s = np.minimum(outage_s + reboot + home, 3600)
    evening = ((hour >= 18) & (hour < 23)).astype(float)
    sync_dl = pop.line_plan_kbps[sub] * rng.uniform(0.93, 1.0, n)
    rssi = pop.wifi_rssi_dbm[sub] + rng.normal(0, 3, n) - 3 * evening
    quality = np.clip((rssi + 88) * 2.6 - 12 * evening + rng.normal(0, 4, n), 0, 100)
    usage = pop.usage_factor[sub] * (0.2 + 1.5 * np.exp(-((hour - 21) / 3.0) ** 2))
    up = 1 - outage_s / 3600
    cols = {
        "line_id": ids("BB", sub, 8),
        "subscriber_id": ids("S", sub, 8),
        "start_time": timestamps_ms(t_ms),
        "cell_id": take(net.olt_ids, olt),
        "device_model": take(list(CPE_MODELS), pop.cpe_model[sub]),
        "sync_rate_dl_kbps": np.round(sync_dl).astype(np.float32),
        "sync_rate_ul_kbps": np.round(sync_dl * 0.2).astype(np.float32),
        "latency_ms": np.round(7 + rng.exponential(3, n) + 10 * evening * rng.random(n), 1).astype(np.float32),
        "packet_loss_pct": np.round(rng.exponential(0.05, n), 3).astype(np.float32),
        "wifi_rssi_dbm": np.round(rssi, 1).astype(np.float32),
        "wifi_quality_score": np.round(quality, 1).astype(np.float32),
        "wifi_band": take(["2.4GHz", "5GHz"], (rssi > -65).astype(int)),
        "outage_s": np.round(outage_s).astype(np.float32),
        "bytes_dl": (usage * up * rng.lognormal(np.log(4e8), 0.8, n)).astype(np.int64),
    }
    table = pa.table(cols).cast(BROADBAND_SESSIONS.schema)
    return table, LineHours(sub, t_ms, olt, outage_s, quality, fault)
