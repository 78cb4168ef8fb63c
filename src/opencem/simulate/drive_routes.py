"""Drive tests through the twin: a test car logs serving cell and radio once a second.

Each day one run per town drives the town's main roads at about 30 km/h, outdoors, on a
5G-capable phone. The route is planned as a drive-test team plans one, from what it knows
before it sets out: the road map (a grid of main roads inside a ring road around each town,
from the geography) and the sites, which stand where the customers are. It never reads the
fault list, so a coverage hole is crossed only when a road happens to pass it. The samples
measure what is there (outages, coverage holes, interference, load) as subscribers' sessions
see it, so drive tests can be checked against ground truth like everything else.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..geo import h3_cells
from ..schema.network import DRIVE_TESTS
from .config import SimConfig, rng_for
from .faults import HOLE_RESOLUTION, PERIOD_MS, FaultPlan
from .frame import capacity_kbps, cqi_of, day_start_ms, sinr_db
from .geography import Network, serve, territory_scale, to_latlon
from .ids import take, timestamps_ms

SPEED_KMH = 30.0
RUN_S = 3600  # one hour of driving per run
START_HOUR = 10
WAYPOINTS = 6  # busy places a run passes, each at the main-road crossing nearest to it
RING_RADII = 1.1  # the ring road, in town radii
ROAD_SPACING_RADII, ROAD_SPACING_KM = 0.4, (0.2, 1.0)  # main roads apart: town radii, clipped to km
ARC_STEP_DEG = 5.0


@dataclass(frozen=True)
class Roads:
    """A town's main roads: streets along x and y every ``spacing_km`` through the centre,
    inside a ring road of ``ring_km``; positions in the territory's km plane."""

    x_km: float
    y_km: float
    ring_km: float
    spacing_km: float

    @classmethod
    def around(cls, x_km: float, y_km: float, radius_km: float) -> Roads:
        """The roads of a town centred at (``x_km``, ``y_km``) of ``radius_km``."""
        return cls(x_km, y_km, RING_RADII * radius_km,
                   float(np.clip(ROAD_SPACING_RADII * radius_km, *ROAD_SPACING_KM)))

    def crossing(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The road crossings nearest to points, pulled in a block at a time to lie inside the ring."""
        i = np.round((x - self.x_km) / self.spacing_km)
        j = np.round((y - self.y_km) / self.spacing_km)
        for _ in range(int(self.ring_km / self.spacing_km) + 1):
            out = np.hypot(i, j) * self.spacing_km > 0.95 * self.ring_km
            i, j = np.where(out, i - np.sign(i), i), np.where(out, j - np.sign(j), j)
        return self.x_km + i * self.spacing_km, self.y_km + j * self.spacing_km

    def to_ring(self, x: float, y: float) -> tuple[float, float]:
        """Where the street along y through (x, y) meets the ring road, on the point's side."""
        half = np.sqrt(max(self.ring_km ** 2 - (x - self.x_km) ** 2, 0.0))
        return x, self.y_km + (half if y > self.y_km else -half)


def route(roads: Roads, net: Network, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One loop on ``roads`` (vertices in km): in from the ring road, along the streets past
    the busiest sites in turn round the centre, out to the ring and round it to the start.
    Busy means many sites near: sites follow the population."""
    near_centre = np.hypot(net.site_x - roads.x_km, net.site_y - roads.y_km) < roads.ring_km
    sx, sy = net.site_x[near_centre], net.site_y[near_centre]
    if len(sx) == 0:
        sx, sy = np.array([roads.x_km]), np.array([roads.y_km])
    density = np.maximum(net.site_tree.query_ball_point(np.c_[sx, sy], roads.ring_km / 2, return_length=True), 1)
    pick = rng.choice(len(sx), min(WAYPOINTS, len(sx)), replace=False, p=density / density.sum())
    gx, gy = roads.crossing(sx[pick], sy[pick])
    order = np.argsort(np.arctan2(gy - roads.y_km, gx - roads.x_km))
    gx, gy = gx[order], gy[order]
    xs, ys = [roads.to_ring(gx[0], gy[0])[0]], [roads.to_ring(gx[0], gy[0])[1]]
    for k in range(len(gx)):
        if k:  # one corner between crossings, along x first or along y first
            x_first = rng.random() < 0.5
            xs.append(gx[k] if x_first else gx[k - 1])
            ys.append(gy[k - 1] if x_first else gy[k])
        xs.append(gx[k])
        ys.append(gy[k])
    exit_x, exit_y = roads.to_ring(gx[-1], gy[-1])
    a0 = np.arctan2(exit_y - roads.y_km, exit_x - roads.x_km)
    a1 = np.arctan2(ys[0] - roads.y_km, xs[0] - roads.x_km)
    a1 = a1 + 2 * np.pi * np.ceil((a0 - a1) / (2 * np.pi) + 1e-9)  # round the ring, counter-clockwise
    arc = np.linspace(a0, a1, max(2, int(np.degrees(a1 - a0) / ARC_STEP_DEG) + 1))
    xs += list(roads.x_km + roads.ring_km * np.cos(arc))
    ys += list(roads.y_km + roads.ring_km * np.sin(arc))
    return np.array(xs), np.array(ys)


def drive_tests(cfg: SimConfig, net: Network, plan: FaultPlan, day: int) -> pa.Table:
    """One day's drive-test samples. Routes come from the roads and sites alone (their own
    random stream); ``plan`` only decides what the samples measure."""
    route_rng = rng_for(cfg.seed, f"drive-route-day-{day}")
    rng = rng_for(cfg.seed, f"drive-test-day-{day}")
    scale = territory_scale(cfg.subscribers)
    runs = []
    for t, town in enumerate(net.towns):
        roads = Roads.around(town.x_km * scale, town.y_km * scale, town.radius_km * scale)
        wx, wy = route(roads, net, route_rng)
        along = np.r_[0, np.cumsum(np.hypot(np.diff(wx), np.diff(wy)))]
        dist = (np.arange(RUN_S) * SPEED_KMH / 3600) % along[-1]  # the loop again until the hour is up
        x, y = np.interp(dist, along, wx), np.interp(dist, along, wy)
        t_ms = day_start_ms(cfg, day) + (START_HOUR + t) * 3_600_000 + np.arange(RUN_S) * 1000
        runs.append((town.name, x, y, t_ms))

    hole_db = {f.location_id: 8.0 + 12.0 * f.severity for f in plan.faults if f.fault_type == "coverage_hole"}
    holes = sorted(hole_db)
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
    # the hole's own depth (8-20 dB by its severity) where the road crosses one
    which = pc.index_in(h3_cells(lat, lon, HOLE_RESOLUTION), value_set=pa.array(holes, pa.string()))
    depth = np.array([hole_db[h] for h in holes] + [0.0])
    loss = depth[which.fill_null(len(holes)).to_numpy()]
    rsrp = np.where(down, link.fallback_rsrp_dbm - 3, link.rsrp_dbm) - np.where(in_hole, loss, 0.0)
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
