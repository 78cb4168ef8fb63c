"""Calibrate CEI weights from what customers said: NPS answers or complaints.

Per subscriber, KQI scores are averaged over the evaluated days of the subscriber cube. Within
each index node, non-negative least squares fits the target (NPS × 10, or 100 for a
customer who did not complain and 0 for one who did) on the centred KQI scores; the index
weights are then fitted the same way on the recalibrated indices. Weights are normalised to
sum to 1, with a floor of 1 % each. The fit uses 70 % of the customers; correlations are reported on the other 30 %,
for the hand-set and the calibrated weights alike, so the comparison is honest.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
from scipy import optimize, stats

from ..engines.duckdb import connect
from ..lake import Lake
from ..indicators.catalog import Catalog
from ..indicators.evaluate import EvaluateError

TARGETS = ("nps", "complaints")
CUBE = "cube_subscriber_day"
FLOOR = 0.01


@dataclass
class Calibration:
    target: str
    customers: int
    holdout: int
    weights: dict[str, dict[str, float]]  # index -> KQI -> weight
    index_weights: dict[str, float]
    fit: dict[str, dict[str, float]] = field(default_factory=dict)  # hand|calibrated -> metric -> value

    def fit_table(self) -> pa.Table:
        """The held-out correlations, one row per set of weights (hand-set, calibrated)."""
        metrics = ["pearson", "spearman", *(["auc"] if self.target == "complaints" else [])]
        return pa.Table.from_pylist([{"weights": label, **{m: values.get(m) for m in metrics},
                                      "holdout_customers": self.holdout, "customers": self.customers}
                                     for label, values in self.fit.items()])

    @property
    def better(self) -> bool:
        """Whether the calibrated weights correlate better with the target, on held-out customers,
        than the hand-set ones."""
        hand, fitted = self.fit["hand"]["pearson"], self.fit["calibrated"]["pearson"]
        return bool(np.isfinite(fitted) and (not np.isfinite(hand) or fitted > hand))

    def verdict(self) -> str:
        """One sentence: which weights to keep, and why."""
        hand, fitted = self.fit["hand"]["pearson"], self.fit["calibrated"]["pearson"]
        figures = (f"Pearson {fitted:.3f} calibrated against {hand:.3f} hand-set, on {self.holdout:,} "
                   f"held-out customers")
        if self.better:
            return f"The calibrated weights follow {self.target} better ({figures}): use them."
        return (f"The calibrated weights follow {self.target} no better than the hand-set ones ({figures}): "
                "keep the hand-set weights.")

    def yaml(self, cat: Catalog) -> str:
        """A ``cei:`` section with the calibrated weights, ready for the workspace."""
        lines = [f"# Calibrated by `opencem cei calibrate --target {self.target}` on {self.customers:,} customers.",
                 f"# {self.verdict()}",
                 "cei:", "  mode: replace", f"  poor_below: {cat.cei.poor_below:g}", "  indices:"]
        for node in cat.cei.indices:
            lines.append(f"    - name: {node.name}")
            lines.append(f"      weight: {self.index_weights.get(node.name, node.weight):.3f}")
            if node.poor_below is not None:
                lines.append(f"      poor_below: {node.poor_below:g}")
            kqis = self.weights.get(node.name, node.kqis)
            lines.append("      kqis: {" + ", ".join(f"{k}: {w:.3f}" for k, w in kqis.items()) + "}")
        return "\n".join(lines) + "\n"


def _subscriber_frame(lake: Lake, cat: Catalog, target: str) -> tuple[list[str], np.ndarray, np.ndarray]:
    if CUBE not in lake.tables:
        raise EvaluateError(f"{CUBE} is not in the lake; run `opencem evaluate --cube {CUBE}` first")
    kqis = [k for node in cat.cei.indices for k in node.kqis]
    columns = [c.name for c in lake.tables[CUBE].columns]
    kqis = [k for k in dict.fromkeys(kqis) if f"{k}_score" in columns]
    source = "surveys" if target == "nps" else "complaints"
    if not lake.files(source):
        what = "NPS survey answers" if target == "nps" else "complaints"
        other = "complaints" if target == "nps" else "nps"
        raise EvaluateError(f"there is nothing to calibrate on: the {source} table is empty (no {what} loaded); "
                            f"load {source} or use --target {other}")
    con = connect(lake)
    if target == "nps":
        y_sql = "SELECT subscriber_id, 10.0 * avg(nps_score) AS y FROM surveys GROUP BY 1"
    else:
        y_sql = ("SELECT s.subscriber_id, CASE WHEN c.n IS NULL THEN 100.0 ELSE 0.0 END AS y "
                 "FROM subscribers s LEFT JOIN (SELECT subscriber_id, count(*) AS n FROM complaints GROUP BY 1) c "
                 "USING (subscriber_id)")
    scores = ", ".join(f'avg("{k}_score") AS "{k}"' for k in kqis)
    # Name the cube's key column in full: a name the cube lacks would bind to the outer query
    # (DuckDB joins subqueries laterally) and average every customer into one row, silently.
    t: pa.Table = con.sql(f"SELECT t.y, x.* EXCLUDE (subscriber_id) FROM ({y_sql}) t JOIN "
                          f"(SELECT c.subscriber_id, {scores} FROM {CUBE} c GROUP BY 1) x USING (subscriber_id) "
                          "ORDER BY subscriber_id").to_arrow_table()
    if t.num_rows < 50:
        raise EvaluateError(f"only {t.num_rows} customers have both {target} data and scores in {CUBE}; "
                            "calibration needs at least 50")
    if len(set(t.column("y").to_pylist())) < 2:
        raise EvaluateError(f"every customer has the same {target} value, so there is nothing to calibrate on")
    x = np.column_stack([t.column(k).to_numpy(zero_copy_only=False).astype(float) for k in kqis])
    return kqis, x, t.column("y").to_numpy().astype(float)


def _correlation(fn, x: np.ndarray, y: np.ndarray) -> float:
    """A correlation, NaN (not a SciPy warning) where either side is constant or too short."""
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")
    return float(fn(x, y)[0])


def _nnls(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    xc, yc = x - x.mean(axis=0), y - y.mean()
    w, _ = optimize.nnls(xc, yc)
    return w


def _normalised(w: np.ndarray) -> np.ndarray:
    """Weights summing to 1, none below 1 %: a branch the fit finds no signal in still counts
    a little (definitions need positive weights, and a fault there should still show)."""
    w = np.maximum(w / w.sum(), FLOOR)
    return w / w.sum()


def _index(x: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Weighted mean over the non-missing columns (the CEI's renormalisation)."""
    present = ~np.isnan(x)
    num = np.where(present, x, 0.0) @ weights
    den = present.astype(float) @ weights
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)


def calibrate(lake: Lake, cat: Catalog, target: str = "nps", seed: int = 0) -> Calibration:
    if target not in TARGETS:
        raise EvaluateError(f"unknown target {target!r}; choose nps or complaints")
    if cat.cei is None:
        raise EvaluateError("no cei: section is defined, so there are no weights to calibrate")
    kqis, x, y = _subscriber_frame(lake, cat, target)
    col = {k: i for i, k in enumerate(kqis)}
    rng = np.random.default_rng(seed)
    train = rng.random(len(y)) < 0.7
    seen = ~np.isnan(x[train]).all(axis=0)  # KQIs some training customer has a score for
    means = np.nanmean(np.where(seen, x[train], 0.0), axis=0)
    filled = np.where(np.isnan(x), means, x)

    def cei_of(kqi_w: dict[str, dict[str, float]], index_w: dict[str, float]) -> np.ndarray:
        idx_values, idx_weights = [], []
        for node in cat.cei.indices:
            members = [k for k in kqi_w.get(node.name, node.kqis) if k in col and seen[col[k]]]
            if not members:
                continue
            w = np.array([kqi_w.get(node.name, node.kqis)[k] for k in members])
            idx_values.append(_index(x[:, [col[k] for k in members]], w))
            idx_weights.append(index_w.get(node.name, node.weight))
        return _index(np.column_stack(idx_values), np.array(idx_weights))

    new_kqi: dict[str, dict[str, float]] = {}
    index_cols = []
    for node in cat.cei.indices:
        members = [k for k in node.kqis if k in col and seen[col[k]]]
        if not members:
            continue
        w = _nnls(filled[train][:, [col[k] for k in members]], y[train])
        if w.sum() <= 0:
            w = np.array([node.kqis[k] for k in members], float)
        w = _normalised(w)
        # KQIs without data here keep the floor weight, so the tree keeps its shape.
        new_kqi[node.name] = {k: float(dict(zip(members, w)).get(k, FLOOR)) for k in node.kqis}
        index_cols.append((node.name, _index(filled[:, [col[k] for k in members]], w)))
    iw = _nnls(np.column_stack([v for _, v in index_cols])[train], y[train])
    if iw.sum() <= 0:
        iw = np.array([next(n.weight for n in cat.cei.indices if n.name == name) for name, _ in index_cols])
    new_index = {name: float(v) for (name, _), v in zip(index_cols, _normalised(iw))}
    result = Calibration(target, len(y), int((~train).sum()), new_kqi, new_index)
    for label, cei in (("hand", cei_of({}, {})), ("calibrated", cei_of(new_kqi, new_index))):
        ok = ~train & ~np.isnan(cei)
        metrics = {"pearson": _correlation(stats.pearsonr, cei[ok], y[ok]),
                   "spearman": _correlation(stats.spearmanr, cei[ok], y[ok])}
        if target == "complaints" and 0 < (y[ok] == 0).sum() < ok.sum():
            # AUC of the CEI ranking complainers below the others.
            u = stats.mannwhitneyu(cei[ok][y[ok] > 0], cei[ok][y[ok] == 0]).statistic
            metrics["auc"] = float(u / ((y[ok] > 0).sum() * (y[ok] == 0).sum()))
        result.fit[label] = metrics
    return result
