"""Drive tests through the twin: a test car logs serving cell and radio once a second.

Each day one run per town drives a loop through the town centre and out to its edge at
about 30 km/h, outdoors, on a 5G-capable phone. Samples see the same faults as subscribers'
sessions (outages, coverage holes, interference, load), so drive tests can be checked against
ground truth like everything else.
"""

from __future__ import annotations

import h3
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..geo import h3_cells
from ..schema.network import DRIVE_TESTS
from .config import SimConfig, rng_for
from .faults import HOLE_RESOLUTION, PERIOD_MS, FaultPlan
from .frame import capacity_kbps, cqi_of, day_start_ms, sinr_db
from .geography import (KM_PER_DEG_LAT, KM_PER_DEG_LON, REF_LAT, REF_LON, TOWNS, Network, serve,
                        territory_scale, to_latlon)
from .ids import take, timestamps_ms

SPEED_KMH = 30.0
RUN_S = 3600  # one hour of driving per run
START_HOUR = 10


def drive_tests(cfg: SimConfig, net: Network, plan: FaultPlan, day: int) -> pa.Table:
    rng = rng_for(cfg.seed, f"drive-test-day-{day}")
    scale = territory_scale(cfg.subscribers)
    holes = sorted({f.location_id for f in plan.faults if f.fault_type == "coverage_hole"})
    # Drive-test teams go where customers complain: routes pass through known weak spots.
    spots = np.array([h3.cell_to_latlng(h) for h in holes]).reshape(-1, 2)
    spot_x = (spots[:, 1] - REF_LON) * KM_PER_DEG_LON
    spot_y = (spots[:, 0] - REF_LAT) * KM_PER_DEG_LAT
    runs = []
    for t, town in enumerate(TOWNS):
        # A loop of random waypoints around the town, driven at constant speed.
        n_way = 8
        angle = np.sort(rng.uniform(0, 2 * np.pi, n_way))
        radius = town.radius_km * scale * rng.uniform(0.2, 1.2, n_way)
        wx = town.x_km * scale + radius * np.sin(angle)
        wy = town.y_km * scale + radius * np.cos(angle)
        near = np.hypot(spot_x - town.x_km * scale, spot_y - town.y_km * scale) < 2 * town.radius_km * scale
        wx, wy = np.r_[spot_x[near], wx], np.r_[spot_y[near], wy]
        wx, wy = np.r_[wx, wx[0]], np.r_[wy, wy[0]]
        leg_km = np.hypot(np.diff(wx), np.diff(wy))
        along = np.r_[0, np.cumsum(leg_km)]
        dist = (np.arange(RUN_S) * SPEED_KMH / 3600) % along[-1]
        x, y = np.interp(dist, along, wx), np.interp(dist, along, wy)
        t_ms = day_start_ms(cfg, day) + (START_HOUR + t) * 3_600_000 + np.arange(RUN_S) * 1000
        runs.append((town.name, x, y, t_ms))

    x = np.concatenate([r[1] for r in runs])
    y = np.concatenate([r[2] for r in runs])
    t_ms = np.concatenate([r[3] for r in runs])
    run = np.repeat(np.arange(len(runs)), RUN_S)
    n = len(x)
    link = serve(net, x, y, np.ones(n, bool), np.zeros(n, bool), rng)
    lat, lon = to_latlon(x, y)
    in_hole = pc.is_in(h3_cells(lat, lon, HOLE_RESOLUTION), pa.array(holes, pa.string())).to_numpy(
        zero_copy_only=False)
    period = (t_ms - plan.start_ms) // PERIOD_MS
    down = plan.cell_down[link.cell, period]
    cell = np.where(down, link.fallback_cell, link.cell)
    rsrp = np.where(down, link.fallback_rsrp_dbm - 3, link.rsrp_dbm) - 20 * in_hole
    rsrp = np.clip(rsrp + rng.normal(0, 2, n), -140, -44)
    load = plan.cell_load[cell, period]
    sinr = sinr_db(rsrp, load, plan.cell_interference_db[cell, period], rng)
    tech = net.cell_tech[cell]
    thp = capacity_kbps(sinr, tech, load) * rng.lognormal(0, 0.2, n)
    record = np.tile(np.arange(1, RUN_S + 1), len(runs))
    date = np.datetime64(cfg.start_date, "D") + day
    test_ids = np.array([f"twin/{name}/{date}" for name, *_ in runs])
    table = pa.table({
        "test_id": take(test_ids, run),
        "record_number": record.astype(np.int64),
        "measured_at": timestamps_ms(t_ms),
        "lat": lat, "lon": lon,
        "speed_kmh": np.full(n, SPEED_KMH, np.float32),
        "operator": np.full(n, "twintel"),
        "cell_id": take(net.cell_ids, cell),
        "technology": take(["4G", "5G"], tech),
        "rsrp_dbm": np.round(rsrp, 1).astype(np.float32),
        "rsrq_db": np.round(np.clip(-10.5 - 8 * load + rng.normal(0, 1, n), -20, -3), 1).astype(np.float32),
        "sinr_db": np.round(sinr, 1).astype(np.float32),
        "cqi": cqi_of(sinr),
        "rssi_dbm": np.round(rsrp + 27 + 10 * load, 1).astype(np.float32),
        "nr_rsrp_dbm": pa.nulls(n, pa.float32()),
        "nr_rsrq_db": pa.nulls(n, pa.float32()),
        "dl_throughput_kbps": np.round(thp).astype(np.float32),
        "ul_throughput_kbps": np.round(thp * 0.12).astype(np.float32),
        "ping_avg_ms": np.round(np.where(tech == 1, 14.0, 28.0) + 60 * load ** 4 + rng.exponential(3, n), 1)
        .astype(np.float32),
        "ping_loss_pct": np.zeros(n, np.float32),
        "state": np.full(n, "D"),
        "scenario": np.full(n, "driving"),
        "service": np.full(n, "download"),
        "h3_index": h3_cells(lat, lon, 9),
    })
    return table.cast(DRIVE_TESTS.observed_schema)
