"""Actions, on SQLite and PostgreSQL: the apology SMS held through the customer's quiet hours in
their home cell's time zone (across midnight and both daylight-saving changes) or skipped, at
most one message per customer per cool-down (to the second), work orders recorded with their
evidence or handed to a registered sink, and label values far beyond the store's column
lengths."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

import pytest

from opencem.rules.alerting_spec import QuietHours
from opencem.rules.apply import apply_events
from opencem.rules.dispatch import dispatch
from opencem.rules.events import AlertEvent
from opencem.rules.gateways import build_gateways
from opencem.rules.messages import customer_time_zones, quiet_until
from opencem.rules.workorder import WorkOrderError, WorkOrderSinks
from opencem.store.models import Action, ActionStatus, Alert, AlertState, Notification, NotificationStatus
from tests.rules.alerting_support import (MIN, T0, backend, config_from, database, event, fires, rows,  # noqa: F401
                                          store, _no_database_url)

CUSTOMER = {"action": "notify_customer", "severity": "info"}


def customer_config(tmp_path, during="hold", cool_down="24h"):
    return config_from(tmp_path, f"""
route:
  receiver: noc
  routes:
    - matchers: ['action="notify_customer"']
      receiver: care
      group_by: [alertname, subscriber_id]
      group_wait: 0s
      group_interval: 1m
receivers:
  - name: noc
  - name: care
    sms_configs:
      - text: "Sorry, {{{{ $labels.subscriber_id }}}}."
quiet_hours:
  start: "21:00"
  end: "08:00"
  during: {during}
  default_time_zone: UTC
cool_down: {cool_down}
""")


def dropped(subscriber: str, fired_at: datetime, rule: str = "RepeatedDroppedCalls") -> list[AlertEvent]:
    """An episode firing at ``fired_at`` (its flush, group_wait 0, decides the message then)."""
    return fires(rule, {"subscriber_id": subscriber}, fired_at - MIN, labels=CUSTOMER)


def apply(store, events, config, now, zones=None):
    with store.transaction() as session:
        return apply_events(session, events, config, now, time_zones=zones)


def decisions(session):
    notes = {n.id: n for n in rows(session, Notification)}
    return [(a.subscriber_id, a.decided_at, a.status.value,
             notes[a.notification_id].next_attempt_at if a.notification_id else None,
             a.detail.get("reason", "").split(":")[0]) for a in rows(session, Action, Action.decided_at, Action.id)]


ROME = {"S1": "Europe/Rome"}


@pytest.mark.parametrize("fired_at, held_until", [
    (datetime(2026, 11, 2, 20, 30, tzinfo=UTC), datetime(2026, 11, 3, 7, 0, tzinfo=UTC)),   # 21:30 CET -> 08:00 next day
    (datetime(2026, 11, 3, 6, 59, tzinfo=UTC), datetime(2026, 11, 3, 7, 0, tzinfo=UTC)),    # 07:59 CET -> 08:00
    (datetime(2026, 11, 3, 7, 0, tzinfo=UTC), None),                                        # 08:00 CET: awake
    (datetime(2026, 11, 2, 19, 59, tzinfo=UTC), None),                                      # 20:59 CET
    (datetime(2026, 10, 24, 22, 30, tzinfo=UTC), datetime(2026, 10, 25, 7, 0, tzinfo=UTC)),  # 00:30 CEST, clocks go back
    (datetime(2026, 3, 28, 22, 0, tzinfo=UTC), datetime(2026, 3, 29, 6, 0, tzinfo=UTC)),     # 23:00 CET, clocks go forward
    (datetime(2026, 7, 1, 19, 0, tzinfo=UTC), datetime(2026, 7, 2, 6, 0, tzinfo=UTC)),       # 21:00 CEST exactly
])
def test_quiet_hours_hold_the_sms_until_eight_on_the_customers_clock(store, tmp_path, fired_at, held_until):
    config = customer_config(tmp_path)
    apply(store, dropped("S1", fired_at), config, fired_at + MIN, ROME)
    with store.transaction() as session:
        ((subscriber, decided, status, send_at, _),) = decisions(session)
        (action,) = rows(session, Action)
    assert (subscriber, decided, status, send_at) == ("S1", fired_at, "requested", held_until or fired_at)
    assert action.detail["time_zone"] == "Europe/Rome" and action.detail["text"] == "Sorry, S1."
    if held_until:  # dispatch sends it when quiet hours end, not a second before
        gateways = build_gateways(config, tmp_path / "outbox", environ={})
        assert dispatch(store.transaction, gateways, held_until - timedelta(seconds=1)).due == 0
        assert dispatch(store.transaction, gateways, held_until).sent == 1


def test_quiet_hours_skip_mode_and_a_customer_without_a_zone(store, tmp_path):
    config = customer_config(tmp_path, during="skip")
    night = datetime(2026, 11, 2, 22, 0, tzinfo=UTC)  # 23:00 in Rome; 22:00 UTC for S2 (the default zone)
    apply(store, dropped("S1", night) + dropped("S2", night) + dropped("S3", night.replace(hour=12)),
          config, night + MIN, {"S1": "Europe/Rome", "S3": "Not/AZone"})
    with store.transaction() as session:
        got = sorted(decisions(session))
        assert len(rows(session, Notification)) == 1
    assert got == [("S1", night, "skipped", None, "quiet_hours"), ("S2", night, "skipped", None, "quiet_hours"),
                   ("S3", night.replace(hour=12), "requested", night.replace(hour=12), "")]


def test_quiet_hours_within_one_day_and_in_a_half_hour_zone():
    lunch = QuietHours(time(12, 0), time(14, 0), "hold", "UTC")
    assert quiet_until(datetime(2026, 5, 5, 11, 59, tzinfo=UTC), "UTC", lunch) is None
    assert quiet_until(datetime(2026, 5, 5, 12, 0, tzinfo=UTC), "UTC", lunch) == datetime(2026, 5, 5, 14, tzinfo=UTC)
    assert quiet_until(datetime(2026, 5, 5, 14, 0, tzinfo=UTC), "UTC", lunch) is None
    night = QuietHours(time(21, 0), time(8, 0), "hold", "UTC")
    # 21:00 in Kolkata (+05:30) is 15:30 UTC; quiet until 08:00 there, 02:30 UTC
    assert quiet_until(datetime(2026, 5, 5, 15, 30, tzinfo=UTC), "Asia/Kolkata", night) == \
        datetime(2026, 5, 6, 2, 30, tzinfo=UTC)


def test_at_most_one_message_per_customer_per_cool_down_to_the_second(store, tmp_path):
    config = customer_config(tmp_path)
    first = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
    day = timedelta(hours=24)
    episodes = [first, first + day - timedelta(seconds=1), first + day, first + day + timedelta(hours=1),
                first + 2 * day + timedelta(hours=1)]
    for i, start in enumerate(episodes):  # alerts of several rules about one customer, each its own group
        apply(store, dropped("S1", start, f"CustomerRule{i}"), config, start + MIN)
    with store.transaction() as session:
        got = [(d - first, status, reason) for _, d, status, _, reason in decisions(session)]
    assert got == [(timedelta(0), "requested", ""), (day - timedelta(seconds=1), "skipped", "cool_down"),
                   (day, "requested", ""),  # exactly one cool-down after the last message: allowed
                   (day + timedelta(hours=1), "skipped", "cool_down"),
                   (2 * day + timedelta(hours=1), "requested", "")]  # skipped ones do not restart it


def test_two_alerts_for_one_customer_at_one_moment_send_one_message(store, tmp_path):
    config = customer_config(tmp_path)
    at = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
    events = dropped("S1", at) + fires("RepeatedFailedSetups", {"subscriber_id": "S1"}, at - MIN, labels=CUSTOMER)
    apply(store, events, config, at + MIN)
    with store.transaction() as session:
        assert sorted(status for _, _, status, _, _ in decisions(session)) == ["requested", "skipped"]


def work_order_config(tmp_path, sink="store"):
    return config_from(tmp_path, f"""
route:
  receiver: soc
  group_by: [alertname, site_id]
  group_wait: 0s
receivers:
  - name: soc
    work_order_configs:
      - {{sink: {sink}, queue: radio, priority: P2, max_attempts: 3}}
""")


def test_a_work_order_is_recorded_with_its_evidence_when_no_sink_takes_it(store, tmp_path):
    config = work_order_config(tmp_path)
    apply(store, fires("CellDown", {"cell_id": "C1"}, T0, labels={"site_id": "S1"}), config, T0 + 60 * MIN)
    assert dispatch(store.transaction, {}, T0 + 120 * MIN).work_orders == 0
    with store.transaction() as session:
        (action,) = rows(session, Action)
        (alert,) = rows(session, Alert)
    assert (action.action_type, action.status, action.alert_id, action.next_attempt_at) == (
        "work_order", ActionStatus.requested, alert.id, None)
    assert (action.detail["queue"], action.detail["priority"], action.detail["evidence"]["expr"]) == (
        "radio", "P2", "CellDown expr")
    assert action.detail["alerts"][0]["labels"] == {"alertname": "CellDown", "site_id": "S1", "cell_id": "C1"}


def test_a_registered_sink_opens_the_ticket_once_retrying_when_it_fails(store, tmp_path):
    class Tickets:
        def __init__(self):
            self.calls = []

        def create(self, order):
            self.calls.append(order.idempotency_key)
            if len(self.calls) == 1:
                raise WorkOrderError("ticketing is down")
            return f"TT-{order.action_id}"

    sinks, tickets = WorkOrderSinks(), Tickets()
    sinks.register("soc", tickets)
    config = work_order_config(tmp_path, sink="soc")
    apply(store, fires("CellDown", {"cell_id": "C1"}, T0, labels={"site_id": "S1"}), config, T0 + 10 * MIN)
    first = dispatch(store.transaction, {}, T0 + 10 * MIN, work_orders=sinks)
    second = dispatch(store.transaction, {}, T0 + 11 * MIN, work_orders=sinks)
    third = dispatch(store.transaction, {}, T0 + 12 * MIN, work_orders=sinks)
    with store.transaction() as session:
        (action,) = rows(session, Action)
    assert (first.work_orders, second.work_orders, third.work_orders) == (0, 1, 0)
    assert (action.status, action.external_ref, action.attempts) == (ActionStatus.done, f"TT-{action.id}", 2)
    assert len(set(tickets.calls)) == 1 and len(tickets.calls) == 2
    with pytest.raises(ValueError):
        sinks.register("store", tickets)


def test_label_values_far_beyond_the_column_lengths_are_stored_whole_in_labels(store, tmp_path):
    config = customer_config(tmp_path)
    huge_subscriber = "S" * 5_000
    events = fires("R" * 300, {"subscriber_id": huge_subscriber}, T0, labels={**CUSTOMER, "note": "n" * 100_000})
    apply(store, events, config, T0 + 10 * MIN)
    again = apply(store, events, config, T0 + 10 * MIN)
    with store.transaction() as session:
        (alert,) = rows(session, Alert)
        (action,) = rows(session, Action)
        (notice,) = rows(session, Notification)
    assert alert.labels["subscriber_id"] == huge_subscriber and len(alert.labels["note"]) == 100_000
    assert len(alert.object_id) == 100 and len(alert.rule_name) == 200 and alert.state == AlertState.firing
    assert alert.object_id.startswith("S" * 83 + "~")
    assert action.subscriber_id == alert.object_id and len(notice.idempotency_key) <= 200
    assert len(notice.payload["text"]) <= 480 and again.unchanged == 2 and again.notifications == 0


def test_an_event_with_odd_values_is_stored_not_refused(store, tmp_path):
    config = customer_config(tmp_path)
    odd = event("RepeatedDroppedCalls", {"subscriber_id": "S\u202e1"}, AlertState.firing, T0, labels=CUSTOMER,
                value=float("nan"))
    apply(store, [odd], config, T0 + MIN)
    with store.transaction() as session:
        (alert,) = rows(session, Alert)
        (notice,) = rows(session, Notification)
    assert alert.value is None and notice.status == NotificationStatus.queued


def test_customer_time_zones_come_from_the_home_cell():
    import duckdb
    import pyarrow as pa

    con = duckdb.connect()
    con.register("subscribers", pa.table({"subscriber_id": ["S1", "S2", "S3"], "home_cell_id": ["C1", "C2", None]}))
    con.register("cells", pa.table({"cell_id": ["C1", "C2"], "time_zone": ["Europe/Rome", None]}))
    assert customer_time_zones(con, ["S1", "S2", "S3", "S4", "S1"]) == {"S1": "Europe/Rome"}
    assert customer_time_zones(con, []) == {}
