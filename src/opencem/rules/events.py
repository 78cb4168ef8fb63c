"""What rule evaluation hands to what comes after it (routing, grouping, silences, inhibition,
actions): one :class:`AlertEvent` per change of state of one series of one rule.

Evaluation (``rules/evaluate.py``, ``rules/states.py``) is a function of the window values, so
the same input gives the same events in the same order; each event carries a ``key`` that is
the same every time it is produced, which makes applying it to the operational store idempotent
(a batch re-delivered after a crash produces the event again and the store keeps one).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ..store.models import AlertState


def fingerprint(rule_name: str, series: dict[str, str]) -> str:
    """The identity of one series of a rule: the rule and the series' own labels (its object:
    ``cell_id``, ``subscriber_id``...), hashed to 16 hex digits. The rule's fixed labels are
    left out (they are the same for every series). Evaluation computes the same value in SQL:
    ``sha256(rule || chr(31) || 'cell_id=C1' || chr(31) || ...)`` with the names sorted."""
    text = "\x1f".join([rule_name, *(f"{k}={v}" for k, v in sorted(series.items()))])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class AlertEvent:
    """One series of one rule changed state at event time ``at``.

    ``state`` is the new state: ``pending`` (the condition holds, ``for`` not yet reached),
    ``firing``, ``resolved`` (a firing alert stopped) or ``inactive`` (a pending one stopped
    before firing). ``labels`` are the rule's labels, the series' own (the cube's dimension
    values, e.g. ``cell_id``; ``subscriber_id`` for per-subscriber counts) and ``alertname``;
    evaluation adds the topology labels it knows (``site_id``, ``city``, ``province`` of a
    cell) so inhibition can match on them. ``episode_start`` is the window the episode's
    pending began in: with ``fingerprint`` it names one alert episode."""

    rule_name: str
    group: str
    fingerprint: str
    labels: dict[str, str]
    annotations: dict[str, str]
    state: AlertState
    previous: AlertState
    object_type: str          # cell, site, city, subscriber, program_source, ...
    object_id: str
    window_start: datetime    # the window whose value caused this change (UTC)
    window_minutes: int
    episode_start: datetime   # the window the episode's pending began in (UTC)
    at: datetime              # event time of the change: the end of window_start's window, or
                              # the record that completed a count (UTC)
    value: float | None       # the rule's value in that window, in value_unit
    value_unit: str | None
    evidence: dict[str, Any] = field(default_factory=dict)  # expr, kind, operand values, window, ...

    @property
    def key(self) -> str:
        """Idempotency key of this event: the same each time the same change is produced."""
        return f"{self.fingerprint}|{self.episode_start.isoformat()}|{self.state.value}"
