"""How well the CEI separates faulted from healthy units, per fault type and cube (issue 10).

    .venv/bin/python benchmarks/cei_separation.py [--subscribers 10000] [--days 2] [--seed 7]
        [--workdir benchmarks/out/cei_separation]

Simulates an operator, ingests it and evaluates four library cubes: cell x 15 min, cell x day,
grid x hour and subscriber x day, and a site grid x hour beside them. Then, for each fault type of the simulator's ground truth
(read here only, to score), it compares the CEI of the units the fault touched with the CEI of
units no fault touched: the ROC AUC is the chance that a faulted unit scores below a healthy
one (0.5 is a coin, 1 perfect). Its baseline is the coin, printed beside it. ``scored`` is
the share of faulted units that have a CEI at all. The evidence rule changes these figures,
so each cell x 15 min cube is also scored under other rules on the same lake (see ``RULES``).

Which units a fault touches:
- cell, site, region: the cells of that cell, site or province, in the periods overlapping the
  fault; grid x hour takes those cells' sites' H3 cells.
- grid (coverage hole, an H3 cell at resolution 9): the cells whose site lies in the hole's
  resolution-8 parent, and that parent for grid x hour. grid x hour places a session
  by its own position where it has one (a share is geolocated); site grid x hour places
  every session at its serving site, as the grid was before sessions carried positions. In
  both, the ring of H3 cells around a touched one is left out of the healthy units, since a
  located session of a faulty cell can sit there. Which subscribers stand in the
  hole the truth does not say, so subscriber x day has no coverage-hole row.
- subscriber: that subscriber's days; device_model: the days of subscribers on that model.
- cdn_node, program_source: subscribers with a video session on it during the fault.
- Subscriber x day also takes, for cell, site and region faults, the subscribers with a
  session on a touched cell during the fault.

Results go to <workdir>/results.json and are printed as a table.
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
from _twin import operator_args, simulated_workspace  # noqa: E402

# table -> (dimension, grain in s, H3 resolution of a grid cube)
CUBES = {"cube_cell_15min": ("cell_id", 900, None), "cube_cell_day": ("cell_id", 86400, None),
         "cube_grid_hour": ("grid", 3600, 8), "cube_site_grid_hour": ("site_grid", 3600, 8),
         "cube_subscriber_day": ("subscriber_id", 86400, None)}
# The grid as it was before sessions carried a position: every row at its serving site. The
# same cube otherwise, so the two grid rows of the table differ by the location alone.
SITE_GRID = """\
dimensions:
  - name: site_grid
    description: H3 cell of the serving site, ignoring the session's own position
    resolve: [{grid: true, located: false}]
cubes:
  mode: extend
  list:
    - {dimensions: [site_grid], grains: [hour], grid_resolution: 8, min_samples: 10}
"""


def auc(faulted: np.ndarray, healthy: np.ndarray) -> float:
    """P(faulted < healthy) + P(equal) / 2, by ranks (Mann-Whitney U)."""
    if len(faulted) == 0 or len(healthy) == 0:
        return float("nan")
    from scipy.stats import rankdata

    ranks = rankdata(np.r_[-faulted, -healthy])  # low CEI ranks high
    u = ranks[: len(faulted)].sum() - len(faulted) * (len(faulted) + 1) / 2
    return float(u / (len(faulted) * len(healthy)))


def build(workdir: Path, args):
    from opencem.indicators.catalog import load_catalog
    from opencem.indicators.evaluate import evaluate

    ws = simulated_workspace(workdir, args)
    ws.indicators_dir.mkdir(exist_ok=True)
    (ws.indicators_dir / "site_grid.yaml").write_text(SITE_GRID)
    cat = load_catalog(ws.tables(), ws.definition_files())
    started = time.perf_counter()
    evaluate(ws.lake, cat, only=list(CUBES))
    print(f"evaluated {', '.join(CUBES)} in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    return ws


TOUCHED_CELLS = """
CREATE OR REPLACE TEMP TABLE touched_cells AS
SELECT g.fault_type, c.cell_id, c.lat, c.lon, g.start_time, g.end_time
FROM truth.faults g JOIN cells c ON
     (g.location_type = 'cell' AND c.cell_id = g.location_id)
  OR (g.location_type = 'site' AND c.site_id = g.location_id)
  OR (g.location_type = 'region' AND c.province = g.location_id)
  OR (g.location_type = 'grid' AND grid_at(c.lat, c.lon, 8) = parent_at(g.location_id, 8))
"""


def touched(con, cube: str, dim: str, grain_s: int, res: int | None = None):
    """(fault_type, key, period_start) rows of the units each fault touched in ``cube``."""
    overlap = f"t.period_start < f.end_time AND t.period_start + INTERVAL {grain_s} SECOND > f.start_time"
    if dim == "cell_id":
        return f"""SELECT DISTINCT f.fault_type, t.{dim} AS k, t.period_start FROM {cube} t
                   JOIN touched_cells f ON t.cell_id = f.cell_id AND {overlap}"""
    if dim in ("grid", "site_grid"):
        return f"""SELECT DISTINCT f.fault_type, t.{dim} AS k, t.period_start FROM {cube} t
                   JOIN (SELECT fault_type, grid_at(lat, lon, {res}) AS h3_index, start_time, end_time FROM touched_cells
                         UNION ALL SELECT fault_type, parent_at(location_id, {res}), start_time, end_time
                         FROM truth.faults WHERE location_type = 'grid') f
                   ON t.{dim} = f.h3_index AND {overlap}"""
    sessions = " UNION ALL ".join(
        f"SELECT subscriber_id, cell_id, start_time, {cols} FROM {src}"
        for src, cols in (("xdr_voice", "NULL AS cdn_node, NULL AS program_source"),
                          ("xdr_data", "NULL, NULL"), ("xdr_video", "cdn_node, program_source")))
    return f"""
        WITH s AS ({sessions}),
        subs AS (
          SELECT g.fault_type, g.location_id AS subscriber_id, g.start_time, g.end_time FROM truth.faults g
          WHERE g.location_type = 'subscriber'
          UNION ALL
          SELECT g.fault_type, u.subscriber_id, g.start_time, g.end_time FROM truth.faults g
          JOIN subscribers u ON g.location_type = 'device_model' AND u.device_model = g.location_id
          UNION ALL
          SELECT DISTINCT g.fault_type, s.subscriber_id, g.start_time, g.end_time FROM truth.faults g
          JOIN s ON (g.location_type = 'cdn_node' AND s.cdn_node = g.location_id
                     OR g.location_type = 'program_source' AND s.program_source = g.location_id)
           AND s.start_time >= g.start_time AND s.start_time < g.end_time
          UNION ALL
          SELECT DISTINCT f.fault_type, s.subscriber_id, f.start_time, f.end_time FROM touched_cells f
          JOIN s ON s.cell_id = f.cell_id AND s.start_time >= f.start_time AND s.start_time < f.end_time
          WHERE f.fault_type <> 'coverage_hole')
        SELECT DISTINCT f.fault_type, t.subscriber_id AS k, t.period_start FROM {cube} t
        JOIN subs f ON t.subscriber_id = f.subscriber_id AND {overlap}"""


# Evidence rules compared on cell x 15 min over the same lake (see rule_table). The KQI scores
# are computed with every record counted (min_samples 1), then each rule decides what a score
# with n < m = 10 records behind it becomes, and the indices and CEI are recomputed from them.
M = 10
RULES = ("null under min_samples 10", "every score (min_samples 1)",
         "shrink toward the period's network score (m = 10)", "pool into the hour when thin",
         "pool into the hour when 0 < n < 10")


def rule_tables(ws) -> dict[str, "object"]:
    """cell x 15 min CEI per evidence rule: a table of cell_id, period_start, cei per rule."""
    import pyarrow as pa

    from opencem.indicators.catalog import load_catalog
    from opencem.indicators.evaluate import run_plan
    from opencem.indicators.plan import compile_cube
    from opencem.indicators.spec import Cube

    cat = load_catalog(ws.tables(), ws.definition_files())
    plan = compile_cube(cat, ws.tables(), Cube(dimensions=["cell_id"], min_samples=1), "15min")
    raw = run_plan(ws.lake, plan)
    hour = run_plan(ws.lake, compile_cube(cat, ws.tables(), Cube(dimensions=["cell_id"], min_samples=M), "hour"))
    n = raw.num_rows
    evidence = dict(plan.evidence)
    col = lambda t, c: t[c].to_numpy(zero_copy_only=False).astype(float)  # noqa: E731
    period = raw["period_start"].to_numpy().astype("datetime64[s]").astype(np.int64)
    hour_key = {(c, p): i for i, (c, p) in enumerate(zip(hour["cell_id"].to_pylist(),
                                                         hour["period_start"].to_numpy().astype("datetime64[s]").astype(np.int64)))}
    in_hour = np.array([hour_key.get((c, p - p % 3600), -1) for c, p in zip(raw["cell_id"].to_pylist(), period)])
    out = {"cell_id": raw["cell_id"], "period_start": raw["period_start"]}
    for rule in RULES:
        scores = {}
        for kqi, _ in plan.scores:
            s = col(raw, f"{kqi}_score")
            cols = evidence.get(kqi, ())
            records = np.min([np.nan_to_num(col(raw, c)) for c in cols], axis=0) if cols else np.full(n, np.inf)
            thin = records < M
            if rule.startswith("null"):
                s = np.where(thin, np.nan, s)
            elif rule.startswith("shrink"):
                w = np.where(np.isnan(s), 0.0, np.minimum(records, 1e9))
                prior = np.full(n, np.nan)
                for p in np.unique(period):
                    at = period == p
                    if w[at].sum() > 0:
                        prior[at] = np.nansum(w[at] * np.nan_to_num(s[at])) / w[at].sum()
                shrunk = (records * s + M * prior) / (records + M)
                s = np.where(thin, shrunk, s)
            elif rule.startswith("pool"):
                hs = col(hour, f"{kqi}_score") if f"{kqi}_score" in hour.column_names else np.full(hour.num_rows, np.nan)
                pooled = np.where(in_hour >= 0, hs[np.maximum(in_hour, 0)], np.nan)
                if "0 < n" in rule:  # a quarter-hour with no record at all (an outage) stays unscored
                    pooled = np.where(records > 0, pooled, np.nan)
                s = np.where(thin, pooled, s)
            scores[kqi] = s
        indices = []
        for ix in plan.indices:
            indices.append((weighted([(scores[k], w) for k, w in ix.weights]), dict(plan.cei_weights)[ix.name]))
        out[rule] = pa.array(weighted(indices), mask=np.isnan(weighted(indices)))
    return pa.table(out)


def weighted(parts) -> np.ndarray:
    """The CEI's weighted mean over the parts present (NaN where none is)."""
    num = sum(np.nan_to_num(v) * w for v, w in parts)
    den = sum(np.where(np.isnan(v), 0.0, w) for v, w in parts)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)


def values_of(con, sql: str) -> np.ndarray:
    """The query's one column as floats, NULL as NaN."""
    return con.sql(sql).to_arrow_table().column(0).to_numpy().astype(float)


def separation(ws) -> list[dict]:
    import h3

    from opencem.simulate.truth import connect_with_truth

    con = connect_with_truth(ws.lake, ws.truth_dir)
    con.execute("SET TimeZone = 'UTC'")
    con.create_function("parent_at", lambda h, r: h3.cell_to_parent(h, r) if h3.get_resolution(h) > r else h,
                        ["VARCHAR", "INTEGER"], "VARCHAR")
    con.create_function("ring1", lambda h: h3.grid_disk(h, 1), ["VARCHAR"], "VARCHAR[]")
    # A site's grid as the cubes place it: the ancestor of its finest cell (opencem.geo).
    con.create_function("grid_at", lambda y, x, r: h3.cell_to_parent(h3.latlng_to_cell(y, x, 15), r),
                        ["DOUBLE", "DOUBLE", "INTEGER"], "VARCHAR")
    con.execute(TOUCHED_CELLS)
    rows = []
    for cube, (dim, grain_s, res) in CUBES.items():
        con.execute(f"CREATE OR REPLACE TEMP TABLE hit AS {touched(con, cube, dim, grain_s, res)}")
        types = [r[0] for r in con.execute("SELECT DISTINCT fault_type FROM hit ORDER BY 1").fetchall()]
        types = [t for t in types if t != "neighbour"]
        if dim in ("grid", "site_grid"):
            # A touched grid's ring of neighbours is neither faulted nor healthy: a located
            # session of a faulty cell can sit in the next H3 cell (up to 200 m of error).
            con.execute("""INSERT INTO hit SELECT DISTINCT 'neighbour', unnest(ring1(k)), period_start FROM hit""")
        healthy = values_of(con, f"""SELECT t.cei FROM {cube} t ANTI JOIN hit h
                                  ON t.{dim} = h.k AND t.period_start = h.period_start
                                  WHERE t.cei IS NOT NULL""")
        for fault in types:
            values = values_of(con, f"""SELECT t.cei FROM {cube} t JOIN (SELECT DISTINCT k, period_start FROM hit
                                  WHERE fault_type = '{fault}') h ON t.{dim} = h.k AND t.period_start = h.period_start""")
            scored = values[~np.isnan(values)]
            rows.append({"cube": cube, "fault_type": fault, "auc": auc(scored, healthy),
                         "faulted_units": int(len(values)), "scored": float(len(scored) / len(values)) if len(values) else 0.0,
                         "healthy_units": int(len(healthy))})
    # The evidence rules on cell x 15 min, scored against the same labels.
    con.register("rules", rule_tables(ws))
    con.execute(f"CREATE OR REPLACE TEMP TABLE hit AS {touched(con, 'cube_cell_15min', 'cell_id', 900)}")
    for rule in RULES:
        healthy = values_of(con, f"""SELECT t."{rule}" FROM rules t ANTI JOIN hit h ON t.cell_id = h.k
                                    AND t.period_start = h.period_start WHERE t."{rule}" IS NOT NULL""")
        for fault in [r[0] for r in con.execute("SELECT DISTINCT fault_type FROM hit ORDER BY 1").fetchall()]:
            values = values_of(con, f"""SELECT t."{rule}" FROM rules t JOIN (SELECT DISTINCT k, period_start FROM hit
                                       WHERE fault_type = '{fault}') h ON t.cell_id = h.k AND t.period_start = h.period_start""")
            scored = values[~np.isnan(values)]
            rows.append({"cube": "cell x 15min", "rule": rule, "fault_type": fault, "auc": auc(scored, healthy),
                         "faulted_units": int(len(values)), "scored": float(len(scored) / len(values)) if len(values) else 0.0,
                         "healthy_units": int(len(healthy))})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    operator_args(ap)
    ap.add_argument("--workdir", type=Path, default=HERE / "out" / "cei_separation")
    args = ap.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    ws = build(args.workdir, args)
    rows = separation(ws)
    (args.workdir / "results.json").write_text(json.dumps(rows, indent=1))
    print(f"CEI separation, {args.subscribers:,} subscribers x {args.days} days, seed {args.seed}, "
          f"fault rate {args.fault_rate:g} "
          "(ROC AUC of faulted vs healthy units; baseline: a coin, 0.50)")
    print(f"{'cube':22} {'fault type':22} {'AUC':>5} {'vs coin':>8} {'faulted':>8} {'scored':>7} {'healthy':>8}")
    for r in [r for r in rows if "rule" not in r]:
        print(f"{r['cube']:22} {r['fault_type']:22} {r['auc']:5.2f} {r['auc'] / 0.5:7.2f}x {r['faulted_units']:8,} "
              f"{r['scored']:7.0%} {r['healthy_units']:8,}")
    by_rule = [r for r in rows if "rule" in r]
    faults = list(dict.fromkeys(r["fault_type"] for r in by_rule))
    print("\nEvidence rules on cell x 15 min (AUC per fault type; the same labels and lake):")
    print(f"{'rule':52} " + " ".join(f"{f[:11]:>11}" for f in faults))
    for rule in RULES:
        got = {r["fault_type"]: r["auc"] for r in by_rule if r["rule"] == rule}
        print(f"{rule:52} " + " ".join(f"{got.get(f, float('nan')):11.2f}" for f in faults))


if __name__ == "__main__":
    main()
