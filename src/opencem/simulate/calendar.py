"""Local time of the territory: weekdays, weekends and holidays, in the scenario's time zone.

Simulated days are UTC days (files and lake partitions follow UTC), but people live by the
local clock: each UTC hour of a day gets the weight its local hour has on the local day it
falls in, so a Saturday evening in Rome is a Saturday evening whatever UTC says.
"""

from __future__ import annotations

from datetime import datetime, time, timedelta, timezone

import numpy as np

from .config import SimConfig

HOUR_MS = 3_600_000
WEEKDAY, SATURDAY, SUNDAY = 0, 1, 2  # SUNDAY covers public holidays too


def utc_offset_hours(cfg: SimConfig, day: int) -> np.ndarray:
    """The local UTC offset (hours, may be fractional) at each UTC hour of simulated ``day``."""
    start = datetime.combine(cfg.start_date + timedelta(days=day), time(), tzinfo=timezone.utc)
    zone = cfg.zone
    return np.array([(start + timedelta(hours=h)).astimezone(zone).utcoffset().total_seconds() / 3600
                     for h in range(24)])


def local_hours(cfg: SimConfig, day: int) -> tuple[np.ndarray, np.ndarray]:
    """(local hour of day 0..24, local day type) at each UTC hour of ``day``."""
    offset = utc_offset_hours(cfg, day)
    local = np.arange(24) + offset
    day_shift = np.floor(local / 24).astype(int)
    hour = local - 24 * day_shift
    kinds = np.empty(24, np.int8)
    for h in range(24):
        d = cfg.start_date + timedelta(days=day + int(day_shift[h]))
        kinds[h] = SUNDAY if d in cfg.holidays or d.weekday() == 6 else SATURDAY if d.weekday() == 5 else WEEKDAY
    return hour, kinds


def profile(local_hour: np.ndarray, peaks: tuple[float, ...], night: float) -> np.ndarray:
    """Relative activity at local hours (Gaussian peaks over a night floor)."""
    h = np.asarray(local_hour) + 0.5
    return night + sum(np.exp(-(((h - p + 12) % 24 - 12) / 2.5) ** 2) for p in peaks)


# Per service: (weekday peaks, weekend peaks, night floor, weekend volume relative to a weekday)
PROFILES = {
    "voice": ((11.0, 17.5), (12.0, 18.5), 0.08, 0.75),
    "data": ((13.0, 21.0), (14.0, 21.5), 0.08, 1.05),
    "video": ((21.0,), (16.0, 21.5), 0.05, 1.25),
}


def hour_weights(cfg: SimConfig, day: int, service: str) -> tuple[np.ndarray, float]:
    """(probability of each UTC hour of ``day`` for a session of ``service``, the day's volume
    relative to a weekday's): local-time peaks, weekend and holiday shapes and volumes."""
    weekday, weekend, night, weekend_volume = PROFILES[service]
    hour, kind = local_hours(cfg, day)
    w = np.where(kind == WEEKDAY, profile(hour, weekday, night), profile(hour, weekend, night))
    base = profile(np.arange(24), weekday, night).sum()  # a weekday's total, the unit of volume
    volume = np.where(kind == WEEKDAY, 1.0, weekend_volume) * w
    return w / w.sum(), float(volume.sum() / base)


def working_hours(cfg: SimConfig, day: int) -> tuple[np.ndarray, np.ndarray]:
    """Per UTC hour of ``day``: whether it is local working time (weekday 9-18) and local
    evening (18-23)."""
    hour, kind = local_hours(cfg, day)
    return (kind == WEEKDAY) & (hour >= 9) & (hour < 18), (hour >= 18) & (hour < 23)


def local_hour_of_day(cfg: SimConfig, day: int) -> np.ndarray:
    """Local hour (0..24) at each UTC hour of ``day``."""
    return local_hours(cfg, day)[0]
