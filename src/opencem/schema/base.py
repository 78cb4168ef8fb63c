"""Building blocks for the canonical tables: typed columns with units and descriptions."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import pyarrow as pa

Domain = Literal["network", "sessions", "customers", "truth", "ops", "indicators"]
# Timestamps are UTC with millisecond precision everywhere in the lake.
TIMESTAMP = pa.timestamp("ms", tz="UTC")


def col(name: str, type_: pa.DataType, description: str, unit: str | None = None,
        nullable: bool = True) -> pa.Field:
    """A column with its description and unit kept as Arrow field metadata."""
    meta = {"description": description}
    if unit:
        meta["unit"] = unit
    return pa.field(name, type_, nullable=nullable, metadata=meta)


def key(name: str, description: str, type_: pa.DataType = pa.string()) -> pa.Field:
    """A key column: never null."""
    return col(name, type_, description, nullable=False)


@dataclass(frozen=True)
class Table:
    """One canonical table of the lake.

    ``time_column`` is the event time that decides the ``date=`` partition; snapshot tables
    (cells, subscribers) have none and are partitioned by the date they were loaded for.
    """

    name: str
    domain: Domain
    description: str
    columns: tuple[pa.Field, ...]
    keys: tuple[str, ...]
    time_column: str | None = None
    ranges: dict[str, tuple[float, float]] = field(default_factory=dict)
    # (latitude, longitude) columns of a position the rows may carry: ingest derives
    # LOCATION_H3 from them, which grid cubes read before the serving site.
    location: tuple[str, str] | None = None

    @property
    def schema(self) -> pa.Schema:
        return pa.schema(list(self.columns), metadata={"table": self.name, "domain": self.domain})

    @property
    def observed_schema(self) -> pa.Schema:
        """The schema without the columns ingest derives (location_h3): what a source writes."""
        return pa.schema([f for f in self.columns if f.name != LOCATION_H3],
                         metadata={"table": self.name, "domain": self.domain})

    @property
    def is_snapshot(self) -> bool:
        return self.time_column is None

    def column(self, name: str) -> pa.Field:
        return self.schema.field(name)


def unit_of(f: pa.Field) -> str:
    return (f.metadata or {}).get(b"unit", b"").decode()


LOCATION_H3 = "location_h3"
LOCATION_RANGES = {"ue_lat": (-90.0, 90.0), "ue_lon": (-180.0, 180.0), "location_error_m": (0.0, 100_000.0)}


def location_h3() -> pa.Field:
    return col(LOCATION_H3, pa.int64(), "H3 cell (resolution 15, 64-bit index) of the position; derived at "
               "ingest from the row's coordinates, any value given for it is replaced")


def ue_location() -> tuple[pa.Field, ...]:
    """Where the UE was, when the session was geolocated (MR/MDT positioning or the device's
    own fix); null when it was not."""
    return (
        col("ue_lat", pa.float64(), "UE latitude (WGS84) from MR/MDT geolocation or the device; null if not located", "deg"),
        col("ue_lon", pa.float64(), "UE longitude (WGS84)", "deg"),
        col("location_error_m", pa.float32(), "Estimated error radius of the position", "m"),
        location_h3(),
    )


def description_of(f: pa.Field) -> str:
    return (f.metadata or {}).get(b"description", b"").decode()


# Shared radio context a probe sees on the user plane (S1-U/N3 probes with cell trace).
def radio_context() -> tuple[pa.Field, ...]:
    return (
        col("rsrp_dbm", pa.float32(), "Reference signal received power at session start", "dBm"),
        col("sinr_db", pa.float32(), "Signal to interference plus noise ratio", "dB"),
        col("cqi", pa.int8(), "Channel quality indicator reported by the UE (0-15)"),
        col("prb_load_pct", pa.float32(), "Downlink PRB utilisation of the serving cell, where the probe "
            "enriches sessions from PM (a probe does not see it itself; RRU.PrbTotDl carries it)", "%"),
    )


RADIO_RANGES = {
    "rsrp_dbm": (-156.0, -31.0),  # TS 36.133 reporting range
    "sinr_db": (-23.0, 40.0),
    "cqi": (0, 15),
    "prb_load_pct": (0.0, 100.0),
}


def session_keys(id_name: str, id_description: str) -> tuple[pa.Field, ...]:
    return (
        key(id_name, id_description),
        key("subscriber_id", "Subscriber (pseudonymous id from BSS)"),
        col("start_time", TIMESTAMP, "Session start (UTC)", nullable=False),
        col("cell_id", pa.string(), "Serving cell at session start"),
        col("technology", pa.string(), "Radio access technology: 4G or 5G"),
        col("device_model", pa.string(), "Device model from the IMEI TAC"),
    )
