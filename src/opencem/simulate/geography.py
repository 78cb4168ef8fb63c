"""The twin operator's territory: towns, radio sites and sectors, OLTs, and the radio model.

Positions are kept in a local plane in km around a reference point and converted to WGS84
only for output. Radio conditions follow a log-distance path-loss model with shadowing and a
sector antenna pattern, so RSRP falls with distance and SINR with load.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
from scipy.spatial import cKDTree

from .. import geo
from ..schema.network import CELLS
from .config import DEFAULT_TOWNS, SimConfig, TownSpec, rng_for
from .ids import take

REF_LAT, REF_LON = 45.0, 10.0
KM_PER_DEG_LAT = 110.574
KM_PER_DEG_LON = 111.320 * np.cos(np.radians(REF_LAT))
H3_RESOLUTION = 8  # ~0.7 km2 hexagons: a few per macro cell


# The default territory (config.DEFAULT_TOWNS); a scenario may name its own towns.
TOWNS = DEFAULT_TOWNS
# Regional vendor split, as operators usually buy RAN per region.
VENDOR_BY_PROVINCE = {t.province: t.vendor for t in TOWNS}
PROVINCES = sorted({t.province for t in TOWNS})
TOWN_NAMES = [t.name for t in TOWNS]
SECTOR_AZIMUTHS = np.array([0.0, 120.0, 240.0])
BAND_MHZ = {"4G": 1800, "5G": 3500}
BANDWIDTH_MHZ = {"4G": 20.0, "5G": 100.0}


def to_latlon(x_km: np.ndarray, y_km: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return REF_LAT + y_km / KM_PER_DEG_LAT, REF_LON + x_km / KM_PER_DEG_LON


def h3_cells(lat: np.ndarray, lon: np.ndarray, resolution: int = H3_RESOLUTION) -> np.ndarray:
    """H3 index strings of simulated points (rounded to ~10 m: places repeat, edges don't matter)."""
    return geo.h3_cells(lat, lon, resolution, decimals=4).to_numpy(zero_copy_only=False)


def territory_scale(subscribers: int) -> float:
    """Linear size of the territory relative to the towns' nominal layout: the area grows
    with the subscriber base so site density (and so radio quality) stays realistic."""
    return float(np.clip(np.sqrt(subscribers / 400_000), 0.15, 2.5))


def sample_places(rng: np.random.Generator, n: int, scale: float, spread: float = 1.0,
                  towns: tuple[TownSpec, ...] = TOWNS) -> tuple[np.ndarray, ...]:
    """Points scattered around the towns by population weight (Gaussian clusters)."""
    weights = np.array([t.weight for t in towns])
    town = rng.choice(len(towns), size=n, p=weights / weights.sum())
    cx = np.array([t.x_km for t in towns])[town] * scale
    cy = np.array([t.y_km for t in towns])[town] * scale
    r = np.array([t.radius_km for t in towns])[town] * spread * scale
    return cx + rng.normal(0, 1, n) * r * 0.6, cy + rng.normal(0, 1, n) * r * 0.6, town


@dataclass
class Network:
    """Sites and cells, with the arrays the traffic generator indexes into."""

    site_x: np.ndarray
    site_y: np.ndarray
    site_town: np.ndarray
    site_has_5g: np.ndarray
    site_rotation_deg: np.ndarray
    cell_site: np.ndarray  # per radio cell: site index
    cell_sector: np.ndarray  # 0..2
    cell_tech: np.ndarray  # 0 = 4G, 1 = 5G
    cell_ids: np.ndarray  # str
    cell_base_load: np.ndarray  # busy-hour PRB load share 0..1
    olt_x: np.ndarray
    olt_y: np.ndarray
    olt_town: np.ndarray
    olt_ids: np.ndarray
    site_tree: cKDTree
    olt_tree: cKDTree
    towns: tuple[TownSpec, ...] = TOWNS
    time_zone: str = "UTC"

    @property
    def provinces(self) -> tuple[str, ...]:
        return tuple(sorted({t.province for t in self.towns}))

    @property
    def town_names(self) -> list[str]:
        return [t.name for t in self.towns]

    @property
    def town_province(self) -> np.ndarray:
        """Province index of each town."""
        return np.array([self.provinces.index(t.province) for t in self.towns])

    @property
    def province_vendor(self) -> np.ndarray:
        """RAN vendor of each province (its first town's)."""
        first = {}
        for t in self.towns:
            first.setdefault(t.province, t.vendor)
        return np.array([first[p] for p in self.provinces])

    @property
    def n_cells(self) -> int:
        return len(self.cell_ids)

    @property
    def site_province(self) -> np.ndarray:
        return self.town_province[self.site_town]

    @property
    def olt_province(self) -> np.ndarray:
        return self.town_province[self.olt_town]

    @property
    def site_ids(self) -> np.ndarray:
        return np.array([f"ST{i:05d}" for i in range(len(self.site_x))])

    def cell_index(self, site: np.ndarray, sector: np.ndarray, tech: np.ndarray) -> np.ndarray:
        """Radio-cell index of (site, sector, technology); sites without 5G fall back to 4G."""
        tech = np.where(self.site_has_5g[site], tech, 0)
        return self._cell_lookup[site, sector, tech]

    def __post_init__(self) -> None:
        lookup = np.full((len(self.site_x), 3, 2), -1, dtype=np.int64)
        lookup[self.cell_site, self.cell_sector, self.cell_tech] = np.arange(len(self.cell_site))
        self._cell_lookup = lookup


def build_network(cfg: SimConfig, n_broadband_lines: int) -> Network:
    rng = rng_for(cfg.seed, "geography")
    n_sites = cfg.n_sites
    # Most sites follow population; a fifth spread wider for rural coverage.
    scale = territory_scale(cfg.subscribers)
    towns = cfg.towns
    n_rural = n_sites // 5
    x1, y1, t1 = sample_places(rng, n_sites - n_rural, scale, spread=1.0, towns=towns)
    x2, y2, t2 = sample_places(rng, n_rural, scale, spread=2.0, towns=towns)
    site_x, site_y, site_town = np.concatenate([x1, x2]), np.concatenate([y1, y2]), np.concatenate([t1, t2])
    dist_centre = np.hypot(site_x - np.array([t.x_km for t in towns])[site_town] * scale,
                           site_y - np.array([t.y_km for t in towns])[site_town] * scale)
    # 5G first in town centres.
    site_has_5g = rng.random(n_sites) < np.where(dist_centre < 3.0 * scale, 0.6, 0.15)
    site_has_5g[0] = True

    sites = np.repeat(np.arange(n_sites), 3)
    sectors = np.tile(np.arange(3), n_sites)
    cell_site = np.concatenate([sites, sites[np.repeat(site_has_5g, 3)]])
    cell_sector = np.concatenate([sectors, sectors[np.repeat(site_has_5g, 3)]])
    cell_tech = np.concatenate([np.zeros(3 * n_sites, int), np.ones(3 * int(site_has_5g.sum()), int)])
    order = np.lexsort((cell_tech, cell_sector, cell_site))
    cell_site, cell_sector, cell_tech = cell_site[order], cell_sector[order], cell_tech[order]
    tech_label = np.array(["4G", "5G"])[cell_tech]
    cell_ids = np.char.add(np.char.add(np.char.add(
        np.char.add("C", np.char.zfill(cell_site.astype(str), 5)), "-"),
        (cell_sector + 1).astype(str)), np.char.add("-", tech_label))

    n_olts = max(2, int(np.ceil(n_broadband_lines / 800)))
    ox, oy, ot = sample_places(rng, n_olts, scale, spread=0.8, towns=towns)
    olt_ids = np.char.add("OLT", np.char.zfill(np.arange(n_olts).astype(str), 4))

    return Network(
        site_x=site_x, site_y=site_y, site_town=site_town, site_has_5g=site_has_5g,
        site_rotation_deg=rng.uniform(0, 120, n_sites),
        cell_site=cell_site, cell_sector=cell_sector, cell_tech=cell_tech, cell_ids=cell_ids,
        cell_base_load=np.clip(rng.beta(2.5, 3.0, len(cell_site)), 0.05, 0.9),
        olt_x=ox, olt_y=oy, olt_town=ot, olt_ids=olt_ids,
        site_tree=cKDTree(np.c_[site_x, site_y]), olt_tree=cKDTree(np.c_[ox, oy]), towns=towns,
        time_zone=cfg.time_zone,
    )


def cells_table(net: Network) -> pa.Table:
    """The ``cells`` snapshot: radio cells then OLTs."""
    s = net.cell_site
    lat, lon = to_latlon(net.site_x[s], net.site_y[s])
    olat, olon = to_latlon(net.olt_x, net.olt_y)
    town = np.concatenate([net.site_town[s], net.olt_town])
    province = np.array(net.provinces)[net.town_province[town]]
    vendor = net.province_vendor[net.town_province[town]]
    all_lat, all_lon = np.concatenate([lat, olat]), np.concatenate([lon, olon])
    site_ids = np.concatenate([net.site_ids[s], net.olt_ids])
    tech = np.concatenate([np.array(["4G", "5G"])[net.cell_tech], np.full(len(net.olt_ids), "FTTH-OLT")])
    azimuth = (SECTOR_AZIMUTHS[net.cell_sector] + net.site_rotation_deg[s]) % 360
    cols = {
        "cell_id": np.concatenate([net.cell_ids, net.olt_ids]),
        "site_id": site_ids,
        "managed_element": np.char.add("ME-", site_ids),
        # PM DNs name the simulator's cells by their cell_id, so no separate local id.
        "local_cell_id": pa.nulls(len(site_ids), pa.string()),
        "technology": tech,
        "vendor": vendor,
        "sector": np.concatenate([net.cell_sector + 1, np.zeros(len(net.olt_ids), int)]).astype("int8"),
        "band_mhz": np.concatenate([np.where(net.cell_tech == 1, BAND_MHZ["5G"], BAND_MHZ["4G"]),
                                    np.zeros(len(net.olt_ids), int)]).astype("int32"),
        "lat": all_lat, "lon": all_lon,
        "azimuth_deg": pa.array(np.r_[azimuth, np.zeros(len(net.olt_ids))].astype("float32"),
                                mask=np.r_[np.zeros(len(azimuth), bool), np.ones(len(net.olt_ids), bool)]),
        "city": take(net.town_names, town),
        "province": province,
        "h3_index": h3_cells(all_lat, all_lon),
        "time_zone": np.full(len(site_ids), net.time_zone),
    }
    table = pa.table(cols)
    return table.cast(CELLS.schema)


@dataclass
class RadioLink:
    """Serving cell and radio quality for a set of positions: the best server, the second
    (fallback when the best is down, and the main interferer) and the third (the rest of the
    interference)."""

    cell: np.ndarray
    rsrp_dbm: np.ndarray
    fallback_cell: np.ndarray
    fallback_rsrp_dbm: np.ndarray
    far_cell: np.ndarray | None = None
    far_rsrp_dbm: np.ndarray | None = None


# RSRP at 1 km from a macro site (1800 MHz, 30 m mast, 46 dBm over 100 RBs), path-loss
# exponent, shadowing: with indoor penetration this gives measurement-report medians of about
# -90 dBm outdoors and -95 to -100 dBm over all sessions.
RSRP_AT_1KM_DBM, PATH_LOSS_EXPONENT, SHADOWING_DB = -93.0, 3.5, 7.0


def serve(net: Network, x_km: np.ndarray, y_km: np.ndarray, five_g_capable: np.ndarray,
          indoor: np.ndarray, rng: np.random.Generator) -> RadioLink:
    """Serving, fallback and far cells for positions, from the three nearest sites.

    RSRP = -93 dBm at 1 km with path-loss exponent 3.5, log-normal shadowing (7 dB), sector
    pattern (3GPP TR 36.814 horizontal pattern, 65 deg beamwidth, 20 dB max attenuation),
    indoor penetration (``indoor``: dB per position, or True for 10 dB), and 6 dB extra loss
    at 3.5 GHz for 5G.
    """
    indoor = np.asarray(indoor)
    penetration = indoor * 10.0 if indoor.dtype == bool else indoor.astype(float)
    if len(x_km) == 0:  # no IoT fleet, say
        empty = np.zeros(0, np.int64), np.zeros(0)
        return RadioLink(*empty, *empty, *empty)
    k_sites = min(3, len(net.site_x))
    dist, site = net.site_tree.query(np.c_[x_km, y_km], k=k_sites)
    dist, site = dist.reshape(len(x_km), -1), site.reshape(len(x_km), -1)
    out = []
    for k in range(3):
        kk = min(k, k_sites - 1)
        s = site[:, kk]
        dx, dy = x_km - net.site_x[s], y_km - net.site_y[s]
        bearing = np.degrees(np.arctan2(dx, dy)) % 360
        rel = (bearing - net.site_rotation_deg[s]) % 360
        sector = np.round(rel / 120.0).astype(int) % 3
        off = np.abs(((rel - SECTOR_AZIMUTHS[sector]) + 180) % 360 - 180)
        pattern = -np.minimum(12 * (off / 65.0) ** 2, 20)
        d = np.maximum(dist[:, kk], 0.03)
        rsrp = (RSRP_AT_1KM_DBM - 10 * PATH_LOSS_EXPONENT * np.log10(d) + pattern
                + rng.normal(0, SHADOWING_DB, len(d)) - penetration)
        use_5g = five_g_capable & net.site_has_5g[s] & (rsrp > -100)
        rsrp = rsrp - 6 * use_5g
        out.append((net.cell_index(s, sector, use_5g.astype(int)), np.clip(rsrp, -140, -44)))
    # the shadowing draws may leave the "second" stronger than the first: serve from the best
    swap = out[1][1] > out[0][1]
    best = (np.where(swap, out[1][0], out[0][0]), np.where(swap, out[1][1], out[0][1]))
    second = (np.where(swap, out[0][0], out[1][0]), np.where(swap, out[0][1], out[1][1]))
    return RadioLink(best[0], best[1], second[0], second[1], out[2][0], out[2][1])
