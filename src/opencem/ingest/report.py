"""What the ingest log says: per table and status, quarantine by reason, rejected files."""

from __future__ import annotations

import pyarrow as pa

from ..engines.duckdb import query_lake
from ..lake import Lake

SECTIONS = {
    "summary": """SELECT table_name, status, count(*) AS files, sum(rows_read)::BIGINT AS rows_read,
                         sum(rows_accepted)::BIGINT AS rows_accepted,
                         sum(rows_quarantined)::BIGINT AS rows_quarantined,
                         sum(values_folded)::BIGINT AS values_folded, sum(rows_derived)::BIGINT AS rows_derived,
                         sum(values_left_out)::BIGINT AS values_left_out
                  FROM ingest_log GROUP BY ALL ORDER BY table_name, status""",
    "quarantine": """SELECT table_name, field, reason, count(*) AS records, min(source_path) AS example_file,
                            min(row_number) AS example_row
                     FROM quarantine GROUP BY ALL ORDER BY records DESC, table_name, field""",
    "rejected": """SELECT ingested_at, source_path, message FROM ingest_log
                   WHERE status = 'rejected' ORDER BY ingested_at DESC, source_path""",
}
TITLES = {"summary": "Ingest log (all batches)", "quarantine": "Quarantine by reason",
          "rejected": "Rejected files (newest first)"}


def ingest_log_report(lake: Lake, sections: list[str] | None = None) -> dict[str, pa.Table]:
    """The ingest log's sections (default all of :data:`SECTIONS`), each as an Arrow table."""
    return {name: query_lake(lake, SECTIONS[name]) for name in sections or SECTIONS}
