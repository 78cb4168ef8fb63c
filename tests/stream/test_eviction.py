"""State eviction: records of spans that can no longer change are deleted, so a stream that
runs for weeks stays bounded, and the outputs are those of a stream that keeps everything."""

from __future__ import annotations

import duckdb

from opencem.indicators.catalog import load_catalog
from opencem.schema import TABLES
from opencem.stream import StreamConfig, run_stream
from opencem.stream.landing import LandingSource

from .test_semantics import CUBE, KPIS, calls, land, stream

RESULTS = (CUBE, "late_records", "counts", "watermarks", "consumed")


def replay(day, state, retain_s: int | None, peaks: list[int]):
    return run_stream(state, LandingSource(day / "land", TABLES), load_catalog(TABLES, []), TABLES,
                      StreamConfig(lateness_s=300, cubes=[CUBE], kpis=KPIS, max_records=3000, until_finished=True,
                                   poll_s=0.01, retain_s=retain_s),
                      progress=lambda r: peaks.append(r.kept))


def results(path) -> dict:
    con = duckdb.connect(str(path), read_only=True)
    try:
        return {t: con.sql(f"SELECT * FROM {t} ORDER BY ALL").fetchall() for t in RESULTS}
    finally:
        con.close()


def test_a_day_replayed_with_eviction_stays_bounded_and_gives_the_same_results(day, tmp_path):
    kept_all, kept_evicted = [], []
    everything = replay(day, tmp_path / "all.duckdb", None, kept_all)
    evicting = replay(day, tmp_path / "evicting.duckdb", 0, kept_evicted)
    assert everything.evicted == 0 and evicting.evicted > 0
    assert results(tmp_path / "all.duckdb") == results(tmp_path / "evicting.duckdb")
    # Kept records follow the feed's busy hours, not its length: without eviction they grow all day.
    accepted = kept_all[-1]
    assert accepted > 2_000 and kept_all == sorted(kept_all)
    assert max(kept_evicted) < accepted / 6, (max(kept_evicted), accepted)
    assert evicting.evicted + kept_evicted[-1] == accepted
    con = duckdb.connect(str(tmp_path / "evicting.duckdb"), read_only=True)
    (before_ms, evicted), = con.sql("SELECT before_ms, records FROM evicted WHERE source = 'xdr_voice'").fetchall()
    (watermark,), = con.sql("SELECT max_event_ms FROM watermarks WHERE source = 'xdr_voice'").fetchall()
    assert evicted == evicting.evicted and watermark - 3600_000 - 300_000 <= before_ms <= watermark - 300_000
    assert con.sql(f"SELECT min(_t) FROM rec_xdr_voice").fetchall()[0][0] >= before_ms


def test_a_copy_past_the_horizon_is_late_however_batches_are_cut(tmp_path):
    """A copy of a record whose span closed (and is past the retention) goes to late_records,
    whether its record was deleted by then (one record per batch) or not (one batch)."""
    batches = [calls(("a", 1, False)), calls(("b", 200, False)), calls(("a", 1, False)), calls(("c", 16, True))]
    one = stream(land(tmp_path / "one", *batches), tmp_path / "one.duckdb", lateness_s=900, max_records=10_000)
    each = stream(land(tmp_path / "each", *batches), tmp_path / "each.duckdb", lateness_s=900, max_records=1)
    for con in (one, each):
        assert con.sql("SELECT record_id FROM late_records ORDER BY 1").fetchall() == [("a",), ("c",)]
        assert con.sql("SELECT delivered, accepted, duplicates, late FROM counts").fetchall() == [(4, 2, 0, 2)]
        assert con.sql("SELECT records FROM evicted").fetchall() == [(1,)]  # a, at the end of the one batch
