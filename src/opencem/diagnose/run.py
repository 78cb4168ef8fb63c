"""The use cases the faces call: diagnose a period, one customer at a time (the self-check),
train the learned layer, and where the workspace keeps rules and model.

A workspace may hold its own rules in ``WORKSPACE/diagnose/rules.yaml`` (else the library's)
and its trained model in ``WORKSPACE/diagnose/model/``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pyarrow as pa

from ..errors import OpencemError
from . import decide, evidence, learned, problems
from .causes import CAUSES
from .rules import RuleSet, load_rules


class DiagnoseError(OpencemError):
    """A diagnosis that cannot be made as asked (no data, a time outside the lake)."""


def rules_file(root: Path) -> Path | None:
    path = Path(root) / "diagnose" / "rules.yaml"
    return path if path.is_file() else None


def model_dir(root: Path) -> Path:
    return Path(root) / "diagnose" / "model"


@dataclass
class Setup:
    rules: RuleSet
    model: learned.Model | None


def setup(root: Path, rules_path: Path | None = None) -> Setup:
    rules = load_rules(rules_path or rules_file(root), evidence.empty_feature_types())
    return Setup(rules, learned.load_model(model_dir(root)))


def lake_span(con) -> tuple[datetime, datetime] | None:
    """The whole UTC days the lake's session records cover, or None when it has none."""
    row = con.execute("""SELECT min(t), max(t) FROM (SELECT min(start_time) AS t FROM xdr_voice
        UNION ALL SELECT max(start_time) FROM xdr_voice UNION ALL SELECT min(start_time) FROM xdr_data
        UNION ALL SELECT max(start_time) FROM xdr_data UNION ALL SELECT min(start_time) FROM broadband_sessions
        UNION ALL SELECT max(start_time) FROM broadband_sessions)""").fetchone()
    if row[0] is None:
        return None
    lo = row[0].astimezone(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    hi = row[1].astimezone(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)
    return lo, hi


def _window(con, start: datetime | None, end: datetime | None, margin: timedelta) -> evidence.Window:
    span = lake_span(con)
    if span is None:
        raise DiagnoseError("the lake holds no session records to diagnose; load some with `opencem ingest`")
    start = start or span[0]
    end = end or span[1]
    if end <= span[0] or start >= span[1]:
        raise DiagnoseError(f"{start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} UTC is outside the lake, which holds "
                            f"{span[0]:%Y-%m-%d} to {(span[1] - timedelta(days=1)):%Y-%m-%d}")
    if end <= start:
        raise DiagnoseError("the end of the period must come after its start")
    return evidence.window_around(start, end, span[0], span[1], margin)


def evidence_of(lake, rules: RuleSet, start: datetime | None = None, end: datetime | None = None,
                subscriber: str | None = None, margin: timedelta = timedelta(days=2)) -> pa.Table:
    from ..engines.duckdb import connect

    con = connect(lake)
    try:
        return evidence.build(con, _window(con, start, end, margin), rules.poor_sql, subscriber)
    finally:
        con.close()


def diagnose(lake, run: Setup, start: datetime | None = None, end: datetime | None = None) -> pa.Table:
    """Every poor case from ``start`` to ``end`` (default: the whole lake) and its conclusion."""
    return decide.conclude(evidence_of(lake, run.rules, start, end), run.rules, run.model)


def find_problems(conclusions: pa.Table) -> tuple[pa.Table, pa.Table]:
    return problems.cluster(conclusions)


def train(lake, run: Setup, labels: pa.Table, threads: int = 1) -> learned.Model:
    """Fit the learned layer on the lake's cases labelled by ``labels`` (subscriber_id, service,
    hour_start, fault_type as the cause)."""
    import duckdb

    ev = evidence_of(lake, run.rules)
    con = duckdb.connect()
    con.register("ev", ev)
    con.register("labels", labels)
    both = con.sql("SELECT ev.*, l.fault_type AS label FROM ev JOIN labels l USING (subscriber_id, service, hour_start)"
                   ).to_arrow_table()
    con.register("labelled", both)
    rule_index = np.asarray(con.sql(f"SELECT {run.rules.case_sql()} AS r FROM labelled").fetchnumpy()["r"])
    known = np.isin(both.column("label").to_numpy(zero_copy_only=False).astype(str), list(CAUSES))
    both = both.filter(pa.array(known))
    return learned.train(both, rule_index[known], both.column("label").to_numpy(zero_copy_only=False),
                         threads=threads)


def self_check(lake, run: Setup, subscriber: str, at: datetime | None = None,
               lookback: timedelta = timedelta(hours=24)) -> dict:
    """The customer's own diagnosis: their poor cases in the ``lookback`` before ``at`` (default:
    the lake's end), the latest first, whether the cause is theirs to fix and what to tell them."""
    from ..engines.duckdb import connect

    con = connect(lake)
    try:
        known = con.execute("SELECT count(*) FROM subscribers WHERE subscriber_id = ?", [subscriber]).fetchone()[0]
        span = lake_span(con)
    finally:
        con.close()
    if not known:
        raise DiagnoseError(f"subscriber {subscriber} is not in the lake's subscribers")
    if span is None:
        raise DiagnoseError("the lake holds no session records to diagnose; load some with `opencem ingest`")
    at = at or span[1] - timedelta(seconds=1)
    if at <= span[0] or at - lookback >= span[1]:
        raise DiagnoseError(f"{at:%Y-%m-%d %H:%M} UTC is outside the lake, which holds {span[0]:%Y-%m-%d} to "
                            f"{(span[1] - timedelta(days=1)):%Y-%m-%d}")
    end = (at.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1))
    ev = evidence_of(lake, run.rules, max(end - lookback, span[0]), min(end, span[1]), subscriber, timedelta(days=1))
    cases = decide.conclude(ev, run.rules, run.model)
    rows = cases.sort_by([("hour_start", "descending")]).to_pylist()  # one customer's few cases
    if not rows:
        return {"subscriber_id": subscriber, "at": at.isoformat(), "poor_cases": 0, "side": "none",
                "customer_text": "We found no poor experience on your line in the last "
                                 f"{int(lookback.total_seconds() // 3600)} hours.", "cases": []}
    worst = max(rows, key=lambda r: (r["domain"] != "none", r["confidence"]))
    cause = CAUSES[worst["cause"]]
    side = "user" if cause.user_side and cause.domain != "none" else "network" if cause.domain != "none" else "none"
    return {"subscriber_id": subscriber, "at": at.isoformat(), "poor_cases": len(rows), "side": side,
            "domain": worst["domain"], "cause": worst["cause"], "cause_words": cause.words,
            "location_type": worst["location_type"], "location_id": worst["location_id"],
            "confidence": worst["confidence"], "decided_by": worst["decided_by"], "evidence": worst["evidence"],
            "customer_text": cause.fix,
            "cases": [{k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in r.items()
                       if k in decide.OUTPUT_COLUMNS} for r in rows]}
