"""The standard library against the simulator's ground truth: whatever was faulty must score
clearly worse than the rest, at the level the fault was injected."""

from __future__ import annotations

import shutil
from datetime import timedelta

import numpy as np
import pytest

from opencem.simulate.truth import connect_with_truth
from opencem.indicators.catalog import load_catalog
from opencem.indicators.evaluate import evaluate, run_plan
from opencem.indicators.plan import compile_cube
from opencem.indicators.spec import Cube
from opencem.workspace import Workspace


@pytest.fixture(scope="module")
def evaluated(lake, truth_dir, tmp_path_factory):
    ws = Workspace(tmp_path_factory.mktemp("gt"))
    shutil.copytree(lake.root, ws.root / "lake")
    cat = load_catalog(ws.tables())
    evaluate(ws.lake, cat, only=["cube_cell_15min", "cube_subscriber_day", "cube_device_model_day"])
    con = connect_with_truth(ws.lake, truth_dir)
    return ws, cat, con


def faults(con, fault_type: str) -> list[tuple]:
    return con.execute("SELECT location_id, start_time, end_time FROM truth.faults WHERE fault_type = ?",
                       [fault_type]).fetchall()


@pytest.mark.parametrize("fault_type", ["cell_outage", "congestion", "interference"])
def test_faulty_cells_rank_among_the_worst_during_the_fault(evaluated, fault_type):
    _, _, con = evaluated
    found = faults(con, fault_type)
    assert found, f"the standard simulation injects a {fault_type}"
    for cell, start, end in found:
        means = dict(con.execute("""SELECT cell_id, avg(cei) FROM cube_cell_15min WHERE period_start >= ?
            AND period_start < ? AND cei IS NOT NULL GROUP BY 1""", [start, end]).fetchall())
        assert len(means) > 30 and cell in means
        others = np.array([v for c, v in means.items() if c != cell])
        # Clearly worse: among the worst tenth of cells over the fault window, and at least
        # five points below the typical cell.
        assert (others < means[cell]).mean() <= 0.1, (fault_type, means[cell], np.sort(others)[:5])
        assert means[cell] < np.median(others) - 5


def test_cells_behind_a_degraded_backhaul_score_worse(evaluated):
    _, _, con = evaluated
    (site, start, end), = faults(con, "backhaul_degradation")
    # over the periods the fault was on (an intermittent one comes and goes)
    rows = con.execute("""SELECT k.site_id = ? AS hit, avg(c.cei) FROM cube_cell_15min c
        JOIN cells k ON k.cell_id = c.cell_id
        WHERE c.period_start IN (SELECT p.period_start FROM truth.fault_periods p JOIN truth.faults f USING (fault_id)
                                 WHERE f.fault_type = 'backhaul_degradation')
        GROUP BY c.cell_id, hit""", [site]).fetchall()
    hit = [v for h, v in rows if h]
    rest = [v for h, v in rows if not h]
    # every cell of the site below the typical cell, and the site's cells well below on average
    # (the transport fault is 30-90 % strong: a 5G cell with headroom suffers least)
    assert hit and max(hit) < np.median(rest) - 5 and np.mean(hit) < np.median(rest) - 10, (hit, np.median(rest))


@pytest.mark.parametrize("fault_type, column", [
    ("volte_off", "voice_index"), ("wrong_apn", "mobile_data_index"), ("data_cap_throttling", "data_speed_score")])
def test_subscribers_with_account_or_device_faults_score_worse(evaluated, fault_type, column):
    _, _, con = evaluated
    hits = faults(con, fault_type)
    assert len(hits) >= 10
    con.execute("CREATE OR REPLACE TEMP TABLE hit AS SELECT * FROM (VALUES " +
                ", ".join("(?, ?::TIMESTAMPTZ, ?::TIMESTAMPTZ)" for _ in hits) + ") t(subscriber_id, s, e)",
                [v for h in hits for v in h])
    # Subscriber-days the fault covered (a data cap is reached part-way through the window).
    hit = con.execute(f"""SELECT {column} FROM cube_subscriber_day c JOIN hit USING (subscriber_id)
        WHERE c.period_start >= date_trunc('day', s) AND c.period_start < e AND {column} IS NOT NULL""").fetchall()
    rest = con.execute(f"""SELECT {column} FROM cube_subscriber_day WHERE subscriber_id NOT IN
        (SELECT subscriber_id FROM hit) AND {column} IS NOT NULL""").fetchall()
    hit, rest = np.array([r[0] for r in hit]), np.array([r[0] for r in rest])
    assert len(hit) >= 10
    # Ranking: a faulty subscriber-day scores below a healthy one most of the time.
    auc = (hit[:, None] < rest[None, :]).mean() + 0.5 * (hit[:, None] == rest[None, :]).mean()
    assert auc > 0.8, (fault_type, auc, hit.mean(), rest.mean())


def test_the_firmware_bug_model_has_the_worst_voice_experience(evaluated):
    _, _, con = evaluated
    (model, *_), = faults(con, "firmware_bug")
    ranked = con.execute("""SELECT device_model, avg(voice_index) AS v FROM cube_device_model_day
        WHERE voice_index IS NOT NULL GROUP BY 1 ORDER BY v""").fetchall()
    assert ranked[0][0] == model, ranked[:3]


def test_the_faulty_program_source_has_the_worst_video_experience(evaluated, lake):
    ws, cat, con = evaluated
    found = con.execute("""SELECT location_id, start_time, end_time FROM truth.faults
                           WHERE fault_type = 'program_source_fault' AND shape <> 'intermittent'""").fetchall()
    assert found
    plan = compile_cube(cat, ws.lake.tables, Cube(dimensions=["program_source"]), "hour",
                        [k for k, v in cat.kpis.items() if v.source == "xdr_video"])
    t = run_plan(ws.lake, plan).to_pylist()
    for source, start, end in found:
        # the hours the fault covered most of (it starts and ends at any minute)
        inside = [r for r in t if start - timedelta(minutes=15) <= r["period_start"] <= end - timedelta(minutes=45)
                  and r["video_index"] is not None]
        per_source = {}
        for r in inside:
            per_source.setdefault(r["program_source"], []).append(r["video_index"])
        worst = min(per_source, key=lambda s: np.mean(per_source[s]))
        assert worst == source, (source, {k: round(float(np.mean(v)), 1) for k, v in per_source.items()})


def test_every_standard_kpi_and_kqi_has_values_on_the_simulated_operator(evaluated):
    ws, cat, con = evaluated
    seen: dict[str, int] = {}
    for table in ("cube_cell_15min", "cube_subscriber_day"):
        columns = [r[0] for r in con.execute(f"DESCRIBE {table}").fetchall()]
        counts = con.execute("SELECT " + ", ".join(f'count("{c}")' for c in columns) + f" FROM {table}").fetchone()
        for c, n in zip(columns, counts):
            seen[c] = seen.get(c, 0) + n
    names = [*cat.kpis, *cat.kqis]
    assert sorted(n for n in names if n not in seen) == []
    # Never non-null on the simulated operator means a broken definition (or simulator);
    # counters the simulator does not produce (E-RAB session time) leave their KPIs null by
    # design. The NR KPIs read the 5G cells' TS 28.552 counters, which the twin reports.
    from opencem.simulate.pm_files import COUNTERS

    unsimulated = {n for n, k in cat.kpis.items() if k.source == "pm_counters"
                   and not cat.checked[n].counters <= set(COUNTERS)}
    assert unsimulated == {"erab_drops_per_session_hour"}
    assert sorted(n for n in names if seen[n] == 0 and n not in unsimulated) == []
