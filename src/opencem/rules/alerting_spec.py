"""The alerting config (docs/alerting.md): where alerts go after evaluation, in
Alertmanager's shape: a ``route`` tree, ``receivers``, ``inhibit_rules``, plus message
``templates``, ``quiet_hours`` and ``cool_down`` for messages to customers.

Validated in layers like every definition file (:mod:`opencem.specfile`): YAML, the typed
model below (unknown keys are errors), then the semantic checks of :func:`check_config`,
every problem at once with file, line and field.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from datetime import time
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ..specfile import Issue, SpecError, issue_of, line_of, read_yaml
from .matchers import LABEL_NAME_RE, Matcher
from .spec import parse_duration
from .templates import check_template

KIND = "Alerting config"
DEFAULT_CONFIG = Path(__file__).with_name("library") / "alerting.yaml"
RECEIVER_NAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,40}$")  # channel names are <type>:<receiver>[#i], 64 chars
MAX_TEMPLATE_CHARS = 2_000
CLOCK_RE = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")
CUSTOMER_TYPES = ("sms", "push")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False, populate_by_name=True)


def _duration(value: object) -> str:
    parse_duration(str(value))
    return str(value)


def _matchers(value: object) -> object:
    if isinstance(value, list):
        for item in value:
            Matcher.parse(item)
    return value


class RouteModel(Strict):
    receiver: str | None = None
    matchers: list[str] = Field(default_factory=list)
    continue_: bool = Field(default=False, alias="continue")
    group_by: list[str] | None = None
    group_wait: str | None = None
    group_interval: str | None = None
    repeat_interval: str | None = None
    routes: list[RouteModel] = Field(default_factory=list)

    _m = field_validator("matchers")(classmethod(lambda cls, v: _matchers(v)))
    _d = field_validator("group_wait", "group_interval", "repeat_interval", mode="before")(
        classmethod(lambda cls, v: None if v is None else _duration(v)))

    @field_validator("group_by")
    @classmethod
    def _group_by(cls, value: list[str] | None) -> list[str] | None:
        for name in value or []:
            if name != "..." and not LABEL_NAME_RE.fullmatch(name):
                raise ValueError(f"{name!r} is not a label name (or ... for every label)")
        return value


class GatewayFields(Strict):
    url: str | None = None              # an HTTP gateway; none: the outbox file
    token_env: str | None = None        # bearer token for the HTTP gateway, from this variable
    token_file: str | None = None       # ... or this file
    timeout: str = "10s"
    max_attempts: int = Field(default=5, ge=1, le=50)

    _d = field_validator("timeout", mode="before")(classmethod(lambda cls, v: _duration(v)))


class CustomerMessageModel(GatewayFields):
    """An SMS or push message to the customer an alert is about."""

    to: str = "{{ $labels.subscriber_id }}"
    template: str | None = None         # a name in templates:
    text: str | None = None             # or the text itself
    title: str | None = None            # push only
    max_chars: int = Field(default=480, ge=20, le=5_000)


class WebhookModel(Strict):
    url: str
    secret_env: str | None = None
    secret_file: str | None = None
    send_resolved: bool = True
    max_alerts: int = Field(default=100, ge=1, le=10_000)
    timeout: str = "10s"
    max_attempts: int = Field(default=8, ge=1, le=50)

    _d = field_validator("timeout", mode="before")(classmethod(lambda cls, v: _duration(v)))


class WorkOrderModel(Strict):
    sink: str = "store"      # a registered work-order sink (the SOC workflow's); store: record only
    queue: str = "noc"
    priority: str = "P3"
    max_attempts: int = Field(default=8, ge=1, le=50)


class ReceiverModel(Strict):
    name: str
    sms_configs: list[CustomerMessageModel] = Field(default_factory=list)
    push_configs: list[CustomerMessageModel] = Field(default_factory=list)
    webhook_configs: list[WebhookModel] = Field(default_factory=list)
    work_order_configs: list[WorkOrderModel] = Field(default_factory=list)
    outbox: bool | None = None  # group notices as lines of WORKSPACE/outbox/<receiver>.jsonl; default when nothing else
    send_resolved: bool = False  # for the outbox

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not RECEIVER_NAME_RE.fullmatch(value):
            raise ValueError(f"receiver name {value!r} must be 1-40 letters, digits, _, . or -")
        return value


class InhibitModel(Strict):
    source_matchers: list[str] = Field(min_length=1)
    target_matchers: list[str] = Field(min_length=1)
    equal: list[str] = Field(default_factory=list)

    _m = field_validator("source_matchers", "target_matchers")(classmethod(lambda cls, v: _matchers(v)))


class QuietHoursModel(Strict):
    start: str
    end: str
    during: Literal["hold", "skip"] = "hold"  # hold until quiet hours end, or skip the message
    default_time_zone: str = "UTC"            # for a customer whose home cell has no time zone

    @field_validator("start", "end", mode="before")
    @classmethod
    def _clock(cls, value: object) -> str:
        if isinstance(value, int):  # YAML 1.1 reads 21:00 unquoted as a sexagesimal number
            value = f"{value // 60:02d}:{value % 60:02d}"
        if not isinstance(value, str) or not CLOCK_RE.fullmatch(value):
            raise ValueError(f"{value!r} is not a local time of day like 21:00")
        return value


class ConfigModel(Strict):
    route: RouteModel
    receivers: list[ReceiverModel] = Field(min_length=1)
    inhibit_rules: list[InhibitModel] = Field(default_factory=list)
    templates: dict[str, str] = Field(default_factory=dict)
    quiet_hours: QuietHoursModel | None = None
    cool_down: str = "0"

    _d = field_validator("cool_down", mode="before")(classmethod(lambda cls, v: _duration(v)))

    @field_validator("templates")
    @classmethod
    def _templates(cls, value: dict[str, str]) -> dict[str, str]:
        for name, text in value.items():
            if len(text) > MAX_TEMPLATE_CHARS:
                raise ValueError(f"template {name!r} is {len(text):,} characters; at most {MAX_TEMPLATE_CHARS:,}")
        return value


# --- the checked config -------------------------------------------------------------------------

@dataclass(frozen=True)
class Route:
    """A node of the route tree with the settings it inherits filled in."""

    id: str                       # root, root.0, root.0.1: its place in the tree
    receiver: str
    matchers: tuple[Matcher, ...]
    continue_: bool
    group_by: tuple[str, ...]     # ("...",): every label
    group_wait_s: int
    group_interval_s: int
    repeat_interval_s: int
    routes: tuple[Route, ...] = ()


@dataclass(frozen=True)
class Integration:
    """One way a receiver delivers: ``channel`` names it (``sms:care``, ``webhook:noc#1``)."""

    channel: str
    type: str                     # sms, push, webhook, work_order, outbox
    receiver: str
    send_resolved: bool = False
    url: str | None = None
    secret_env: str | None = None
    secret_file: str | None = None
    token_env: str | None = None
    token_file: str | None = None
    timeout_s: float = 10.0
    max_attempts: int = 5
    max_alerts: int = 100
    to: str = "{{ $labels.subscriber_id }}"
    text: str = ""
    title: str | None = None
    max_chars: int = 480
    sink: str = "store"
    queue: str = "noc"
    priority: str = "P3"

    @property
    def customer(self) -> bool:
        return self.type in CUSTOMER_TYPES


@dataclass(frozen=True)
class InhibitRule:
    source: tuple[Matcher, ...]
    target: tuple[Matcher, ...]
    equal: tuple[str, ...]


@dataclass(frozen=True)
class QuietHours:
    start: time
    end: time
    during: str
    default_time_zone: str


@dataclass(frozen=True)
class AlertingConfig:
    route: Route
    receivers: dict[str, tuple[Integration, ...]]
    inhibit_rules: tuple[InhibitRule, ...]
    quiet_hours: QuietHours | None
    cool_down_s: int
    file: Path | None
    version: str
    routes_by_id: dict[str, Route] = field(default_factory=dict)


def _clock(text: str) -> time:
    hours, minutes = text.split(":")
    return time(int(hours), int(minutes))


class AlertingConfigError(SpecError):
    """An alerting config with problems; ``issues`` lists them all."""


def load_config(path: Path | None = None) -> AlertingConfig:
    """The alerting config in ``path`` (the shipped default when None); an
    :class:`AlertingConfigError` listing every error otherwise (warnings do not stop it)."""
    config, issues = check_config(path)
    errors = [i for i in issues if i.level == "error"]
    if errors or config is None:
        raise AlertingConfigError(errors)
    return config


def check_config(path: Path | None = None) -> tuple[AlertingConfig | None, list[Issue]]:
    """Every layer of the config in ``path``: (the config, or None when it has errors; every
    issue found, errors and warnings, in line order)."""
    path = Path(path) if path is not None else DEFAULT_CONFIG
    root, data = read_yaml(path, KIND, expects="with route: and receivers:")
    try:
        doc = ConfigModel.model_validate(data)
    except ValidationError as exc:
        issues = [issue_of(KIND, path, root, e) for e in exc.errors()]
        return None, sorted(issues, key=lambda i: (i.line or 0, str(i)))
    issues: list[Issue] = []

    def issue(message: str, loc: list[str], level: str = "error") -> None:
        from ..specfile import field_path

        issues.append(Issue(message, level=level, kind=KIND, file=path, line=line_of(root, loc),
                            field=field_path(loc)))

    receivers = _receivers(doc, issue)
    route = _route(doc.route, ["route"], None, receivers, issue)
    rules = tuple(InhibitRule(tuple(Matcher.parse(m) for m in r.source_matchers),
                              tuple(Matcher.parse(m) for m in r.target_matchers), tuple(r.equal))
                  for r in doc.inhibit_rules)
    for i, rule in enumerate(doc.inhibit_rules):
        for name in rule.equal:
            if not LABEL_NAME_RE.fullmatch(name):
                issue(f"{name!r} is not a label name", ["inhibit_rules", str(i), "equal"])
    quiet = None
    if doc.quiet_hours is not None:
        q = doc.quiet_hours
        if q.start == q.end:
            issue("quiet hours start and end at the same time; give two different times or leave quiet_hours out",
                  ["quiet_hours", "end"])
        try:
            ZoneInfo(q.default_time_zone)
        except Exception:  # noqa: BLE001 - any failure means the zone is unknown
            issue(f"{q.default_time_zone!r} is not an IANA time zone such as Europe/Rome",
                  ["quiet_hours", "default_time_zone"])
        quiet = QuietHours(_clock(q.start), _clock(q.end), q.during, q.default_time_zone)
    used = set()
    _walk(route, lambda r: used.add(r.receiver))
    for i, receiver in enumerate(doc.receivers):
        if receiver.name not in used:
            issue(f"receiver {receiver.name!r} is not used by any route", ["receivers", str(i), "name"], "warning")
    issues.sort(key=lambda i: (i.line or 0, str(i)))
    if any(i.level == "error" for i in issues):
        return None, issues
    by_id: dict[str, Route] = {}
    _walk(route, lambda r: by_id.setdefault(r.id, r))
    version = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    return AlertingConfig(route, receivers, rules, quiet, parse_duration(doc.cool_down), path, version, by_id), issues


def _walk(route: Route, visit) -> None:
    stack = [route]
    while stack:
        node = stack.pop()
        visit(node)
        stack.extend(node.routes)


def _route(model: RouteModel, loc: list[str], parent: Route | None, receivers: dict, issue) -> Route:
    if parent is None:
        if model.receiver is None:
            issue("the root route needs a receiver (where alerts no child route takes go)", loc)
        if model.matchers:
            issue("the root route matches every alert; put matchers on its child routes", [*loc, "matchers"])
    receiver = model.receiver or (parent.receiver if parent else "")
    if model.receiver is not None and model.receiver not in receivers:
        from ..errors import suggest

        issue(f"receiver {model.receiver!r} is not defined under receivers{suggest(model.receiver, receivers, True)}",
              [*loc, "receiver"])

    def seconds(value: str | None, inherited: int | None, default: int) -> int:
        if value is not None:
            return parse_duration(value)
        return inherited if inherited is not None else default

    wait = seconds(model.group_wait, parent.group_wait_s if parent else None, 30)
    interval = seconds(model.group_interval, parent.group_interval_s if parent else None, 300)
    repeat = seconds(model.repeat_interval, parent.repeat_interval_s if parent else None, 4 * 3600)
    if interval <= 0:
        issue("group_interval must be longer than 0", [*loc, "group_interval"])
    if repeat < interval:
        issue(f"repeat_interval ({repeat} s) is shorter than group_interval ({interval} s): repeats come only "
              "at group_interval ticks", [*loc, "repeat_interval"], "warning")
    group_by = tuple(model.group_by) if model.group_by is not None else (parent.group_by if parent else ())
    node_id = loc_id(loc)
    children = tuple(_route(child, [*loc, "routes", str(i)], Route(node_id, receiver, (), False, group_by, wait,
                                                                     interval, repeat), receivers, issue)
                     for i, child in enumerate(model.routes))
    return Route(node_id, receiver, tuple(Matcher.parse(m) for m in model.matchers), model.continue_, group_by,
                 wait, interval, repeat, children)


def loc_id(loc: list[str]) -> str:
    """root, root.0, root.0.1 from route / routes / 0 / routes / 1."""
    return ".".join(["root", *[p for p in loc if p.isdigit()]])


def _receivers(doc: ConfigModel, issue) -> dict[str, tuple[Integration, ...]]:
    out: dict[str, tuple[Integration, ...]] = {}
    for r, receiver in enumerate(doc.receivers):
        loc = ["receivers", str(r)]
        if receiver.name in out:
            issue(f"receiver {receiver.name!r} is defined twice; give each its own name", [*loc, "name"])
        integrations: list[Integration] = []

        def channel(kind: str, i: int) -> str:
            return f"{kind}:{receiver.name}" + (f"#{i}" if i else "")

        for kind in CUSTOMER_TYPES:
            for i, c in enumerate(getattr(receiver, f"{kind}_configs")):
                cloc = [*loc, f"{kind}_configs", str(i)]
                text = _message_text(doc, c, cloc, issue)
                for name, tmpl in (("to", c.to), ("title", c.title)):
                    _check_template(tmpl, [*cloc, name], issue)
                if c.url is not None:
                    _check_url(c.url, [*cloc, "url"], issue)
                if c.token_env and c.token_file:
                    issue("give token_env or token_file, not both", [*cloc, "token_file"])
                integrations.append(Integration(channel(kind, i), kind, receiver.name, url=c.url, token_env=c.token_env,
                                                token_file=c.token_file, timeout_s=parse_duration(c.timeout) or 10,
                                                max_attempts=c.max_attempts, to=c.to, text=text, title=c.title,
                                                max_chars=c.max_chars))
        for i, w in enumerate(receiver.webhook_configs):
            wloc = [*loc, "webhook_configs", str(i)]
            _check_url(w.url, [*wloc, "url"], issue)
            if (w.secret_env is None) == (w.secret_file is None):
                issue("a webhook signs its payloads: give secret_env (a variable holding the secret) or secret_file, "
                      "one of them", [*wloc, "secret_env"])
            integrations.append(Integration(channel("webhook", i), "webhook", receiver.name, w.send_resolved,
                                            url=w.url, secret_env=w.secret_env, secret_file=w.secret_file,
                                            timeout_s=parse_duration(w.timeout) or 10, max_attempts=w.max_attempts,
                                            max_alerts=w.max_alerts))
        for i, w in enumerate(receiver.work_order_configs):
            integrations.append(Integration(channel("work_order", i), "work_order", receiver.name,
                                            max_attempts=w.max_attempts, sink=w.sink, queue=w.queue,
                                            priority=w.priority))
        if receiver.outbox or (receiver.outbox is None and not integrations):
            integrations.append(Integration(channel("outbox", 0), "outbox", receiver.name, receiver.send_resolved))
        out.setdefault(receiver.name, tuple(integrations))
    return out


def _message_text(doc: ConfigModel, c: CustomerMessageModel, loc: list[str], issue) -> str:
    if (c.template is None) == (c.text is None):
        issue("give the message as template (a name under templates) or text, one of them", [*loc, "template"])
        return ""
    if c.template is not None:
        if c.template not in doc.templates:
            from ..errors import suggest

            issue(f"template {c.template!r} is not defined under templates{suggest(c.template, doc.templates, True)}",
                  [*loc, "template"])
            return ""
        _check_template(doc.templates[c.template], ["templates", c.template], issue)
        return doc.templates[c.template]
    if len(c.text) > MAX_TEMPLATE_CHARS:
        issue(f"the text is {len(c.text):,} characters; at most {MAX_TEMPLATE_CHARS:,}", [*loc, "text"])
        return ""
    _check_template(c.text, [*loc, "text"], issue)
    return c.text


def _check_template(text: str | None, loc: list[str], issue) -> None:
    if text is None:
        return
    if len(text) > MAX_TEMPLATE_CHARS:
        issue(f"the template is {len(text):,} characters; at most {MAX_TEMPLATE_CHARS:,}", loc)
        return
    try:
        check_template(text)
    except ValueError as err:
        issue(str(err), loc)


def _check_url(url: str, loc: list[str], issue) -> None:
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        ok = parts.scheme in ("http", "https") and bool(parts.hostname)
    except ValueError:
        ok = False
    if not ok:
        issue(f"{url!r} is not an http:// or https:// URL", loc)
