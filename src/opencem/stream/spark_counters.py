"""Per-subscriber counters on Spark's stateful operator (``applyInPandasWithState``): the
"3 dropped calls within 60 minutes" class of rule at the scale of every subscriber.

For each subscriber, a record matching the condition counts the subscriber's matching records
in the event-time window ``[t - within, t]`` (inclusive both ends, records at the same instant
included: SQL's ``RANGE BETWEEN INTERVAL within PRECEDING AND CURRENT ROW``). An *onset* is a
record whose count reaches ``at_least`` while the subscriber's previous matching record (by
time, then record id) had a count below it, or was the first. The state per subscriber holds
its matching records of the last ``within`` before the watermark (with their counts) and the
onsets among them; a record arriving out of order recounts the records after it, so an onset
can move: each batch emits the onsets that appeared (``onset`` true) and those that went
(false). The current onsets are the latest row per record id (:func:`read_onsets`).

Records older than the query's watermark (the latest event time seen in earlier batches
minus the allowed lateness, as Spark keeps it) are late: emitted with ``kind = 'late'``,
counted, not counted in. A copy of a record id already held is a duplicate and counts once.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..schema import Table
from .sources import StreamError

OUTPUT = ("kind string, subscriber_id string, record_id string, event_ms long, events long, onset boolean, "
          "watermark_ms long")
# Arrays as bytes: PySpark 4 cannot read an array type of a state schema back in its workers.
STATE = "t binary, ids string, n binary, onset binary, prev_n long"
SEP = "\x1f"  # between record ids (unit separator: in no id)


@dataclass(frozen=True)
class SubscriberCount:
    """Matching records (``condition``, Spark SQL over ``table``'s columns) per subscriber: an
    onset where at least ``at_least`` fall within ``within_s`` seconds."""

    table: str = "xdr_voice"
    condition: str = "dropped"
    at_least: int = 3
    within_s: int = 3600

    def settings(self) -> dict:
        return {"table": self.table, "condition": self.condition, "at_least": self.at_least, "within_s": self.within_s}

    def check(self, spark, tables: dict[str, Table]) -> Table:
        spec = tables.get(self.table)
        if spec is None or spec.time_column is None:
            raise StreamError(f"--count-table {self.table!r} is not an event table opencem knows")
        if "subscriber_id" not in spec.schema.names:
            raise StreamError(f"--count-table {self.table} has no subscriber_id column to count per subscriber")
        if self.at_least < 1 or self.within_s < 1:
            raise StreamError("--at-least and --within must be at least 1")
        from ..engines.spark import spark_schema

        try:
            spark.createDataFrame([], spark_schema(spec.schema)).where(self.condition).schema
        except Exception as err:  # the analyzer's message, first line only
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise StreamError(f"--count {self.condition!r} is not a condition on {self.table}: {first}") from None
        return spec


def onsets_stream(records, counter: SubscriberCount, spec: Table, lateness_s: int):
    """The onset changes and late records of ``records`` (a streaming DataFrame of ``spec``'s table)."""
    from pyspark.sql import functions as F
    from pyspark.sql.streaming.state import GroupStateTimeout

    rid = F.concat_ws("|", *[F.coalesce(F.col(k).cast("string"), F.lit("")) for k in spec.keys])
    matching = (records.where(F.expr(counter.condition).eqNullSafe(True))
                .select("subscriber_id", rid.alias("record_id"), F.col(spec.time_column).alias("event_time"),
                        F.unix_millis(spec.time_column).alias("event_ms"))
                .withWatermark("event_time", f"{lateness_s} seconds"))
    return matching.groupBy("subscriber_id").applyInPandasWithState(
        _step(counter.at_least, counter.within_s * 1000), OUTPUT, STATE, "update", GroupStateTimeout.EventTimeTimeout)


def _step(at_least: int, within_ms: int):
    def step(key, frames, state):
        import pandas as pd

        subscriber = key[0]
        wm = int(state.getCurrentWatermarkMs())
        if state.exists:
            t0, ids0, n0, on0, prev_n = state.get
            t0, n0, on0 = (np.frombuffer(bytes(b), dtype) for b, dtype in ((t0, np.int64), (n0, np.int64), (on0, bool)))
            ids0 = np.array(ids0.split(SEP) if len(t0) else [], object)
        else:
            t0, ids0, n0, on0 = np.array([], np.int64), np.array([], object), np.array([], np.int64), np.array([], bool)
            prev_n = None
        if state.hasTimedOut:  # the watermark passed every record held: keep only what the next one needs
            _save(state, t0[:0], ids0[:0], n0[:0], on0[:0], int(n0[-1]) if len(n0) else prev_n, at_least, within_ms, wm)
            return
        new = pd.concat(list(frames), ignore_index=True)
        t1 = new["event_ms"].to_numpy(np.int64)
        ids1 = new["record_id"].to_numpy(object)
        late = t1 < wm
        out = [_rows("late", subscriber, ids1[late], t1[late], np.zeros(int(late.sum()), np.int64),
                     np.zeros(int(late.sum()), bool), wm)]
        fresh = ~late & ~np.isin(ids1, ids0)
        _, first = np.unique(ids1[fresh], return_index=True)  # a copy delivered twice counts once
        t1, ids1 = t1[fresh][np.sort(first)], ids1[fresh][np.sort(first)]
        if len(t1):
            t = np.concatenate([t0, t1])
            ids = np.concatenate([ids0, ids1])
            order = np.lexsort((ids.astype(str), t))
            t, ids = t[order], ids[order]
            n = np.concatenate([n0, np.zeros(len(t1), np.int64)])[order]
            was = np.concatenate([on0, np.zeros(len(t1), bool)])[order]
            i0 = int(np.searchsorted(t, t1.min(), "left"))  # earlier records' windows hold no new one
            n[i0:] = np.searchsorted(t, t[i0:], "right") - np.searchsorted(t, t[i0:] - within_ms, "left")
            before = np.concatenate([[prev_n if prev_n is not None else -1], n[:-1]])
            onset = was.copy()
            onset[i0:] = (n[i0:] >= at_least) & (before[i0:] < at_least)
            flip = onset != was  # new onsets, and held records whose onset came or went
            out.append(_rows("onset", subscriber, ids[flip], t[flip], n[flip], onset[flip], wm))
            t0, ids0, n0, on0 = t, ids, n, onset
        # Records before watermark - within count in no future record's window: drop them, keeping
        # the last one's count (the "previous record" of the next).
        j = int(np.searchsorted(t0, wm - within_ms, "left"))
        if j:
            prev_n = int(n0[j - 1])
        _save(state, t0[j:], ids0[j:], n0[j:], on0[j:], prev_n, at_least, within_ms, wm)
        yield pd.concat(out, ignore_index=True)

    return step


def _save(state, t, ids, n, onset, prev_n, at_least: int, within_ms: int, wm: int) -> None:
    if len(t):
        state.update((t.astype(np.int64).tobytes(), SEP.join(map(str, ids)), n.astype(np.int64).tobytes(),
                      onset.astype(bool).tobytes(), prev_n))
        state.setTimeoutTimestamp(max(int(t[-1]) + within_ms + 1, wm + 1))
    elif prev_n is not None and prev_n >= at_least:
        # Only a next record at the same instant could be counted with it; remember its count.
        state.update((b"", "", b"", b"", prev_n))
    else:
        state.remove()  # a next record is a first one, as far as onsets go


def _rows(kind: str, subscriber: str, ids, t, n, onset, wm: int):
    import pandas as pd

    return pd.DataFrame({"kind": kind, "subscriber_id": subscriber, "record_id": pd.Series(ids, dtype=object),
                         "event_ms": pd.Series(t, dtype="int64"), "events": pd.Series(n, dtype="int64"),
                         "onset": pd.Series(onset, dtype=bool), "watermark_ms": wm})


def read_onsets(files) -> "pa.Table":  # noqa: F821
    """The current onsets from the onset files of every batch: per record id, its latest row."""
    import duckdb
    import pyarrow as pa
    import pyarrow.parquet as pq

    files = list(files)
    empty = pa.table({"subscriber_id": pa.array([], pa.string()), "record_id": pa.array([], pa.string()),
                      "event_time": pa.array([], pa.timestamp("ms", tz="UTC")), "events": pa.array([], pa.int64())})
    if not files:
        return empty
    changes = pa.concat_tables([pq.read_table(f) for f in files])
    con = duckdb.connect()
    con.register("changes", changes)
    return con.sql("""SELECT subscriber_id, record_id, make_timestamptz(event_ms * 1000) AS event_time, events
                      FROM changes WHERE kind = 'onset'
                      QUALIFY row_number() OVER (PARTITION BY record_id ORDER BY batch DESC) = 1 AND onset
                      ORDER BY subscriber_id, event_time, record_id""").to_arrow_table()
