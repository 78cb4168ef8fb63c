"""Rules in the stream: evaluated inside each batch's transaction on the stream's own state
(so rule state and the alert events a batch caused commit with its windows and its source
position), then relayed to the operational store after the commit.

A window closes for a rule once the sources its columns are made of have all passed it
(:func:`settled_clock`, :func:`read_inputs`; docs/rules.md, States).

The stream hands over what a batch changed (``stream.runner.BatchChanges``: its DuckDB
connection, the cubes and spans it evaluated, the temporary tables of the records it kept);
this module reads that by its attributes, since stream and rules sit on one floor and do not
import each other. The command line composes the two.

Exactly-once effect: the events sit in the state's ``rules_events`` outbox, keyed by their
idempotency key, from the batch's commit on. :func:`relay` applies the unrelayed ones to the
store in one store transaction and only then marks them relayed; a crash between the two makes
the next relay apply them again, which the store's idempotent apply turns into nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from .catalog import CheckedRule
from .evaluate import Relations, RuleEngine, event_from_json
from .expr import CountQuery, CubeQuery
from .sql import lit, q

# The stream's cube tables keep each definition version's rows apart in this column
# (stream.windows.DEFINITION_VERSION); rules read the version being streamed.
DEFINITION_VERSION_COLUMN = "definition_version"
# An input this far (event time) behind the stream's newest watermark has stopped or is sparse
# (complaints, surveys) and stops holding rules back. Regular feeds lag less: the simulated
# operator's hourly broadband sessions arrive up to 2 h behind the xDRs (after their hour), PM
# files up to 1 h, and its video feed, sparse at 200 subscribers, fell 2 h behind.
IDLE_S = 3 * 3600


@dataclass
class StreamRules:
    """The ``on_batch`` of a stream: evaluates ``rules`` after each batch's windows."""

    rules: list[CheckedRule]
    better: dict[str, str | None]
    skipped: dict[str, str] = field(default_factory=dict)  # rule -> why it cannot run on this stream
    events: int = 0
    idle_s: int = IDLE_S  # an input this far behind the stream's newest watermark is idle (settled_clock)
    _engine: RuleEngine | None = None
    _inputs: dict[str, tuple[set[str], bool]] = field(default_factory=dict)  # per cube rule: read_inputs

    def __call__(self, changes) -> None:
        state = changes.state
        con = state.con
        cubes = {c.table: c for c in changes.cubes}
        if self._engine is None:
            self._engine = RuleEngine(con, self._runnable(cubes, state), self._relations(con, cubes, state), self.better)
        rel = self._engine.rel
        # Count rules read the records this batch kept; a source it did not touch brought none.
        for table in list(rel.changed):
            rel.changed[table] = q(changes.records[table]) if table in changes.records else \
                "(SELECT NULL::VARCHAR AS _id WHERE false)"
        revised: dict[str, set[int]] = {}
        for table, (span_s, spans) in changes.spans.items():
            window_ms = cubes[table].window_s * 1000
            per_span = span_s * 1000 // window_ms
            revised[table] = {s * span_s * 1000 + k * window_ms for s in spans for k in range(per_span)}
        watermarks = changes.watermarks
        self.events += len(self._engine.step(watermarks, revised, self._clocks(cubes, watermarks)))

    def _clocks(self, cubes: dict, watermarks: dict[str, int]) -> dict[str, int]:
        """Per window rule, the event time up to which its windows are settled (see
        :func:`settled_clock`), brought down to the end of a whole span when it reads a value
        pooled over the span (a score of a thin quarter-hour taken from its hour)."""
        now = max(watermarks.values(), default=None)
        if now is None:
            return {}
        out = {}
        for cr in self._engine.rules:
            query = cr.query
            if isinstance(query, CubeQuery):
                cube = cubes[query.cube]
                if cr.rule.name not in self._inputs:
                    self._inputs[cr.rule.name] = read_inputs(cube.plan, query.columns)
                sources, pooled = self._inputs[cr.rule.name]
                clock = settled_clock(watermarks, sources, now, self.idle_s * 1000)
                if pooled:
                    span_ms, offset_ms = cube.span_s * 1000, cr.rule.query_offset_s * 1000
                    clock = (clock - offset_ms) // span_ms * span_ms + offset_ms
            elif query.kind == "burst":
                clock = settled_clock(watermarks, {query.table}, now, self.idle_s * 1000)
            else:
                continue  # a count is judged record by record, at its table's watermark
            out[cr.rule.name] = clock
        return out

    @property
    def retain_s(self) -> int:
        """How long the stream must keep records for these rules: a count looks back twice its
        range (the records that make the first count of a batch), a burst seven days and its range."""
        from .evaluate import BURST_DAYS, DAY_MS

        need = [2 * cr.query.range_s if cr.query.kind == "count" else BURST_DAYS * DAY_MS // 1000 + cr.query.range_s
                for cr in self.rules if isinstance(cr.query, CountQuery)]
        return max(need, default=0)

    def relay(self, transaction: Callable, config) -> int:
        """:func:`relay` on this stream's state (call it after each commit)."""
        return relay(self._engine.con, transaction, config) if self._engine is not None else 0

    def _runnable(self, cubes: dict, state) -> list[CheckedRule]:
        out = []
        for cr in self.rules:
            query = cr.query
            if isinstance(query, CubeQuery) and query.cube not in cubes:
                self.skipped[cr.rule.name] = f"{query.cube} is not streamed (stream it with --cube {query.cube})"
            elif isinstance(query, CountQuery) and query.table not in state.sources:
                self.skipped[cr.rule.name] = f"no streamed cube reads {query.table}, so the stream keeps none of its records"
            else:
                out.append(cr)
        return out

    def _relations(self, con, cubes: dict, state) -> Relations:
        rel = Relations()
        for table, cube in cubes.items():
            rel.cubes[table] = f"(SELECT * FROM {q(table)} WHERE {DEFINITION_VERSION_COLUMN} = {lit(cube.version)})"
            rel.window_s[table] = cube.window_s
        for name in state.sources:
            rel.records[name] = q(f"rec_{name}")
            rel.changed[name] = None
        if "cells" in state.lookups:
            rel.cells = q("snap_cells")
        rel.burst_window_s = next(iter(cubes.values())).window_s if cubes else 900
        return rel


def settled_clock(watermarks: dict[str, int], sources, now: int, idle_ms: int) -> int:
    """The event time (epoch ms) up to which the windows of a rule reading ``sources`` are
    settled: the oldest of their watermarks (a window closes once every input has passed it, so
    an input running ahead does not close it before the others' records for it are in), but
    never more than ``idle_ms`` behind ``now``, the stream's newest watermark: an input that far
    behind, or without a record yet, is idle and waits no longer. Only watermarks count, never
    the wall clock, so the same records give the same clock however batches are cut."""
    marks = [watermarks.get(s) for s in sources]
    oldest = min(marks) if marks and None not in marks else now - idle_ms
    return max(oldest, now - idle_ms)


def read_inputs(plan, columns) -> tuple[set[str], bool]:
    """The sources whose records make ``columns`` of a cube (its compiled ``plan``) and whether
    any of them is pooled over the span. A KPI and its records count come from its scan's
    source, a KQI from its KPIs', a score, an index and the CEI from their KQIs'. A score is
    pooled when a thin quarter-hour takes it from its hour (a KQI with records to count, in a
    cube that pools), and an index or the CEI when one of its scores is; a column not traced
    reads every source of the cube, pooled if the cube pools."""
    from sqlglot import exp

    pools: set[str] = set()
    if plan.pool is not None:
        pools = {name for name, records in plan.evidence if records} & {name for name, _ in plan.pool.scores}
    every = (frozenset(plan.sources), plan.pool is not None)
    traced: dict[str, tuple[frozenset[str], bool]] = {}
    for scan in plan.scans:
        one = (frozenset([scan.source]), False)
        traced.update({c: one for c in (scan.records, scan.located) if c})
        traced.update({name: one for name, _ in scan.kpis})
    for name, tree in plan.kqis:
        refs = [traced.get(c.name) for c in tree.find_all(exp.Column)]
        sources = frozenset().union(*(r[0] for r in refs)) if refs and None not in refs else every[0]
        traced[name], traced[f"{name}_score"] = (sources, False), (sources, name in pools)

    def joined(scores: list[str]) -> tuple[frozenset[str], bool]:
        return frozenset().union(*(traced[s][0] for s in scores)), any(traced[s][1] for s in scores)

    for ix in plan.indices:
        traced[f"{ix.name}_index"] = traced[f"{ix.name}_poor"] = joined([f"{k}_score" for k, _ in ix.weights])
    if plan.cei_weights:
        traced["cei"] = traced["poor_experience"] = joined([f"{n}_index" for n, _ in plan.cei_weights])
    reads = [traced.get(c, every) for c in columns if c not in plan.dimensions] or [every]
    return set().union(*(r[0] for r in reads)), any(r[1] for r in reads)


def relay(con, transaction: Callable, config, limit: int = 50_000) -> int:
    """Apply the outbox's unrelayed events to the store (``transaction()`` opens a store
    transaction and yields its session), then mark them relayed. Returns the events applied.
    The store's clock for grouping is the newest event time relayed (event time)."""
    from .apply import apply_events

    rows = con.execute("SELECT seq, event FROM rules_events WHERE NOT relayed ORDER BY seq LIMIT ?", [limit]).fetchall()
    if not rows:
        return 0
    events = [event_from_json(text) for _, text in rows]
    now = max(e.at for e in events)
    with transaction() as session:
        apply_events(session, events, config, now)
    con.execute(f"UPDATE rules_events SET relayed = true WHERE seq <= {rows[-1][0]} AND NOT relayed")
    return len(events)


def relay_state(path, transaction: Callable, config) -> int:
    """:func:`relay` on a stream's state file while no stream holds it: before a run (events a
    crash left unrelayed) and after it (the last commit's)."""
    import duckdb

    from pathlib import Path

    if not Path(path).exists():
        return 0
    con = duckdb.connect(str(path))
    try:
        if not con.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = 'rules_events'").fetchall()[0][0]:
            return 0
        return relay(con, transaction, config)
    finally:
        con.close()
