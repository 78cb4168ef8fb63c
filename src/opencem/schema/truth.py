"""Ground truth of the digital twin: every injected fault, to score diagnosis against."""

import pyarrow as pa

from .base import TIMESTAMP, Table, col, key

GROUND_TRUTH = Table(
    name="ground_truth",
    domain="truth",
    description="Faults injected by the simulator (simulator only): domain, cause, location, window.",
    keys=("fault_id",),
    time_column="start_time",
    columns=(
        key("fault_id", "Fault identifier"),
        col("fault_type", pa.string(), "e.g. cell_outage, coverage_hole, cdn_degradation", nullable=False),
        col("domain", pa.string(), "Demarcation: cloud, pipe, device or account", nullable=False),
        col("cause", pa.string(), "Root cause in the operator's words"),
        col("location_type", pa.string(),
            "cell, site, grid, region, device_model, program_source, cdn_node or subscriber",
            nullable=False),
        col("location_id", pa.string(), "Id of the faulty object (cell_id, site_id, H3 index, ...)",
            nullable=False),
        col("start_time", TIMESTAMP, "Fault start (UTC)", nullable=False),
        col("end_time", TIMESTAMP, "Fault end (UTC)", nullable=False),
        col("severity", pa.float32(), "Strength of the impairment, 0-1"),
        col("affected_services", pa.string(), "Comma-separated services impaired"),
        col("description", pa.string(), "What was injected"),
    ),
)

TABLES = (GROUND_TRUTH,)
