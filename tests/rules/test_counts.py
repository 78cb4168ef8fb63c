"""Per-subscriber counts in a sliding window (the "3 dropped calls -> SMS" rule) and area
bursts, checked against a brute-force reference written here."""

from __future__ import annotations

from datetime import UTC, datetime

import duckdb
import numpy as np
import pyarrow as pa

from opencem.rules.evaluate import Relations, RuleEngine

T0 = int(datetime(2026, 1, 5, tzinfo=UTC).timestamp() * 1000)
HOUR = 3_600_000
DROPS = """      - alert: Drops
        expr: count_over_time(xdr_voice[60m] where dropped) by (subscriber_id) >= 3
"""




def calls(n_subscribers: int, n: int, seed: int) -> pa.Table:
    rng = np.random.default_rng(seed)
    sub = rng.integers(0, n_subscribers, n)
    t = T0 + rng.integers(0, 24 * HOUR, n)
    return pa.table({"subscriber_id": [f"S{s}" for s in sub], "dropped": rng.random(n) < 0.3,
                     "_t": pa.array(t, pa.int64()), "_id": [f"call{i}" for i in range(n)]})


def reference(records: pa.Table, need: int, range_ms: int, clock: int) -> tuple[set, set]:
    """(firing (subscriber, start), resolved (subscriber, start, end)) by brute force."""
    firing, resolved = set(), set()
    rows = sorted((r["subscriber_id"], r["_t"], r["_id"]) for r in records.to_pylist() if r["dropped"])
    by: dict[str, list] = {}
    for s, t, i in rows:
        by.setdefault(s, []).append(t)
    for s, ts in by.items():
        start = end = None
        for i, t in enumerate(ts):
            if i < need - 1 or ts[i - need + 1] < t - range_ms:
                continue
            expires = ts[i - need + 1] + range_ms
            if end is not None and end >= t:
                end = max(end, expires)
                continue
            if start is not None:
                resolved.add((s, start, end))
            start, end = t, expires
            firing.add((s, start))
        if start is not None and end < clock:
            resolved.add((s, start, end))
    return firing, resolved


def run(con, rules, clock, changed=None):
    rel = Relations(records={"xdr_voice": "rec"}, changed={"xdr_voice": changed})
    return RuleEngine(con, rules, rel, {}).step({"xdr_voice": clock})


def test_every_subscriber_counted_equals_brute_force(rules_of, tmp_path):
    records = calls(5_000, 60_000, seed=5)
    con = duckdb.connect()
    con.register("_r", records)
    con.execute("CREATE TABLE rec AS SELECT * FROM _r")
    clock = T0 + 24 * HOUR
    events = run(con, rules_of(DROPS), clock)
    firing = {(e.labels["subscriber_id"], int(e.episode_start.timestamp() * 1000)) for e in events if e.state.value == "firing"}
    resolved = {(e.labels["subscriber_id"], int(e.episode_start.timestamp() * 1000)) for e in events
                if e.state.value == "resolved"}
    want_firing, want_resolved = reference(records, 3, HOUR, clock)
    assert len(want_firing) > 100
    assert firing == want_firing
    assert resolved == {(s, start) for s, start, _ in want_resolved}
    ends = {(e.labels["subscriber_id"], int(e.episode_start.timestamp() * 1000)): int(e.at.timestamp() * 1000) - 1
            for e in events if e.state.value == "resolved"}
    assert ends == {(s, start): end for s, start, end in want_resolved}
    # the firing value is the count at the record that completed it: drops in [t - 1 h, t]
    drops: dict[str, np.ndarray] = {}
    for r in records.filter(records.column("dropped")).to_pylist():
        drops.setdefault(r["subscriber_id"], []).append(r["_t"])
    values = {(e.labels["subscriber_id"], int(e.at.timestamp() * 1000)): e.value
              for e in events if e.state.value == "firing"}
    assert values == {(s, t): sum(t - HOUR <= x <= t for x in drops[s]) for s, t in values}
    assert {v for v in values.values()} >= {3.0}


def test_batches_cut_anywhere_give_the_same_alerts(rules_of, tmp_path):
    """Records arriving in event-time order in six batches (the stream's case) give the
    alerts one pass over the day gives, values included (a firing value once was the largest
    count its first batch held)."""
    records = calls(800, 8_000, seed=9)
    order = np.argsort(records.column("_t").to_numpy(), kind="stable")
    records = records.take(order)
    rules = rules_of(DROPS)
    whole = duckdb.connect()
    whole.register("_r", records)
    whole.execute("CREATE TABLE rec AS SELECT * FROM _r")
    clock = T0 + 24 * HOUR
    once = {(e.key, e.at, e.value) for e in run(whole, rules, clock)}
    con = duckdb.connect()
    con.execute("CREATE TABLE rec AS SELECT * FROM (SELECT * FROM whole_rec) LIMIT 0".replace("(SELECT * FROM whole_rec)",
                "(SELECT ''::VARCHAR AS subscriber_id, false AS dropped, 0::BIGINT AS _t, ''::VARCHAR AS _id)"))
    got = set()
    eng = RuleEngine(con, rules, Relations(records={"xdr_voice": "rec"}, changed={"xdr_voice": "batch"}), {})
    cuts = np.linspace(0, records.num_rows, 7).astype(int)
    for a, b in zip(cuts[:-1], cuts[1:], strict=True):
        part = records.slice(a, b - a)
        con.register("_p", part)
        con.execute("INSERT INTO rec SELECT * FROM _p")
        con.execute("CREATE OR REPLACE TABLE batch AS SELECT _id FROM _p")
        con.unregister("_p")
        wm = int(part.column("_t").to_numpy().max())
        got |= {(e.key, e.at, e.value) for e in eng.step({"xdr_voice": wm})}
    got |= {(e.key, e.at, e.value) for e in eng.step({"xdr_voice": clock})}
    assert got == once and len(once) > 20


def test_a_burst_of_complaints_in_one_city(rules_of, tmp_path):
    rng = np.random.default_rng(2)
    rows = []
    # a week of one complaint an hour or so in each of three cities, then Rome gets 12 in an hour
    for city in ("Rome", "Milan", "Turin"):
        for h in range(7 * 24):
            for _ in range(rng.poisson(1.0)):
                rows.append((city, T0 + h * HOUR + int(rng.integers(0, HOUR))))
    now = T0 + 7 * 24 * HOUR
    rows += [("Rome", now + int(x)) for x in rng.integers(0, HOUR, 12)]
    rows += [("Milan", now + int(x)) for x in rng.integers(0, HOUR, 1)]
    table = pa.table({"cell_id": [f"{c}-cell" for c, _ in rows], "_t": pa.array([t for _, t in rows], pa.int64()),
                      "_id": [f"k{i}" for i in range(len(rows))]})
    cells = pa.table({"cell_id": ["Rome-cell", "Milan-cell", "Turin-cell"], "city": ["Rome", "Milan", "Turin"]})
    con = duckdb.connect()
    con.register("_c", table)
    con.register("_cells", cells)
    con.execute("CREATE TABLE rec AS SELECT * FROM _c")
    con.execute("CREATE TABLE cells AS SELECT * FROM _cells")
    rules = rules_of("""      - alert: Burst
        expr: burst(complaints[1h]) by (city) > 4
""")
    rel = Relations(records={"complaints": "rec"}, cells="cells", burst_window_s=900)
    eng = RuleEngine(con, rules, rel, {})
    con.execute("INSERT INTO rules_clock VALUES ('Burst', ?, ?)", [rules[0].rule.version, now - 900_000])
    events = eng.step({"complaints": now + HOUR})
    fired = [(e.labels["city"], e.state.value) for e in events]
    assert fired and set(fired) == {("Rome", "firing")}
    assert events[0].evidence["count"] >= 3
