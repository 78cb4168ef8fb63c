"""Sending what :func:`~.apply.apply_events` queued: every notification due by ``now`` goes to
its channel's gateway, then is marked sent, retried with exponential backoff, or given up
after the gateway's ``max_attempts``; work orders for a registered sink likewise.

Each attempt is three steps, so no database transaction is open while a gateway is called:
(1) claim the row (a compare-and-set on its attempt count, which also moves
``next_attempt_at`` to when a failure would retry: another dispatcher leaves it alone, and a
dispatcher killed before step 3 leaves it to be tried again then); (2) send; (3) record the
outcome. A crash between (2) and (3) sends again on the retry: the outbox and the HTTP
gateway drop the repeat by its idempotency key, so each message is delivered once; a webhook
receiver gets the same ``Idempotency-Key`` and should drop it too (at least once otherwise).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime, timedelta

from ..store import alerting as repo
from ..store.models import Action, ActionStatus, Notification, NotificationStatus
from .gateways import Delivery, DeliveryError, Gateway
from .workorder import WORK_ORDER_SINKS, WorkOrder, WorkOrderError, WorkOrderSinks

BACKOFF_S = 30          # the first retry comes this long after a failure, then 2x each time
MAX_BACKOFF_S = 3_600
WORK_ORDER_ATTEMPTS = 8

SessionFactory = Callable[[], AbstractContextManager]


@dataclass
class DispatchReport:
    due: int = 0
    sent: int = 0
    retrying: int = 0
    failed: int = 0
    taken_by_another: int = 0
    work_orders: int = 0


def backoff(attempt: int, base_s: int = BACKOFF_S, cap_s: int = MAX_BACKOFF_S) -> timedelta:
    """Wait after failed attempt ``attempt`` (1-based): base, 2 x base, 4 x base, ... capped."""
    return timedelta(seconds=min(cap_s, base_s * 2 ** (attempt - 1)))


def dispatch(session_factory: SessionFactory, gateways: Mapping[str, Gateway], now: datetime, *,
             limit: int = 1_000, backoff_s: int = BACKOFF_S, work_orders: WorkOrderSinks = WORK_ORDER_SINKS
             ) -> DispatchReport:
    """Send once what is due by ``now`` (at most ``limit`` notifications). ``session_factory``
    opens a transaction (``store.transaction``); ``gateways`` maps a channel (``sms:care``) to
    its gateway (:func:`.gateways.build_gateways`)."""
    if now.tzinfo is None:
        raise ValueError(f"now {now.isoformat()} has no time zone")
    report = DispatchReport()
    with session_factory() as session:
        due = [(n.id, n.attempts) for n in repo.due_notifications(session, now, limit)]
    report.due = len(due)
    for notification_id, attempts in due:
        _attempt(session_factory, gateways, notification_id, attempts, now, backoff_s, report)
    _work_orders(session_factory, work_orders, now, limit, backoff_s, report)
    return report


def _attempt(session_factory, gateways, notification_id: int, attempts: int, now: datetime, backoff_s: int,
             report: DispatchReport) -> None:
    attempt = attempts + 1
    retry_at = now + backoff(attempt, backoff_s)
    with session_factory() as session:
        if not repo.claim(session, Notification, notification_id, attempts, {"next_attempt_at": retry_at}):
            report.taken_by_another += 1
            return
        n = session.get(Notification, notification_id)
        delivery = Delivery(n.idempotency_key, n.channel, dict(n.payload), attempt)
    gateway = gateways.get(delivery.channel)
    error: DeliveryError | None = None
    if gateway is None:
        error = DeliveryError(f"no gateway for channel {delivery.channel!r} in the alerting config", retry=True)
        max_attempts = 5
    else:
        max_attempts = gateway.max_attempts
        try:
            gateway.send(delivery)
        except DeliveryError as err:
            error = err
        except Exception as err:  # noqa: BLE001 - a gateway's bug must not stop the queue
            error = DeliveryError(f"{type(err).__name__}: {err}", retry=True)
    with session_factory() as session:
        n = session.get(Notification, notification_id)
        actions = repo.actions_of_notification(session, notification_id)
        if error is None:
            n.status, n.sent_at, n.next_attempt_at, n.last_error = NotificationStatus.sent, now, None, None
            _mark(actions, ActionStatus.done, now, None)
            report.sent += 1
        elif error.retry and attempt < max_attempts:
            n.status, n.next_attempt_at, n.last_error = NotificationStatus.retrying, retry_at, str(error)
            report.retrying += 1
        else:
            n.status, n.next_attempt_at = NotificationStatus.failed, None
            n.last_error = f"gave up after attempt {attempt}: {error}"
            _mark(actions, ActionStatus.failed, now, n.last_error)
            report.failed += 1


def _mark(actions: list[Action], status: ActionStatus, now: datetime, error: str | None) -> None:
    for action in actions:
        action.status, action.updated_at, action.last_error = status, now, error


def _work_orders(session_factory, sinks: WorkOrderSinks, now: datetime, limit: int, backoff_s: int,
                 report: DispatchReport) -> None:
    with session_factory() as session:
        due = [(a.id, a.attempts) for a in repo.due_work_orders(session, now, limit)]
    for action_id, attempts in due:
        attempt = attempts + 1
        retry_at = now + backoff(attempt, backoff_s)
        with session_factory() as session:
            if not repo.claim(session, Action, action_id, attempts, {"next_attempt_at": retry_at}):
                report.taken_by_another += 1
                continue
            a = session.get(Action, action_id)
            detail = dict(a.detail)
            order = WorkOrder(a.id, a.idempotency_key, a.alert_id, detail.get("queue", "noc"),
                              detail.get("priority", "P3"), detail)
        sink = sinks.get(detail.get("sink", ""))
        ref, error = None, None
        if sink is None:
            error = WorkOrderError(f"no work-order sink named {detail.get('sink')!r} is registered "
                                   f"(registered: {', '.join(sinks.names())})")
        else:
            try:
                ref = sink.create(order)
            except WorkOrderError as err:
                error = err
            except Exception as err:  # noqa: BLE001 - the sink's bug must not stop the queue
                error = WorkOrderError(f"{type(err).__name__}: {err}")
        with session_factory() as session:
            a = session.get(Action, action_id)
            a.updated_at = now
            if error is None:
                a.status, a.external_ref, a.next_attempt_at, a.last_error = ActionStatus.done, ref, None, None
                report.work_orders += 1
            elif error.retry and attempt < int(detail.get("max_attempts", WORK_ORDER_ATTEMPTS)):
                a.next_attempt_at, a.last_error = retry_at, str(error)[:500]
            else:
                a.status, a.next_attempt_at = ActionStatus.failed, None
                a.last_error = f"gave up after attempt {attempt}: {str(error)[:450]}"
