"""The template language of annotations and messages, Prometheus-shaped but closed: only
``{{ $labels.NAME }}``, ``{{ $value }}``, ``{{ $value | printf "%.1f" }}`` and
``{{ $annotations.NAME }}`` (for message templates), nothing that runs code. A template that
uses anything else is refused when its file is checked, not when an alert fires.

(Shared by rule annotations and the notification templates of the alerting config.)
"""

from __future__ import annotations

import math
import re

PLACEHOLDER = re.compile(r"\{\{([^{}]*)\}\}")  # linear: no backtracking over unclosed {{
FIELD = re.compile(r'^\s*\$(labels|annotations)\.([A-Za-z_][A-Za-z0-9_]*)\s*$|^\s*\$value\s*(?:\|\s*printf\s+"(%[-+ 0#]?\d{0,2}(?:\.\d{1,2})?[dfeEgG%])"\s*)?$')


def _parts(text: str) -> list[tuple[str, str | None, str | None]]:
    """(kind, name, format) of each placeholder; ValueError names the first bad one."""
    out = []
    if "{{" in PLACEHOLDER.sub("", text) or "}}" in PLACEHOLDER.sub("", text):
        raise ValueError(f"template {text!r} has an unclosed {{{{ or }}}}")
    for m in PLACEHOLDER.finditer(text):
        f = FIELD.match(m[1])
        if f is None:
            raise ValueError(f"template placeholder {{{{{m[1]}}}}} is not one of {{{{ $labels.NAME }}}}, "
                             "{{ $annotations.NAME }}, {{ $value }} or {{ $value | printf \"%.1f\" }}")
        out.append(("value", None, f[3]) if f[1] is None else (f[1], f[2], None))
    return out


def template_names(text: str) -> list[str]:
    """The label names ``text`` reads (ValueError if it is no valid template)."""
    return [name for kind, name, _ in _parts(text) if kind == "labels"]


def check_template(text: str) -> None:
    _parts(text)


def format_value(value: float | None, fmt: str | None = None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "no value"
    if fmt:
        return fmt % (int(value) if fmt.endswith("d") else value)
    return f"{value:.4g}"


def render(text: str, labels: dict[str, str], value: float | None,
           annotations: dict[str, str] | None = None) -> str:
    """``text`` with its placeholders filled; a label the alert lacks renders empty."""
    def fill(m: re.Match) -> str:
        f = FIELD.match(m[1])
        if f is None:
            return m[0]
        if f[1] is None:
            return format_value(value, f[3])
        source = labels if f[1] == "labels" else (annotations or {})
        return str(source.get(f[2], ""))

    return PLACEHOLDER.sub(fill, text)
