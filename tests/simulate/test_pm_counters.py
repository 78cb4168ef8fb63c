"""The twin's PM counters on the standard operator, as ingested: each cell under its technology's
names, busy-cell magnitudes, the identities of a real cell in every period, and consistency with
the sessions the xDRs carry (docs/simulator.md, "PM counters")."""

from __future__ import annotations

import pytest

from opencem.indicators.catalog import load_catalog
from opencem.indicators.evaluate import run_plan
from opencem.indicators.plan import compile_cube
from opencem.indicators.spec import Cube
from opencem.simulate.pm_files import COUNTERS_BY_TECHNOLOGY

# One row per cell and period with the counters as columns, whichever technology named them.
WIDE = """
CREATE OR REPLACE TEMP TABLE pm_wide AS
SELECT p.cell_id, c.technology, p.period_start,
       max(value) FILTER (counter_name = 'RRC.ConnEstabAtt') AS rrc_att,
       max(value) FILTER (counter_name = 'RRC.ConnEstabSucc') AS rrc_succ,
       max(value) FILTER (counter_name IN ('ERAB.EstabInitAttNbr', 'QF.EstabAttNbr')) AS bearer_att,
       max(value) FILTER (counter_name IN ('ERAB.EstabInitSuccNbr', 'QF.EstabSuccNbr')) AS bearer_succ,
       max(value) FILTER (counter_name IN ('ERAB.RelNbr', 'QF.RelNbr')) AS releases,
       max(value) FILTER (counter_name IN ('ERAB.RelActNbr', 'QF.RelActNbr')) AS drops,
       max(value) FILTER (counter_name IN ('ERAB.RelAbnormalEnbAct', 'QF.RelAbnormalGnbAct')) AS drops_ran,
       max(value) FILTER (counter_name IN ('HO.ExeAtt', 'MM.HoExeIntraFreqReq')) AS ho_att,
       max(value) FILTER (counter_name IN ('HO.ExeSucc', 'MM.HoExeIntraFreqSucc')) AS ho_succ,
       count(*) AS n_counters
FROM pm_counters p JOIN cells c USING (cell_id) GROUP BY ALL"""


@pytest.fixture(scope="module")
def db(truth_db):
    truth_db.execute(WIDE)
    return truth_db


def test_each_cell_reports_its_technologys_names_only(db):
    names = dict(db.execute("""SELECT c.technology, list(DISTINCT p.counter_name ORDER BY p.counter_name)
        FROM pm_counters p JOIN cells c USING (cell_id) GROUP BY 1""").fetchall())
    assert set(names) == {"4G", "5G"}
    assert names["4G"] == sorted(COUNTERS_BY_TECHNOLOGY["4G"]) and names["5G"] == sorted(COUNTERS_BY_TECHNOLOGY["5G"])
    # 5G cells: TS 28.552 QoS flow and MM counters, never an E-RAB or LTE handover counter ...
    assert {"QF.EstabAttNbr", "QF.EstabSuccNbr", "QF.RelActNbr", "MM.HoExeIntraFreqReq"} <= set(names["5G"])
    assert not [n for n in names["5G"] if n.startswith(("ERAB.", "HO."))]
    # ... and 4G cells no QoS flow or MM counter.
    assert not [n for n in names["4G"] if n.startswith(("QF.", "MM."))]
    # Every cell reports every counter of its technology in every period, once.
    assert db.execute("SELECT min(n_counters), max(n_counters) FROM pm_wide").fetchone() == (14, 14)


def test_busy_cells_see_hundreds_to_thousands_of_rrc_setups(db):
    """The documented figure: the busiest 15 minutes of a cell-day has a median of 300 to 3000
    RRC setups over all cells (a tenth of that before the phones' own connections)."""
    p10, p50, p90 = db.execute("""SELECT quantile_cont(v, [0.1, 0.5, 0.9]) FROM (SELECT max(rrc_att) AS v
        FROM pm_wide GROUP BY cell_id, CAST(period_start AS DATE))""").fetchone()[0]
    assert 300 <= p50 <= 3000, (p10, p50, p90)
    assert p90 < 10_000 and p10 > 20
    # Night is quiet, the busy hour is not: the phones' connections follow their use.
    night, busy = db.execute("""WITH h AS (SELECT hour(period_start AT TIME ZONE 'Europe/Rome') AS local_hour, rrc_att
        FROM pm_wide) SELECT sum(rrc_att) FILTER (local_hour BETWEEN 3 AND 4),
        sum(rrc_att) FILTER (local_hour BETWEEN 19 AND 20) FROM h""").fetchone()
    assert 0.05 * busy < night < 0.4 * busy
    # A cell's RRC setups are many times the sampled sessions it carried (about a sixteenth).
    sessions = db.execute("""SELECT (SELECT count(*) FROM xdr_voice) + (SELECT count(*) FROM xdr_data)
        + (SELECT count(*) FROM xdr_video)""").fetchone()[0]
    total = db.execute("SELECT sum(rrc_att) FROM pm_wide").fetchone()[0]
    assert 8 < total / sessions < 40


def test_counter_identities_hold_in_every_cell_and_period(db):
    broken = db.execute("""SELECT count(*) FILTER (NOT (rrc_succ <= rrc_att)),
        count(*) FILTER (NOT (bearer_att <= rrc_succ)), count(*) FILTER (NOT (bearer_succ <= bearer_att)),
        count(*) FILTER (NOT (releases <= bearer_succ)), count(*) FILTER (NOT (drops <= releases)),
        count(*) FILTER (NOT (drops_ran <= drops)), count(*) FILTER (NOT (ho_succ <= ho_att)),
        count(*) FILTER (rrc_att <> floor(rrc_att) OR drops <> floor(drops) OR ho_att <> floor(ho_att)
                         OR least(rrc_succ, bearer_succ, drops_ran, ho_succ) < 0)
        FROM pm_wide""").fetchone()
    assert broken == (0,) * 8
    # Not trivially: setups fail, bearers drop, and not every drop is the RAN's or with data in flight.
    rrc_fail, bearer_fail, drops, ran_drops = db.execute("""SELECT sum(rrc_att - rrc_succ),
        sum(bearer_att - bearer_succ), sum(drops), sum(drops_ran) FROM pm_wide""").fetchone()
    assert rrc_fail > 0 and bearer_fail > 0 and 0 < ran_drops < drops


def test_counters_follow_the_sampled_sessions(db):
    """Every session a probe saw is an RRC connection of its cell and period, and the downlink
    volume counted for throughput is the sessions' own (the background carries none)."""
    fewer = db.execute("""WITH s AS (
            SELECT cell_id, time_bucket(INTERVAL 15 MINUTE, start_time) AS period_start, count(*) AS n FROM (
                SELECT cell_id, start_time FROM xdr_voice UNION ALL SELECT cell_id, start_time FROM xdr_data
                UNION ALL SELECT cell_id, start_time FROM xdr_video) GROUP BY ALL)
        SELECT count(*) FILTER (p.rrc_att < s.n), count(*)
        FROM s JOIN pm_wide p USING (cell_id, period_start)""").fetchone()
    assert fewer[0] == 0 and fewer[1] > 1000
    # kbit: data bytes, video bitrate x play time, voice codec rate x duration, 200 bytes per IoT event
    pm_kbit, xdr_kbit = db.execute("""SELECT
        (SELECT sum(value) FROM pm_counters WHERE counter_name = 'DRB.UEThpVolDl'),
        (SELECT sum(bytes_dl) * 0.008 FROM xdr_data) + (SELECT sum(bitrate_kbps * play_duration_s) FROM xdr_video)
        + (SELECT sum(codec_rate_kbps * duration_s) FROM xdr_voice)
        + (SELECT count(*) * 1.6 FROM iot_events)""").fetchone()
    assert float(pm_kbit) == pytest.approx(float(xdr_kbit), rel=0.01)  # the xDRs round durations and rates


def test_a_cell_that_is_down_for_a_whole_period_reports_no_connections(db):
    rows = db.execute("""SELECT p.rrc_att, p.bearer_att FROM truth.faults f JOIN pm_wide p ON p.cell_id = f.location_id
        AND p.period_start >= f.start_time AND p.period_start + INTERVAL 15 MINUTE <= f.end_time
        WHERE f.fault_type = 'cell_outage'""").fetchall()
    assert rows and all(att == 0 and bearer == 0 for att, bearer in rows)


def test_nr_kpis_have_values_on_nr_cells_and_lte_kpis_on_lte_cells(lake):
    kpis = ["rrc_setup_success_pct", "erab_setup_success_pct", "nr_qos_flow_setup_success_pct",
            "bearer_accessibility_pct", "erab_drop_pct", "nr_qos_flow_drop_pct", "bearer_drop_pct", "ho_success_pct"]
    cat = load_catalog(lake.tables)
    plan = compile_cube(cat, lake.tables, Cube(dimensions=["technology"]), "day", kpis=kpis)
    got = {}
    for row in run_plan(lake, plan).to_pylist():
        got.setdefault(row["technology"], []).append(row)
    assert set(got) == {"4G", "5G"}
    for row in got["5G"]:
        assert row["erab_setup_success_pct"] is None and row["erab_drop_pct"] is None
        assert 97 < row["nr_qos_flow_setup_success_pct"] <= 100 and 95 < row["bearer_accessibility_pct"] <= 100
        assert 0 < row["nr_qos_flow_drop_pct"] < 2 and row["nr_qos_flow_drop_pct"] <= row["bearer_drop_pct"]
        assert 95 < row["ho_success_pct"] <= 100 and 95 < row["rrc_setup_success_pct"] <= 100
    for row in got["4G"]:
        assert row["nr_qos_flow_setup_success_pct"] is None and row["nr_qos_flow_drop_pct"] is None
        assert 97 < row["erab_setup_success_pct"] <= 100 and 0 < row["erab_drop_pct"] <= row["bearer_drop_pct"] < 2
        # The combined KPI is the LTE one where only LTE cells are.
        assert row["bearer_accessibility_pct"] == pytest.approx(
            row["rrc_setup_success_pct"] * row["erab_setup_success_pct"] / 100)
