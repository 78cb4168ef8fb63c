"""Rules in the stream: evaluated inside each batch's transaction on the stream's own state
(so rule state and the alert events a batch caused commit with its windows and its source
position), then relayed to the operational store after the commit.

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


@dataclass
class StreamRules:
    """The ``on_batch`` of a stream: evaluates ``rules`` after each batch's windows."""

    rules: list[CheckedRule]
    better: dict[str, str | None]
    skipped: dict[str, str] = field(default_factory=dict)  # rule -> why it cannot run on this stream
    events: int = 0
    _engine: RuleEngine | None = None

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
        watermarks = changes.watermarks
        clocks = {name: watermarks[name] for name in watermarks}
        for table, cube in cubes.items():
            marks = [watermarks[s] for s in cube.plan.sources if s in watermarks]
            if marks:
                clocks[table] = max(marks)  # the most current input closes a window
        revised: dict[str, set[int]] = {}
        for table, (span_s, spans) in changes.spans.items():
            window_ms = cubes[table].window_s * 1000
            per_span = span_s * 1000 // window_ms
            revised[table] = {s * span_s * 1000 + k * window_ms for s in spans for k in range(per_span)}
        self.events += len(self._engine.step(clocks, revised))

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
