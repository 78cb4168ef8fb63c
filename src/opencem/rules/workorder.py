"""Work orders alerts ask for, and the interface the SOC workflow (issue 14) plugs its ticket
creation into.

A route whose receiver has ``work_order_configs`` records an ``actions`` row (type
``work_order``, status ``requested``, the alerts and their evidence in ``detail``) when a group
flush finds alerts it has not told about. With ``sink: store`` (the default) that record is
the work order: nothing else happens until a workflow picks it up. With another sink name,
dispatch hands it to the :class:`WorkOrderSink` registered under that name and marks it
``done`` with the ticket id the sink returns, retrying with backoff when the sink fails.

    from opencem.rules.workorder import WORK_ORDER_SINKS
    WORK_ORDER_SINKS.register("soc", MyTicketSink())
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True)
class WorkOrder:
    """What a sink gets: the action that asked for it and everything known about the cause."""

    action_id: int
    idempotency_key: str     # the same on every attempt: a sink keeps one ticket per key
    alert_id: int | None
    queue: str
    priority: str
    detail: dict[str, Any]   # receiver, group_labels, alerts (with evidence), evidence of the first


class WorkOrderSink(Protocol):
    def create(self, order: WorkOrder) -> str:
        """Open the ticket (or find the one opened for ``order.idempotency_key``); its id.
        Raise :class:`WorkOrderError` when it could not (``retry`` says whether to try again)."""


class WorkOrderError(Exception):
    def __init__(self, message: str, retry: bool = True):
        super().__init__(message)
        self.retry = retry


class WorkOrderSinks:
    """Sinks by name. ``store`` is built in: it records the request and does nothing more."""

    BUILT_IN = "store"

    def __init__(self) -> None:
        self._sinks: dict[str, WorkOrderSink] = {}

    def register(self, name: str, sink: WorkOrderSink) -> None:
        if name == self.BUILT_IN:
            raise ValueError("'store' is the built-in sink (record only); register under another name")
        self._sinks[name] = sink

    def unregister(self, name: str) -> None:
        self._sinks.pop(name, None)

    def get(self, name: str) -> WorkOrderSink | None:
        return self._sinks.get(name)

    def names(self) -> list[str]:
        return [self.BUILT_IN, *sorted(self._sinks)]


# Where the workflow package registers its sink when it is imported (it sits on a floor above).
WORK_ORDER_SINKS = WorkOrderSinks()
