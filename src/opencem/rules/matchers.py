"""Label matchers, as Alertmanager writes them: ``severity="major"``, ``cell_id!=C1``,
``alertname=~"Cell.*"``, ``site_id!~"S00[1-3]"``. Regular expressions are anchored (they must
match the whole value) and run on RE2, in time linear in the value, so a matcher from a config
file or a silence cannot stall routing however it is written. A label an alert lacks reads as
the empty string, as in Prometheus.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import re2

OPS = ("=~", "!~", "!=", "=")
LABEL_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
MATCHER_RE = re.compile(r'^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*(.*?)\s*$', re.DOTALL)
MAX_MATCHER_CHARS = 1_000
_RE2 = re2.Options()
_RE2.log_errors = False  # a bad pattern is the user's error sentence, not a line on stderr


@dataclass(frozen=True)
class Matcher:
    """One condition on one label."""

    label: str
    op: str  # =, !=, =~, !~
    value: str
    _regex: Any = field(default=None, compare=False, repr=False)

    @classmethod
    def of(cls, label: str, op: str, value: str) -> Matcher:
        """A matcher, with its regular expression compiled; ValueError names what is wrong."""
        if not LABEL_NAME_RE.fullmatch(label):
            raise ValueError(f"label name {label!r} must be letters, digits and _, not starting with a digit")
        if op not in OPS:
            raise ValueError(f"operator {op!r} is not one of =, !=, =~, !~")
        regex = None
        if op in ("=~", "!~"):
            try:
                regex = re2.compile(value, _RE2)
            except re2.error as err:
                reason = err.args[0].decode(errors="replace") if err.args and isinstance(err.args[0], bytes) else err
                raise ValueError(f"{value!r} is not a regular expression RE2 accepts ({reason})") from None
        return cls(label, op, value, regex)

    @classmethod
    def parse(cls, text: str) -> Matcher:
        """``label op value`` with the value optionally in double quotes (``\\"`` inside)."""
        if not isinstance(text, str):
            raise ValueError(f"matcher {text!r} must be text like severity=\"major\"")
        if len(text) > MAX_MATCHER_CHARS:
            raise ValueError(f"matcher is {len(text):,} characters long; at most {MAX_MATCHER_CHARS:,}")
        m = MATCHER_RE.fullmatch(text)
        if m is None:
            raise ValueError(f"matcher {text!r} is not label=value, label!=value, label=~regex or label!~regex")
        label, op, value = m.groups()
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1].replace('\\"', '"').replace("\\\\", "\\")
        return cls.of(label, op, value)

    @classmethod
    def from_dict(cls, data: Mapping[str, str]) -> Matcher:
        """The stored form, ``{"label", "op", "value"}`` (silences keep matchers so)."""
        return cls.of(str(data["label"]), str(data["op"]), str(data["value"]))

    def as_dict(self) -> dict[str, str]:
        return {"label": self.label, "op": self.op, "value": self.value}

    def matches(self, labels: Mapping[str, Any]) -> bool:
        value = str(labels.get(self.label, "") or "")
        if self.op == "=":
            return value == self.value
        if self.op == "!=":
            return value != self.value
        hit = self._regex.fullmatch(value) is not None
        return hit if self.op == "=~" else not hit

    def __str__(self) -> str:
        return f'{self.label}{self.op}"{self.value}"'


def all_match(matchers: Iterable[Matcher], labels: Mapping[str, Any]) -> bool:
    return all(m.matches(labels) for m in matchers)


def matches_empty(matchers: Iterable[Matcher]) -> bool:
    """Whether the matchers select an alert with no labels at all (a silence that would mute
    everything, which Alertmanager refuses too)."""
    return all_match(matchers, {})
