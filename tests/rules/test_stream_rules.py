"""Rules on the stream (`opencem stream run --rules`): evaluated in each batch's transaction,
relayed to the store after the commit. SIGKILLed at random points and restarted, the stream leaves the same alert events,
alerts and notifications as an uninterrupted run: nothing lost, nothing twice."""

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
RULES = """groups:
  - name: test
    rules:
      - alert: CellDrops
        expr: cube_cell_15min.call_drop_pct > 1 and cube_cell_15min.records_xdr_voice >= 3
        for: 15m
        labels: {severity: major}
        annotations: {summary: "{{ $labels.cell_id }} drops {{ $value }}"}
      - alert: CityStall
        expr: cube_city_15min.stall_ratio_pct > 0.5
        labels: {severity: minor}
      - alert: RepeatedDroppedCalls
        expr: count_over_time(xdr_voice[12h] where dropped or not setup_success) by (subscriber_id) >= 2
        labels: {severity: info, action: notify_customer}
"""


@pytest.fixture(scope="module")
def land(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("rules-day")
    subprocess.run([*OPENCEM, "simulate", "--subscribers", "200", "--days", "1", "--out", str(root / "sim"),
                    "--stream", "--to", str(root / "land"), "--no-wait", "--every", "900"],
                   check=True, capture_output=True)
    (root / "t.rules.yaml").write_text(RULES)
    return root


def _rounded(value):
    if isinstance(value, float):
        return float(f"{value:.9g}")
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    return value


def drive(root: Path, name: str, kill_after: list[float] = ()) -> tuple[list, list, list]:
    ws = root / f"{name}-ws"
    state, store = root / f"{name}.duckdb", ws / "store.sqlite"
    args = [*OPENCEM, "--workspace", str(ws), "stream", "run", "--from", str(root / "land"), "--until-finished",
            "--state", str(state), "--max-records", "6000", "--lateness", "7d", "--rules", str(root / "t.rules.yaml")]
    for delay in kill_after:
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True, env=ENV)
        time.sleep(delay)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    done = subprocess.run(args, capture_output=True, text=True, timeout=600, env=ENV)
    assert done.returncode == 0, done.stderr[-3000:]
    import duckdb
    import sqlite3

    con = duckdb.connect(str(state), read_only=True)
    # A window's value may differ in its last bits between runs (DuckDB sums in parallel, in
    # no fixed order), so values are compared to 9 significant digits.
    events = [(k, json.dumps(_rounded(json.loads(e)), sort_keys=True))
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


def test_rules_on_the_stream_alert_and_survive_sigkill(land):
    events, alerts, sent = drive(land, "whole")
    kinds = {}
    for _, text in events:
        e = json.loads(text)
        kinds[(e["rule_name"], e["state"])] = kinds.get((e["rule_name"], e["state"]), 0) + 1
    assert kinds.get(("CellDrops", "firing"), 0) > 0 and kinds.get(("RepeatedDroppedCalls", "firing"), 0) > 0
    assert len(alerts) >= kinds.get(("CellDrops", "firing"), 0) + kinds.get(("RepeatedDroppedCalls", "firing"), 0)
    rng = random.Random(4)
    killed = drive(land, "killed", kill_after=[rng.uniform(3, 8)])
    # Nothing lost, nothing twice: the same events (by key: series, episode, state), the same
    # alert episodes and the same notifications and actions.
    # KNOWN GAP (docs/rules.md, Limits): after a restart a window can be closed by the rules at
    # another point of the feed than in the uninterrupted run, so the value recorded with an
    # event may be that of a partial window; the values are therefore not compared yet.
    assert [k for k, _ in killed[0]] == [k for k, _ in events]
    assert [(a[0], a[1], a[2], a[3], a[5]) for a in killed[1]] == [(a[0], a[1], a[2], a[3], a[5]) for a in alerts]
    assert killed[2] == sent
