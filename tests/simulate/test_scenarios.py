"""Scenarios (issue 11, item 7) and the twin's calendar and fault shapes (items 4 and 5):
files validated like every definition file, injections placed where and when they say, fault
counts that scale with the network, local time, weekends and holidays."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import duckdb
import numpy as np
import pyarrow.parquet as pq
import pytest

from opencem.errors import ConfigError
from opencem.simulate.config import SCENARIOS, SimConfig, load_scenario, make_config
from opencem.simulate.faults import Planner, FaultPlan
from opencem.simulate.run import simulate
from opencem.specfile import SpecError

FIXTURES = Path(__file__).parent / "fixtures"


def test_a_bad_scenario_names_every_problem_with_its_line_and_field():
    with pytest.raises(SpecError) as err:
        load_scenario(FIXTURES / "scenario.bad.yaml")
    assert err.value.sentences == (FIXTURES / "scenario.bad.txt").read_text().splitlines()


def test_shipped_scenarios_load_and_the_default_file_is_the_default():
    names = sorted(p.stem for p in SCENARIOS.glob("*.yaml"))
    assert {"benchmark", "default"} <= set(names)
    for name in names:
        assert load_scenario(name).scenario == name
    # default.yaml writes the built-in defaults out: it must not drift from them
    assert load_scenario("default") == SimConfig(scenario="default")
    with pytest.raises(ConfigError, match="no shipped scenario of that name.*benchmark"):
        load_scenario("benchmarks")


def test_command_line_options_win_over_the_scenario():
    cfg = make_config(scenario="benchmark", subscribers=3000, days=1)
    assert (cfg.subscribers, cfg.days, cfg.seed, cfg.holidays) == (3000, 1, 101, (date(2026, 12, 8),))
    assert cfg.fault_spec("olt_outage").rate == 0.12 and cfg.fault_spec("cell_outage").rate == pytest.approx(1 / 150)


def _sim(tmp_path, name="sim", **kw):
    out = simulate(SimConfig(**kw), tmp_path / name).out_dir
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    for sub in ("tables", "truth"):
        for path in sorted((out / sub).iterdir()):
            if path.suffix == ".parquet" or path.is_dir():
                src = f"'{path}/*.parquet'" if path.is_dir() else f"'{path}'"
                con.execute(f"CREATE VIEW {path.stem} AS SELECT * FROM read_parquet({src})")
    return out, con


def test_an_injection_happens_where_and_when_the_scenario_says(tmp_path):
    base = SimConfig(subscribers=2000, days=1, seed=4, fault_rate=0)
    out, con = _sim(tmp_path, "probe", **base.model_dump())
    cell = con.execute("SELECT cell_id FROM xdr_data GROUP BY 1 ORDER BY count(*) DESC LIMIT 1").fetchone()[0]
    cfg = base.model_copy(update={"injections": (
        {"fault": "cell_outage", "location": cell, "start": "2026-11-02T14:07:00+01:00", "duration_h": 2},
        {"fault": "cdn_degradation", "location": "cdn-coastal-01", "start": "2026-11-02T19:00", "duration_h": 3,
         "severity": 0.9})})
    cfg = SimConfig.model_validate(cfg.model_dump())
    out, con = _sim(tmp_path, "injected", **cfg.model_dump())
    rows = con.execute("SELECT fault_type, location_id, start_time, end_time FROM faults ORDER BY 1").fetchall()
    assert [(r[0], r[1]) for r in rows] == [("cdn_degradation", "cdn-coastal-01"), ("cell_outage", cell)]
    outage = rows[1]
    assert (outage[2].hour, outage[2].minute, (outage[3] - outage[2]).total_seconds()) == (13, 7, 7200)
    assert rows[0][2].hour == 18  # 19:00 in Rome (the scenario's zone) is 18:00 UTC
    on_cell = con.execute(f"""SELECT count(*) FILTER (start_time >= '{outage[2]}' AND start_time < '{outage[3]}'),
                                     count(*) FROM xdr_data WHERE cell_id = '{cell}'""").fetchone()
    assert on_cell[0] == 0 and on_cell[1] > 20
    # the cell's users met the outage: cases labelled with it, inside its window only
    labelled = con.execute("""SELECT count(*), min(hour_start), max(hour_start) FROM cases c
                              JOIN faults f USING (fault_id) WHERE f.fault_type = 'cell_outage'""").fetchone()
    assert labelled[0] > 0 and outage[2].replace(minute=0) <= labelled[1] <= labelled[2] < outage[3]


@pytest.mark.parametrize("injection, problem", [
    ({"fault": "cell_outage", "location": "C99999-1-4G", "start": "2026-11-02T10:00", "duration_h": 1},
     r"injections\[0\]\.location: no cell 'C99999-1-4G' in this network"),
    ({"fault": "cell_outage", "location": "C00000-1-4G", "start": "2026-12-24T10:00", "duration_h": 1},
     r"injections\[0\]\.start: .* is outside the simulated window"),
    ({"fault": "volte_off", "location": "S00000001", "start": "2026-11-02T10:00", "duration_h": 1},
     r"injections\[0\]\.fault: volte_off is planned per subscriber"),
])
def test_an_impossible_injection_is_one_sentence(tmp_path, injection, problem):
    cfg = SimConfig(subscribers=500, days=1, seed=4, injections=(injection,))
    with pytest.raises(ConfigError, match=problem):
        simulate(cfg, tmp_path / "sim")


def test_fault_counts_scale_with_the_network():
    def count(subscribers: int, towns=None) -> tuple[int, int]:
        cfg = SimConfig(subscribers=subscribers, days=2, **({"towns": towns} if towns else {}))
        plan = FaultPlan(0, 2 * 96)
        planner = Planner(cfg, plan, np.random.default_rng(1))
        n_cells = cfg.n_sites * 3
        return planner.count("cell_outage", n_cells), planner.count("core_degradation", len({
            t.province for t in cfg.towns}))
    small, big = count(400_000), count(1_600_000)
    assert big[0] == pytest.approx(4 * small[0], rel=0.05)  # a rate per cell: four times the cells
    towns = [{"name": f"T{i}", "province": f"P{i}", "x_km": 10 * i, "y_km": 0, "radius_km": 2, "weight": 1}
             for i in range(40)]
    assert count(100_000, towns)[1] > 5 * count(100_000)[1]  # a rate per province: 40 provinces, not 2


def test_local_time_weekends_and_holidays_shape_the_traffic(tmp_path):
    # A week from Monday in Shanghai (UTC+8) with Wednesday a holiday.
    _, con = _sim(tmp_path, "week", subscribers=1500, days=7, seed=9, time_zone="Asia/Shanghai",
                  holidays=(date(2026, 11, 4),), fault_rate=0)
    local = "start_time AT TIME ZONE 'Asia/Shanghai'"
    peak = con.execute(f"""SELECT hour({local}) FROM xdr_voice WHERE dayofweek({local}) BETWEEN 1 AND 5
                           AND CAST({local} AS DATE) <> DATE '2026-11-04'
                           GROUP BY 1 ORDER BY count(*) DESC LIMIT 1""").fetchone()[0]
    assert 10 <= peak <= 18, peak  # the local working-day peak, not a UTC one
    per_day = dict(con.execute(f"""SELECT CAST({local} AS DATE), count(*) FROM xdr_voice
                                   WHERE CAST({local} AS DATE) BETWEEN '2026-11-02' AND '2026-11-08'
                                   GROUP BY 1""").fetchall())
    monday, tuesday, holiday, sunday = (per_day[date(2026, 11, d)] for d in (2, 3, 4, 8))
    assert holiday < 0.85 * tuesday and sunday < 0.85 * monday  # weekend-like voice
    video = dict(con.execute(f"""SELECT dayofweek({local}) IN (0, 6), count(*) / count(DISTINCT CAST({local} AS DATE))
                                 FROM xdr_video WHERE CAST({local} AS DATE) BETWEEN '2026-11-03' AND '2026-11-08'
                                 AND CAST({local} AS DATE) <> DATE '2026-11-04' GROUP BY 1""").fetchall())
    assert video[True] > 1.1 * video[False]  # more video at weekends


def test_faults_come_in_shapes_and_start_at_any_minute(tmp_path):
    _, con = _sim(tmp_path, "shapes", subscribers=8000, days=2, seed=12, fault_rate=4)
    shapes = dict(con.execute("SELECT shape, count(*) FROM faults WHERE location_type NOT IN ('subscriber') "
                              "GROUP BY 1").fetchall())
    assert {"constant", "intermittent", "ramping"} <= set(shapes)
    off_boundary = con.execute("""SELECT avg((minute(start_time) % 15 <> 0 OR second(start_time) <> 0)::INT)
                                  FROM faults WHERE location_type NOT IN ('subscriber', 'grid', 'device_model')""").fetchone()[0]
    assert off_boundary > 0.8
    partial = con.execute("SELECT count(*) FROM faults WHERE reach < 1").fetchone()[0]
    assert partial > 0
    # a ramping fault is weaker in its first periods than its last
    ramps = con.execute("""SELECT fault_id, arg_min(p.severity, period_start), arg_max(p.severity, period_start)
                           FROM fault_periods p JOIN faults USING (fault_id) WHERE shape = 'ramping'
                           GROUP BY 1""").fetchall()
    assert ramps and all(first < last for _, first, last in ramps)
    # cloud faults reach data sessions too
    assert con.execute("SELECT count(*) FROM cases WHERE fault_type IN ('dns_failure', 'app_server_fault') "
                       "AND service = 'mobile_data'").fetchone()[0] > 0


def test_review_findings_on_scenarios_are_one_sentence(tmp_path, monkeypatch):
    bad_date = tmp_path / "dates.yaml"
    bad_date.write_text("subscribers: 500\nholidays: [2026-13-45]\n")
    with pytest.raises(SpecError, match=r"dates.yaml line 2 has a value YAML cannot read \(2026-13-45\)"):
        load_scenario(bad_date)
    with pytest.raises(ConfigError, match="--seed"):
        make_config(seed=-1)
    with pytest.raises(ConfigError, match=r"needs about .* GiB of memory"):
        simulate(SimConfig(subscribers=20_000_000, days=366), tmp_path / "huge")
    assert not (tmp_path / "huge").exists()  # refused before anything was written
    # a file named like a shipped scenario does not replace it
    monkeypatch.chdir(tmp_path)
    (tmp_path / "benchmark").write_text("subscribers: 123\n")
    assert load_scenario("benchmark").subscribers == 100_000
    # no IoT fleet at all still simulates
    out = simulate(SimConfig(subscribers=500, days=1, iot_devices_per_subscriber=0), tmp_path / "no-iot").out_dir
    assert pq.read_metadata(next((out / "tables" / "iot_events").glob("*.parquet"))).num_rows == 0


def test_an_injected_hole_must_lie_where_people_are(tmp_path):
    cfg = SimConfig(subscribers=500, days=1, seed=4, injections=(
        {"fault": "coverage_hole", "location": "8928308280fffff", "start": "2026-11-02T10:00", "duration_h": 1},))
    with pytest.raises(ConfigError, match="no home, workplace or leisure place of the network lies"):
        simulate(cfg, tmp_path / "sim")
    with pytest.raises(Exception, match="greater than 0"):
        SimConfig(injections=({"fault": "olt_outage", "location": "OLT0000", "start": "2026-11-02T10:00",
                               "duration_h": 1, "severity": 0},))


def test_an_outage_does_not_ramp(tmp_path):
    _, con = _sim(tmp_path, "outages", subscribers=3000, days=2, seed=12, fault_rate=20)
    shapes = {r[0] for r in con.execute("SELECT DISTINCT shape FROM faults WHERE fault_type IN "
                                        "('cell_outage', 'olt_outage')").fetchall()}
    assert shapes and "ramping" not in shapes


def test_a_territory_of_three_provinces_and_its_own_vendors(tmp_path):
    # the review's crash: PM and alarms used the default towns' two provinces and vendors
    towns = ({"name": "A", "province": "P1", "x_km": 0, "y_km": 0, "radius_km": 3, "weight": 2, "vendor": "beta"},
             {"name": "B", "province": "P2", "x_km": 25, "y_km": 0, "radius_km": 2, "weight": 1, "vendor": "alpha"},
             {"name": "C", "province": "P3", "x_km": 0, "y_km": 25, "radius_km": 2, "weight": 1, "vendor": "beta"})
    out, con = _sim(tmp_path, "three", subscribers=3000, days=1, seed=3, towns=towns)
    by_province = dict(con.execute("SELECT province, string_agg(DISTINCT vendor) FROM cells "
                                   "WHERE technology <> 'FTTH-OLT' GROUP BY 1").fetchall())
    assert by_province == {"P1": "beta", "P2": "alpha", "P3": "beta"}
    assert sorted(p.name for p in (out / "pm").iterdir()) == ["alpha", "beta"]
    assert {r[0] for r in con.execute("SELECT DISTINCT city FROM subscribers").fetchall()} == {"A", "B", "C"}
