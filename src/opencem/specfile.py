"""Definition files users write (YAML), validated in layers with every problem reported at
once as a sentence naming the file, line and field.

Layer 1 is YAML syntax, layer 2 the typed model (pydantic, unknown keys are errors), layer 3
the semantic rules each loader applies. Every loader (table schemas, counter dictionaries,
mapping files, KPI/KQI/CEI definitions) reports problems as :class:`Issue`; callers get
:class:`SpecError` holding all of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from .errors import OpencemError

M = TypeVar("M", bound=BaseModel)
Level = Literal["error", "warning"]


@dataclass(frozen=True)
class Issue:
    """One problem in a definition file. ``str()`` gives the sentence a user reads:
    ``<kind> <file>, line <n>, field <field>: <message>.``; a problem with the file as a whole
    (no field) reads ``<kind> <file> line <n> <message>.`` (e.g. "is not valid YAML: ...")."""

    message: str
    level: Level = "error"
    kind: str = ""  # what sort of file: "Mapping", "Table schema", "Definition file", ...
    file: Path | None = None
    line: int | None = None
    field: str | None = None

    def __str__(self) -> str:
        head = " ".join(p for p in (self.kind, self.file.name if self.file else "") if p)
        if self.field is None:
            where = f" line {self.line}" if self.line else ""
            return f"{head}{where} {self.message}.".lstrip()
        parts = [head, *([f"line {self.line}"] if self.line else []), f"field {self.field}"]
        return ", ".join(p for p in parts if p) + f": {self.message}."

    @property
    def sentence(self) -> str:
        return str(self)


class SpecError(OpencemError, ValueError):
    """One or more problems in a definition file; ``issues`` holds them (``str()`` of each is
    its sentence)."""

    def __init__(self, issues: list[Issue | str]):
        self.issues = [i if isinstance(i, Issue) else Issue(i.rstrip("."), kind="") for i in issues]
        super().__init__(" ".join(self.sentences))

    @property
    def sentences(self) -> list[str]:
        return [str(i) for i in self.issues]


def read_yaml(path: Path, kind: str, loader: type = yaml.SafeLoader,
              expects: str = "of keys to values") -> tuple[yaml.Node, dict]:
    """Layer 1: the file's YAML node tree (for line numbers) and its data, which must be a
    mapping; anything else is a :class:`SpecError` naming the file (and line)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError([Issue(f"cannot be read ({exc})", kind=kind, file=path)]) from None
    try:
        root = yaml.compose(text, Loader=loader)
        data = yaml.load(text, Loader=loader)  # noqa: S506 - callers pass SafeLoader subclasses
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        reason = getattr(exc, "problem", None) or str(exc)
        raise SpecError([Issue(f"is not valid YAML: {reason}", kind=kind, file=path,
                               line=mark.line + 1 if mark is not None else None)]) from None
    except (ValueError, TypeError, OverflowError) as exc:  # a scalar YAML cannot build: a date 2026-13-45
        line, value = _unbuildable_scalar(root, loader)
        raise SpecError([Issue(f"has a value YAML cannot read{f' ({value})' if value else ''}: {exc}; "
                               "quote it if it is meant as text", kind=kind, file=path, line=line)]) from None
    if not isinstance(data, dict):
        raise SpecError([Issue(f"must be a YAML mapping {expects}", kind=kind, file=path)])
    repeated = _repeated_keys(root)
    if repeated:
        raise SpecError([Issue(f"gives key {key!r} twice in one mapping (YAML keeps only the last); remove one",
                               kind=kind, file=path, line=line) for key, line in repeated])
    return root, data


def _unbuildable_scalar(root: yaml.Node, loader: type) -> tuple[int | None, str | None]:
    """(line, text) of the first scalar of the tree its loader cannot construct."""
    builder = loader("")
    stack = [root]
    while stack:
        node = stack.pop()
        if isinstance(node, yaml.ScalarNode):
            try:
                builder.construct_object(node, deep=True)
            except (ValueError, TypeError, OverflowError, yaml.YAMLError):
                return node.start_mark.line + 1, node.value
        elif isinstance(node, yaml.MappingNode):
            stack.extend(v for pair in reversed(node.value) for v in reversed(pair))
        elif isinstance(node, yaml.SequenceNode):
            stack.extend(reversed(node.value))
    return None, None


def _repeated_keys(root: yaml.Node) -> list[tuple[str, int]]:
    """(key, line) of every key a mapping of the tree gives twice, found without recursion."""
    out, stack, seen_nodes = [], [root], set()
    while stack:
        node = stack.pop()
        if id(node) in seen_nodes:  # an alias: its node was walked once already
            continue
        seen_nodes.add(id(node))
        if isinstance(node, yaml.MappingNode):
            seen: set = set()
            for k, v in node.value:
                if isinstance(k, yaml.ScalarNode) and k.tag != "tag:yaml.org,2002:merge":
                    if k.value in seen:
                        out.append((k.value, k.start_mark.line + 1))
                    seen.add(k.value)
                stack.append(v)
        elif isinstance(node, yaml.SequenceNode):
            stack.extend(node.value)
    return sorted(out, key=lambda kv: kv[1])


def load_spec(path: Path, model: type[M], kind: str) -> M:
    """Parse ``path`` as YAML and validate it as ``model``; ``kind`` names the file type in
    messages, e.g. "Table schema"."""
    path = Path(path)
    root, data = read_yaml(path, kind)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        issues = [issue_of(kind, path, root, e) for e in exc.errors()]
        raise SpecError(sorted(issues, key=lambda i: (i.line or 0, str(i)))) from None


def issue_of(kind: str, path: Path | None, root: yaml.Node | None, error: dict) -> Issue:
    """A pydantic validation error as an :class:`Issue` with the line of its YAML node."""
    loc = _loc(error)
    msg = error["msg"].removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        msg = "unknown key (check the spelling)"
    return Issue(msg, kind=kind, file=path, line=line_of(root, loc), field=field_path(loc))


def _loc(error: dict) -> list[str]:
    return [str(p) for p in error["loc"] if not str(p).startswith("function-after")]


def field_path(loc: list[str]) -> str:
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
