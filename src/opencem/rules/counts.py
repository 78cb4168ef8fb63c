"""Per-key counts in a sliding event-time window (``count_over_time(xdr_voice[60m] where
dropped) by (subscriber_id) >= 3``), at the scale of every subscriber: each batch recounts
only the keys its records touched, in one statement.

A record is *active* when it and the N-1 records of its key before it (in event-time order,
ties by record id) fall within the range: the count over [t - range, t] reached N at it. An
episode starts at an active record no earlier active record still covers, fires there (the
record that completed the count is the alert's time), and resolves when the clock passes the
time the count falls below N again: the (N-1)-th record back plus the range, for the
episode's last active record.
"""

from __future__ import annotations

import json

from ..store.models import AlertState
from .sql import fingerprint_sql, lit, q


def count_step(engine, cr, clock: int | None) -> list:
    query, rule, con = cr.query, cr.rule, engine.con
    rel = engine._keyed(query)
    by = list(query.by)
    keys = ", ".join(q(b) for b in by)
    n, range_ms = query.min_count, query.range_s * 1000
    flt = query.filter.sql("duckdb") if query.filter is not None else "true"
    not_null = " AND ".join(f"r.{q(b)} IS NOT NULL" for b in by)
    changed = engine.rel.changed.get(query.table)
    if changed is None:
        touched = f"SELECT {keys}, min(_t) AS lo FROM {rel} r WHERE ({flt}) AND {not_null} GROUP BY ALL"
    else:
        touched = (f"SELECT {', '.join('r.' + q(b) for b in by)}, min(r._t) AS lo FROM {rel} r "
                   f"JOIN {changed} c ON r._id = c._id WHERE ({flt}) AND {not_null} GROUP BY ALL")
    fp = fingerprint_sql(rule.name, by)
    nth = "t_nth" if n > 1 else "_t"  # the (N-1)-th record back: the count's oldest
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE _cnt AS
        WITH touched AS ({touched}),
        recs AS (SELECT {', '.join('r.' + q(b) for b in by)}, r._t, r._id FROM {rel} r JOIN touched k USING ({keys})
                 WHERE ({flt}) AND r._t >= k.lo - {2 * range_ms}),
        counted AS (
          SELECT *, lag(_t, {n - 1}) OVER w AS t_nth,
                 count(*) OVER (PARTITION BY {keys} ORDER BY _t RANGE BETWEEN {range_ms} PRECEDING AND CURRENT ROW) AS n
          FROM recs WINDOW w AS (PARTITION BY {keys} ORDER BY _t, _id)),
        active AS (SELECT *, {nth} IS NOT NULL AND {nth} >= _t - {range_ms} AS on_, {nth} + {range_ms} AS exp_
                   FROM counted),
        starts AS (
          SELECT *, on_ AND coalesce(max(CASE WHEN on_ THEN exp_ END) OVER (PARTITION BY {keys} ORDER BY _t, _id
                    ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) < _t, true) AS starts
          FROM active),
        numbered AS (SELECT *, sum(CAST(starts AS INTEGER)) OVER (PARTITION BY {keys} ORDER BY _t, _id) AS episode
                     FROM starts WHERE on_)
        SELECT {keys}, {fp} AS fp, min(_t) AS start_ms, max(exp_) AS expires_ms, max(n) AS n,
               first(n ORDER BY _t, _id) AS n_first
        FROM numbered GROUP BY {keys}, episode""")
    # An episode that began before the records looked at keeps its first record's time.
    labels = "to_json(struct_pack(" + ", ".join(f"{q(b)} := CAST(c.{q(b)} AS VARCHAR)" for b in by) + "))"
    obj_id = "concat_ws('|', " + ", ".join(f"CAST(c.{q(b)} AS VARCHAR)" for b in by) + ")"
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE _eps AS
        SELECT c.fp, {labels} AS labels, {obj_id} AS object_id,
               coalesce(e.episode_ms, c.start_ms) AS episode_ms, greatest(c.expires_ms, coalesce(e.expires_ms, 0)) AS expires_ms,
               greatest(c.n, coalesce(e.value, 0)) AS n, c.n_first, c.start_ms, e.episode_ms IS NULL AS new
        FROM _cnt c LEFT JOIN rules_episodes e ON e.rule = {lit(rule.name)} AND e.fingerprint = c.fp
             AND e.episode_ms <= c.start_ms AND e.expires_ms >= c.start_ms""")
    obj_type = "+".join(b.removesuffix("_id") for b in by)
    # A firing value is the count at the record that completed it, whatever else its batch held
    # (so it does not depend on where batches were cut); the episode keeps its largest count,
    # the value it resolves with.
    fired = con.execute("SELECT fp, labels, object_id, episode_ms, n_first FROM _eps WHERE new "
                        "ORDER BY episode_ms, fp").fetchall()
    con.execute(f"""
        INSERT OR REPLACE INTO rules_episodes
        SELECT {lit(rule.name)}, fp, labels, {lit(obj_type)}, object_id, episode_ms, max(expires_ms), max(n)
        FROM _eps GROUP BY ALL""")
    window_min = max(1, query.range_s // 60)
    events = [engine._event(cr, fp, json.loads(labels), obj_type, oid, AlertState.firing, AlertState.inactive,
                            start, window_min, start, start, float(count), {"count": int(count), "range_s": query.range_s})
              for fp, labels, oid, start, count in fired]
    if clock is not None:  # episodes whose count fell below N before the clock
        ended = con.execute(f"""
            DELETE FROM rules_episodes WHERE rule = {lit(rule.name)} AND expires_ms < {clock}
            RETURNING fingerprint, labels, object_id, episode_ms, expires_ms, value""").fetchall()
        events += [engine._event(cr, fp, json.loads(labels), obj_type, oid, AlertState.resolved, AlertState.firing,
                                 start, window_min, start, expires + 1, float(count), {"count": int(count),
                                 "range_s": query.range_s})
                   for fp, labels, oid, start, expires, count in sorted(ended, key=lambda r: (r[4], r[0]))]
    return engine._topology(events)
