"""The issue's measure of alert noise: notifications per incident after grouping and
inhibition (target at most 1.5), computed from the store for one run (an event-time range).

Counted are the operator notifications that told something new (a group's first notice and
its updates with newly firing alerts; not repeats, not resolved-only notices, not messages to
customers, which are one per customer by design). Incidents are what the caller knows from
the truth (the simulator's faults) or, by default, the alerts that fired in the range and
were not inhibited by another: what a person would otherwise have had to look at.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from ..store.alerting import episode_counts, operator_notifications


@dataclass(frozen=True)
class NoiseMeasure:
    notifications: int          # operator notices that told something new
    all_notifications: int      # with repeats and resolved notices
    incidents: int
    alerts_fired: int
    alerts_inhibited: int

    @property
    def per_incident(self) -> float | None:
        return self.notifications / self.incidents if self.incidents else None


def notifications_per_incident(session, start: datetime, end: datetime, incidents: int | None = None) -> NoiseMeasure:
    """The measure over alerts fired and notices decided in [start, end) (event time)."""
    notes = operator_notifications(session, start, end)
    told = [n for n in notes if n.payload.get("status") == "firing" and not n.payload.get("repeat")]
    counts = episode_counts(session, start, end)
    return NoiseMeasure(len(told), len(notes), counts["not_inhibited"] if incidents is None else incidents,
                        counts["fired"], counts["fired"] - counts["not_inhibited"])
