"""When a window closes for the rules in the stream (docs/rules.md, States): once every input the
rule reads has passed it (an input running ahead does not close it), a pooled score once its
whole hour has, an idle input waiting no longer than ``idle_s``; and a late record that changes
the newest window evaluated makes it evaluated again before the newer ones. The feed here is
cut into batches in different places and must give the same events with the same values.

The stream is played by hand (records, watermarks, a cube recomputed from all the records
kept, as the stream does per span) so that every cut can be chosen."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from types import SimpleNamespace

import duckdb
import pytest

from opencem.rules.stream import StreamRules
from opencem.stream.windows import stream_cubes

W = 900_000  # a quarter-hour, ms
H = 3_600_000
T0 = int(datetime(2026, 1, 5, 9, tzinfo=UTC).timestamp() * 1000)  # Monday 09:00
CUBE = "cube_cell_15min"
# The cube as the stream keeps it, from all the records so far: video KPIs per quarter-hour,
# the video index of the whole hour (a pooled value), the count of calls.
CUBE_SQL = f"""
CREATE OR REPLACE TABLE {CUBE} AS
WITH v AS (SELECT cell_id, _t // {W} * {W} AS w, count(*) AS n, 100 * sum(stall_ms) / sum(play_ms) AS stall
           FROM rec_xdr_video GROUP BY ALL),
     hv AS (SELECT cell_id, _t // {H} AS h, 100 - 100 * sum(stall_ms) / sum(play_ms) AS video_index
            FROM rec_xdr_video GROUP BY ALL),
     c AS (SELECT cell_id, _t // {W} * {W} AS w, count(*) AS n FROM rec_xdr_voice GROUP BY ALL)
SELECT make_timestamptz(w * 1000) AS period_start, cell_id, v.stall AS stall_ratio_pct,
       coalesce(v.n, 0) AS records_xdr_video, coalesce(c.n, 0) AS records_xdr_voice, hv.video_index,
       'v1' AS definition_version
FROM v FULL JOIN c USING (cell_id, w) LEFT JOIN hv ON hv.cell_id = cell_id AND hv.h = w // {H}"""


@pytest.fixture(scope="module")
def plan(ctx):
    """The compiled plan of the cell cube: what the rules trace a column's inputs in."""
    return stream_cubes(ctx.cat, ctx.tables, "15min", [CUBE])[0].plan


def video(t_ms: int, stall_ms: float, play_ms: float = 100_000.0) -> tuple:
    return ("xdr_video", f"v{t_ms}", t_ms, stall_ms, play_ms)


def call(t_ms: int) -> tuple:
    return ("xdr_voice", f"c{t_ms}", t_ms, None, None)


def play(rules, plan, batches: list[list[tuple]], span_s: int = 900, idle_s: int | None = None) -> dict:
    """The records batch by batch through StreamRules; the outbox's events by key: (value, evidence)."""
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    for source in ("xdr_video", "xdr_voice"):
        con.execute(f"CREATE TABLE rec_{source} (_id VARCHAR, _t BIGINT, cell_id VARCHAR, stall_ms DOUBLE, "
                    "play_ms DOUBLE)")
    con.execute(CUBE_SQL)
    on_batch = StreamRules(rules, {})
    if idle_s is not None:
        on_batch.idle_s = idle_s
    cube = SimpleNamespace(table=CUBE, window_s=900, span_s=span_s, version="v1", plan=plan)
    state = SimpleNamespace(con=con, sources=["xdr_video", "xdr_voice"], lookups=[])
    watermarks: dict[str, int] = {}
    for batch in batches:
        for source, rid, t, stall, played in batch:
            con.execute(f"INSERT INTO rec_{source} VALUES (?, ?, 'C1', ?, ?)", [rid, t, stall, played])
            watermarks[source] = max(watermarks.get(source, t), t)
        con.execute(CUBE_SQL)
        spans = {t // (span_s * 1000) for _, _, t, _, _ in batch}
        on_batch(SimpleNamespace(state=state, cubes=[cube], spans={CUBE: (span_s, spans)}, records={},
                                 watermarks=dict(watermarks)))
    events = {}
    for key, text in con.execute("SELECT key, event FROM rules_events ORDER BY key").fetchall():
        e = json.loads(text)
        events[key] = (e["rule_name"], e["window_start"], e["value"], e["evidence"])
    return events


def cuts(records: list[tuple]) -> dict[str, list[list[tuple]]]:
    """The same records in one batch, one record a batch, and batches of three."""
    return {"one batch": [records], "one record a batch": [[r] for r in records],
            "batches of three": [records[i:i + 3] for i in range(0, len(records), 3)]}


def at(k: int) -> str:
    return datetime.fromtimestamp((T0 + k * W) / 1000, UTC).isoformat()


def test_an_input_running_ahead_does_not_close_a_window_before_the_others_records(rules_of, plan):
    # Calls arrive at once, video sessions 30 minutes after they start (a session's record
    # exists when it ends): the call records are always ahead of the video ones.
    stall = {2: (10, 10), 3: (10, 10), 5: (10, 0), 7: (10, 10)}  # per window, the two sessions' stall %
    records = []
    for j in range(20):  # a delivery every quarter-hour until 14:00
        records.append(call(T0 + j * W + 5 * 60_000))
        k = j - 2  # the video sessions of two windows back
        if 0 <= k < 8:
            first, second = stall.get(k, (0, 0))
            records += [video(T0 + k * W + 60_000, first * 1000.0), video(T0 + k * W + 8 * 60_000, second * 1000.0)]
    rules = rules_of("""      - alert: StallVideoOnly
        expr: cube_cell_15min.stall_ratio_pct > 3 and cube_cell_15min.records_xdr_video >= 2
      - alert: StallAndCalls
        expr: cube_cell_15min.stall_ratio_pct > 3 and cube_cell_15min.records_xdr_voice >= 1
""")
    # idle after an hour: the video feed stops after 11:00, the calls go on until 14:00
    runs = {name: play(rules, plan, batches, idle_s=3600) for name, batches in cuts(records).items()}
    reference = runs.pop("one batch")
    for name, events in runs.items():
        assert events == reference, name
    video_only = sorted((w, v) for rule, w, v, _ in reference.values() if rule == "StallVideoOnly")
    # Window 5 fires on its complete value, 5 % (its first session alone made it 10 %); window 7,
    # the last of the video feed, closes once the video feed is an hour behind the calls.
    assert video_only == [(at(2), 10.0), (at(4), 0.0), (at(5), 5.0), (at(6), 0.0), (at(7), 10.0), (at(8), None)]
    assert len(reference) == 2 * len(video_only)


def test_a_pooled_score_waits_for_its_whole_hour(rules_of, plan):
    # video_index is the score of the hour for a thin quarter-hour: it is settled at the hour's end
    records = [video(T0 + 60_000, 10_000.0), video(T0 + 20 * 60_000, 0.0), video(T0 + 40 * 60_000, 2_000.0),
               video(T0 + 55 * 60_000, 0.0), video(T0 + H + 5 * 60_000, 0.0)]
    rules = rules_of("""      - alert: VideoIndexLow
        expr: cube_cell_15min.video_index < 98
""")
    runs = {name: play(rules, plan, batches, span_s=3600) for name, batches in cuts(records).items()}
    reference = runs.pop("one batch")
    for name, events in runs.items():
        assert events == reference, name
    # the hour's index is 100 - 12 s stalled / 400 s played = 97 (95 with its first half only)
    assert [(w, v) for _, w, v, _ in reference.values()] == [(at(0), 97.0)]
    assert play(rules, plan, [records[:4]], span_s=3600) == {}  # before 10:00 no window of the hour closed


def test_a_late_record_of_the_newest_window_is_taken_before_the_newer_windows(rules_of, plan):
    # for: 30m. The 09:15 window is first evaluated without a session that arrives late, in the
    # batch that also closes 09:30 and 09:45; it is evaluated again (from the state before it)
    # before them, so the alert fires at 09:15 for the episode begun at 09:00, as with the
    # complete window. (The 'inactive' its partial value caused is out already and stays.)
    a, b, d = video(T0 + 60_000, 10_000.0), video(T0 + W + 60_000, 0.0), video(T0 + 2 * W + 60_000, 10_000.0)
    late = video(T0 + W + 2 * 60_000, 50_000.0)
    e, f = video(T0 + 3 * W + 60_000, 10_000.0), video(T0 + 4 * W + 60_000, 0.0)
    rules = rules_of("""      - alert: Stall
        expr: cube_cell_15min.stall_ratio_pct > 3
        for: 30m
""")
    whole = play(rules, plan, [[a, b, d, late, e, f]])
    cut = play(rules, plan, [[a, b, d], [late, e, f]])
    firing = {k: v for k, v in whole.items() if k.endswith("|firing")}
    assert [(w, v) for _, w, v, _ in firing.values()] == [(at(1), 25.0)]
    assert {k: v for k, v in cut.items() if k.endswith(("|pending", "|firing"))} == whole
    assert sorted(set(cut) - set(whole)) == [next(iter(firing)).replace("|firing", "|inactive")]


def test_the_settled_clock():
    from opencem.rules.stream import settled_clock

    marks = {"xdr_voice": 10 * H, "xdr_video": 9 * H, "pm_counters": 4 * H}
    assert settled_clock(marks, {"xdr_voice", "xdr_video"}, 10 * H, 3 * H) == 9 * H  # the oldest input
    assert settled_clock(marks, {"xdr_voice"}, 10 * H, 3 * H) == 10 * H
    assert settled_clock(marks, {"xdr_voice", "pm_counters"}, 10 * H, 3 * H) == 7 * H  # idle: 6 h behind
    assert settled_clock(marks, {"xdr_video", "complaints"}, 10 * H, 3 * H) == 7 * H  # no complaint yet


def test_a_rule_waits_for_the_inputs_of_the_columns_it_reads(plan):
    from opencem.rules.stream import read_inputs

    assert read_inputs(plan, ("stall_ratio_pct", "records_xdr_video")) == ({"xdr_video"}, False)
    assert read_inputs(plan, ("call_drop_pct", "stall_ratio_pct")) == ({"xdr_voice", "xdr_video"}, False)
    assert read_inputs(plan, ("video_index",)) == ({"xdr_video"}, True)  # thin quarter-hours take the hour's
    assert read_inputs(plan, ("ran_availability_score",)) == ({"pm_counters"}, False)  # counters: never thin
    sources, pooled = read_inputs(plan, ("cei",))
    assert pooled and {"pm_counters", "xdr_voice", "xdr_video", "xdr_data"} <= sources
