"""How well opencem diagnoses poor experience, on the twin v2 benchmark scenario (issue 13).

    .venv/bin/python benchmarks/diagnose.py [--subscribers 20000] [--days 3]
        [--train-seeds 201,202] [--score-seeds 301] [--other-seed 401] [--workdir benchmarks/out/diagnose]

The learned layer is trained on the benchmark scenario at --train-seeds, and every figure is
taken on --score-seeds, which it never saw; --other-seed runs the default scenario (a
different fault mix: its own rates, territory and fault shapes) scored with the same model.
Per scored operator it prints the fault-domain accuracy, macro-F1 over the domains with none,
per-cause precision/recall/F1, the domain confusion, location AC@1 and AC@3, per region and
pooled, the share of true network and cloud faults that are exactly one problem, and the two
baselines of the issue with the margins:

- the best single-column rule per cause, found on the training operators as the leakage audit
  finds it (benchmarks/leakage.py's best_rule over every evidence column), applied in the
  order of its training precision (no rule holds: none);
- a robust-statistics location ranking (BARO / N-sigma): each candidate object of a case (its
  cell, site, region, host, CDN node, program source) scored by how far its hour's share of
  poor users lies above its own median, in IQRs; the top object is the location, and none
  when no object is 3 IQR above its usual.

Latency: one subscriber's self-check (p50/p99 over --latency-runs customers) and bulk cases/s.
The truth is read here only, to label and score; diagnosis gets plain tables.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))
sys.path.insert(0, str(HERE))

CANDIDATES = {"cell": ("cell_poor_excess_iqr", "cell_id"), "site": ("site_poor_excess_iqr", "site_id"),
              "region": ("reg_poor_excess_iqr", "region"), "host": ("hst_poor_excess_iqr", "host"),
              "cdn_node": ("cdn_poor_excess_iqr", "cdn_node"), "program_source": ("src_poor_excess_iqr", "program_source")}


def operator(workdir: Path, scenario: str, subscribers: int, days: int, seed: int):
    """The workspace of one simulated operator, simulated and ingested once."""
    from opencem.ingest.load import ingest
    from opencem.simulate.config import make_config
    from opencem.simulate.run import simulate
    from opencem.simulate.truth import load_truth
    from opencem.workspace import Workspace

    stamp = workdir / f"{scenario}-{subscribers}-{days}-{seed}"
    ws = Workspace(stamp / "ws")
    if not (stamp / "done").exists():
        cfg = make_config(scenario, subscribers=subscribers, days=days, seed=seed)
        out = simulate(cfg, stamp / "sim").out_dir
        ingest(ws.lake, [out])
        load_truth(out / "truth", ws.truth_dir)
        (stamp / "done").write_text("ok")
    return ws


def truth_of(ws):
    from opencem.cli.diagnose import read_truth

    return read_truth(ws.truth_dir)


def single_column_baseline(train_sets, test_ev, labels_test):
    """Best one-column rule per cause on the training cases, applied by training precision."""
    import pyarrow as pa
    from leakage import best_rule

    from opencem.diagnose.causes import CAUSES
    from opencem.diagnose.evidence import feature_types

    rules = []
    for cause in sorted({c for ev, y in train_sets for c in set(y.tolist())}):
        if cause not in CAUSES or CAUSES[cause].domain == "none":
            continue
        best = None
        for name, kind in feature_types(train_sets[0][0]).items():
            if not (pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind)):
                continue
            values = pa.concat_arrays([ev.column(name).combine_chunks().cast(pa.float64()) for ev, _ in train_sets])
            y = np.concatenate([(yy == cause).astype(float) for _, yy in train_sets])
            f1, rule, p, r = best_rule(values, y)
            if rule and (best is None or f1 > best[0]):
                best = (f1, name, rule, p, r)
        if best:
            rules.append((best[3], cause, best[1], best[2]))
    rules.sort(reverse=True)
    chosen = np.full(test_ev.num_rows, "ordinary_variation", dtype=object)
    free = np.ones(test_ev.num_rows, bool)
    for _, cause, column, rule in rules:
        op, value = rule.split(" ", 1)
        x = test_ev.column(column).combine_chunks().cast(pa.float64()).to_numpy(zero_copy_only=False)
        v = float(value)
        hit = (x <= v) if op == "<=" else (x >= v) if op == ">=" else (x == v)
        hit = np.nan_to_num(hit.astype(float)).astype(bool) & free
        chosen[hit] = cause
        free &= ~hit
    domain = np.array([CAUSES[c].domain for c in CAUSES], dtype=object)
    index = {c: i for i, c in enumerate(CAUSES)}
    pred_domain = domain[np.vectorize(index.get)(chosen)]
    return chosen, pred_domain, [(c, col, r, p) for p, c, col, r in rules]


def robust_location_baseline(ev):
    """Top candidate object by robust z (IQRs above its own median): (type, id) per case."""
    names = list(CANDIDATES)
    z = np.column_stack([np.nan_to_num(ev.column(c).to_numpy(zero_copy_only=False).astype(float), nan=-np.inf)
                         for c, _ in CANDIDATES.values()])
    ids = np.column_stack([np.asarray(ev.column(i).to_numpy(zero_copy_only=False), dtype=object)
                           for _, i in CANDIDATES.values()])
    order = np.argsort(-z, axis=1)
    rows = np.arange(len(z))
    kinds = np.array(names, dtype=object)[order[:, :3]]
    return kinds, ids[rows[:, None], order[:, :3]], z[rows, order[:, 0]]


def score_operator(label: str, ws, run, train_sets, out: dict) -> None:
    import pyarrow as pa
    import pyarrow.compute as pc

    from opencem.diagnose import decide, score
    from opencem.diagnose.run import evidence_of, find_problems

    labels, faults = truth_of(ws)
    t = time.perf_counter()
    ev = evidence_of(ws.lake, run.rules)
    t_ev = time.perf_counter() - t
    t = time.perf_counter()
    conclusions = decide.conclude(ev, run.rules, run.model)
    t_dec = time.perf_counter() - t
    f = score.figures(conclusions, labels)
    problems, membership = find_problems(conclusions)
    f["problems"] = score.problem_figures(membership, problems, labels, faults)
    f["bulk"] = {"cases": ev.num_rows, "evidence_s": t_ev, "decide_s": t_dec,
                 "cases_per_s": ev.num_rows / (t_ev + t_dec)}
    # baselines on the same cases
    j = score.joined(conclusions, labels)
    import duckdb

    con = duckdb.connect()
    con.register("ev", ev)
    con.register("labels", labels)
    lab = con.sql("""SELECT l.fault_type, l.domain, l.location_type, l.location_id FROM ev
                     LEFT JOIN labels l USING (subscriber_id, service, hour_start)""").to_arrow_table()
    y_cause = np.asarray(lab.column("fault_type").to_numpy(zero_copy_only=False), dtype=object)
    y_dom = np.asarray(lab.column("domain").to_numpy(zero_copy_only=False), dtype=object)
    cause_b, dom_b, rules_b = single_column_baseline(train_sets, ev, None)
    known = y_dom != None  # noqa: E711 - cases the labels hold
    f["baseline_single_column"] = {"domain_accuracy": float((dom_b[known] == y_dom[known]).mean()),
                                   "cause_accuracy": float((cause_b[known] == y_cause[known]).mean()),
                                   "rules": rules_b}
    kinds, ids, top = robust_location_baseline(ev)
    lt = np.asarray(lab.column("location_type").to_numpy(zero_copy_only=False), dtype=object)
    li = np.asarray(lab.column("location_id").to_numpy(zero_copy_only=False), dtype=object)
    network = np.isin(y_dom, ["pipe", "cloud"])
    hit1 = (kinds[:, 0] == lt) & (ids[:, 0] == li)
    hit3 = ((kinds == lt[:, None]) & (ids == li[:, None])).any(axis=1)
    f["baseline_robust_location"] = {"network_location_ac1": float(hit1[network].mean()),
                                     "network_location_ac3": float(hit3[network].mean()),
                                     "domain_accuracy_fault_if_3iqr": float(((top >= 3) == (y_dom != "none"))[known].mean())}
    out[label] = f
    p = f["pooled"]
    print(f"\n== {label}: {f['labelled_cases']:,} labelled cases ({f['missed']} missed, {f['beyond_labels']} unlabelled)")
    print(f"fault-domain accuracy {p['domain_accuracy']:.1%} (single-column baseline "
          f"{f['baseline_single_column']['domain_accuracy']:.1%}, margin "
          f"{p['domain_accuracy'] - f['baseline_single_column']['domain_accuracy']:+.1%})")
    print(f"macro-F1 over domains {p['macro_f1_domains']:.3f}; cause accuracy {p['cause_accuracy']:.1%}")
    print(f"location AC@1 {p['location_ac1']:.1%} AC@3 {p['location_ac3']:.1%} (fault cases); network and cloud "
          f"{p['network_location_ac1']:.1%} / {p['network_location_ac3']:.1%} against the robust ranking "
          f"{f['baseline_robust_location']['network_location_ac1']:.1%} / "
          f"{f['baseline_robust_location']['network_location_ac3']:.1%} (margins "
          f"{p['network_location_ac1'] - f['baseline_robust_location']['network_location_ac1']:+.1%} / "
          f"{p['network_location_ac3'] - f['baseline_robust_location']['network_location_ac3']:+.1%})")
    pr = f["problems"]
    print(f"network/cloud faults in exactly one problem: {pr['in_exactly_one_problem']} of "
          f"{pr['network_faults_with_cases']} ({(pr['share'] or 0):.1%})")
    print(f"bulk: {ev.num_rows:,} cases in {t_ev + t_dec:.1f} s = {f['bulk']['cases_per_s']:,.0f} cases/s")
    for region, r in f["regions"].items():
        print(f"  region {region}: {r['cases']:,} cases, domain {r['domain_accuracy']:.1%}, macro-F1 "
              f"{r['macro_f1_domains']:.3f}, AC@1 {r['location_ac1']:.1%}, AC@3 {r['location_ac3']:.1%}")
    print(f"{'cause':22} {'cases':>7} {'prec':>6} {'recall':>6} {'F1':>6}")
    for r in f["per_cause"]:
        print(f"{r['cause']:22} {r['cases']:7,} {r['precision'] or 0:6.3f} {r['recall'] or 0:6.3f} {r['f1'] or 0:6.3f}")
    c = f["confusion"]
    print("domain confusion (rows true, columns diagnosed): " + " ".join(c["domains"]))
    for d, row in zip(c["domains"], c["rows_true_columns_diagnosed"]):
        print(f"  {d:8} " + " ".join(f"{v:7,}" for v in row))
    del j


def latency(ws, run, runs: int) -> dict:
    from opencem.diagnose.run import self_check
    from opencem.engines.duckdb import connect

    con = connect(ws.lake)
    subs = [r[0] for r in con.execute(f"SELECT subscriber_id FROM subscribers USING SAMPLE {runs} ROWS").fetchall()]
    con.close()
    times = []
    for s in subs:  # one customer at a time, as care asks
        t = time.perf_counter()
        self_check(ws.lake, run, s)
        times.append(time.perf_counter() - t)
    ms = np.array(times) * 1000
    return {"runs": len(ms), "p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--subscribers", type=int, default=20_000)
    ap.add_argument("--days", type=int, default=3)
    ap.add_argument("--train-seeds", default="201,202")
    ap.add_argument("--score-seeds", default="301")
    ap.add_argument("--other-seed", type=int, default=401, help="default scenario (another fault mix); -1: skip")
    ap.add_argument("--latency-runs", type=int, default=30)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--workdir", type=Path, default=HERE / "out" / "diagnose")
    args = ap.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    from opencem.diagnose.run import evidence_of, setup, train

    out: dict = {"size": f"{args.subscribers:,} subscribers x {args.days} days"}
    train_ws = [operator(args.workdir, "benchmark", args.subscribers, args.days, int(s))
                for s in args.train_seeds.split(",")]
    run = setup(train_ws[0].root)
    import pyarrow as pa

    from opencem.diagnose.learned import train as fit
    import duckdb

    sets, rule_index, evs = [], [], []
    for ws in train_ws:
        labels, _ = truth_of(ws)
        ev = evidence_of(ws.lake, run.rules)
        con = duckdb.connect()
        con.register("ev", ev)
        con.register("labels", labels)
        both = con.sql("SELECT ev.*, l.fault_type AS label FROM ev JOIN labels l USING (subscriber_id, service, "
                       "hour_start)").to_arrow_table()
        con.register("labelled", both)
        rule_index.append(np.asarray(con.sql(f"SELECT {run.rules.case_sql()} AS r FROM labelled").fetchnumpy()["r"]))
        evs.append(both)
        sets.append((both, np.asarray(both.column("label").to_numpy(zero_copy_only=False), dtype=object)))
    t = time.perf_counter()
    both = pa.concat_tables(evs, promote_options="permissive")
    run.model = fit(both, np.concatenate(rule_index), both.column("label").to_numpy(zero_copy_only=False),
                    trained_on=f"benchmark seeds {args.train_seeds}", threads=args.threads)
    out["train_s"] = time.perf_counter() - t
    print(f"learned layer {run.model.name} trained on {both.num_rows:,} cases of benchmark seeds {args.train_seeds} "
          f"({args.subscribers:,} x {args.days} days) in {out['train_s']:.0f} s")
    for seed in args.score_seeds.split(","):
        ws = operator(args.workdir, "benchmark", args.subscribers, args.days, int(seed))
        score_operator(f"benchmark seed {seed}", ws, run, sets, out)
    if args.other_seed >= 0:
        ws = operator(args.workdir, "default", args.subscribers, args.days, args.other_seed)
        score_operator(f"default scenario seed {args.other_seed} (other fault mix)", ws, run, sets, out)
    out["latency"] = latency(ws, run, args.latency_runs)
    print(f"\nself-check latency over {out['latency']['runs']} customers: p50 {out['latency']['p50_ms']:.0f} ms, "
          f"p99 {out['latency']['p99_ms']:.0f} ms ({args.subscribers:,}-subscriber workspace)")
    (args.workdir / "results.json").write_text(json.dumps(out, indent=1, default=str))


if __name__ == "__main__":
    main()
