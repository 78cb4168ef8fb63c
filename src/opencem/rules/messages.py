"""What a message to a customer says and when it may go: the text rendered from a template
(:mod:`.templates`, which runs no code) with every value cleaned of control characters and
the whole cut to the channel's length; the customer's local time from their home cell's time
zone; the end of quiet hours in UTC, across midnight and daylight-saving changes.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from .alerting_spec import QuietHours
from .templates import render

CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\u2028\u2029]")  # in the text: line breaks stay
VALUE_CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029]")  # in a value: none at all
MAX_VALUE_CHARS = 200  # of one label or annotation inside a message


def fit(text: str, length: int) -> str:
    """``text`` if it fits ``length`` characters, else its head and a hash of the whole (the same
    each time, so keys and ids built from it stay stable; the full value stays in the labels)."""
    if len(text) <= length:
        return text
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    return f"{text[:length - 17]}~{digest}"


def clean(value: Any, max_chars: int | None = MAX_VALUE_CHARS) -> str:
    text = VALUE_CONTROL.sub(" ", str(value))
    return text if max_chars is None or len(text) <= max_chars else text[:max_chars - 1] + "…"


def render_message(template: str, labels: Mapping[str, Any], value: float | None,
                   annotations: Mapping[str, Any] | None, max_chars: int,
                   value_chars: int | None = MAX_VALUE_CHARS) -> str:
    """The template filled from one alert: values inserted as text (never read as template
    again), control characters blanked, each value at most ``value_chars`` characters (None:
    whole, for a recipient), the whole at most ``max_chars``."""
    text = render(template, {k: clean(v, value_chars) for k, v in labels.items()}, value,
                  {k: clean(v, value_chars) for k, v in (annotations or {}).items()})
    text = CONTROL.sub(" ", text).strip()
    return text if len(text) <= max_chars else text[:max_chars - 1] + "…"


def quiet_until(at: datetime, zone: str, quiet: QuietHours) -> datetime | None:
    """When quiet hours end (UTC) if ``at`` falls in them in ``zone``, else None. The end is
    the next local ``quiet.end`` on the customer's clock: 08:00 the morning after a 21:00-08:00
    night, whatever the offset that morning (a local time a spring-forward skips reads as the
    moment after the gap)."""
    tz = _zone(zone, quiet.default_time_zone)
    local = at.astimezone(tz)
    now = local.time().replace(tzinfo=None)
    start, end = quiet.start, quiet.end
    inside = start <= now < end if start < end else (now >= start or now < end)
    if not inside:
        return None
    day = local.date() if now < end else local.date() + timedelta(days=1)
    return _local(day, end, tz).astimezone(UTC)


def _local(day, clock: time, tz: ZoneInfo) -> datetime:
    # A local time the clocks skip (02:30 on a spring-forward night) reads with the offset
    # before the change (PEP 495's fold=0): 03:30 on the new clock, after the gap.
    return datetime.combine(day, clock, tzinfo=tz)


def _zone(name: str | None, default: str) -> ZoneInfo:
    for candidate in (name, default, "UTC"):
        if candidate:
            try:
                return ZoneInfo(candidate)
            except Exception:  # noqa: BLE001 - an inventory value that is no zone: the default
                continue
    return ZoneInfo("UTC")


def customer_time_zones(con, subscriber_ids: Iterable[str]) -> dict[str, str]:
    """subscriber_id -> IANA zone of the subscriber's home cell (``subscribers.home_cell_id``
    -> ``cells.time_zone``), for the subscribers asked, in one query on a DuckDB connection
    over the lake (:func:`opencem.engines.duckdb.connect`). Unknown ones are left out."""
    import pyarrow as pa

    ids = sorted({str(s) for s in subscriber_ids})
    if not ids:
        return {}
    con.register("_asked_subscribers", pa.table({"subscriber_id": pa.array(ids, pa.string())}))
    try:
        rows = con.execute(
            "SELECT s.subscriber_id, c.time_zone FROM _asked_subscribers a "
            "JOIN subscribers s USING (subscriber_id) JOIN cells c ON c.cell_id = s.home_cell_id "
            "WHERE c.time_zone IS NOT NULL").fetchall()
    finally:
        con.unregister("_asked_subscribers")
    return dict(rows)
