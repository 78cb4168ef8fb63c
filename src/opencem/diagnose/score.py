"""Scoring conclusions against labelled cases handed in as plain tables (the twin's truth, read
by the command line through the simulator's loader; later resolved work orders).

Pure functions of Arrow tables: nothing here opens a truth area. Labelled cases carry
``subscriber_id, service, hour_start, domain, fault_type, location_type, location_id``
(``fault_type`` is the cause code: a fault type, or the ordinary condition of a none case);
faults carry ``fault_id, fault_type, domain, location_type, location_id``.

The figures:
- coverage: labelled cases the diagnosis found, missed, and found beyond the labels;
- fault-domain accuracy over labelled cases (a missed case counts as wrong), macro-F1 over
  the five domains, per-cause precision/recall/F1, the domain confusion matrix;
- location AC@1 and AC@3 over fault cases: the true (type, id) first, or among the first three;
- per region (of the case's serving cell) and pooled;
- problems: the share of true network and cloud faults whose diagnosed cases fall into exactly
  one problem, at the fault's own location.
"""

from __future__ import annotations

import pyarrow as pa

from .causes import DOMAINS

MIN_SHARE_IN_PROBLEM = 0.05  # a problem holding under 5 % of a fault's cases is noise around it


def _con(**tables: pa.Table):
    import duckdb

    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    for name, table in tables.items():
        con.register(name, table)
    return con


def joined(conclusions: pa.Table, labels: pa.Table) -> pa.Table:
    """Each labelled case beside its conclusion (null where the diagnosis found no case)."""
    con = _con(c=conclusions, t=labels)
    extra = ", ".join(f"c.location_{k}_type, c.location_{k}_id" for k in (2, 3)
                      if f"location_{k}_type" in conclusions.column_names)
    region = "c.region" if "region" in conclusions.column_names else "NULL"
    return con.sql(f"""
        SELECT t.subscriber_id, t.service, t.hour_start, t.domain AS true_domain, t.fault_type AS true_cause,
               t.location_type AS true_location_type, t.location_id AS true_location_id,
               c.domain, c.cause, c.location_type, c.location_id, c.decided_by, {region} AS region
               {', ' + extra if extra else ''}
        FROM t LEFT JOIN c USING (subscriber_id, service, hour_start)""").to_arrow_table()


def figures(conclusions: pa.Table, labels: pa.Table) -> dict:
    """Accuracy, macro-F1, per-cause P/R/F1, confusion and location accuracy (pooled and per region)."""
    j = joined(conclusions, labels)
    con = _con(j=j, c=conclusions, t=labels)
    found, missed = con.execute("SELECT count(domain), count(*) - count(domain) FROM j").fetchone()
    extra = con.execute("SELECT count(*) FROM c ANTI JOIN t USING (subscriber_id, service, hour_start)").fetchone()[0]
    out = {"labelled_cases": found + missed, "found": found, "missed": missed, "beyond_labels": extra}
    out["pooled"] = _block(con, "TRUE")
    regions = [r[0] for r in con.execute("SELECT DISTINCT region FROM j WHERE region IS NOT NULL ORDER BY 1").fetchall()]
    out["regions"] = {r: _block(con, f"region = '{r}'") for r in regions}
    out["per_cause"] = [dict(zip(("cause", "cases", "predicted", "precision", "recall", "f1"), row)) for row in
                        con.execute("""
        WITH k AS (SELECT true_cause AS cause FROM j UNION SELECT cause FROM j WHERE cause IS NOT NULL),
             s AS (SELECT k.cause, count(*) FILTER (j.true_cause = k.cause) AS cases,
                          count(*) FILTER (j.cause = k.cause) AS predicted,
                          count(*) FILTER (j.cause = k.cause AND j.true_cause = k.cause) AS hits
                   FROM k, j GROUP BY ALL)
        SELECT cause, cases, predicted, hits / nullif(predicted, 0), hits / nullif(cases, 0),
               2 * hits / nullif(cases + predicted, 0) FROM s ORDER BY cases DESC""").fetchall()]
    out["confusion"] = {"domains": list(DOMAINS), "rows_true_columns_diagnosed": [
        [con.execute(f"SELECT count(*) FROM j WHERE true_domain = '{a}' AND coalesce(domain, 'none') = '{b}'")
         .fetchone()[0] for b in DOMAINS] for a in DOMAINS]}
    return out


def _block(con, where: str) -> dict:
    acc, n = con.execute(f"SELECT avg((coalesce(domain, '') = true_domain)::INT), count(*) FROM j WHERE {where}").fetchone()
    cause_acc = con.execute(f"SELECT avg((coalesce(cause, '') = true_cause)::INT) FROM j WHERE {where}").fetchone()[0]
    f1s = []
    for d in DOMAINS:
        tp, pred, true = con.execute(f"""SELECT count(*) FILTER (domain = '{d}' AND true_domain = '{d}'),
            count(*) FILTER (domain = '{d}'), count(*) FILTER (true_domain = '{d}') FROM j WHERE {where}""").fetchone()
        if true or pred:
            f1s.append(2 * tp / (true + pred))
    hit = "(location_type = true_location_type AND location_id = true_location_id)"
    top3 = hit + "".join(f" OR (location_{k}_type = true_location_type AND location_{k}_id = true_location_id)"
                         for k in (2, 3) if _has(con, f"location_{k}_type"))
    ac1, ac3, faults = con.execute(f"""SELECT avg(coalesce({hit}, false)::INT), avg(coalesce({top3}, false)::INT),
        count(*) FROM j WHERE true_domain <> 'none' AND {where}""").fetchone()
    net1, net3, network = con.execute(f"""SELECT avg(coalesce({hit}, false)::INT), avg(coalesce({top3}, false)::INT),
        count(*) FROM j WHERE true_domain IN ('pipe', 'cloud') AND {where}""").fetchone()
    return {"cases": n, "domain_accuracy": acc, "cause_accuracy": cause_acc,
            "macro_f1_domains": sum(f1s) / len(f1s) if f1s else None,
            "location_ac1": ac1, "location_ac3": ac3, "fault_cases": faults,
            "network_location_ac1": net1, "network_location_ac3": net3, "network_fault_cases": network}


def _has(con, column: str) -> bool:
    return column in [r[0] for r in con.execute("DESCRIBE j").fetchall()]


def problem_figures(membership: pa.Table, problems: pa.Table, labels: pa.Table, faults: pa.Table) -> dict:
    """How many true network and cloud faults are exactly one problem at their own location."""
    con = _con(m=membership, p=problems, t=labels, f=faults)
    rows = con.execute(f"""
        WITH fc AS (SELECT f.fault_id, f.location_type, f.location_id, m.problem_id
                    FROM f JOIN t ON t.fault_id = f.fault_id
                    JOIN m USING (subscriber_id, service, hour_start)
                    WHERE f.domain IN ('pipe', 'cloud')),
             per AS (SELECT fault_id, problem_id, count(*) AS cases,
                            count(*) / sum(count(*)) OVER (PARTITION BY fault_id) AS share FROM fc GROUP BY fault_id, problem_id),
             kept AS (SELECT per.*, p.location_type, p.location_id FROM per JOIN p USING (problem_id)
                      WHERE share >= {MIN_SHARE_IN_PROBLEM})
        SELECT f.fault_id, f.fault_type, count(k.problem_id) AS problems,
               count(*) FILTER (k.location_type = f.location_type AND k.location_id = f.location_id) AS at_location
        FROM f LEFT JOIN kept k USING (fault_id)
        WHERE f.domain IN ('pipe', 'cloud') AND f.fault_id IN (SELECT DISTINCT fault_id FROM t WHERE fault_id IS NOT NULL)
        GROUP BY f.fault_id, f.fault_type""").fetchall()
    one = sum(1 for _, _, n, at in rows if n == 1 and at == 1)
    return {"network_faults_with_cases": len(rows), "in_exactly_one_problem": one,
            "share": one / len(rows) if rows else None,
            "problems": problems.num_rows, "min_share_in_problem": MIN_SHARE_IN_PROBLEM}
