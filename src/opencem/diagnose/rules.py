"""The expert rule layer: an editable YAML file of ordered rules over the evidence features,
validated in layers like every definition file, and rendered to one SQL CASE so it runs over
every case at once.

A file::

    decide_above: 0.9            # a first matching rule this confident decides; below, the learned layer does
    poor_sessions:               # what makes a session poor, per service (SQL over the session table)
      voice: NOT setup_success OR dropped OR setup_time_ms > 5000
      ...
    rules:
      - name: account_suspended
        when: bss_suspended AND poor_blocked_share >= 0.5
        domain: account
        cause: suspension
        location: subscriber
        confidence: 0.97
        evidence: "BSS shows the line suspended; {poor_blocked_share:%} of the poor sessions were refused."

Expressions are checked with the indicator language's checker (SQLGlot, a whitelist of nodes,
types): a rule's ``when`` over the evidence features, a poor-session condition over its
session table's columns. ``{feature}`` in an evidence sentence is the case's value,
``{feature:%}`` a share as a percentage, ``{feature:.1f}`` a number with one decimal.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field

from ..schema import TABLES
from ..specfile import Issue, SpecError, issue_of, line_of, read_yaml
from .causes import CAUSES, DOMAINS, LOCATION_TYPES
from .evidence import SESSION_TABLES

KIND = "Diagnosis rules"
LIBRARY = Path(__file__).with_name("library") / "rules.yaml"
PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)(?::([^{}]*))?\}")
FORMATS = re.compile(r"^(%|\.\d%|\.\d+f|d)?$")


class RuleModel(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    when: str
    domain: str
    cause: str
    location: str
    confidence: float = Field(gt=0, le=1)
    evidence: str
    description: str = ""


class FileModel(BaseModel):
    model_config = ConfigDict(extra="forbid")
    decide_above: float = Field(0.9, gt=0, le=1)
    poor_sessions: dict[str, str]
    rules: list[RuleModel] = Field(min_length=1)


@dataclass(frozen=True)
class Rule:
    name: str
    when_sql: str
    domain: str
    cause: str
    location: str
    confidence: float
    evidence: str
    line: int | None


@dataclass(frozen=True)
class RuleSet:
    path: Path
    decide_above: float
    poor_sql: dict[str, str]  # service -> SQL condition on its session table
    rules: tuple[Rule, ...]
    warnings: tuple[Issue, ...] = ()

    def case_sql(self) -> str:
        """``rule_index`` (1-based; 0 when no rule matches) of the first rule that holds."""
        whens = " ".join(f"WHEN coalesce(({r.when_sql}), false) THEN {i}" for i, r in enumerate(self.rules, 1))
        return f"CASE {whens} ELSE 0 END"

    def evidence_sql(self) -> str:
        """The matched rule's evidence sentence with the case's values, as SQL."""
        whens = " ".join(f"WHEN {i} THEN {template_sql(r.evidence)}" for i, r in enumerate(self.rules, 1))
        return f"CASE rule_index {whens} END"


def template_sql(template: str) -> str:
    """A sentence with ``{feature[:format]}`` placeholders as one SQL string expression."""
    parts, at = [], 0
    for m in PLACEHOLDER.finditer(template):
        parts.append(_literal(template[at:m.start()]))
        name, fmt = m.group(1), m.group(2) or ""
        if fmt.endswith("%"):
            digits = fmt[1:-1] if fmt.startswith(".") else "0"
            value = f"printf('%.{digits}f%%', 100 * ({name}))"
        elif fmt.endswith("f"):
            value = f"printf('%{fmt}', {name})"
        elif fmt == "d":
            value = f"printf('%d', CAST(round({name}) AS BIGINT))"
        else:
            value = f"CAST({name} AS VARCHAR)"
        parts.append(f"coalesce({value}, 'n/a')")
        at = m.end()
    parts.append(_literal(template[at:]))
    return "concat(" + ", ".join(p for p in parts if p != "''") + ")"


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _render(tree) -> str:
    return tree.sql(dialect="duckdb")


def load_rules(path: Path | None, features: dict[str, pa.DataType]) -> RuleSet:
    """Read and check a rule file (the library's when ``path`` is None) against the evidence
    ``features``. Every problem at once: a :class:`SpecError` with file, line and field."""
    from ..indicators.expr import check_filter

    path = Path(path) if path is not None else LIBRARY
    root, data = read_yaml(path, KIND)
    from pydantic import ValidationError

    try:
        model = FileModel.model_validate(data)
    except ValidationError as exc:
        raise SpecError(sorted((issue_of(KIND, path, root, e) for e in exc.errors()),
                               key=lambda i: (i.line or 0, str(i)))) from None
    issues: list[Issue] = []
    warnings: list[Issue] = []

    def problem(message: str, loc: list[str], level: str = "error") -> None:
        issue = Issue(message, level=level, kind=KIND, file=path, line=line_of(root, loc),
                      field=".".join(p if not p.isdigit() else f"[{p}]" for p in loc).replace(".[", "["))
        (issues if level == "error" else warnings).append(issue)

    poor = {}
    tables = TABLES
    for service, text in model.poor_sessions.items():
        if service not in SESSION_TABLES:
            problem(f"unknown service {service!r}; one of {', '.join(SESSION_TABLES)}", ["poor_sessions", service])
            continue
        table = tables[SESSION_TABLES[service]]
        checked = check_filter(text, {f.name: f.type for f in table.schema})
        for sentence in checked.issues:
            problem(sentence, ["poor_sessions", service])
        if checked.ok:
            poor[service] = _render(checked.tree)
    for service in SESSION_TABLES:
        if service not in model.poor_sessions:
            problem(f"gives no condition for {service}; every service needs one", ["poor_sessions"])
    rules, names = [], {}
    for i, r in enumerate(model.rules):
        at = ["rules", str(i)]
        if r.name in names:
            problem(f"rule name {r.name!r} is used twice (rules {names[r.name] + 1} and {i + 1})", at + ["name"])
        names.setdefault(r.name, i)
        cause = CAUSES.get(r.cause)
        if cause is None:
            from ..errors import suggest

            problem(f"unknown cause {r.cause!r}{suggest(r.cause, CAUSES)}", at + ["cause"])
        if r.domain not in DOMAINS:
            problem(f"unknown domain {r.domain!r}; one of {', '.join(DOMAINS)}", at + ["domain"])
        elif cause is not None and cause.domain != r.domain:
            problem(f"cause {r.cause} is in domain {cause.domain}, not {r.domain}", at + ["domain"])
        if r.location not in LOCATION_TYPES:
            problem(f"unknown location {r.location!r}; one of {', '.join(LOCATION_TYPES)}", at + ["location"])
        elif cause is not None and cause.location_type != r.location:
            problem(f"cause {r.cause} is located at a {cause.location_type}, not a {r.location}", at + ["location"])
        checked = check_filter(r.when, features)
        for sentence in checked.issues:
            problem(sentence, at + ["when"])
        for sentence in checked.warnings:
            problem(sentence, at + ["when"], "warning")
        for m in PLACEHOLDER.finditer(r.evidence):
            if m.group(1) not in features and m.group(1) not in ("subscriber_id", "hour_start"):
                from ..errors import suggest

                problem(f"evidence names {m.group(1)!r}, which is no evidence feature{suggest(m.group(1), features)}",
                        at + ["evidence"])
            if not FORMATS.match(m.group(2) or ""):
                problem(f"evidence format {m.group(2)!r} of {m.group(1)} is not one of: (none), %, .1%, .1f, d",
                        at + ["evidence"])
        if checked.ok:
            rules.append(Rule(r.name, _render(checked.tree), r.domain, r.cause, r.location, r.confidence,
                              r.evidence, line_of(root, at)))
    if issues:
        raise SpecError(sorted(issues, key=lambda i: (i.line or 0, str(i))))
    return RuleSet(path, model.decide_above, poor, tuple(rules), tuple(warnings))


def evidence_features() -> dict[str, pa.DataType]:
    """The evidence features and their types, from the evidence SQL run on an empty lake."""
    from . import evidence

    return evidence.empty_feature_types()
