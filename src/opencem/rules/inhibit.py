"""Inhibition, as Alertmanager does it, over the topology labels evaluation gives cell alerts:
a target alert is left out of notifications while a source alert fires that matches an inhibit
rule's ``source_matchers``, the target its ``target_matchers``, and both have the same values
of the ``equal`` labels (a label both lack counts as equal). ``equal: [site_id]`` lets a site
outage suppress its cells' alerts, ``equal: [province]`` a core fault its region's.

An alert never inhibits itself, and an alert that matches a rule's source matchers is not a
target of that rule (two outages at one site do not silence each other).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from .alerting_spec import InhibitRule
from .matchers import all_match


class Inhibitor:
    """The firing alerts that can inhibit, indexed per rule by their ``equal`` label values."""

    def __init__(self, rules: Iterable[InhibitRule], firing: Iterable[tuple[int, Mapping[str, Any]]]):
        self.rules = tuple(rules)
        self._sources: list[dict[tuple[str, ...], list[int]]] = [{} for _ in self.rules]
        for alert_id, labels in firing:
            for index, rule in enumerate(self.rules):
                if all_match(rule.source, labels):
                    key = tuple(str(labels.get(name, "")) for name in rule.equal)
                    self._sources[index].setdefault(key, []).append(alert_id)

    def inhibited_by(self, alert_id: int, labels: Mapping[str, Any]) -> int | None:
        """The id of a firing alert that inhibits this one, or None."""
        for index, rule in enumerate(self.rules):
            if not all_match(rule.target, labels) or all_match(rule.source, labels):
                continue
            key = tuple(str(labels.get(name, "")) for name in rule.equal)
            for source in self._sources[index].get(key, ()):
                if source != alert_id:
                    return source
        return None

    def targets_possible(self, labels: Mapping[str, Any]) -> bool:
        return any(all_match(rule.target, labels) for rule in self.rules)
