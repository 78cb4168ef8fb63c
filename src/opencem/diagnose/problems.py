"""Problems: many affected customers become one problem per common cause and location.

Cases concluded to a fault (any domain but none) are grouped by (cause, location type,
location); a group splits into episodes where no case came for more than :data:`GAP`, so a
cell that fails on Monday and again on Thursday is two problems, and an intermittent fault
(on and off by half hours) stays one. Each problem has its affected customers, their services
and their monthly value, its first and last hour, and the evidence of its most confident case.
"""

from __future__ import annotations

from datetime import timedelta

import pyarrow as pa

GAP = timedelta(hours=2)


def cluster(conclusions: pa.Table, gap: timedelta = GAP) -> tuple[pa.Table, pa.Table]:
    """(problems, membership): one row per problem, and the problem_id of every case that is in one."""
    import duckdb

    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.register("conclusions", conclusions)
    value = "arpu_monthly" if "arpu_monthly" in conclusions.column_names else "NULL::FLOAT"
    con.execute(f"""
        CREATE TEMP TABLE member AS
        WITH f AS (SELECT subscriber_id, service, hour_start, domain, cause, location_type, location_id, confidence,
                          evidence, {value} AS arpu_monthly
                   FROM conclusions WHERE domain <> 'none'),
             step AS (SELECT *, CASE WHEN hour_start - lag(hour_start) OVER w > INTERVAL {int(gap.total_seconds())} SECOND
                                     THEN 1 ELSE 0 END AS new_episode
                      FROM f WINDOW w AS (PARTITION BY cause, location_type, location_id ORDER BY hour_start)),
             ep AS (SELECT *, sum(new_episode) OVER (PARTITION BY cause, location_type, location_id ORDER BY hour_start
                                                    ROWS UNBOUNDED PRECEDING) AS episode FROM step)
        SELECT *, dense_rank() OVER (ORDER BY cause, location_type, location_id, episode) AS problem_number FROM ep""")
    problems = con.sql("""
        WITH per_sub AS (SELECT problem_number, subscriber_id, any_value(arpu_monthly) AS arpu FROM member GROUP BY ALL)
        SELECT printf('P%06d', m.problem_number) AS problem_id, any_value(domain) AS domain, cause, location_type,
               location_id, min(hour_start) AS start_time, max(hour_start) + INTERVAL 1 HOUR AS end_time,
               count(DISTINCT subscriber_id) AS affected_subscribers, count(*) AS cases,
               string_agg(DISTINCT service, ',' ORDER BY service) AS services,
               (SELECT round(sum(arpu), 2) FROM per_sub p WHERE p.problem_number = m.problem_number) AS value_monthly_eur,
               round(avg(confidence), 3) AS confidence, arg_max(evidence, confidence) AS evidence
        FROM member m GROUP BY m.problem_number, cause, location_type, location_id
        ORDER BY affected_subscribers DESC, start_time""").to_arrow_table()
    membership = con.sql("""SELECT subscriber_id, service, hour_start, printf('P%06d', problem_number) AS problem_id
                            FROM member""").to_arrow_table()
    con.close()
    return problems, membership
