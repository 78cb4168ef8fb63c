"""No leaks (issue 11, item 3): BSS status and VoLTE provisioning are dated and apart from the
handset, alarms are as imperfect as a real OSS's, and drive-test routes do not know where the
faults are. Each test states the documented share or bound it checks (docs/simulator.md)."""

from __future__ import annotations

import numpy as np
import pyarrow.compute as pc
import pytest

from opencem.simulate import behaviour
from opencem.simulate import network_pm as fm
from opencem.simulate.config import SimConfig, rng_for
from opencem.simulate.drive_routes import RING_RADII, drive_tests
from opencem.simulate.load import offered_load
from opencem.simulate.faults import PERIOD_MS, plan_faults
from opencem.simulate.frame import day_start_ms
from opencem.simulate.geography import (KM_PER_DEG_LAT, KM_PER_DEG_LON, REF_LAT, REF_LON, TOWNS, build_network,
                                        territory_scale)
from opencem.simulate.population import build_population, subscribers_table

MINUTE_MS = 60_000


def operator(**config):
    cfg = SimConfig(**{"subscribers": 3000, "days": 2, "seed": 4, **config})
    net = build_network(cfg, int(cfg.subscribers * cfg.broadband_share))
    return cfg, net, build_population(cfg, net)


def planned(**config):
    cfg, net, pop = operator(**config)
    plan = plan_faults(cfg, net, pop, day_start_ms(cfg, 0))
    offered_load(cfg, net, pop, plan)  # drive tests meet the cells' load
    return cfg, net, pop, plan


@pytest.fixture(scope="module")
def accounts():
    """A base big enough for a few of the rarer account changes, at the highest per-subscriber
    fault rate (suspensions and handsets switched off are capped at five times the default)."""
    cfg, net, pop, plan = planned(subscribers=20_000, days=7, fault_rate=5, seed=8)
    return cfg, net, pop, plan, behaviour.account_history(cfg, pop, plan)


def events_of(history, kind: str) -> dict[str, np.ndarray]:
    e = history.events.filter(pc.equal(history.events["event_type"], kind))
    return {"sub": pc.cast(pc.utf8_slice_codeunits(e["subscriber_id"], 1), "int64").to_numpy(),
            "t_ms": pc.cast(e["event_time"], "int64").to_numpy(),
            **{c: e[c].to_numpy(zero_copy_only=False) for c in ("old_value", "new_value", "reason", "channel")}}


def test_the_snapshot_shows_no_suspension_that_starts_after_its_date(accounts):
    cfg, net, pop, plan, history = accounts
    start = plan.start_ms
    barred = np.flatnonzero(np.isfinite(plan.suspended_from_ms))
    assert len(barred) > 100 and (plan.suspended_from_ms[barred] >= start).all()
    table = subscribers_table(pop, net, history.status, history.volte_provisioned)
    status = table["status"].to_numpy(zero_copy_only=False)
    assert (status[barred] == "active").all()  # every suspension of the window starts after the snapshot
    # The snapshot is the status log replayed to its date: what it shows suspended, BSS suspended
    # before then (and the network never barred).
    ev = events_of(history, "status_change")
    replayed = behaviour.latest_values(ev["sub"], ev["t_ms"], ev["new_value"], np.full(pop.n, "active", object), start)
    assert (replayed == status).all()
    assert not np.isfinite(plan.suspended_from_ms[status == "suspended"]).any()
    # A lookup inside the window sees the suspensions begun (and logged) by then, and no later one.
    mid = start + 84 * 3_600_000
    at_mid = behaviour.latest_values(ev["sub"], ev["t_ms"], ev["new_value"], status.astype(object), mid)
    logged_by_mid = plan.suspended_from_ms[barred] + behaviour.SUSPENSION_LOG_DELAY_MAX_MS < mid
    assert logged_by_mid.sum() > 20 and (at_mid[barred[logged_by_mid]] == "suspended").all()
    assert (at_mid[barred[plan.suspended_from_ms[barred] > mid]] == "active").all()


def test_every_suspension_has_a_dated_event_within_its_delay(accounts):
    cfg, net, pop, plan, history = accounts
    end = plan.start_ms + plan.n_periods * PERIOD_MS
    ev = events_of(history, "status_change")
    barred = np.flatnonzero(np.isfinite(plan.suspended_from_ms))
    logged = dict(zip(ev["sub"][ev["new_value"] == "suspended"], ev["t_ms"][ev["new_value"] == "suspended"]))
    delays = []
    for sub in barred:
        start = int(plan.suspended_from_ms[sub])
        if start + behaviour.SUSPENSION_LOG_DELAY_MAX_MS >= end:
            continue  # may be logged after the export
        assert sub in logged, f"suspension of S{sub:08d} has no event"
        delays.append(logged[sub] - start)
    delays = np.array(delays)
    assert len(delays) > 100
    assert (delays >= 0).all() and (delays <= behaviour.SUSPENSION_LOG_DELAY_MAX_MS).all()
    late = (delays > MINUTE_MS).mean()  # documented: 30 % logged minutes late
    assert 0.2 < late < 0.4, late
    # Ordinary status changes with no fault behind them: suspensions restored inside the window,
    # some asked for by the customer; none is on a line the network barred.
    restored = ev["sub"][(ev["new_value"] == "active") & (ev["t_ms"] >= plan.start_ms)]
    assert len(restored) > 0 and not np.isfinite(plan.suspended_from_ms[restored]).any()
    unbarred = ~np.isfinite(plan.suspended_from_ms[ev["sub"]]) & (ev["new_value"] == "suspended")
    assert {"non_payment", "customer_request"} <= set(ev["reason"][unbarred])


def test_handsets_switched_off_are_mostly_still_provisioned(accounts):
    cfg, net, pop, plan, history = accounts
    provisioned = history.volte_provisioned
    off = plan.volte_off
    assert off.sum() > 300
    # Documented: a fifth de-provisioned with the setting, plus the ordinary 4-5 % unprovisioned.
    hidden = (~provisioned[off]).mean()
    assert 0.15 < hidden < 0.35, hidden
    ordinary = (~provisioned[~off]).mean()
    assert 0.02 < ordinary < 0.08, ordinary
    # Lines older than the VoLTE launch make most of the ordinary gap.
    legacy = pop.tenure_months > behaviour.LEGACY_TENURE_MONTHS
    assert (~provisioned[~off & legacy]).mean() > 5 * (~provisioned[~off & ~legacy]).mean()
    # Dated provisioning changes: in the window only the bulk job's, which add the product.
    ev = events_of(history, "volte_provisioning")
    assert set(ev["reason"]) == {"customer_request", "bulk_migration"}
    inside = ev["t_ms"] >= plan.start_ms
    assert (ev["reason"][inside] == "bulk_migration").all() and (ev["new_value"][inside] == "true").all()
    # Losing the product says little of the handset: as many lines drop it in the app with VoLTE
    # left on as handsets switched off there (the review found only the latter did: a leak).
    dropped = off[ev["sub"][ev["new_value"] == "false"]]
    assert 0.3 < dropped.mean() < 0.7, dropped.mean()


def test_ordinary_account_changes_are_the_same_at_any_fault_rate():
    # Faults add the plan's suspensions and the app's de-provisioning of handsets switched off,
    # and drop what BSS would have logged on a line the plan bars; nothing else moves.
    (cfg, _, pop, calm), (_, _, _, faulty) = planned(fault_rate=0), planned(fault_rate=1)
    quiet, busy = (set(zip(*(t[c].to_pylist() for c in ("subscriber_id", "event_time", "event_type", "new_value"))))
                   for t in (behaviour.account_history(cfg, pop, p).events for p in (calm, faulty)))
    barred = {f"S{i:08d}" for i in np.flatnonzero(np.isfinite(faulty.suspended_from_ms))}
    switched_off = {f"S{i:08d}" for i in np.flatnonzero(faulty.volte_off)}
    assert len(quiet) > 100 and barred and switched_off
    for sub, _, kind, new in busy - quiet:
        assert (sub in barred and (kind, new) == ("status_change", "suspended")) or \
            (sub in switched_off and (kind, new) == ("volte_provisioning", "false"))
    assert all(sub in barred for sub, *_ in quiet - busy)


@pytest.fixture(scope="module")
def fm_runs():
    """Alarms of many fault plans on one network (a week at the highest fault rate, 20
    seeds), with the faults each plan injected."""
    cfg, net, pop = operator(days=7, fault_rate=20)
    runs = []
    for seed in range(20):
        plan = plan_faults(cfg.model_copy(update={"seed": seed}), net, pop, day_start_ms(cfg, 0))
        runs.append((plan, fm.alarms(net, plan, cfg.days, rng_for(seed, "alarms")).to_pylist()))
    return net, runs


def matched(plan, alarms, probable: str, key: str):
    """Per fault of the cause's type, (its start, its alarms): those on its object raised after
    it began (and after any later fault there began), up to an hour after it ended; and the
    alarms of that cause no fault explains."""
    kind = {"cell-unavailable": "cell_outage", "pon-port-down": "olt_outage",
            "transmission-degraded": "backhaul_degradation"}[probable]
    faults = sorted((fm.fault_window_ms(plan, f), f.location_id) for f in plan.faults if f.fault_type == kind)
    per_fault = {i: [] for i in range(len(faults))}
    unexplained = []
    for a in alarms:
        if a["probable_cause"] != probable:
            continue
        t = a["raised_at"].timestamp() * 1000
        mine = [i for i, ((t0, t1), where) in enumerate(faults) if where == a[key] and t0 <= t]
        if mine and t <= faults[mine[-1]][0][1] + 60 * MINUTE_MS:
            per_fault[mine[-1]].append(a)
        else:
            unexplained.append(a)
    return [(faults[i][0][0], hits) for i, hits in per_fault.items()], unexplained


def test_a_share_of_cell_outages_raises_no_alarm_and_the_rest_alarm_late(fm_runs):
    net, runs = fm_runs
    silent, flapping, delays, false = [], [], [], []
    for plan, alarms in runs:
        per_fault, unexplained = matched(plan, alarms, "cell-unavailable", "cell_id")
        for t0, hits in per_fault:
            silent.append(not hits)
            if hits:
                flapping.append(len(hits) >= 3)
                delays.append(min(a["raised_at"].timestamp() * 1000 for a in hits) - t0)
        false += unexplained
    assert len(silent) >= 200
    assert 0.10 < np.mean(silent) < 0.20, np.mean(silent)  # documented: 15 % silent, as sleeping cells
    assert 0.12 < np.mean(flapping) < 0.30, np.mean(flapping)  # documented: 20 % flap
    delays = np.array(delays)
    assert (delays >= 10_000).all() and (delays <= fm.RAISE_DELAY_MAX_MS).all()
    assert MINUTE_MS < np.median(delays) < 4 * MINUTE_MS  # documented: median 2 minutes
    # False alarms: the same critical alarm with no outage behind it, cleared within minutes.
    assert len(false) > 0
    for a in false:
        assert a["cleared_at"] is None or (a["cleared_at"] - a["raised_at"]).total_seconds() < 90 * 60


def test_backhaul_alarms_only_sometimes_and_olt_outages_mostly(fm_runs):
    net, runs = fm_runs
    backhaul, olt, waits = [], [], []
    for plan, alarms in runs:
        per_fault, _ = matched(plan, alarms, "transmission-degraded", "site_id")
        backhaul += [bool(hits) for _, hits in per_fault]
        waits += [min(a["raised_at"].timestamp() * 1000 for a in hits) - t0 for t0, hits in per_fault if hits]
        olt += [bool(hits) for _, hits in matched(plan, alarms, "pon-port-down", "site_id")[0]]
    assert len(backhaul) >= 100 and len(olt) >= 30
    assert 0.35 < np.mean(backhaul) < 0.65, np.mean(backhaul)  # documented: half
    assert np.mean(olt) > 0.85, np.mean(olt)  # documented: 95 %
    # A threshold-crossing alarm waits for the end of its 15-minute measurement period.
    waits = np.array(waits)
    assert (waits > fm.THRESHOLD_PERIOD_MS).all() and (waits <= fm.THRESHOLD_PERIOD_MS + fm.RAISE_DELAY_MAX_MS).all()


def test_every_alarm_clears_after_it_is_raised_and_within_the_window(fm_runs):
    net, runs = fm_runs
    for plan, alarms in runs:
        end_ms = plan.start_ms + plan.n_periods * PERIOD_MS
        for a in alarms:
            assert plan.start_ms <= a["raised_at"].timestamp() * 1000 < end_ms
            assert a["cleared_at"] is None or a["cleared_at"] > a["raised_at"]


def route_of(table):
    return np.c_[table["lat"].to_numpy(), table["lon"].to_numpy()]


def test_drive_routes_are_the_same_with_faults_on_and_off():
    runs = {}
    for rate in (0, 1, 20):
        cfg, net, pop, plan = planned(fault_rate=rate)
        runs[rate] = (plan, [drive_tests(cfg, net, plan, day) for day in range(cfg.days)])
    assert len(runs[20][0].faults) > len(runs[1][0].faults) > len(runs[0][0].faults) == 0
    for day in range(2):
        for rate in (1, 20):
            assert np.array_equal(route_of(runs[0][1][day]), route_of(runs[rate][1][day]))
    assert not np.array_equal(route_of(runs[0][1][0]), route_of(runs[0][1][1]))  # a new route each day


def test_a_road_through_a_hole_sees_it_and_routes_stay_on_the_towns_roads():
    # Same route and the same measurement draws with faults off and on: where the car crosses a
    # hole, it measures the hole's own depth (8-20 dB by its severity); elsewhere what the
    # faults do to the cells.
    for seed in range(1, 12):
        cfg, net, pop, off = planned(fault_rate=0, seed=seed)
        _, _, _, on = planned(fault_rate=20, seed=seed)
        holes = {f.location_id: 8 + 12 * f.severity for f in on.faults if f.fault_type == "coverage_hole"}
        a, b = drive_tests(cfg, net, off, 0), drive_tests(cfg, net, on, 0)
        inside = np.isin(b["h3_index"].to_numpy(zero_copy_only=False), list(holes))
        if inside.sum() >= 30:
            break
    else:
        pytest.fail("no route crossed a hole in eleven seeds")
    drop = b["rsrp_dbm"].to_numpy() - a["rsrp_dbm"].to_numpy()
    same_cell = a["cell_id"].to_numpy(zero_copy_only=False) == b["cell_id"].to_numpy(zero_copy_only=False)
    where = b["h3_index"].to_numpy(zero_copy_only=False)
    for hole, depth in holes.items():
        crossed = (where == hole) & same_cell
        if crossed.sum() >= 10:
            assert np.median(drop[crossed]) == pytest.approx(-depth, abs=1.0), hole
    assert np.median(drop[~inside & same_cell]) == pytest.approx(0, abs=0.5)
    # Every sample is on a town's roads: inside its ring road.
    x, y = (b["lon"].to_numpy() - REF_LON) * KM_PER_DEG_LON, (b["lat"].to_numpy() - REF_LAT) * KM_PER_DEG_LAT
    scale = territory_scale(cfg.subscribers)
    ring = np.array([[np.hypot(x - t.x_km * scale, y - t.y_km * scale) - RING_RADII * t.radius_km * scale]
                     for t in TOWNS]).min(axis=0)
    assert (ring < 0.01).all()
