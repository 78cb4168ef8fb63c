"""What the demo shows of a simulated operator once it is loaded and evaluated: the faults the
simulator injected (its truth area) beside what the lake and the cubes say.

The truth is read here to *show* where faults were, never by anything that scores or
diagnoses (those must not see it).
"""

from __future__ import annotations

import pyarrow as pa

from pathlib import Path

from ..engines.duckdb import query_lake
from ..lake import Lake
from .truth import query_truth


def injected_faults(lake: Lake, truth: Path) -> pa.Table:
    return query_truth(lake, truth, """
        SELECT fault_type, domain, count(*) AS faults, min(location_id) AS example_location
        FROM truth.faults GROUP BY ALL ORDER BY faults DESC, fault_type""")


def voice_by_city(lake: Lake) -> pa.Table:
    return query_lake(lake, """
        SELECT c.city, count(*) AS calls,
               round(100 * avg((v.sip_cause_code IN (500, 503, 504, 408))::INT), 2)
                   AS network_setup_failure_pct,
               round(100 * avg(v.dropped::INT) FILTER (v.setup_success), 2) AS call_drop_pct,
               round(median(v.setup_time_ms) FILTER (v.setup_success)) AS median_setup_ms
        FROM xdr_voice v JOIN cells c USING (cell_id) GROUP BY ALL ORDER BY calls DESC, city""")


def worst_cell_days(lake: Lake, truth: Path, n: int = 12) -> pa.Table:
    """The cell-days with the lowest CEI, beside any fault injected on that cell, its site,
    city or province that day."""
    return query_truth(lake, truth, f"""
        SELECT c.cell_id, strftime(c.period_start, '%m-%d') AS day, round(c.cei, 1) AS cei,
               round(c.voice_index, 1) AS voice, round(c.mobile_data_index, 1) AS data,
               round(c.video_index, 1) AS video, round(c.home_broadband_index, 1) AS home_bb,
               (SELECT string_agg(DISTINCT g.fault_type, ', ') FROM truth.faults g JOIN cells k
                  ON g.location_id IN (k.cell_id, k.site_id, k.city, k.province)
                WHERE k.cell_id = c.cell_id AND g.start_time < c.period_start + INTERVAL 1 DAY
                  AND g.end_time > c.period_start) AS fault
        FROM cube_cell_day c WHERE c.cei IS NOT NULL ORDER BY c.cei, c.cell_id LIMIT {int(n)}""")


def experience_by_segment(lake: Lake) -> pa.Table:
    return query_lake(lake, """
        SELECT segment, count(*) AS customer_days, round(avg(cei), 1) AS mean_cei,
               round(100 * avg(poor_experience::INT), 2) AS poor_experience_pct
        FROM cube_subscriber_day c JOIN subscribers s USING (subscriber_id)
        GROUP BY ALL ORDER BY poor_experience_pct DESC, segment""")
