"""Routing as Alertmanager does it: an alert walks down the route tree; at each node the first
child whose matchers all match takes it (and the walk goes on to later siblings only when that
child says ``continue: true``); a node none of whose children match keeps the alert itself.
Each route it ends at groups it by that route's ``group_by`` labels.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping

from .alerting_spec import Route
from .matchers import all_match


def match_routes(route: Route, labels: Mapping[str, str]) -> list[Route]:
    """The routes an alert with ``labels`` ends at, in tree order (the root when no child
    matches)."""
    if not all_match(route.matchers, labels):
        return []
    found: list[Route] = []
    for child in route.routes:
        matched = match_routes(child, labels)
        found += matched
        if matched and not child.continue_:
            break
    return found or [route]


def group_labels(route: Route, labels: Mapping[str, str]) -> dict[str, str]:
    """The labels that name an alert's group on ``route``: its ``group_by`` labels (every one
    for ``...``); a label the alert lacks is left out, as in Alertmanager."""
    if "..." in route.group_by:
        return dict(sorted(labels.items()))
    return {name: labels[name] for name in sorted(route.group_by) if name in labels}


def group_key(route: Route, labels: Mapping[str, str]) -> tuple[str, dict[str, str]]:
    """(the group's key: route and group labels hashed to 32 hex digits, the group labels)."""
    chosen = group_labels(route, labels)
    text = json.dumps([route.id, route.receiver, sorted(chosen.items())], separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:32], chosen
