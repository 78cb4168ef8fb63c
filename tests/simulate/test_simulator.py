"""The digital twin: every table, plausible distributions, faults visible where injected."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest

from opencem.schema import TABLES
from opencem.simulate.config import SimConfig
from opencem.simulate.frame import POLICER_KBPS
from opencem.simulate.run import simulate

EVENT_TABLES = [n for n, t in TABLES.items() if t.domain != "ops"]


@pytest.fixture(scope="module")
def db(truth_db):
    """These tests score the twin against what it injected: the lake plus ``truth.*``."""
    return truth_db


def one(db, sql: str):
    return db.execute(sql).fetchone()


@pytest.mark.parametrize("table", EVENT_TABLES)
def test_every_table_is_populated_and_typed(db, table):
    n = one(db, f"SELECT count(*) FROM {table}")[0]
    assert n > 0, f"{table} is empty"
    names = [c[0] for c in db.execute(f"DESCRIBE {table}").fetchall()]
    assert names == TABLES[table].schema.names


def test_sizes_follow_the_configuration(db):
    assert one(db, "SELECT count(*) FROM subscribers")[0] == 10_000
    # ~3 calls, ~8 data sessions, ~1.2 videos per subscriber-day (lognormal usage, mean ~1)
    per_sub_day = one(db, """SELECT (SELECT count(*) FROM xdr_voice) / 20000,
                                    (SELECT count(*) FROM xdr_data) / 20000,
                                    (SELECT count(*) FROM xdr_video) / 20000""")
    assert 2.0 < per_sub_day[0] < 4.5
    assert 5.5 < per_sub_day[1] < 11
    assert 0.8 < per_sub_day[2] < 1.8
    days = one(db, "SELECT count(DISTINCT start_time::DATE) FROM xdr_data")[0]
    assert days == 2


def test_radio_conditions_are_plausible_and_fall_with_quality(db):
    p5, p50, p95 = one(db, "SELECT quantile_cont(rsrp_dbm, [0.05, 0.5, 0.95]) FROM xdr_data")[0]
    assert -125 < p5 < -100 and -105 < p50 < -80 and -85 < p95 < -55
    # Throughput rises with SINR (the radio model, not a constant).
    low, high = one(db, """SELECT median(throughput_dl_kbps) FILTER (sinr_db < 0 AND app = 'web_browsing'),
                                  median(throughput_dl_kbps) FILTER (sinr_db > 15 AND app = 'web_browsing')
                           FROM xdr_data""")
    assert high > 2 * low


def test_traffic_has_a_diurnal_pattern(db):
    night, busy = one(db, """SELECT count(*) FILTER (hour(start_time) BETWEEN 2 AND 4),
                                    count(*) FILTER (hour(start_time) BETWEEN 19 AND 21)
                             FROM xdr_data""")
    assert busy > 4 * night


def test_voice_kpis_are_in_operator_ranges(db):
    success, drop, setup_ms = one(db, """
        SELECT avg((sip_cause_code NOT IN (500, 503, 504, 408))::INT),
               avg(dropped::INT) FILTER (setup_success),
               median(setup_time_ms) FILTER (setup_success AND voice_bearer = 'VoLTE')
        FROM xdr_voice""")
    assert 0.95 < success < 0.999
    assert 0.002 < drop < 0.03
    assert 1000 < setup_ms < 2500


def test_value_differs_by_segment(db):
    arpu = dict(db.execute("SELECT segment, avg(arpu_monthly) FROM subscribers GROUP BY 1").fetchall())
    assert arpu["premium"] > arpu["postpaid"] > arpu["prepaid"]
    shares = dict(db.execute("SELECT segment, count(*) / 10000 FROM subscribers GROUP BY 1").fetchall())
    assert 0.3 < shares["prepaid"] < 0.4


def test_cell_outage_moves_traffic_off_the_cell_and_alarms_late_if_at_all(db):
    # A constant outage of the whole cell: no session on it, unavailable for its whole window
    # (faults start and end at any minute, so the counter covers parts of periods).
    cell, start, end = one(db, """SELECT location_id, start_time, end_time FROM truth.faults
                                  WHERE fault_type = 'cell_outage' AND shape = 'constant' AND reach = 1
                                  ORDER BY fault_id LIMIT 1""")
    during = one(db, f"""SELECT count(*) FROM xdr_data WHERE cell_id = '{cell}'
                         AND start_time >= '{start}' AND start_time < '{end}'""")[0]
    assert during == 0
    unavailable = one(db, f"""SELECT sum(value) FROM pm_counters WHERE cell_id = '{cell}'
                              AND counter_name = 'RRU.CellUnavailableTime'""")[0]
    hours = (end - start).total_seconds()
    assert unavailable == pytest.approx(hours, abs=1)
    # Every outage: unavailable no longer than its window, and only in periods it was on.
    rows = db.execute("""
        SELECT f.fault_id, epoch(f.end_time) - epoch(f.start_time),
               sum(p.value), sum(p.value) FILTER (fp.period_start IS NULL)
        FROM truth.faults f JOIN pm_counters p ON p.cell_id = f.location_id
         AND p.counter_name = 'RRU.CellUnavailableTime' AND p.value > 0
        LEFT JOIN truth.fault_periods fp ON fp.fault_id = f.fault_id AND fp.period_start = p.period_start
        WHERE f.fault_type = 'cell_outage' GROUP BY ALL""").fetchall()
    assert rows and all(total <= window + 1 and not outside for _, window, total, outside in rows), rows
    # FM is imperfect (docs/simulator.md): a silent outage raises no alarm, a flapping one
    # several; the first is raised 10 s to 20 min after the outage began, never before.
    first, early = one(db, f"""SELECT min(raised_at) FILTER (raised_at >= '{start}'),
                                      count(*) FILTER (raised_at < '{start}' AND raised_at > '{start}'::TIMESTAMPTZ
                                                       - INTERVAL 30 MINUTE)
                               FROM alarms WHERE cell_id = '{cell}' AND probable_cause = 'cell-unavailable'
                                 AND raised_at <= '{end}'""")
    assert early == 0
    if first is not None:
        assert 10 <= (first - start).total_seconds() <= 20 * 60


def test_pipe_faults_degrade_their_cells_in_their_window(db):
    # Congestion: PRB load (from PM counters: a probe does not see it, so xDRs leave it
    # empty) at the ceiling inside the window, normal outside.
    assert one(db, "SELECT count(prb_load_pct) FROM xdr_data")[0] == 0
    # (the periods it was on: an intermittent congestion comes and goes)
    rows = db.execute("""
        SELECT g.location_id,
               avg(p.value) FILTER (fp.period_start IS NOT NULL),
               avg(p.value) FILTER (p.period_start + INTERVAL 15 MINUTE <= g.start_time OR p.period_start >= g.end_time)
        FROM truth.faults g JOIN pm_counters p ON p.cell_id = g.location_id AND p.counter_name = 'RRU.PrbTotDl'
        LEFT JOIN truth.fault_periods fp ON fp.fault_id = g.fault_id AND fp.period_start = p.period_start
        WHERE g.fault_type = 'congestion' GROUP BY 1""").fetchall()
    assert rows
    for _, inside, outside in rows:
        if inside is not None:
            assert inside > 90 and outside < 70
    # Interference: SINR clearly worse for similar RSRP.
    rows = db.execute("""
        SELECT avg(d.sinr_db) FILTER (d.start_time >= g.start_time AND d.start_time < g.end_time),
               avg(d.sinr_db) FILTER (d.start_time < g.start_time OR d.start_time >= g.end_time)
        FROM truth.faults g JOIN xdr_data d ON d.cell_id = g.location_id
        WHERE g.fault_type = 'interference' GROUP BY g.fault_id""").fetchall()
    for inside, outside in rows:
        assert inside < outside - 5


def test_cloud_faults_hurt_video_from_that_node_only_in_window(db):
    inside, outside = one(db, """
        SELECT avg(v.stall_time_ms / (v.play_duration_s * 1000 + v.stall_time_ms))
                   FILTER (v.start_time >= g.start_time AND v.start_time < g.end_time),
               avg(v.stall_time_ms / (v.play_duration_s * 1000 + v.stall_time_ms))
                   FILTER (v.start_time < g.start_time OR v.start_time >= g.end_time)
        FROM truth.faults g JOIN xdr_video v ON v.cdn_node = g.location_id
        WHERE g.fault_type = 'cdn_degradation' AND v.start_success""")
    # a CDN fault reaches only part of a node's sessions (20-60 %), over ordinary stalls of 1-3 %
    assert inside > outside
    slow_in, slow_out = one(db, """
        SELECT avg(v.initial_buffering_ms) FILTER (v.start_time >= g.start_time AND v.start_time < g.end_time),
               avg(v.initial_buffering_ms) FILTER (v.start_time < g.start_time OR v.start_time >= g.end_time)
        FROM truth.faults g JOIN xdr_video v ON v.cdn_node = g.location_id
        WHERE g.fault_type = 'cdn_degradation' AND v.start_success""")
    assert slow_in > slow_out + 300  # seconds of extra buffering on the sessions it reaches


def test_device_and_account_causes_show_on_their_subscribers(db):
    fw_model, = one(db, "SELECT location_id FROM truth.faults WHERE fault_type = 'firmware_bug'")
    bad, good = one(db, f"""
        SELECT avg(v.dropped::INT) FILTER (s.device_firmware = (SELECT max(device_firmware)
                   FROM subscribers WHERE device_model = '{fw_model}') AND s.device_model = '{fw_model}'),
               avg(v.dropped::INT) FILTER (s.device_model <> '{fw_model}')
        FROM xdr_voice v JOIN subscribers s USING (subscriber_id) WHERE v.setup_success""")
    assert bad > 1.8 * good  # the defect drops calls 2-3 times as often, not 30 times
    csfb = one(db, """SELECT avg((voice_bearer = 'CSFB')::INT) FROM xdr_voice v JOIN truth.faults g
                      ON g.location_id = v.subscriber_id WHERE g.fault_type = 'volte_off'""")[0]
    assert csfb == 1.0
    apn_ok = one(db, """SELECT count(*) FILTER (http_status <> 0) FROM xdr_data d JOIN truth.faults g
                        ON g.location_id = d.subscriber_id WHERE g.fault_type = 'wrong_apn'""")[0]
    assert apn_ok == 0
    throttled = one(db, """SELECT max(throughput_dl_kbps) FROM xdr_data d JOIN truth.faults g
                           ON g.location_id = d.subscriber_id AND d.start_time >= g.start_time
                           WHERE g.fault_type = 'data_cap_throttling'""")[0]
    assert throttled <= POLICER_KBPS.max()  # the fastest policer, below it by TCP over the bucket
    # BSS logs each suspension as a dated status change (within 30 minutes of it, or not in
    # this window's export), while the snapshot, dated the first day, shows none of them.
    suspensions, logged, shown = one(db, """
        SELECT count(DISTINCT g.fault_id),
               count(DISTINCT g.fault_id) FILTER (e.event_time BETWEEN g.start_time
                                                  AND g.start_time + INTERVAL 30 MINUTE),
               count(DISTINCT g.fault_id) FILTER (s.status = 'suspended')
        FROM truth.faults g JOIN subscribers s ON s.subscriber_id = g.location_id
        LEFT JOIN subscriber_events e ON e.subscriber_id = g.location_id
             AND e.event_type = 'status_change' AND e.new_value = 'suspended'
        WHERE g.fault_type = 'suspension'
          AND g.start_time + INTERVAL 30 MINUTE < (SELECT max(end_time) FROM truth.faults)""")
    assert suspensions > 0 and logged == suspensions and shown == 0


def test_truth_covers_cloud_pipe_device_and_account(db):
    domains = {r[0] for r in db.execute("SELECT DISTINCT domain FROM truth.faults").fetchall()}
    assert domains == {"cloud", "pipe", "device", "account"}
    types = {r[0] for r in db.execute("SELECT DISTINCT fault_type FROM truth.faults").fetchall()}
    assert {"cell_outage", "coverage_hole", "interference", "congestion", "backhaul_degradation",
            "core_degradation", "cdn_degradation", "program_source_fault", "firmware_bug",
            "volte_off", "wrong_apn", "data_cap_throttling", "suspension"} <= types


def test_customers_react_to_experience(db):
    # Complaints: about 0.1-0.3 % of the base a day (a real operator's order), more where
    # experience was bad: a customer-day with a voice complaint had more dropped calls.
    per_day = one(db, """SELECT count(*) / (SELECT count(*) FROM subscribers) / 2 FROM complaints""")[0]
    assert 0.0005 < per_day < 0.004, per_day
    drops = dict(db.execute("""
        WITH daily AS (SELECT subscriber_id, start_time::DATE AS day, sum(dropped::INT) AS drops
                       FROM xdr_voice GROUP BY ALL),
             c AS (SELECT DISTINCT subscriber_id, created_at::DATE AS day FROM complaints
                   WHERE category = 'voice')
        SELECT c.subscriber_id IS NOT NULL AS complained, avg(drops)
        FROM daily LEFT JOIN c USING (subscriber_id, day) GROUP BY 1""").fetchall())
    assert drops[True] > 3 * drops[False]
    # Churners had worse experience than stayers; NPS falls with complaints.
    churn_c, churn_n = one(db, """
        SELECT avg((ch.subscriber_id IS NOT NULL)::INT) FILTER (c.n > 0),
               avg((ch.subscriber_id IS NOT NULL)::INT) FILTER (c.n IS NULL)
        FROM subscribers s LEFT JOIN (SELECT subscriber_id, count(*) n FROM complaints GROUP BY 1) c
             USING (subscriber_id) LEFT JOIN churn_events ch USING (subscriber_id)""")
    assert churn_c > 1.5 * churn_n
    # NPS falls with the experience respondents had (failed or dropped calls, failed data).
    nps_bad, nps_good = one(db, """
        WITH bad AS (SELECT subscriber_id FROM xdr_voice WHERE dropped OR sip_cause_code IN (500, 503, 504, 408)
                     UNION SELECT subscriber_id FROM xdr_data WHERE http_status = 0)
        SELECT avg(nps_score) FILTER (subscriber_id IN (SELECT subscriber_id FROM bad)),
               avg(nps_score) FILTER (subscriber_id NOT IN (SELECT subscriber_id FROM bad))
        FROM surveys""")
    assert nps_bad < nps_good - 0.3, (nps_bad, nps_good)
    # Social posts about the network cluster on days and places with faults.
    assert one(db, "SELECT count(*) FROM social_posts WHERE text ILIKE '%dropp%' OR text ILIKE '%no mobile data%'")[0] > 0


def test_interactions_span_channels_and_lifecycle(db):
    channels = {r[0] for r in db.execute("SELECT DISTINCT channel FROM interactions").fetchall()}
    stages = {r[0] for r in db.execute("SELECT DISTINCT lifecycle_stage FROM interactions").fetchall()}
    assert channels == {"app", "web", "call_centre", "retail_store", "social"}
    assert stages == {"discover", "join", "use", "get_help", "renew_leave"}
    cc, app = one(db, """SELECT median(wait_time_s) FILTER (channel = 'call_centre'),
                                median(wait_time_s) FILTER (channel = 'app') FROM interactions""")
    assert cc > 30 and app == 0


def test_same_seed_gives_identical_output(tmp_path):
    cfg = SimConfig(subscribers=1500, days=1, seed=5)
    a, b = simulate(cfg, tmp_path / "a"), simulate(cfg, tmp_path / "b")
    files_a = sorted(p.relative_to(a.out_dir) for p in a.out_dir.rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(b.out_dir) for p in b.out_dir.rglob("*") if p.is_file())
    assert files_a == files_b
    for rel in files_a:
        if rel.suffix == ".parquet":
            assert pq.read_table(a.out_dir / rel).equals(pq.read_table(b.out_dir / rel)), rel
        else:
            assert (a.out_dir / rel).read_bytes() == (b.out_dir / rel).read_bytes(), rel
    other = simulate(SimConfig(subscribers=1500, days=1, seed=6), tmp_path / "c")
    assert not pq.read_table(other.out_dir / "tables/subscribers.parquet").equals(
        pq.read_table(a.out_dir / "tables/subscribers.parquet"))


def test_drive_tests_see_the_coverage_holes_their_roads_cross(db):
    # Routes follow the roads, not the fault list: a hole is seen only where a road crosses it
    # (tests/simulate/test_leaks.py proves the routes do not move with the faults, and that a
    # crossed hole shows its depth against the same drive without it: a crossed hole need not
    # be darker than the rest of a route, which may run far from any site).
    runs, samples = one(db, "SELECT count(DISTINCT test_id), count(*) FROM drive_tests")
    assert runs == 8 and samples == 8 * 3600  # one run per town per day
    weak = one(db, "SELECT avg((rsrp_dbm < -105)::INT) FROM drive_tests")[0]
    assert 0 < weak < 0.3  # outdoors on the roads: mostly good signal, some weak spots


@pytest.mark.parametrize("harsh", [False, True])
def test_every_value_is_inside_its_tables_valid_range(sim_dir, tmp_path, harsh):
    # What ingest would quarantine, the simulator must never write: not on the standard run,
    # nor where faults pile up (a stalled video once buffered for over ten minutes).
    import duckdb

    out = simulate(SimConfig(subscribers=3000, days=2, seed=13, fault_rate=20), tmp_path / "sim").out_dir \
        if harsh else sim_dir
    con = duckdb.connect()
    outside = []
    for name, spec in TABLES.items():
        files = sorted((out / "tables").glob(f"{name}.parquet")) + sorted((out / "tables" / name).glob("*.parquet"))
        for column, (lo, hi) in spec.ranges.items():
            if files and column in pq.read_schema(files[0]).names:
                n = con.execute(f'SELECT count(*) FROM read_parquet({[str(f) for f in files]}) '
                                f'WHERE "{column}" < {lo} OR "{column}" > {hi}').fetchone()[0]
                if n:
                    outside.append(f"{name}.{column}: {n} rows outside [{lo}, {hi}]")
    assert not outside, outside


def test_complaints_follow_the_poor_experience_they_are_about(truth_db):
    # a service complaint comes after the day's first poor case of that customer (review:
    # complaints were drawn uniformly over the day, some before anything went wrong), in local
    # waking hours
    before, with_case = one(truth_db, """
        WITH c AS (SELECT subscriber_id, created_at FROM complaints WHERE category <> 'billing'),
             k AS (SELECT subscriber_id, CAST(hour_start AS DATE) AS d, min(hour_start) AS first
                   FROM truth.cases GROUP BY ALL)
        SELECT count(*) FILTER (c.created_at < k.first), count(k.first)
        FROM c LEFT JOIN k ON k.subscriber_id = c.subscriber_id AND k.d = CAST(c.created_at AS DATE)""")
    assert with_case > 5 and before == 0
    hours = {r[0] for r in truth_db.execute(
        "SELECT DISTINCT hour(created_at AT TIME ZONE 'Europe/Rome') FROM complaints").fetchall()}
    assert hours and min(hours) >= 7
