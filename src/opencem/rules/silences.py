"""Silences: alerts whose labels match every matcher of a silence are left out of
notifications while it is active (``starts_at`` <= t < ``ends_at``). Adding and expiring one
is written to the audit trail. A silence is judged on the clock of the flush that meets it
(event time in the stream, docs/alerting.md), so it mutes what its window covers in a replay too.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from ..errors import OpencemError
from ..store.alerting import list_silences, silences_active_at
from ..store.models import LABEL_LENGTH, Silence
from ..store.repository import as_dict, record_audit
from .matchers import Matcher, matches_empty

MAX_SILENCE = timedelta(days=366)
MAX_COMMENT_CHARS = 2_000


class SilenceError(OpencemError):
    """A silence that cannot be added or expired, in one sentence."""


def add_silence(session, matchers: Sequence[Matcher], starts_at: datetime, ends_at: datetime, author: str,
                comment: str = "") -> Silence:
    """A new silence, written with its audit entry (``silence.add``)."""
    if not matchers:
        raise SilenceError("a silence needs at least one matcher, such as --matcher site_id=S001")
    if matches_empty(matchers):
        raise SilenceError("these matchers also match an alert with no labels, so the silence would mute every "
                           f"alert ({', '.join(map(str, matchers))}); add a matcher on a label alerts have")
    for t, name in ((starts_at, "start"), (ends_at, "end")):
        if t.tzinfo is None:
            raise SilenceError(f"the silence's {name} {t.isoformat()} has no time zone; give it in UTC (…Z)")
    if ends_at <= starts_at:
        raise SilenceError(f"the silence ends ({ends_at.isoformat()}) at or before it starts ({starts_at.isoformat()})")
    if ends_at - starts_at > MAX_SILENCE:
        raise SilenceError("a silence may last at most 366 days; add a new one when it ends")
    author = author.strip()
    if not author or len(author) > LABEL_LENGTH:
        raise SilenceError(f"the author must be 1 to {LABEL_LENGTH} characters (who added the silence)")
    if len(comment) > MAX_COMMENT_CHARS:
        raise SilenceError(f"the comment is {len(comment):,} characters; at most {MAX_COMMENT_CHARS:,}")
    silence = Silence(matchers=[m.as_dict() for m in matchers], starts_at=starts_at, ends_at=ends_at,
                      created_by=author, comment=comment)
    session.add(silence)
    record_audit(session, actor=author, action="silence.add", entity=silence, after=as_dict(silence))
    return silence


def expire_silence(session, silence_id: int, actor: str, now: datetime) -> Silence:
    """End a silence at ``now`` (one that has not started yet ends before it begins), with its
    audit entry (``silence.expire``)."""
    silence = session.get(Silence, silence_id)
    if silence is None:
        raise SilenceError(f"there is no silence {silence_id}; `opencem silences list` shows them")
    if silence.ends_at <= now:
        raise SilenceError(f"silence {silence_id} already ended at {silence.ends_at.isoformat()}")
    before = as_dict(silence)
    if silence.starts_at >= now:
        silence.starts_at = now - timedelta(microseconds=1)
    silence.ends_at = now
    record_audit(session, actor=actor, action="silence.expire", entity=silence, before=before, after=as_dict(silence))
    return silence


def silences(session, now: datetime | None = None, expired: bool = False) -> list[Silence]:
    """Silences not ended by ``now`` (every one with ``expired``)."""
    return list_silences(session, now or datetime.now(UTC), expired)


class SilenceIndex:
    """The silences active at one time, to ask which (if any) mutes a label set."""

    def __init__(self, active: Iterable[Silence]):
        self._silences = [(s.id, [Matcher.from_dict(m) for m in s.matchers]) for s in active]

    @classmethod
    def at(cls, session, at: datetime) -> SilenceIndex:
        return cls(silences_active_at(session, at))

    def silenced_by(self, labels: Mapping[str, Any]) -> int | None:
        for silence_id, matchers in self._silences:
            if all(m.matches(labels) for m in matchers):
                return silence_id
        return None
