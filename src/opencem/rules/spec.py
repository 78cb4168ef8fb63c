"""Alert rule files: Prometheus's ``groups[].rules[]`` shape, typed (layer 2 of
:mod:`opencem.specfile`). Expressions are parsed and checked against the indicator catalog in
:mod:`.expr` (layer 3), so every problem of a file is reported together.

```yaml
groups:
  - name: video
    query_offset: 5m            # evaluate a window 5 min (event time) after it ends
    rules:
      - alert: CellVideoStallHigh
        expr: cube_cell_15min.stall_ratio_pct > 3 and cube_cell_15min.records_xdr_video >= 20
        for: 30m                # two 15-minute windows in a row
        keep_firing_for: 15m
        no_data: ok             # ok | alerting | nodata | keep_last
        labels: {severity: major}
        annotations:
          summary: "Cell {{ $labels.cell_id }}: video stall {{ $value }} %"
```
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import date
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..specfile import Issue, issue_of, line_of, read_yaml

KIND = "Rule file"
ALERT_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_:]*$")  # Prometheus's metric/alert name form
LABEL_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
DURATION_RE = re.compile(r"^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")
# Label names evaluation sets itself: a rule may not set them.
RESERVED_LABELS = ("alertname", "site_id", "city", "province")
NoData = Literal["ok", "alerting", "nodata", "keep_last"]
OnError = Literal["error", "alerting", "keep_last"]


def parse_duration(text: str) -> int:
    """Seconds of a Prometheus duration (``90s``, ``15m``, ``1h30m``, ``7d``; ``0`` too)."""
    text = str(text).strip()
    m = DURATION_RE.fullmatch(text)
    if text != "0" and (not text or m is None or not any(m.groups())):
        raise ValueError(f"{text!r} is not a duration such as 90s, 15m, 2h or 1h30m")
    if text == "0":
        return 0
    d, h, mi, s = (int(g or 0) for g in m.groups())
    return ((d * 24 + h) * 60 + mi) * 60 + s


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class RuleModel(Strict):
    alert: str
    expr: str = Field(min_length=1)
    for_: str = Field(default="0", alias="for")
    keep_firing_for: str = "0"
    no_data: NoData = "ok"
    on_error: OnError = "error"
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)

    @field_validator("alert")
    @classmethod
    def _alert(cls, value: str) -> str:
        if not ALERT_NAME_RE.fullmatch(value):
            raise ValueError(f"{value!r} is not an alert name: letters, digits, _ and :, not starting with a digit")
        return value

    @field_validator("for_", "keep_firing_for", mode="before")
    @classmethod
    def _duration(cls, value: object) -> str:
        parse_duration(str(value))
        return str(value)

    @field_validator("labels", "annotations", mode="before")
    @classmethod
    def _text_values(cls, value: object) -> object:
        # YAML reads severity: 1 or page: true as numbers and booleans; labels are text
        if isinstance(value, dict):
            return {k: (str(v).lower() if isinstance(v, bool) else str(v)) if isinstance(v, (int, float, bool)) else v
                    for k, v in value.items()}
        return value

    @field_validator("labels")
    @classmethod
    def _label_names(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value:
            if not LABEL_NAME_RE.fullmatch(name):
                raise ValueError(f"label name {name!r} must be letters, digits and _, not starting with a digit")
            if name in RESERVED_LABELS or name.startswith("__"):
                raise ValueError(f"label {name!r} is set by evaluation; choose another name")
        return value


class GroupModel(Strict):
    name: str = Field(min_length=1)
    query_offset: str = "0"
    time_zone: str = "UTC"  # hour-of-week and holidays of the anomaly baselines
    rules: list[RuleModel] = Field(min_length=1)

    @field_validator("query_offset", mode="before")
    @classmethod
    def _duration(cls, value: object) -> str:
        parse_duration(str(value))
        return str(value)


class RuleFileModel(Strict):
    groups: list[GroupModel] = Field(min_length=1)
    holidays: list[date] = Field(default_factory=list)  # scored against Sundays, kept out of baselines


class Rule(BaseModel):
    """One checked rule, with where it came from (for messages) and its version."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    name: str
    group: str
    expr: str
    for_s: int
    keep_firing_for_s: int
    query_offset_s: int
    no_data: NoData
    on_error: OnError
    labels: dict[str, str]
    annotations: dict[str, str]
    time_zone: str
    holidays: tuple[date, ...]
    file: Path
    line: int | None

    @property
    def version(self) -> str:
        """Fingerprint of what the rule says (not where): state kept with another version is not reused."""
        body = self.model_dump(mode="json", exclude={"file", "line"})
        return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]


def read_rule_file(path: Path) -> tuple[list[Rule], list[Issue], object]:
    """Layers 1 and 2 of a rule file: its rules, the issues found, and its YAML tree (for
    the lines of later issues). Raises :class:`~opencem.specfile.SpecError` when the file cannot be read at all."""
    path = Path(path)
    root, data = read_yaml(path, KIND, expects="with a groups: list")
    from pydantic import ValidationError

    try:
        doc = RuleFileModel.model_validate(data)
    except ValidationError as exc:
        issues = [issue_of(KIND, path, root, e) for e in exc.errors()]
        return [], sorted(issues, key=lambda i: (i.line or 0, str(i))), root
    rules, issues, seen = [], [], {}
    for g, group in enumerate(doc.groups):
        try:
            from zoneinfo import ZoneInfo

            ZoneInfo(group.time_zone)
        except Exception:  # noqa: BLE001 - any failure means the zone is unknown
            issues.append(Issue(f"{group.time_zone!r} is not an IANA time zone such as Europe/Rome", kind=KIND,
                                file=path, line=line_of(root, ["groups", str(g), "time_zone"]),
                                field=f"groups[{g}].time_zone"))
        for r, rule in enumerate(group.rules):
            loc = ["groups", str(g), "rules", str(r)]
            line = line_of(root, loc)
            if rule.alert in seen:
                issues.append(Issue(f"alert {rule.alert!r} is defined twice (also at line {seen[rule.alert]}); "
                                    "give each rule its own name", kind=KIND, file=path,
                                    line=line_of(root, [*loc, "alert"]), field=f"groups[{g}].rules[{r}].alert"))
            seen.setdefault(rule.alert, line)
            rules.append(Rule(name=rule.alert, group=group.name, expr=rule.expr.strip(),
                              for_s=parse_duration(rule.for_), keep_firing_for_s=parse_duration(rule.keep_firing_for),
                              query_offset_s=parse_duration(group.query_offset), no_data=rule.no_data,
                              on_error=rule.on_error, labels=dict(rule.labels), annotations=dict(rule.annotations),
                              time_zone=group.time_zone, holidays=tuple(doc.holidays), file=path, line=line))
    return rules, issues, root


def rule_field(rule: Rule, root, name: str) -> tuple[int | None, str]:
    """(line, field path) of a field of ``rule`` in its file, for layer-3 issues."""
    import yaml

    # Find the rule's node by its line: rules are listed in order under groups[].rules[].
    if isinstance(root, yaml.MappingNode):
        for g_key, groups in root.value:
            if g_key.value != "groups" or not isinstance(groups, yaml.SequenceNode):
                continue
            for g, group in enumerate(groups.value):
                for k, rules in getattr(group, "value", []):
                    if k.value != "rules" or not isinstance(rules, yaml.SequenceNode):
                        continue
                    for r, node in enumerate(rules.value):
                        if node.start_mark.line + 1 == rule.line:
                            loc = ["groups", str(g), "rules", str(r), name]
                            return line_of(root, loc), f"groups[{g}].rules[{r}].{name}"
    return rule.line, name
