"""Simulation settings: how big the twin operator is, when, and how faulty."""

from __future__ import annotations

import zlib
from datetime import date

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..errors import ConfigError


class SimConfig(BaseModel):
    """Size and shape of the simulated operator. Defaults give a mid-size city network."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    subscribers: int = Field(20_000, ge=100, description="Mobile subscribers")
    days: int = Field(2, ge=1, le=366, description="Days of traffic to simulate")
    seed: int = Field(7, description="Random seed; the same seed gives identical output")
    start_date: date = Field(date(2026, 11, 2), description="First simulated day (UTC)")
    subscribers_per_site: int = Field(600, ge=50, description="Network density")
    fault_rate: float = Field(1.0, ge=0, le=20, description="Multiplier on the number of faults")
    broadband_share: float = Field(0.2, ge=0, le=1, description="Subscribers with home broadband")
    iot_devices_per_subscriber: float = Field(0.05, ge=0, le=5, description="IoT fleet size")
    churn_horizon_days: int = Field(30, ge=0, le=365,
                                    description="Churn is observed until this many days after the window")

    @property
    def n_sites(self) -> int:
        return max(12, self.subscribers // self.subscribers_per_site)


def rng_for(seed: int, stream: str) -> np.random.Generator:
    """An independent, stable random stream per purpose, so adding draws in one module
    never shifts the numbers another module sees for the same seed."""
    return np.random.default_rng([seed, zlib.crc32(stream.encode())])


def make_config(**options) -> SimConfig:
    """A :class:`SimConfig` from command-line options; an option out of range is a
    :class:`~opencem.errors.ConfigError` naming it (``--subscribers``)."""
    try:
        return SimConfig(**options)
    except ValidationError as err:
        first = err.errors()[0]
        name = "--" + str(first["loc"][0]).replace("_", "-") if first["loc"] else "the options"
        raise ConfigError(f"{name}: {first['msg']}") from None
