"""Simulation settings: how big the twin operator is, where and when, and how faulty.

A :class:`SimConfig` comes from command-line options or from a scenario file
(``opencem simulate --scenario FILE.yaml``, :func:`load_scenario`), validated like every
definition file: unknown keys are errors, and each problem names the file, line and field.
Scenarios shipped with opencem live in ``simulate/scenarios/`` and are named without the
folder (``--scenario benchmark``).
"""

from __future__ import annotations

import zlib
from datetime import date, datetime
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, field_validator

from ..errors import ConfigError
from .devices import DEVICE_NAMES

SCENARIOS = Path(__file__).resolve().parent / "scenarios"
Range = tuple[float, float]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TownSpec(Strict):
    """A town of the territory: its centre in km from the reference point, radius and share of
    the population."""

    name: str = Field(min_length=1, max_length=60)
    province: str = Field(min_length=1, max_length=60)
    x_km: float = Field(ge=-500, le=500)
    y_km: float = Field(ge=-500, le=500)
    radius_km: float = Field(gt=0, le=50)
    weight: float = Field(gt=0)
    vendor: Literal["alpha", "beta"] = "alpha"


DEFAULT_TOWNS = (
    TownSpec(name="Northport", province="Coastal", x_km=0.0, y_km=0.0, radius_km=5.0, weight=0.55, vendor="alpha"),
    TownSpec(name="Eastbury", province="Coastal", x_km=18.0, y_km=5.0, radius_km=2.5, weight=0.20, vendor="alpha"),
    TownSpec(name="Southvale", province="Inland", x_km=-4.0, y_km=-16.0, radius_km=2.5, weight=0.15, vendor="beta"),
    TownSpec(name="Westmere", province="Inland", x_km=-20.0, y_km=3.0, radius_km=2.0, weight=0.10, vendor="beta"),
)


class ServiceMix(Strict):
    """Sessions per subscriber per day (before usage and segment factors)."""

    voice_per_day: float = Field(3.0, ge=0, le=100)
    data_per_day: float = Field(8.0, ge=0, le=500)
    video_per_day: float = Field(1.2, ge=0, le=100)


TimeOfDay = Literal["any", "busy", "day", "night"]
Shape = Literal["constant", "intermittent", "ramping", "mixed"]


class FaultSpec(Strict):
    """How often one fault type happens and what an instance looks like.

    ``rate`` is per unit and day: per cell (cell faults), site (backhaul, coverage holes),
    province (core, DNS), CDN node, program source, application host, OLT or device model; for
    per-subscriber causes it is the share of the base affected over the window."""

    rate: float = Field(ge=0, le=100)
    duration_h: Range = (1.0, 4.0)
    severity: Range = (0.6, 1.0)
    time_of_day: TimeOfDay = "any"
    shape: Shape = "constant"
    partial: Range = Field((1.0, 1.0), description="share of the object's sessions affected")

    @field_validator("duration_h", "severity", "partial")
    @classmethod
    def _ordered(cls, v: Range, info) -> Range:
        lo, hi = v
        if lo > hi:
            raise ValueError(f"the range {list(v)} runs backwards (low above high)")
        if info.field_name in ("severity", "partial") and not (0 <= lo and hi <= 1):
            raise ValueError(f"{info.field_name} is a share between 0 and 1, not {list(v)}")
        if info.field_name == "duration_h" and (lo <= 0 or hi > 24 * 366):
            raise ValueError(f"durations are between 0 and a year of hours, not {list(v)}")
        return v


class Injection(Strict):
    """One fault placed by hand: ``{fault: cell_outage, location: C00012-1-4G, start: 2026-11-02T14:00,
    duration_h: 2}``. The location is an id of the fault type's object (a cell, site, province,
    CDN node, program source, host, OLT, device model, H3 cell at resolution 9 or subscriber)."""

    fault: str
    location: str = Field(min_length=1)

    @field_validator("fault")
    @classmethod
    def _known(cls, v: str) -> str:
        if v not in DEFAULT_FAULTS:
            raise ValueError(f"unknown fault type {v!r}; known: {', '.join(DEFAULT_FAULTS)}")
        return v
    start: datetime
    duration_h: float = Field(gt=0, le=24 * 366)
    severity: float = Field(1.0, gt=0, le=1)
    shape: Literal["constant", "intermittent", "ramping"] = "constant"
    partial: float = Field(1.0, gt=0, le=1)


F = FaultSpec
# Per fault type, how often (per unit and day) and what an instance looks like; what each type
# does and its unit are in faults.FAULT_TYPES.
DEFAULT_FAULTS: dict[str, FaultSpec] = {
    "cell_outage": F(rate=1 / 150, duration_h=(1, 6), severity=(1, 1), shape="mixed"),
    "sleeping_cell": F(rate=1 / 400, duration_h=(2, 12), severity=(0.5, 0.9)),
    "interference": F(rate=1 / 200, duration_h=(6, 36), severity=(0.5, 1.0), shape="mixed", partial=(0.6, 1.0)),
    "congestion": F(rate=1 / 120, duration_h=(2, 5), severity=(0.5, 1.0), time_of_day="busy", shape="mixed"),
    "backhaul_degradation": F(rate=1 / 100, duration_h=(2, 8), severity=(0.3, 0.9), shape="mixed"),
    "core_degradation": F(rate=0.25, duration_h=(1, 3), severity=(0.4, 1.0), shape="mixed", partial=(0.2, 0.8)),
    "dns_failure": F(rate=0.1, duration_h=(0.5, 2), severity=(0.3, 0.9), partial=(0.3, 1.0)),
    "app_server_fault": F(rate=0.08, duration_h=(1, 4), severity=(0.4, 1.0), partial=(0.3, 1.0)),
    "cdn_degradation": F(rate=0.12, duration_h=(2, 5), severity=(0.4, 1.0), time_of_day="busy", shape="mixed",
                         partial=(0.2, 0.6)),
    "program_source_fault": F(rate=0.06, duration_h=(1, 3), severity=(0.6, 1.0)),
    "olt_outage": F(rate=0.05, duration_h=(1, 4), severity=(1, 1), shape="mixed", partial=(0.4, 1.0)),
    "coverage_hole": F(rate=1 / 400, severity=(0.4, 1.0), partial=(0.2, 0.8)),
    "firmware_bug": F(rate=0.02, severity=(0.5, 1.0)),
    "volte_off": F(rate=0.005),
    "wrong_apn": F(rate=0.0015),
    "data_cap_throttling": F(rate=0.01),
    "suspension": F(rate=0.002),
}


# One optional key per fault type: a misspelt type is an unknown key on its own line.
FaultSpecs = create_model("FaultSpecs", __config__=ConfigDict(extra="forbid", frozen=True),
                          **{name: (FaultSpec | None, None) for name in DEFAULT_FAULTS})


class SimConfig(Strict):
    """Size and shape of the simulated operator. Defaults give a mid-size city network."""

    scenario: str | None = Field(None, description="Scenario name, when read from a scenario file")
    subscribers: int = Field(20_000, ge=100, le=20_000_000, description="Mobile subscribers")
    days: int = Field(2, ge=1, le=366, description="Days of traffic to simulate")
    seed: int = Field(7, ge=0, le=2**63 - 1, description="Random seed; the same seed gives identical output")
    start_date: date = Field(date(2026, 11, 2), description="First simulated day (UTC)")
    time_zone: str = Field("Europe/Rome", description="Local time of the territory (IANA name)")
    holidays: tuple[date, ...] = Field((), description="Public holidays: traffic as on a Sunday")
    subscribers_per_site: int = Field(600, ge=50, le=100_000, description="Network density")
    fault_rate: float = Field(1.0, ge=0, le=20, description="Multiplier on the number of faults")
    broadband_share: float = Field(0.2, ge=0, le=1, description="Subscribers with home broadband")
    iot_devices_per_subscriber: float = Field(0.05, ge=0, le=5, description="IoT fleet size")
    churn_horizon_days: int = Field(30, ge=0, le=365,
                                    description="Churn is observed until this many days after the window")
    towns: tuple[TownSpec, ...] = DEFAULT_TOWNS
    services: ServiceMix = ServiceMix()
    device_shares: dict[str, float] | None = Field(
        None, description="Share of handsets per device model (mass market), replacing the default mix")
    faults: FaultSpecs = Field(default_factory=lambda: FaultSpecs(), description="Per fault type, replacing its defaults")
    injections: tuple[Injection, ...] = ()

    @field_validator("time_zone")
    @classmethod
    def _zone(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{v!r} is not an IANA time zone (e.g. Europe/Rome, Asia/Shanghai, UTC)") from None
        return v

    @field_validator("towns")
    @classmethod
    def _towns(cls, v: tuple[TownSpec, ...]) -> tuple[TownSpec, ...]:
        if not v:
            raise ValueError("a territory needs at least one town")
        names = [t.name for t in v]
        if len(set(names)) != len(names):
            raise ValueError(f"town names repeat: {sorted({n for n in names if names.count(n) > 1})}")
        return v

    @field_validator("device_shares")
    @classmethod
    def _devices(cls, v: dict[str, float] | None) -> dict[str, float] | None:
        if v is None:
            return v
        bad = [k for k in v if k not in DEVICE_NAMES]
        if bad:
            raise ValueError(f"unknown device model {bad[0]!r}; known: {', '.join(DEVICE_NAMES)}")
        if any(x < 0 for x in v.values()) or sum(v.values()) <= 0:
            raise ValueError("shares are non-negative and not all zero")
        return v

    @property
    def n_sites(self) -> int:
        return max(12, self.subscribers // self.subscribers_per_site)

    def fault_spec(self, fault_type: str) -> FaultSpec:
        """The scenario's spec for a fault type, else its default."""
        return getattr(self.faults, fault_type) or DEFAULT_FAULTS[fault_type]

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.time_zone)


def rng_for(seed: int, stream: str) -> np.random.Generator:
    """An independent, stable random stream per purpose, so adding draws in one module
    never shifts the numbers another module sees for the same seed."""
    return np.random.default_rng([seed, zlib.crc32(stream.encode())])


def make_config(scenario: str | Path | None = None, **options) -> SimConfig:
    """A :class:`SimConfig` from command-line options, over a scenario file when one is given
    (options given on the command line win). An option out of range is a
    :class:`~opencem.errors.ConfigError` naming it (``--subscribers``)."""
    base = load_scenario(scenario) if scenario is not None else None
    try:
        if base is None:
            return SimConfig(**options)
        return SimConfig(**{**base.model_dump(exclude_unset=True), **options})
    except ValidationError as err:
        first = err.errors()[0]
        name = "--" + str(first["loc"][0]).replace("_", "-") if first["loc"] else "the options"
        raise ConfigError(f"{name}: {first['msg']}") from None


def scenario_path(name: str | Path) -> Path:
    """A scenario file by path, or a shipped scenario by name (``benchmark``): a bare name is
    the shipped one even when a file of that name lies in the working directory."""
    path = Path(name)
    bare = isinstance(name, str) and "/" not in name and path.suffix not in (".yaml", ".yml")
    if bare and (SCENARIOS / f"{name}.yaml").is_file():
        return SCENARIOS / f"{name}.yaml"
    if path.suffix in (".yaml", ".yml") or path.is_file():
        if path.is_dir():
            raise ConfigError(f"--scenario: {path} is a folder, not a scenario file")
        return path
    shipped = SCENARIOS / f"{name}.yaml"
    if shipped.is_file():
        return shipped
    known = ", ".join(sorted(p.stem for p in SCENARIOS.glob("*.yaml")))
    raise ConfigError(f"--scenario: no file {name} and no shipped scenario of that name (shipped: {known})")


def load_scenario(name: str | Path) -> SimConfig:
    """Read and validate a scenario file; every problem at once, with file, line and field."""
    from ..specfile import load_spec

    path = scenario_path(name)
    if not path.is_file():
        raise ConfigError(f"--scenario: {path}: no such file")
    cfg = load_spec(path, SimConfig, "Scenario")
    return cfg if cfg.scenario else cfg.model_copy(update={"scenario": path.stem})
