"""Rule evaluation over DuckDB, in event time, with its state in the same connection (so the
stream commits rule state and the alerts a batch caused with the batch's windows).

Window rules (threshold, anomaly, burst) evaluate a window once it has *closed*: its clock (the
event time up to which its inputs are settled; the stream's is in ``rules.stream``) has passed
the window's end plus the group's ``query_offset``. Windows are taken in order, one SQL step
each over every series of the rule (every cell), so 100,000 series cost one statement, not
100,000. A window evaluated again because late records changed it (the newest closed window of
the rule) is re-run from the state before it, ahead of the newer windows. Count rules
(``count_over_time``) evaluate the records a batch brought, per key (subscriber), at the record
that completes the count.

State: ``rules_series`` (one row per rule and series: state, consecutive active windows, the
episode's first window, the state before the newest window), ``rules_dropped`` (the series
the newest window ended, with their state before it), ``rules_clock`` (the newest window
evaluated per rule and the rule's version), ``rules_episodes`` (open count episodes) and
``rules_events``, the outbox of :class:`AlertEvent`s keyed by their idempotency key, which
whatever routes them reads after the commit.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from ..store.models import AlertState
from .catalog import CheckedRule
from .events import AlertEvent
from .expr import BURST_MIN_EVENTS, TOPOLOGY, CountQuery, CubeQuery
from .counts import count_step
from .sql import fingerprint_sql, lit, q
from .templates import render

DAY_MS = 86_400_000
BASELINE_DAYS = 28          # the object's own hour-of-week history looked at
DAILY_DAYS = 14             # the same hour of day on any day, when hour-of-week is too thin
MIN_POINTS = 8              # values a baseline needs
BURST_DAYS = 7
IQR_TO_SIGMA = 1.349        # IQR of a normal distribution in standard deviations
PEER_FLOOR = 0.25           # an object's scale is at least this share of its peers' scale


@dataclass
class Relations:
    """Where the evaluator reads, as SQL relations of one DuckDB connection.

    ``cubes``: cube table -> relation with ``period_start`` and the cube's columns (the windows
    to evaluate); ``history``: cube table -> relation for anomaly baselines (default: the same);
    ``records``: event table -> relation with the table's columns plus ``_t`` (event time,
    epoch ms) and ``_id`` (record id); ``changed``: event table -> relation of ``_id`` of the
    records to count now (None: all of them); ``cells``: the cells inventory (topology labels);
    ``window_s``: each cube's window (and burst rules' step)."""

    cubes: dict[str, str] = field(default_factory=dict)
    history: dict[str, str] = field(default_factory=dict)
    records: dict[str, str] = field(default_factory=dict)
    changed: dict[str, str | None] = field(default_factory=dict)
    cells: str | None = None
    window_s: dict[str, int] = field(default_factory=dict)
    burst_window_s: int = 900


STATE_DDL = [
    """CREATE TABLE IF NOT EXISTS rules_series (rule VARCHAR, fingerprint VARCHAR, labels VARCHAR,
       object_type VARCHAR, object_id VARCHAR, state VARCHAR, run INTEGER, episode_ms BIGINT,
       last_active_ms BIGINT, value DOUBLE, window_ms BIGINT, p_state VARCHAR, p_run INTEGER,
       p_episode_ms BIGINT, p_last_active_ms BIGINT, PRIMARY KEY (rule, fingerprint))""",
    # Series the newest window of a rule ended (rows as rules_series'): their state before it.
    "CREATE TABLE IF NOT EXISTS rules_dropped AS SELECT * FROM rules_series WHERE false",
    "CREATE TABLE IF NOT EXISTS rules_clock (rule VARCHAR PRIMARY KEY, version VARCHAR, closed_ms BIGINT)",
    """CREATE TABLE IF NOT EXISTS rules_episodes (rule VARCHAR, fingerprint VARCHAR, labels VARCHAR,
       object_type VARCHAR, object_id VARCHAR, episode_ms BIGINT, expires_ms BIGINT, value DOUBLE,
       PRIMARY KEY (rule, fingerprint, episode_ms))""",
    """CREATE TABLE IF NOT EXISTS rules_events (seq BIGINT, key VARCHAR PRIMARY KEY, rule VARCHAR,
       state VARCHAR, event_at TIMESTAMPTZ, event VARCHAR, relayed BOOLEAN DEFAULT false)""",
]


class RuleEngine:
    """Evaluates checked rules on ``con``; :meth:`step` returns the events it added to the outbox."""

    def __init__(self, con, rules: list[CheckedRule], relations: Relations, better: dict[str, str | None]):
        self.con = con
        self.rules = rules
        self.rel = relations
        self.better = better
        self._described: dict[str, set[str]] = {}
        for ddl in STATE_DDL:
            con.execute(ddl)
        self._versions()

    def _versions(self) -> None:
        """A rule whose definition changed starts again: its kept state belonged to the old one."""
        kept = dict(self.con.execute("SELECT rule, version FROM rules_clock").fetchall())
        for cr in self.rules:
            if kept.get(cr.rule.name, cr.rule.version) != cr.rule.version:
                for table in ("rules_series", "rules_dropped", "rules_episodes", "rules_clock"):
                    self.con.execute(f"DELETE FROM {table} WHERE rule = ?", [cr.rule.name])

    # -- one evaluation -------------------------------------------------------------------
    def step(self, clocks: dict[str, int], revised: dict[str, set[int]] | None = None,
             rule_clocks: dict[str, int] | None = None) -> list[AlertEvent]:
        """Evaluate what ``clocks`` (per cube table and event table: the latest event time, epoch
        ms) closed; ``revised``: per cube table, window starts (ms) whose values changed;
        ``rule_clocks``: per rule name, a clock that replaces its source's (the stream's, from
        the watermarks of the inputs the rule reads)."""
        events: list[AlertEvent] = []
        for cr in self.rules:
            query = cr.query
            if isinstance(query, CountQuery) and query.kind == "count":
                if query.table in self.rel.records:
                    events += self._count_step(cr, clocks.get(query.table))
                continue
            source = query.cube if isinstance(query, CubeQuery) else query.table
            if source not in (self.rel.cubes if isinstance(query, CubeQuery) else self.rel.records):
                continue
            clock = (rule_clocks or {}).get(cr.rule.name, clocks.get(source))
            if clock is None:
                continue
            window_ms = (self.rel.window_s.get(source, 900) if isinstance(query, CubeQuery)
                         else self.rel.burst_window_s) * 1000
            events += self._window_steps(cr, clock, window_ms, (revised or {}).get(source, set()))
        return self._outbox(events)

    def _window_steps(self, cr: CheckedRule, clock: int, window_ms: int, revised: set[int]) -> list[AlertEvent]:
        rule = cr.rule
        row = self.con.execute("SELECT closed_ms FROM rules_clock WHERE rule = ?", [rule.name]).fetchall()
        closed = row[0][0] if row else None
        last = (clock - rule.query_offset_s * 1000 - window_ms) // window_ms * window_ms  # newest closed start
        if closed is None:
            first = self._next_window(cr, None, window_ms)
            if first is None:
                return []
            start = first
        else:
            start = closed + window_ms
        events = []
        # Late records changed the newest window evaluated: evaluate it again from the state before
        # it, before any newer window, so the windows after it start from its complete value
        # whether or not they closed in the same batch. Older windows are not played forward: their
        # successors' events are out already (relayed, notified) and cannot be taken back.
        if closed is not None and closed in revised:
            events += self._window(cr, closed, window_ms, revise=True)
        w = start
        while w <= last:
            if not self._has_series(rule.name):  # nothing kept: a window without samples changes nothing
                w = self._next_window(cr, w, window_ms)
                if w is None or w > last:
                    break
            events += self._window(cr, w, window_ms, revise=False)
            w += window_ms
        if last >= start:
            self.con.execute("INSERT INTO rules_clock VALUES (?, ?, ?) ON CONFLICT DO UPDATE SET "
                             "closed_ms = excluded.closed_ms, version = excluded.version",
                             [rule.name, rule.version, last])
        return events

    def _has_series(self, rule_name: str) -> bool:
        return bool(self.con.execute("SELECT count(*) FROM rules_series WHERE rule = ?", [rule_name]).fetchall()[0][0])

    def _next_window(self, cr: CheckedRule, after: int | None, window_ms: int) -> int | None:
        """The first window from ``after`` (from the start: None) that can have samples: a cube
        row in it, or for a burst a record in the range and baseline ending with it."""
        query = cr.query
        if isinstance(query, CubeQuery):
            since = "" if after is None else f" WHERE epoch_ms(period_start) >= {after}"
            sql = f"SELECT min(epoch_ms(period_start)) FROM {self.rel.cubes[query.cube]}{since}"
        else:
            lookback = BURST_DAYS * DAY_MS + query.range_s * 1000
            since = "" if after is None else f" WHERE _t >= {after + window_ms - lookback}"
            sql = f"SELECT min(_t) FROM {self.rel.records[query.table]}{since}"
        t = self.con.execute(sql).fetchall()[0][0]
        if t is None:
            return None
        w = t // window_ms * window_ms
        return w if after is None else max(w, after)

    def _window(self, cr: CheckedRule, w: int, window_ms: int, revise: bool) -> list[AlertEvent]:
        """One window of one rule: its samples, then every series' state moved in one statement."""
        rule, query = cr.rule, cr.query
        dims = list(query.dimensions if isinstance(query, CubeQuery) else query.by)
        samples = self._cube_samples(cr, w) if isinstance(query, CubeQuery) else self._burst_samples(cr, w, window_ms)
        fp = fingerprint_sql(rule.name, dims)
        obj_type = lit("+".join(d.removesuffix("_id") for d in dims))
        obj_id = "concat_ws('|', " + ", ".join(f"CAST({q(d)} AS VARCHAR)" for d in dims) + ")"
        labels = "to_json(struct_pack(" + ", ".join(f"{q(d)} := CAST({q(d)} AS VARCHAR)" for d in dims) + "))"
        self.con.execute(f"""CREATE OR REPLACE TEMP TABLE _s AS SELECT {fp} AS fp, {labels} AS labels,
                             {obj_type} AS object_type, {obj_id} AS object_id, value, active, evidence FROM ({samples})""")
        n_for = max(1, math.ceil(rule.for_s * 1000 / window_ms)) if rule.for_s else 1
        n_keep = math.ceil(rule.keep_firing_for_s * 1000 / window_ms)
        # The state before this window: a revision takes it from the row's p_ columns when the row
        # was last moved at this window (a series dropped then is in rules_dropped), else as it is.
        def before(col: str) -> str:
            return f"CASE WHEN r.window_ms = {w} THEN r.p_{col} ELSE r.{col} END" if revise else f"r.{col}"
        series = f"SELECT * FROM rules_series WHERE rule = {lit(rule.name)}"
        if revise:
            series += f" UNION ALL SELECT * FROM rules_dropped WHERE rule = {lit(rule.name)}"
        no_data = rule.no_data
        absent_active = "true" if no_data in ("alerting", "nodata") else "false"
        self.con.execute(f"""
            CREATE OR REPLACE TEMP TABLE _m AS
            WITH j AS (
              SELECT coalesce(s.fp, r.fingerprint) AS fp, coalesce(s.labels, r.labels) AS labels,
                     coalesce(s.object_type, r.object_type) AS object_type, coalesce(s.object_id, r.object_id) AS object_id,
                     s.fp IS NULL AS absent, s.value, s.evidence,
                     CASE WHEN s.fp IS NULL THEN {absent_active} ELSE s.active END AS active,
                     coalesce(r.state, 'inactive') AS cur_state,
                     coalesce({before('state')}, 'inactive') AS old_state, coalesce({before('run')}, 0) AS old_run,
                     {before('episode_ms')} AS old_episode, {before('last_active_ms')} AS old_last_active,
                     r.fingerprint IS NOT NULL AS known
              FROM _s s FULL OUTER JOIN ({series}) r ON s.fp = r.fingerprint
            ), k AS (
              SELECT *, {"absent AND known" if no_data == "keep_last" else "false"} AS keep FROM j
            )
            SELECT *,
              CASE WHEN keep THEN old_run WHEN active THEN old_run + 1 ELSE 0 END AS new_run,
              CASE WHEN keep THEN old_state
                   WHEN active AND (old_state = 'firing' OR old_run + 1 >= {n_for}) THEN 'firing'
                   WHEN active THEN 'pending'
                   WHEN old_state = 'firing' AND old_last_active IS NOT NULL
                        AND ({w} - old_last_active) // {window_ms} <= {n_keep} THEN 'firing'
                   WHEN old_state = 'firing' THEN 'resolved'
                   ELSE 'inactive' END AS new_state,
              CASE WHEN NOT keep AND active AND old_state NOT IN ('pending', 'firing') THEN {w}
                   ELSE old_episode END AS new_episode,
              CASE WHEN NOT keep AND active THEN {w} ELSE old_last_active END AS new_last_active
            FROM k""")
        changed = self.con.execute("""
            SELECT fp, labels, object_type, object_id, value, evidence, absent, cur_state, new_state, new_episode
            FROM _m WHERE CASE WHEN new_state IN ('pending', 'firing') THEN new_state ELSE
                               CASE WHEN cur_state = 'firing' THEN 'resolved' ELSE 'inactive' END END <> cur_state
                          AND NOT (cur_state = 'inactive' AND new_state IN ('inactive', 'resolved'))
            ORDER BY fp""").fetchall()
        # The state after this window; the state before it kept for a revision of it.
        keep_rows = "new_state IN ('pending', 'firing') OR known" if no_data in ("alerting", "nodata") \
            else "new_state IN ('pending', 'firing')"
        row = f"""SELECT {lit(rule.name)}, fp, labels, object_type, object_id,
                   CASE WHEN new_state = 'resolved' THEN 'inactive' ELSE new_state END, new_run, new_episode,
                   new_last_active, value, {w}, old_state, old_run, old_episode, old_last_active FROM _m"""
        self.con.execute(f"INSERT OR REPLACE INTO rules_series {row} WHERE {keep_rows}")
        self.con.execute(f"""DELETE FROM rules_series WHERE rule = {lit(rule.name)} AND fingerprint IN
                             (SELECT fp FROM _m WHERE NOT ({keep_rows}))""")
        # A series this window ended keeps its state before it, for a revision of this window.
        self.con.execute(f"DELETE FROM rules_dropped WHERE rule = {lit(rule.name)}")
        self.con.execute(f"INSERT INTO rules_dropped {row} WHERE NOT ({keep_rows}) AND old_state IN ('pending', 'firing')")
        window_min = window_ms // 60_000
        out = []
        for fp, labels, otype, oid, value, evidence, absent, cur, new, episode in changed:
            state = AlertState(new) if new in ("pending", "firing") else (
                AlertState.resolved if cur == "firing" else AlertState.inactive)
            ev = json.loads(evidence) if evidence else {}
            if absent:
                ev["no_data"] = True
            out.append(self._event(cr, fp, json.loads(labels), otype, oid, state, AlertState(cur), w, window_min,
                                   episode if episode is not None else w, w + window_ms, value, ev))
        return self._topology(out)

    def _cube_samples(self, cr: CheckedRule, w: int) -> str:
        query: CubeQuery = cr.query
        rel = self.rel.cubes[query.cube]
        cond, value = query.condition.sql("duckdb"), query.value.sql("duckdb")
        dims = ", ".join(q(d) for d in query.dimensions)
        evidence_cols = ", ".join(f"{q(c)} := {q(c)}" for c in query.columns)
        base = f"SELECT * FROM {rel} WHERE epoch_ms(period_start) = {w}"
        if query.anomaly_of:
            base = self._anomaly(cr, w, base)
            evidence_cols += ", " + ", ".join(f"{q('anomaly_' + c)} := {q('_anomaly_' + c)}, "
                                               f"{q('baseline_' + c)} := {q('_median_' + c)}, "
                                               f"{q('baseline_from_' + c)} := {q('_from_' + c)}"
                                               for c in query.anomaly_of)
        return (f"SELECT {dims}, CAST({value} AS DOUBLE) AS value, coalesce({cond}, false) AS active, "
                f"to_json(struct_pack({evidence_cols})) AS evidence FROM ({base}) WHERE {' AND '.join(f'{q(d)} IS NOT NULL' for d in query.dimensions) or 'true'}")

    def _anomaly(self, cr: CheckedRule, w: int, current: str) -> str:
        """``current`` with, per anomaly column, its robust score against a baseline: the object's
        own values at the same hour of the week over 28 days, else at the same hour of the day
        over 14, else its peers' (every object of the cube) at that hour of the week, else
        across objects in this very window (cold start). Holidays count as Sundays and are kept
        out of every baseline. The score is (value - median) / scale, scale = IQR / 1.349 but
        at least a quarter of the peers' scale, signed so that positive is worse."""
        rule, query = cr.rule, cr.query
        hist = self.rel.history.get(query.cube, self.rel.cubes[query.cube])
        dims = list(query.dimensions)
        tz = lit(rule.time_zone)
        holidays = "[" + ", ".join(f"DATE {lit(d.isoformat())}" for d in rule.holidays) + "]::DATE[]"
        local = f"timezone({tz}, to_timestamp({w} / 1000))"
        is_holiday = f"list_contains({holidays}, CAST({local} AS DATE))"
        target_dow = f"CASE WHEN {is_holiday} THEN 0 ELSE dayofweek({local}) END"
        h_local = f"timezone({tz}, period_start)"

        def on(alias: str) -> str:
            return " AND ".join(f"c.{q(d)} IS NOT DISTINCT FROM {alias}.{q(d)}" for d in dims) or "true"

        ctes, joins, sel = [], [], ["c.*"]
        keys = ", ".join(q(d) for d in dims)
        for i, col in enumerate(query.anomaly_of):
            sign = {"lower": 1.0, "higher": -1.0}.get(self.better.get(col) or "", None)
            h = f"_h{i}"
            ctes.append(f"""
              {h} AS (SELECT {keys}, {q(col)} AS v, dayofweek({h_local}) AS dow, hour({h_local}) AS hod,
                             epoch_ms(period_start) AS t
                      FROM {hist}
                      WHERE epoch_ms(period_start) >= {w - BASELINE_DAYS * DAY_MS} AND epoch_ms(period_start) < {w}
                        AND {q(col)} IS NOT NULL AND NOT list_contains({holidays}, CAST({h_local} AS DATE))),
              {h}_how AS (SELECT {keys}, quantile_cont(v, [0.25, 0.5, 0.75]) AS qs, count(*) AS n
                          FROM {h} WHERE dow = {target_dow} AND hod = hour({local}) GROUP BY ALL),
              {h}_hod AS (SELECT {keys}, quantile_cont(v, [0.25, 0.5, 0.75]) AS qs, count(*) AS n
                          FROM {h} WHERE hod = hour({local}) AND t >= {w - DAILY_DAYS * DAY_MS} GROUP BY ALL),
              {h}_peer AS (SELECT quantile_cont(v, [0.25, 0.5, 0.75]) AS qs, count(*) AS n
                           FROM {h} WHERE dow = {target_dow} AND hod = hour({local})),
              {h}_now AS (SELECT quantile_cont({q(col)}, [0.25, 0.5, 0.75]) AS qs, count({q(col)}) AS n FROM ({current}))""")
            joins.append(f" LEFT JOIN {h}_how ON {on(h + '_how')} LEFT JOIN {h}_hod ON {on(h + '_hod')}"
                         f" CROSS JOIN {h}_peer CROSS JOIN {h}_now")
            tiers = [(f"{h}_how", "own hour of week"), (f"{h}_hod", "own hour of day"),
                     (f"{h}_peer", "peers hour of week"), (f"{h}_now", "peers this window")]
            qs = "CASE " + " ".join(f"WHEN {t}.n >= {MIN_POINTS} THEN {t}.qs" for t, _ in tiers) + " END"
            src = "CASE " + " ".join(f"WHEN {t}.n >= {MIN_POINTS} THEN {lit(n)}" for t, n in tiers) + " END"
            peer_qs = f"CASE WHEN {h}_peer.n >= {MIN_POINTS} THEN {h}_peer.qs ELSE {h}_now.qs END"
            peer_scale = f"coalesce((({peer_qs})[3] - ({peer_qs})[1]) / {IQR_TO_SIGMA}, 0)"
            scale = f"greatest((({qs})[3] - ({qs})[1]) / {IQR_TO_SIGMA}, {PEER_FLOOR} * {peer_scale}, 1e-9)"
            diff = f"(c.{q(col)} - ({qs})[2])"
            score = f"abs({diff}) / {scale}" if sign is None else f"{sign} * {diff} / {scale}"
            sel += [f"{score} AS {q('_anomaly_' + col)}", f"({qs})[2] AS {q('_median_' + col)}",
                    f"{src} AS {q('_from_' + col)}"]
        return f"WITH {','.join(ctes)} SELECT {', '.join(sel)} FROM ({current}) c{''.join(joins)}"

    def _burst_samples(self, cr: CheckedRule, w: int, window_ms: int) -> str:
        """Per area: records in the range ending with window ``w``, scored against the area's
        counts over the same range length ending at every window of the last seven days."""
        query: CountQuery = cr.query
        rel = self._keyed(query)
        range_ms = query.range_s * 1000
        end = w + window_ms
        by = ", ".join(q(b) for b in query.by)
        steps = max(1, math.ceil(range_ms / window_ms))
        flt = query.filter.sql("duckdb") if query.filter is not None else "true"
        lo = end - BURST_DAYS * DAY_MS - range_ms
        return f"""
          WITH r AS (SELECT {by}, _t // {window_ms} AS b FROM {rel}
                     WHERE _t >= {lo} AND _t < {end} AND ({flt}) AND {' AND '.join(f'{q(x)} IS NOT NULL' for x in query.by)}),
          areas AS (SELECT DISTINCT {by} FROM r),
          grid AS (SELECT * FROM areas CROSS JOIN range({lo // window_ms}, {end // window_ms}) g(b)),
          counts AS (SELECT g.*, count(r.b) AS n FROM grid g LEFT JOIN r USING ({by}, b) GROUP BY ALL),
          sliding AS (SELECT *, sum(n) OVER (PARTITION BY {by} ORDER BY b ROWS BETWEEN {steps - 1} PRECEDING
                                             AND CURRENT ROW) AS c FROM counts),
          cur AS (SELECT {by}, c FROM sliding WHERE b = {end // window_ms - 1}),
          base AS (SELECT {by}, quantile_cont(c, [0.25, 0.5, 0.75]) AS qs FROM sliding
                   WHERE b < {end // window_ms - 1} AND b >= {(end - BURST_DAYS * DAY_MS) // window_ms} GROUP BY ALL)
          SELECT {by}, (cur.c - base.qs[2]) / greatest((base.qs[3] - base.qs[1]) / {IQR_TO_SIGMA}, sqrt(greatest(base.qs[2], 1)))
                 AS value,
                 cur.c >= {BURST_MIN_EVENTS} AND (cur.c - base.qs[2]) / greatest((base.qs[3] - base.qs[1]) / {IQR_TO_SIGMA},
                 sqrt(greatest(base.qs[2], 1))) {'>=' if query.inclusive else '>'} {query.threshold} AS active,
                 to_json({{'count': cur.c, 'baseline_median': base.qs[2], 'range_s': {query.range_s}}}) AS evidence
          FROM cur JOIN base USING ({by})"""

    def _keyed(self, query: CountQuery) -> str:
        """The records of ``query``'s table with the topology columns it counts by joined on."""
        rel = self.rel.records[query.table]
        need = [b for b in query.by if b in TOPOLOGY and b not in self._columns(rel)]
        if not need or self.rel.cells is None:
            return rel
        cols = ", ".join(f"c.{q(b)}" for b in need)
        return f"(SELECT r.*, {cols} FROM {rel} r LEFT JOIN {self.rel.cells} c USING (cell_id))"

    def _columns(self, relation: str) -> set[str]:
        """A relation's columns, looked up once (a step asks for them every window)."""
        if relation not in self._described:
            self._described[relation] = _columns_of(self.con, relation)
        return self._described[relation]

    # -- count rules ----------------------------------------------------------------------
    def _count_step(self, cr: CheckedRule, clock: int | None) -> list[AlertEvent]:
        return count_step(self, cr, clock)

    # -- events ---------------------------------------------------------------------------
    def _event(self, cr: CheckedRule, fp: str, series: dict, otype: str, oid: str, state: AlertState,
               previous: AlertState, w: int, window_min: int, episode: int, at_ms: int, value, evidence: dict) -> AlertEvent:
        rule = cr.rule
        labels = {**rule.labels, **{k: v for k, v in series.items() if v is not None}, "alertname": rule.name}
        return AlertEvent(rule_name=rule.name, group=rule.group, fingerprint=fp, labels=labels, annotations={},
                          state=state, previous=previous, object_type=otype, object_id=oid,
                          window_start=_dt(w), window_minutes=window_min, episode_start=_dt(episode), at=_dt(at_ms),
                          value=None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value),
                          value_unit=None,
                          evidence={"expr": rule.expr, "kind": cr.query.kind, "window_start": _dt(w).isoformat(),
                                    "window_minutes": window_min, **evidence})

    def _topology(self, events: list[AlertEvent]) -> list[AlertEvent]:
        """Cell alerts get their site, city and province (inhibition matches on them), and
        annotations are rendered once the labels are complete."""
        cells = [e.labels["cell_id"] for e in events if "cell_id" in e.labels]
        topo = {}
        if cells and self.rel.cells is not None:
            import pyarrow as pa

            self.con.register("_alert_cells", pa.table({"cell_id": sorted(set(cells))}))
            have = self._columns(self.rel.cells)
            cols = ", ".join(f"c.{q(t)}" if t in have else f"NULL AS {q(t)}" for t in TOPOLOGY)
            topo = {r[0]: dict(zip(TOPOLOGY, r[1:], strict=True)) for r in self.con.execute(
                f"SELECT a.cell_id, {cols} FROM _alert_cells a JOIN {self.rel.cells} c USING (cell_id)").fetchall()}
            self.con.unregister("_alert_cells")
        out = []
        for e in events:
            labels = dict(e.labels)
            for k, v in topo.get(labels.get("cell_id"), {}).items():
                if v is not None:
                    labels.setdefault(k, str(v))
            rule = next(cr.rule for cr in self.rules if cr.rule.name == e.rule_name)
            annotations = {k: render(t, labels, e.value) for k, t in rule.annotations.items()}
            out.append(replace(e, labels=labels, annotations=annotations))
        return out

    def _outbox(self, events: list[AlertEvent]) -> list[AlertEvent]:
        """Events not in the outbox yet, added to it (a re-run batch produces them again)."""
        if not events:
            return []
        import pyarrow as pa

        seq0 = self.con.execute("SELECT coalesce(max(seq), 0) FROM rules_events").fetchall()[0][0]
        table = pa.table({"seq": pa.array(range(seq0 + 1, seq0 + 1 + len(events)), pa.int64()),
                          "key": [e.key for e in events], "rule": [e.rule_name for e in events],
                          "state": [e.state.value for e in events],
                          "at": pa.array([e.at for e in events], pa.timestamp("us", "UTC")),
                          "event": [event_json(e) for e in events]})
        self.con.register("_events", table)
        new = {k for (k,) in self.con.execute(
            "INSERT INTO rules_events (seq, key, rule, state, event_at, event) SELECT * FROM _events "
            "ON CONFLICT DO NOTHING RETURNING key").fetchall()}
        self.con.unregister("_events")
        return [e for e in events if e.key in new]


def _columns_of(con, relation: str) -> set[str]:
    return {r[0] for r in con.execute(f"DESCRIBE SELECT * FROM {relation}").fetchall()}


def _dt(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def event_json(e: AlertEvent) -> str:
    """An event as JSON (times in ISO 8601 UTC), as the outbox keeps it."""
    body = {k: getattr(e, k) for k in AlertEvent.__dataclass_fields__}
    for k, v in body.items():
        if isinstance(v, datetime):
            body[k] = v.isoformat()
        elif isinstance(v, AlertState):
            body[k] = v.value
    return json.dumps(body, sort_keys=True, default=str)


def event_from_json(text: str) -> AlertEvent:
    body = json.loads(text)
    for k in ("window_start", "episode_start", "at"):
        body[k] = datetime.fromisoformat(body[k])
    body["state"], body["previous"] = AlertState(body["state"]), AlertState(body["previous"])
    return AlertEvent(**body)

