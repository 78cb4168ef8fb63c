"""Operational tables opencem writes about its own work: the ingest log and quarantine."""

import pyarrow as pa

from .base import TIMESTAMP, Table, col, key

INGEST_LOG = Table(
    name="ingest_log",
    domain="ops",
    description="One row per source file and target table per ingest: rows read = accepted + quarantined "
                "+ values folded - rows derived + values left out (the last three are a PM counter "
                "dictionary's doing, 0 elsewhere).",
    keys=("batch_id", "source_path", "table_name"),
    time_column="ingested_at",
    columns=(
        col("ingested_at", TIMESTAMP, "When the batch was committed (UTC)", nullable=False),
        key("batch_id", "Lake batch that loaded the file"),
        key("source_path", "Absolute path of the source file"),
        col("fingerprint", pa.string(), "SHA-256 of the file content"),
        key("table_name", "Canonical table loaded"),
        col("status", pa.string(), "loaded, duplicate or rejected", nullable=False),
        col("rows_read", pa.int64(), "Records read from the file"),
        col("rows_accepted", pa.int64(), "Records written to the table"),
        col("rows_quarantined", pa.int64(), "Records set aside in quarantine"),
        col("message", pa.string(), "Why a file was rejected or skipped"),
        col("values_folded", pa.int64(), "PM values a dictionary sum or expr read into derived rows "
            "(null in logs written before this column)"),
        col("rows_derived", pa.int64(), "Rows the dictionary's sum and expr entries computed"),
        col("values_left_out", pa.int64(), "PM values of counters the dictionary does not map, left out "
            "(keep_unmapped: false)"),
    ),
)

QUARANTINE = Table(
    name="quarantine",
    domain="ops",
    description="Records that failed validation, with the file, row, field and reason; never dropped.",
    keys=("batch_id", "source_path", "row_number"),
    time_column="ingested_at",
    columns=(
        col("ingested_at", TIMESTAMP, "When the batch was committed (UTC)", nullable=False),
        key("batch_id", "Lake batch"),
        key("source_path", "File the record came from"),
        key("table_name", "Canonical table the record was meant for"),
        col("row_number", pa.int64(), "1-based record number in the file: the line for CSV and "
            "JSON Lines (header = line 1), the measValue for PM XML, the row for Parquet",
            nullable=False),
        col("field", pa.string(), "Field that failed"),
        col("value", pa.string(), "Offending value as text"),
        col("reason", pa.string(), "Why the record was set aside", nullable=False),
        col("record_json", pa.string(), "The whole record as JSON, to repair and reload"),
    ),
)

TABLES = (INGEST_LOG, QUARANTINE)
