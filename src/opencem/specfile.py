"""Definition files users write (YAML), validated in layers with every problem reported at
once as a sentence naming the file, line and field.

Layer 1 is YAML syntax, layer 2 the typed model (pydantic, unknown keys are errors), layer 3
the semantic rules a model's validators apply. Callers get :class:`SpecError` with all issues.
"""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

import yaml
from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)


class SpecError(ValueError):
    """One or more problems in a definition file; ``issues`` holds one sentence each."""

    def __init__(self, issues: list[str]):
        self.issues = issues
        super().__init__(" ".join(issues))


def read_yaml(path: Path, kind: str, loader: type = yaml.SafeLoader,
              expects: str = "of keys to values") -> tuple[yaml.Node, dict]:
    """Layer 1: the file's YAML node tree (for line numbers) and its data, which must be a
    mapping; anything else is a :class:`SpecError` naming the file (and line)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError([f"{kind} {path} cannot be read ({exc})."]) from None
    try:
        root = yaml.compose(text, Loader=loader)
        data = yaml.load(text, Loader=loader)  # noqa: S506 - callers pass SafeLoader subclasses
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        reason = getattr(exc, "problem", None) or str(exc)
        raise SpecError([f"{kind} {path.name}{where} is not valid YAML: {reason}."]) from None
    if not isinstance(data, dict):
        raise SpecError([f"{kind} {path.name} must be a YAML mapping {expects}."])
    return root, data


def load_spec(path: Path, model: type[M], kind: str) -> M:
    """Parse ``path`` as YAML and validate it as ``model``; ``kind`` names the file type in
    messages, e.g. "Table schema"."""
    path = Path(path)
    root, data = read_yaml(path, kind)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        issues = sorted((line_of(root, _loc(e)) or 0, _sentence(kind, path, root, e)) for e in exc.errors())
        raise SpecError([sentence for _, sentence in issues]) from None


def _loc(error: dict) -> list[str]:
    return [str(p) for p in error["loc"] if not str(p).startswith("function-after")]


def _sentence(kind: str, path: Path, root: yaml.Node | None, error: dict) -> str:
    loc = _loc(error)
    field = _field_path(loc)
    line = line_of(root, loc)
    where = f" line {line}," if line else ""
    msg = error["msg"].removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        msg = "unknown key (check the spelling)"
    return f"{kind} {path.name},{where} field {field}: {msg}."


def _field_path(loc: list[str]) -> str:
    """columns[1].unit style: list positions and dotted keys in brackets."""
    out = ""
    for part in loc:
        if part.isdigit() or "." in part:
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out or "(top level)"


def line_of(node: yaml.Node | None, loc: list[str]) -> int | None:
    """1-based line of the deepest YAML node on ``loc`` (pydantic aliases match YAML keys)."""
    line = None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            match = next(((k, v) for k, v in node.value if str(k.value) in (part, part.rstrip("_"))), None)
            if match is None:
                break
            line, node = match[0].start_mark.line + 1, match[1]
        elif isinstance(node, yaml.SequenceNode) and part.isdigit() and int(part) < len(node.value):
            node = node.value[int(part)]
            line = node.start_mark.line + 1
        else:
            break
    return line
