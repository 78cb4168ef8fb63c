"""Conclusions: the rule layer and the learned layer over the evidence table, one row per case
with domain, cause, location, the next candidate locations, a confidence, which layer and
rule or model decided, and the evidence in words with the case's own values.

A first matching rule at the file's ``decide_above`` confidence or more decides; any other
case is the learned layer's (when a model is trained; else the rule's, with its declared
confidence). The learned layer's explanation is the sentence of the first rule naming its cause,
filled with the case's values, so every conclusion reads the same way whoever decided it.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from .causes import CAUSE_CODES, CAUSES, LOCATION_COLUMN
from .learned import Model, matrix
from .rules import RuleSet, template_sql

TOP_LOCATIONS = 3
OUTPUT_COLUMNS = ("subscriber_id", "service", "hour_start", "domain", "cause", "location_type", "location_id",
                  "confidence", "decided_by", "evidence")


def _location_sql(cause: str) -> str:
    """SQL naming the object a cause is located at, for a case of the evidence table."""
    kind = CAUSES[cause].location_type
    if cause == "cell_outage":
        return "coalesce(down_cell_id, cell_id)"
    column = LOCATION_COLUMN[kind]
    return "''" if column is None else f"coalesce(CAST({column} AS VARCHAR), '')"


def conclude(evidence: pa.Table, rules: RuleSet, model: Model | None) -> pa.Table:
    """Every case's conclusion (:data:`OUTPUT_COLUMNS`, then ``rule``, the ranked candidate
    locations ``location_2_*``, ``location_3_*``, and the customer's value ``arpu_monthly``)."""
    import duckdb

    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.register("evidence", evidence)
    ruled = con.sql(f"SELECT {rules.case_sql()} AS rule_index FROM evidence").fetchnumpy()["rule_index"]
    rule_index = np.asarray(ruled, dtype=np.int64)
    n = evidence.num_rows
    # the rule's conclusion, looked up by index (0: no rule held)
    rule_cause = np.array([""] + [r.cause for r in rules.rules], dtype=object)[rule_index]
    rule_conf = np.array([0.0] + [r.confidence for r in rules.rules])[rule_index]
    rule_name = np.array([""] + [r.name for r in rules.rules], dtype=object)[rule_index]
    by_rule = (rule_index > 0) & ((rule_conf >= rules.decide_above) | (model is None))
    cause_index = {c: i for i, c in enumerate(CAUSE_CODES)}
    probs = np.zeros((n, len(CAUSE_CODES)))
    if model is not None and n:
        p = model.probabilities(matrix(evidence, rule_index, model.features))
        known = [c for c in model.classes if c in cause_index]
        probs[:, [cause_index[c] for c in known]] = p[:, [model.classes.index(c) for c in known]]
    # a deciding rule's cause gets its confidence; the model's probabilities share the rest
    rule_cause_index = np.array([cause_index[r.cause] for r in rules.rules] or [0])
    mixed = probs * np.where(by_rule, 1 - rule_conf, 1)[:, None]
    rows = np.flatnonzero(by_rule)
    np.add.at(mixed, (rows, rule_cause_index[rule_index[rows] - 1]), rule_conf[rows])
    if model is None:  # no rule and no model: nothing was found
        mixed[~by_rule, cause_index["ordinary_variation"]] = 1.0
    chosen = mixed.argmax(axis=1)
    cause = np.array(CAUSE_CODES, dtype=object)[chosen]
    if model is not None:
        top = probs[np.arange(n), chosen]
        confidence = np.where(by_rule, rule_conf, model.confidence(top))
        decided_by = np.where(by_rule, "rule:" + rule_name.astype(str), f"model:{model.name}")
    else:
        confidence = np.where(by_rule, rule_conf, 0.5)
        decided_by = np.where(by_rule, "rule:" + rule_name.astype(str), "rule:none")
    # objects per cause, and the explanation of the chosen cause with the case's values
    first_rule = {}
    for r in rules.rules:
        first_rule.setdefault(r.cause, r)
    loc_cols = ", ".join(f"{_location_sql(c)} AS \"loc:{c}\"" for c in CAUSE_CODES)
    con.register("chosen", pa.table({"cause": pa.array(cause.tolist(), pa.string()),
                                     "rule_index": pa.array(rule_index), "by_rule": pa.array(by_rule)}))
    explain = " ".join(f"WHEN '{c}' THEN {template_sql(r.evidence)}" for c, r in first_rule.items())
    rule_sentence = " ".join(f"WHEN {i} THEN {template_sql(r.evidence)}" for i, r in enumerate(rules.rules, 1))
    words = " ".join(f"WHEN '{c}' THEN {_quote(CAUSES[c].words)}" for c in CAUSE_CODES)
    located = con.sql(f"""
        SELECT {loc_cols},
               CASE WHEN k.by_rule THEN CASE k.rule_index {rule_sentence} END
                    ELSE concat('Learned layer: ', CASE k.cause {words} END, '. ',
                                coalesce(CASE k.cause {explain} END, '')) END AS evidence
        FROM evidence e POSITIONAL JOIN chosen k""").to_arrow_table()
    ids = np.column_stack([located.column(f"loc:{c}").to_numpy(zero_copy_only=False).astype(object)
                           for c in CAUSE_CODES]) if n else np.empty((0, len(CAUSE_CODES)), object)
    kinds = np.array([CAUSES[c].location_type for c in CAUSE_CODES], dtype=object)
    ranked = _rank_locations(mixed, kinds, ids)
    out = {
        "subscriber_id": evidence.column("subscriber_id"), "service": evidence.column("service"),
        "hour_start": evidence.column("hour_start"),
        "domain": pa.array([CAUSES[c].domain for c in CAUSE_CODES], pa.string()).take(pa.array(chosen)),
        "cause": pa.array(cause.tolist(), pa.string()),
        "location_type": pa.array(ranked[0][0].tolist(), pa.string()),
        "location_id": pa.array(ranked[0][1].tolist(), pa.string()),
        "confidence": pa.array(np.round(confidence, 3), pa.float32()),
        "decided_by": pa.array(decided_by.tolist(), pa.string()),
        "evidence": located.column("evidence"),
        "rule": pa.array(rule_name.tolist(), pa.string()),
    }
    for k in range(1, TOP_LOCATIONS):
        out[f"location_{k + 1}_type"] = pa.array(ranked[k][0].tolist(), pa.string())
        out[f"location_{k + 1}_id"] = pa.array(ranked[k][1].tolist(), pa.string())
    for extra in ("arpu_monthly", "segment", "region"):
        if extra in evidence.column_names:
            out[extra] = evidence.column(extra)
    return pa.table(out)


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _rank_locations(scores: np.ndarray, kinds: np.ndarray, ids: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """The top distinct (location type, id) per case, by the summed score of the causes naming
    it: loops over the ranks and causes (a few dozen), never over cases."""
    n, width = scores.shape
    order = np.argsort(-scores, axis=1, kind="stable")
    rows = np.arange(n)
    key = np.char.add(np.char.add(kinds[order].astype(str), "\x1f"), ids[rows[:, None], order].astype(str))
    # a location named by several causes sums their scores
    total = np.zeros_like(scores)
    for j in range(width):
        same = key == key[:, j:j + 1]
        total[:, j] = (scores[rows[:, None], order] * same).sum(axis=1)
    taken = np.zeros((n, width), bool)
    out = []
    for _ in range(TOP_LOCATIONS):
        candidate = np.where(taken, -1.0, total)
        best = candidate.argmax(axis=1)
        has = candidate[rows, best] > 0
        pick = key[rows, best]
        taken |= key == pick[:, None]
        kind = np.where(has, kinds[order[rows, best]], "")
        ident = np.where(has, ids[rows, order[rows, best]], "")
        out.append((kind.astype(object), ident.astype(object)))
    return out
