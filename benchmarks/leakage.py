"""Can a fault be read off one column? The leakage table of the digital twin (issue 11).

    .venv/bin/python benchmarks/leakage.py [--subscribers 10000] [--days 2] [--seed 7]
        [--workdir benchmarks/out/leakage]

Simulates an operator and ingests it. Each session (a row of xdr_voice, xdr_data or
xdr_video) is labelled, from the simulator's ground truth (read here only, to label), as
affected by a fault type when the fault's object and window cover it:

- cell, site and region faults: the session's serving cell, its site or its province;
- subscriber faults (volte_off, wrong_apn, throttling, suspension): the session's subscriber;
- device_model, cdn_node and program_source faults: the session's own column;
- only sessions of the services the fault impairs are counted. Coverage holes have no
  session label (the truth says which place, not which sessions) and are left out.

Candidate columns are what a probe or BSS would give beside the session: every column of the
session's table except identifiers, times, positions and the columns naming a fault's own
object (a rule "cell_id = X" locates a fault, it does not leak it), the subscriber snapshot's columns
(looked up by subscriber, as they stood on the snapshot's date), the BSS account state at the
session's start (``bss:status`` and ``bss:volte_enabled``: the latest ``subscriber_events``
change before the session, else the snapshot's value, as care looks an account up), and
``cell_alarm_active`` (an alarm on the session's cell or site was raised before the session
started and not yet cleared). For each fault type, every column is tried with one rule,
``x <= t``, ``x >= t`` or ``x = v``. The rule kept is the one with the best F1 over affected
sessions against all others. Its precision and recall are printed. A rule at 95 % precision
and 95 % recall or more reads the label off one column: that is a leak unless a real system
carries the column with the same fidelity (``REAL_FIDELITY``: such a row says REAL, and the
row after it gives the fault type's best rule without that column).

The same search runs over what the OSS sees per object: every PM counter per (cell, 15
minutes), labelled by the truth's ``cell_periods``, and every column of the hourly broadband line
records, labelled by the broadband cases of OLT outages.

Results go to <workdir>/results.json and are printed as a table.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))
sys.path.insert(0, str(HERE))
from _twin import operator_args, simulated_workspace  # noqa: E402

SESSIONS = {"xdr_voice": ("call_id", "voice"), "xdr_data": ("session_id", "mobile_data"),
            "xdr_video": ("session_id", "video")}
# Not candidates: identifiers, times and positions say which object, not what went wrong.
# The columns naming a fault's own object (cell, device model, CDN node, program source) are
# left out too: they say where, and a rule "cell_id = X" is diagnosis, not a leak.
NOT_FEATURES = {"call_id", "session_id", "subscriber_id", "start_time", "cell_id", "ue_lat", "ue_lon",
                "location_error_m", "location_h3", "host", "broadband_line_id", "home_cell_id",
                "device_model", "sub:device_model", "cdn_node", "program_source", "sub:city", "sub:province"}
MAX_CATEGORIES = 60
LEAK = 0.95


# Columns a real system carries with the same fidelity for a fault type (docs/simulator.md says
# why): a rule through one of them at 95/95 is how the real operator finds the fault, not a leak.
# The table also gives that fault type's best rule without them.
REAL_FIDELITY = {"bss:status": {"suspension"},
                 # the cell's own unavailable-time counter (TS 32.425): an outage the OSS may not
                 # alarm, but the cell still counts its seconds down
                 "pm:RRU.CellUnavailableTime": {"cell_outage"},
                 # ... and a cell out of service uses no PRBs: the same counters, the same fidelity
                 "pm:RRU.PrbTotDl": {"cell_outage"},
                 # the line's own outage seconds (CPE/TR-069): the line was down, whatever the cause
                 "outage_s": {"olt_outage"}}
# The account as BSS held it when the session started: the latest dated change, else the snapshot.
BSS_AT_START = {"status": ("status_change", "u.status"),
                "volte_enabled": ("volte_provisioning", "u.volte_enabled::VARCHAR")}


def labelled(con, table: str, key: str, service: str):
    """The session table with the subscriber snapshot, the BSS account state at the session's
    start, the alarm flag and one 0/1 column per fault type impairing ``service``."""
    types = [r[0] for r in con.execute(
        f"SELECT DISTINCT fault_type FROM truth.faults WHERE location_type <> 'grid' "
        f"AND list_contains(string_split(affected_services, ','), '{service}') ORDER BY 1").fetchall()]
    cols = {r[0] for r in con.execute(f"DESCRIBE {table}").fetchall()}
    match = {"cell": "s.cell_id", "site": "c.site_id", "region": "c.province", "subscriber": "s.subscriber_id",
             "device_model": "s.device_model", "cdn_node": "s.cdn_node" if "cdn_node" in cols else "NULL",
             "program_source": "s.program_source" if "program_source" in cols else "NULL",
             "host": "s.host" if "host" in cols else "NULL"}
    hit = " OR ".join(f"(g.location_type = '{t}' AND g.location_id = {expr})" for t, expr in match.items())
    flags = ", ".join(f"coalesce(max((g.fault_type = '{t}')::INT), 0) AS \"truth:{t}\"" for t in types)
    sub_cols = [r[0] for r in con.execute("DESCRIBE subscribers").fetchall()
                if r[0] not in NOT_FEATURES and r[0] not in cols]
    bss_events = "".join(
        f"""
          ASOF LEFT JOIN (SELECT subscriber_id, event_time, new_value FROM subscriber_events
                          WHERE event_type = '{kind}') e_{name}
            ON e_{name}.subscriber_id = s.subscriber_id AND e_{name}.event_time <= s.start_time"""
        for name, (kind, _) in BSS_AT_START.items())
    bss = ", ".join(f'coalesce(e_{name}.new_value, {snapshot}) AS "bss:{name}"'
                    for name, (_, snapshot) in BSS_AT_START.items())
    sql = f"""
        WITH base AS (
          SELECT s.*, {", ".join(f'u."{c}" AS "sub:{c}"' for c in sub_cols)}, {bss},
                 EXISTS (SELECT 1 FROM alarms a WHERE (a.cell_id = s.cell_id OR a.site_id = c.site_id)
                         AND a.raised_at <= s.start_time AND coalesce(a.cleared_at, s.start_time) >= s.start_time)
                   AS cell_alarm_active
          FROM {table} s LEFT JOIN cells c USING (cell_id) LEFT JOIN subscribers u USING (subscriber_id)
          {bss_events})
        SELECT s.*, {flags} FROM base s LEFT JOIN cells c USING (cell_id)
        LEFT JOIN truth.faults g ON ({hit}) AND s.start_time >= g.start_time AND s.start_time < g.end_time
        GROUP BY ALL"""
    return con.sql(sql).to_arrow_table(), types


def best_rule(values, y: np.ndarray) -> tuple[float, str, float, float]:
    """(F1, rule, precision, recall) of the best one-column rule for labels ``y``."""
    import pyarrow as pa
    import pyarrow.compute as pc

    positives = int(y.sum())
    best = (0.0, "", 0.0, 0.0)

    def keep(tp, fp, rule):
        nonlocal best
        tp, fp = float(tp), float(fp)
        if tp == 0:
            return
        p, r = tp / (tp + fp), tp / positives
        f1 = 2 * p * r / (p + r)
        if f1 > best[0]:
            best = (f1, rule, p, r)

    valid = pc.is_valid(values).to_numpy(zero_copy_only=False)
    numeric = pa.types.is_integer(values.type) or pa.types.is_floating(values.type)
    if numeric:
        x = pc.cast(values, pa.float64()).to_numpy(zero_copy_only=False)
        valid &= np.isfinite(x)
        xv, yv = x[valid], y[valid]
        order = np.argsort(xv, kind="stable")
        xs, ys = xv[order], yv[order]
        if len(xs):
            last = np.r_[np.flatnonzero(np.diff(xs)), len(xs) - 1]  # last index of each value
            cp = np.cumsum(ys)[last]
            n = last + 1
            i = int(np.argmax(2 * cp / (n + positives)))
            keep(cp[i], n[i] - cp[i], f"<= {xs[last[i]]:g}")
            first = np.r_[0, last[:-1] + 1]
            cq = (ys.sum() - np.r_[0, np.cumsum(ys)[last[:-1]]])
            m = len(xs) - first
            j = int(np.argmax(2 * cq / (m + positives)))
            keep(cq[j], m[j] - cq[j], f">= {xs[first[j]]:g}")
            uniq, inverse = np.unique(xs, return_inverse=True)
            tp = np.bincount(inverse, weights=ys)
            cnt = np.bincount(inverse)
            k = int(np.argmax(2 * tp / (cnt + positives)))
            keep(tp[k], cnt[k] - tp[k], f"= {uniq[k]:g}")
        return best
    text = pc.cast(values, pa.string()).fill_null("(null)").to_numpy(zero_copy_only=False)
    uniq, inverse = np.unique(text, return_inverse=True)
    if len(uniq) > MAX_CATEGORIES:
        return best
    tp = np.bincount(inverse, weights=y)
    cnt = np.bincount(inverse)
    k = int(np.argmax(2 * tp / (cnt + positives)))
    keep(tp[k], cnt[k] - tp[k], f"= {uniq[k]}")
    return best


def best_rules(fault: str, table: str, data, features: list[str], y: np.ndarray) -> list[dict]:
    """The fault type's best one-column rule over ``features`` of ``data`` (rows labelled
    ``y``), and when that column is one a real system carries as exactly, the best without it."""
    scored = [(*best_rule(data.column(c), y), c) for c in features]
    real = [r for r in scored if fault in REAL_FIDELITY.get(r[4], ())]
    best = max(scored, key=lambda r: r[0])
    picks = [best] if best not in real else [best, max((r for r in scored if r not in real), key=lambda r: r[0])]
    out = []
    for f1, rule, precision, recall, column in picks:
        carried = fault in REAL_FIDELITY.get(column, ())
        out.append({"fault_type": fault, "table": table, "column": column, "rule": f"{column} {rule}",
                    "precision": precision, "recall": recall, "f1": f1, "affected": int(y.sum()),
                    "sessions": len(y), "real_fidelity": carried,
                    "leak": precision >= LEAK and recall >= LEAK and not carried})
    return out


def leakage(ws) -> list[dict]:
    from opencem.simulate.truth import connect_with_truth

    con = connect_with_truth(ws.lake, ws.truth_dir)
    rows = []
    for table, (key, service) in SESSIONS.items():
        data, types = labelled(con, table, key, service)
        features = [c for c in data.column_names if c not in NOT_FEATURES and not c.startswith("truth:")]
        for fault in types:
            y = data.column(f"truth:{fault}").to_numpy(zero_copy_only=False).astype(float)
            if y.sum() == 0:
                continue
            rows += best_rules(fault, table, data, features, y)
    return rows


def object_leakage(con) -> list[dict]:
    """The same search over what the OSS sees per object rather than per session: every PM
    counter per (cell, 15 minutes), labelled by ``truth.cell_periods``, and every column of the
    hourly line records, labelled by the broadband cases."""
    rows = []
    names = [r[0] for r in con.execute("SELECT DISTINCT counter_name FROM pm_counters ORDER BY 1").fetchall()]
    pivot = ", ".join(f"max(value) FILTER (counter_name = '{n}') AS \"pm:{n}\"" for n in names)
    pm = con.sql(f"""
        WITH wide AS (SELECT cell_id, period_start, {pivot} FROM pm_counters GROUP BY ALL)
        SELECT w.*, list(DISTINCT t.fault_type) FILTER (t.fault_type IS NOT NULL) AS faults
        FROM wide w LEFT JOIN truth.cell_periods t USING (cell_id, period_start) GROUP BY ALL""").to_arrow_table()
    types = sorted({f for fs in pm.column("faults").to_pylist() if fs for f in fs})
    lines = con.sql("""
        SELECT b.*, (c.subscriber_id IS NOT NULL)::INT AS olt
        FROM broadband_sessions b LEFT JOIN truth.cases c ON c.service = 'home_broadband'
         AND c.fault_type = 'olt_outage' AND c.subscriber_id = b.subscriber_id AND c.hour_start = b.start_time""").to_arrow_table()
    jobs = [("pm_counters", pm, [c for c in pm.column_names if c.startswith("pm:")],
             {t: np.array([t in (fs or []) for fs in pm.column("faults").to_pylist()], float) for t in types}),
            ("broadband_sessions", lines, [c for c in lines.column_names if c not in
                                           ("line_id", "subscriber_id", "start_time", "cell_id", "olt")],
             {"olt_outage": lines.column("olt").to_numpy().astype(float)})]
    for table, data, features, labels in jobs:
        for fault, y in labels.items():
            if y.sum() == 0:
                continue
            rows += best_rules(fault, table, data, features, y)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    operator_args(ap)
    ap.add_argument("--workdir", type=Path, default=HERE / "out" / "leakage")
    args = ap.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    ws = simulated_workspace(args.workdir, args)
    rows = leakage(ws)
    from opencem.simulate.truth import connect_with_truth

    rows += object_leakage(connect_with_truth(ws.lake, ws.truth_dir))
    (args.workdir / "results.json").write_text(json.dumps(rows, indent=1))
    print(f"Leakage: the best one-column rule per fault type, {args.subscribers:,} subscribers x {args.days} days, "
          f"seed {args.seed}, fault rate {args.fault_rate:g} (LEAK: precision and recall both >= {LEAK:.0%}; "
          f"REAL: a column a real system carries with that fidelity, then the best rule without it)")
    print(f"{'fault type':22} {'rows of':18} {'best one-column rule':46} {'prec':>6} {'recall':>6} {'affected':>9}")
    for r in sorted(rows, key=lambda r: (r["fault_type"], r["table"], -r["f1"])):
        flag = "  LEAK" if r["leak"] else "  REAL" if r["real_fidelity"] else ""
        print(f"{r['fault_type']:22} {r['table']:18} {r['rule'][:46]:46} {r['precision']:6.1%} {r['recall']:6.1%} "
              f"{r['affected']:9,}{flag}")


if __name__ == "__main__":
    main()
