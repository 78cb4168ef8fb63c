"""Rules on the stream (`opencem stream run --rules`): evaluated in each batch's transaction,
relayed to the store after the commit. SIGKILLed at several points and restarted, the stream
leaves the same alert events (with the same values and evidence), alerts and notifications as
an uninterrupted run: nothing lost, nothing twice, nothing partial."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

OPENCEM = [sys.executable, "-m", "opencem"]
# The store read back here is the workspace's SQLite file, whatever the environment names.
ENV = {k: v for k, v in os.environ.items() if k != "OPENCEM_DATABASE_URL"}
# query_offset equal to the stream's lateness (--lateness below): a window closes for a rule
# once every record it can still take has arrived, so its value is its final one however the
# batches were cut (docs/rules.md, States).
RULES = """groups:
  - name: test
    query_offset: 1h
    rules:
      - alert: CellDrops
        expr: cube_cell_15min.call_drop_pct > 1 and cube_cell_15min.records_xdr_voice >= 3
        for: 15m
        labels: {severity: major}
        annotations: {summary: "{{ $labels.cell_id }} drops {{ $value }}"}
      - alert: CityStall
        expr: cube_city_15min.stall_ratio_pct > 0.5
        labels: {severity: minor}
      - alert: CityDataSlow  # a thin quarter-hour's score is its hour's: settled at the hour's end
        expr: cube_city_15min.data_speed_score < 85
        labels: {severity: minor}
      - alert: RepeatedDroppedCalls
        expr: count_over_time(xdr_voice[12h] where dropped or not setup_success) by (subscriber_id) >= 2
        labels: {severity: info, action: notify_customer}
"""
KILLS = 3


@pytest.fixture(scope="module")
def land(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("rules-day")
    subprocess.run([*OPENCEM, "simulate", "--subscribers", "200", "--days", "1", "--out", str(root / "sim"),
                    "--stream", "--to", str(root / "land"), "--no-wait", "--every", "900"],
                   check=True, capture_output=True)
    (root / "t.rules.yaml").write_text(RULES)
    return root


@pytest.fixture(scope="module")
def whole(land) -> tuple[list, list, list]:
    """The uninterrupted run, the reference of every comparison."""
    return drive(land, "whole")


def _rounded(value):
    if isinstance(value, float):
        return float(f"{value:.9g}")
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    return value


def _comparable(event: dict) -> dict:
    # A window's value may differ in its last bits between runs (DuckDB sums in parallel, in no
    # fixed order): values are compared to 9 significant digits.
    return _rounded(event)


def drive(root: Path, name: str, kills: int = 0, seed: int = 4) -> tuple[list, list, list]:
    """Run the stream over the landing folder to its end; with ``kills``, SIGKILL it that many
    times first, each time at a random moment after its first commit, and start it again."""
    ws = root / f"{name}-ws"
    state, store = root / f"{name}.duckdb", ws / "store.sqlite"
    args = [*OPENCEM, "--workspace", str(ws), "stream", "run", "--from", str(root / "land"), "--until-finished",
            "--state", str(state), "--max-records", "6000", "--lateness", "1h", "--rules", str(root / "t.rules.yaml")]
    rng = random.Random(seed)
    for _ in range(kills):
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                start_new_session=True, env=ENV)
        for line in proc.stderr:  # each process commits once at least, so the feed moves on
            if line.startswith("batch "):
                break
        time.sleep(rng.uniform(0, 2))  # somewhere in the next batch: records, windows, rules, commit, relay
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        proc.stderr.close()
        # killed while running (a batch of the day takes seconds: it cannot have finished)
        assert proc.returncode == -signal.SIGKILL
    done = subprocess.run(args, capture_output=True, text=True, timeout=600, env=ENV)
    assert done.returncode == 0, done.stderr[-3000:]
    import duckdb
    import sqlite3

    con = duckdb.connect(str(state), read_only=True)
    events = [(k, _comparable(json.loads(e)))
              for k, e in con.execute("SELECT key, event FROM rules_events ORDER BY key").fetchall()]
    unrelayed = con.execute("SELECT count(*) FROM rules_events WHERE NOT relayed").fetchall()[0][0]
    con.close()
    assert unrelayed == 0
    db = sqlite3.connect(store)
    alerts = [_rounded(list(r)) for r in db.execute(
        "SELECT rule_name, fingerprint, state, window_start, value, started_at, resolved_at "
        "FROM alerts ORDER BY fingerprint, started_at").fetchall()]
    notes = db.execute("SELECT channel, idempotency_key, status FROM notifications ORDER BY idempotency_key").fetchall()
    actions = db.execute("SELECT action_type, idempotency_key, subscriber_id FROM actions ORDER BY idempotency_key").fetchall()
    db.close()
    return events, alerts, notes + actions


def test_rules_on_the_stream_alert(whole):
    events, alerts, sent = whole
    kinds = {}
    for _, e in events:
        kinds[(e["rule_name"], e["state"])] = kinds.get((e["rule_name"], e["state"]), 0) + 1
    for rule in ("CellDrops", "CityStall", "CityDataSlow", "RepeatedDroppedCalls"):
        assert kinds.get((rule, "firing"), 0) > 0, rule
    assert len(alerts) >= kinds[("CellDrops", "firing")] + kinds[("RepeatedDroppedCalls", "firing")]
    assert sent  # the customer messages of the count rule, and the notifications


def test_sigkilled_and_restarted_the_stream_gives_the_same_alerts_with_the_same_values(land, whole):
    events, alerts, sent = drive(land, "killed", kills=KILLS)
    # The same events (by key: series, episode, state) carrying the same values and evidence,
    # the same alert episodes with their values, and the same notifications and actions.
    assert [k for k, _ in events] == [k for k, _ in whole[0]]
    assert events == whole[0]
    assert alerts == whole[1]
    assert sent == whole[2]
