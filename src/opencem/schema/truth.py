"""The digital twin's truth: what the simulator injected and what really caused each poor
experience, to score diagnosis and alerting against.

These tables are never part of the lake (they are not in ``schema.TABLES``): ``opencem
simulate`` writes them under ``OUT/truth/``, ingest refuses them, and ``opencem truth load``
keeps them in the workspace's truth area, which only the demo and the scoring benchmarks read.
"""

import pyarrow as pa

from .base import TIMESTAMP, Table, col, key

# The files that mark a truth folder and a simulator output, so ingest (which must not import
# the simulator) knows them: it refuses the first and an unfinished second.
TRUTH_MARKER = ".opencem-truth"
SIMULATION_MARKER = ".opencem-simulation"
DOMAINS = ("cloud", "pipe", "device", "account")
# The domain of a poor experience no injected fault explains.
NO_FAULT = "none"
SERVICES = ("voice", "mobile_data", "video", "home_broadband")

FAULTS = Table(
    name="faults",
    domain="truth",
    description="Faults injected by the simulator: domain, cause, location and when each really started and ended.",
    keys=("fault_id",),
    time_column="start_time",
    columns=(
        key("fault_id", "Fault identifier"),
        col("fault_type", pa.string(), "e.g. cell_outage, coverage_hole, cdn_degradation", nullable=False),
        col("domain", pa.string(), "Demarcation: cloud, pipe, device or account", nullable=False),
        col("cause", pa.string(), "Root cause in the operator's words"),
        col("location_type", pa.string(),
            "cell, site, grid, region, device_model, program_source, cdn_node, olt or subscriber",
            nullable=False),
        col("location_id", pa.string(), "Id of the faulty object (cell_id, site_id, H3 index, ...)",
            nullable=False),
        col("start_time", TIMESTAMP, "Fault start (UTC)", nullable=False),
        col("end_time", TIMESTAMP, "Fault end (UTC, exclusive)", nullable=False),
        col("severity", pa.float32(), "Strength of the impairment, 0-1 (the peak, for a ramping fault)"),
        col("shape", pa.string(), "constant, intermittent (on and off by 15-minute periods) or ramping",
            nullable=False),
        col("reach", pa.float32(), "Share of the object's sessions the fault reaches (a partial fault: below 1)",
            nullable=False),
        col("affected_services", pa.string(), "Comma-separated services impaired"),
        col("precedence", pa.int16(), "Rank when faults overlap on one case: the lowest number labels it",
            nullable=False),
        col("description", pa.string(), "What was injected"),
    ),
)

CASES = Table(
    name="cases",
    domain="truth",
    description=("One row per (subscriber, service, hour) with poor experience: at least one poor session "
                 "(docs/simulator.md gives the rule per service), and what really caused it."),
    keys=("subscriber_id", "service", "hour_start"),
    time_column="hour_start",
    columns=(
        key("subscriber_id", "Subscriber"),
        key("service", "voice, mobile_data, video or home_broadband"),
        key("hour_start", "Start of the hour (UTC)", TIMESTAMP),
        col("domain", pa.string(), "cloud, pipe, device, account, or none (no injected fault)", nullable=False),
        col("cause", pa.string(), "The fault's cause, or the ordinary condition behind a none case",
            nullable=False),
        col("location_type", pa.string(), "As faults.location_type; cell or none for a none case",
            nullable=False),
        col("location_id", pa.string(), "Id of the located object; empty when there is none", nullable=False),
        col("fault_id", pa.string(), "The fault that labels the case (by precedence); null for none"),
        col("fault_type", pa.string(), "Its type; the ordinary condition for a none case", nullable=False),
        col("overlapping_faults", pa.int16(), "Distinct faults on the hour's poor sessions", nullable=False),
        col("poor_sessions", pa.int32(), "Poor sessions in the hour", nullable=False),
        col("sessions", pa.int32(), "All sessions of the service in the hour", nullable=False),
    ),
)

FAULT_PERIODS = Table(
    name="fault_periods",
    domain="truth",
    description=("One row per fault and 15-minute period it was active on an object, for alert scoring "
                 "(an intermittent fault has gaps)."),
    keys=("fault_id", "object_type", "object_id", "period_start"),
    time_column="period_start",
    columns=(
        key("fault_id", "Fault"),
        key("object_type", "cell, site, region, cdn_node, program_source, olt, grid, device_model"),
        key("object_id", "Id of the object"),
        key("period_start", "Start of the 15-minute period (UTC)", TIMESTAMP),
        col("fault_type", pa.string(), "Fault type", nullable=False),
        col("severity", pa.float32(), "Strength of the impairment in that period, 0-1"),
    ),
)

CELL_PERIODS = Table(
    name="cell_periods",
    domain="truth",
    description=("One row per (cell, 15 minutes, fault) where a network fault impaired the cell's service: "
                 "its own outage, interference or congestion, its site's backhaul, its region's core."),
    keys=("cell_id", "period_start", "fault_id"),
    time_column="period_start",
    columns=(
        key("cell_id", "Cell"),
        key("period_start", "Start of the 15-minute period (UTC)", TIMESTAMP),
        key("fault_id", "Fault"),
        col("fault_type", pa.string(), "Fault type", nullable=False),
        col("domain", pa.string(), "Its domain", nullable=False),
    ),
)

TABLES = (FAULTS, CASES, FAULT_PERIODS, CELL_PERIODS)
TRUTH_TABLES: dict[str, Table] = {t.name: t for t in TABLES}
