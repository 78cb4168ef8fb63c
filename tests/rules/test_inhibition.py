"""Inhibition over topology labels, on SQLite and PostgreSQL, with the shipped inhibit rules: a
site outage suppresses its own cells' alerts (not another site's), a core fault its province's,
two outages at one site do not cancel each other, and when the source resolves the targets
still firing are told at the next tick. Plus the noise measure computed from the store."""

from __future__ import annotations

from opencem.rules.alerting_spec import load_config
from opencem.rules.apply import apply_events
from opencem.rules.measure import notifications_per_incident
from opencem.store.models import Alert, Notification
from tests.rules.alerting_support import (MIN, T0, backend, database, fires, resolves, rows, store,  # noqa: F401
                                          _no_database_url)

CONFIG = load_config()  # group_wait 30 s, group_interval 5 min, the shipped inhibit rules
SEC = MIN / 60


def cell(c: str, site: str, province: str = "P1", at=T0, rule="CellCallDropHigh"):
    return fires(rule, {"cell_id": c}, at, labels={"site_id": site, "city": "Rome", "province": province,
                                                    "severity": "major"})


def outage(kind: str, series: dict, at=T0, **labels):
    return fires(f"{kind.title()}Outage", series, at, labels={"outage": kind, "severity": "critical", **labels})


def told(session) -> list[tuple]:
    return sorted((n.scheduled_at - T0, a["rule"], a["object_id"]) for n in rows(session, Notification)
                  for a in n.payload["alerts"] if a["status"] == "firing")


def apply(store, events, now):
    with store.transaction() as session:
        apply_events(session, events, CONFIG, now)


def test_a_site_outage_suppresses_its_cells_alerts_and_not_another_sites(store):
    events = (cell("C1", "S1") + cell("C2", "S1") + cell("C3", "S2")
              + outage("site", {"site_id": "S1"}, T0 + 10 * SEC, city="Rome", province="P1"))  # within group_wait
    apply(store, events, T0 + 30 * MIN)
    first = MIN + 30 * SEC
    with store.transaction() as session:
        assert told(session) == [(first, "CellCallDropHigh", "C3"), (first + 10 * SEC, "SiteOutage", "S1")]
        alerts = {a.object_id: a for a in rows(session, Alert)}
        measure = notifications_per_incident(session, T0, T0 + 60 * MIN)
    assert alerts["C1"].inhibited_by == alerts["C2"].inhibited_by == alerts["S1"].id
    assert alerts["C3"].inhibited_by is None
    # four alerts fired, two were inhibited: two incidents, two notices
    assert (measure.alerts_fired, measure.alerts_inhibited, measure.incidents, measure.notifications) == (4, 2, 2, 2)
    assert measure.per_incident == 1.0


def test_a_core_fault_suppresses_its_province_only(store):
    events = (cell("C1", "S1", "P1") + cell("C2", "S7", "P1") + cell("C3", "S9", "P2")
              + outage("core", {"province": "P1"}, T0 - 5 * MIN, province="P1"))
    apply(store, events, T0 + 30 * MIN)
    with store.transaction() as session:
        assert sorted(x[1:] for x in told(session)) == [("CellCallDropHigh", "C3"), ("CoreOutage", "P1")]
        measure = notifications_per_incident(session, T0 - 10 * MIN, T0 + 60 * MIN, incidents=2)
    assert (measure.notifications, measure.incidents, measure.per_incident) == (2, 2, 1.0)


def test_two_outages_at_one_site_do_not_inhibit_each_other(store):
    events = (outage("site", {"site_id": "S1"}) + outage("backhaul", {"link_id": "L1"}, site_id="S1"))
    apply(store, events, T0 + 30 * MIN)
    with store.transaction() as session:
        assert sorted(x[1:] for x in told(session)) == [("BackhaulOutage", "L1"), ("SiteOutage", "S1")]


def test_when_the_source_resolves_its_targets_still_firing_are_told_at_the_next_tick(store):
    events = cell("C1", "S1") + outage("site", {"site_id": "S1"}, T0 - 2 * MIN, city="Rome", province="P1")
    events.append(resolves("SiteOutage", {"site_id": "S1"}, T0 - 2 * MIN, T0 + 12 * MIN,
                           labels={"outage": "site", "severity": "critical", "city": "Rome", "province": "P1"}))
    apply(store, events, T0 + 60 * MIN)
    with store.transaction() as session:
        got = told(session)
        (c1,) = [a for a in rows(session, Alert) if a.object_id == "C1"]
    # C1's group: first flush 08:01:30 (inhibited), ticks every 5 min; the outage ends 08:12 -> told 08:16:30
    assert got == [(-MIN + 30 * SEC, "SiteOutage", "S1"), (MIN + 30 * SEC + 15 * MIN, "CellCallDropHigh", "C1")]
    assert c1.inhibited_by is None


def test_an_inhibited_alert_that_resolves_while_inhibited_is_never_told(store):
    events = cell("C1", "S1") + outage("site", {"site_id": "S1"}, T0 - 2 * MIN, city="Rome", province="P1")
    events.append(resolves("CellCallDropHigh", {"cell_id": "C1"}, T0, T0 + 8 * MIN,
                           labels={"site_id": "S1", "city": "Rome", "province": "P1", "severity": "major"}))
    apply(store, events, T0 + 60 * MIN)
    with store.transaction() as session:
        assert [x[1:] for x in told(session)] == [("SiteOutage", "S1")]
        assert {n.payload["status"] for n in rows(session, Notification)} == {"firing"}
