"""The arithmetic of counter dictionary ``expr:`` entries: vendor counters, numbers,
``granularity_s``, ``+ - * /`` and parentheses, nothing else.

A counter name is written bare when it is letters, digits, ``_`` and ``.`` starting with a
letter or ``_`` (``pmPdcpVolDlDrb``, ``M8020C3``, ``RRC.AttConnEstab``); any other name is
written in double quotes (``"DL Vol (byte)"``, a ``"`` inside doubled). ``granularity_s`` is
the period length in seconds. There are no functions, comparisons or SQL: an expression can
only do arithmetic on the counters of one measured object in one period.

:func:`parse` checks a text and gives a tree; :func:`evaluate` computes it over NumPy
columns (one value per object and period) with SQL's null rules: a null or absent counter
makes the result null, and so does a division by zero.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

PERIOD = "granularity_s"
# Limits that keep parsing and evaluation far from Python's recursion limit. Vendor KPI formulas
# are a few dozen terms (Nokia's longest, LTE_5025i's denominator, is 15 counters) and rarely
# nest parentheses three deep.
MAX_TOKENS = 1000
MAX_DEPTH = 50  # parentheses and signs nested in one another
# Words that mean someone wrote SQL, not arithmetic.
SQL_WORDS = frozenset({"select", "from", "where", "union", "join", "case", "when", "then", "else", "end",
                       "and", "or", "not", "null", "is", "in", "like", "between", "group", "order",
                       "having", "limit", "insert", "update", "delete", "drop", "create", "with", "as"})
_TOKEN = re.compile(r"""
    (?P<ws>\s+)
  | (?P<number>(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?)
  | (?P<name>[A-Za-z_][A-Za-z0-9_.]*)
  | (?P<quoted>"(?:[^"]|"")+")
  | (?P<op>[-+*/()])
""", re.VERBOSE)


class ExprError(ValueError):
    """A counter expression that cannot be used; the message is one clause of a sentence."""


@dataclass(frozen=True)
class Node:
    """``op`` is ``num``, ``name``, ``neg`` or one of + - * /; ``args`` the operands."""

    op: str
    args: tuple = ()
    value: float | str | None = None


def parse(text: str) -> Node:
    """The tree of ``text``; raises :class:`ExprError` saying what is wrong and where."""
    if len(text) > 20 * MAX_TOKENS:
        raise ExprError(f"is {len(text):,} characters long; at most {20 * MAX_TOKENS:,} are allowed")
    tokens = _tokens(text)
    if not tokens:
        raise ExprError("is empty")
    if len(tokens) > MAX_TOKENS:
        raise ExprError(f"has {len(tokens):,} counters, numbers and operators; at most {MAX_TOKENS:,} are allowed")
    parser = _Parser(tokens, text)
    tree = parser.sum()
    if parser.i < len(tokens):
        kind, value, at = tokens[parser.i]
        raise ExprError(f"has {_show(kind, value)} at character {at + 1} where an operator belongs "
                        "(+ - * / join counters and numbers)")
    return tree


def names(tree: Node) -> list[str]:
    """The vendor counter names a tree reads, in first-use order (``granularity_s`` excluded)."""
    found: dict[str, None] = {}
    stack = [tree]
    while stack:  # depth-first, left operand first
        n = stack.pop()
        if n.op == "name" and n.value != PERIOD:
            found[str(n.value)] = None
        stack.extend(reversed(n.args))
    return list(found)


def evaluate(tree: Node, columns: dict[str, tuple[np.ndarray, np.ndarray]],
             period_s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(values, valid) of ``tree`` per row, given (values, valid) of each counter it names
    (absent names are null everywhere) and the period length of each row."""
    n = len(period_s)
    # Post-order over an explicit stack: a long chain (a + b + ... ) is a deep tree.
    done: list[tuple[np.ndarray, np.ndarray]] = []
    stack: list[tuple[Node, bool]] = [(tree, False)]
    while stack:
        node, ready = stack.pop()
        if not ready and node.args:
            stack.append((node, True))
            stack.extend((a, False) for a in reversed(node.args))
            continue
        if node.op == "num":
            done.append((np.full(n, float(node.value)), np.ones(n, bool)))
        elif node.op == "name":
            done.append((period_s.astype(float), np.ones(n, bool)) if node.value == PERIOD
                        else columns.get(str(node.value), (np.zeros(n), np.zeros(n, bool))))
        elif node.op == "neg":
            v, ok = done.pop()
            done.append((-v, ok))
        else:
            (b, b_ok), (a, a_ok) = done.pop(), done.pop()
            done.append(_binary(node.op, a, b, a_ok & b_ok, n))
    values, valid = done.pop()
    valid = valid & np.isfinite(values)
    return np.where(valid, values, 0.0), valid


def _binary(op: str, a: np.ndarray, b: np.ndarray, ok: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    if op == "+":
        return a + b, ok
    if op == "-":
        return a - b, ok
    if op == "*":
        return a * b, ok
    ok = ok & (b != 0)
    return np.divide(a, b, out=np.zeros(n), where=ok), ok


def _tokens(text: str) -> list[tuple[str, str, int]]:
    out, pos = [], 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            if text[pos] == '"':
                raise ExprError(f"has a quoted name at character {pos + 1} that is not closed")
            raise ExprError(f"has {text[pos]!r} at character {pos + 1}; only counter names, numbers, "
                            "granularity_s, + - * / and parentheses are allowed")
        kind = m.lastgroup
        if kind != "ws":
            value = m.group()
            if kind == "quoted":
                kind, value = "name", value[1:-1].replace('""', '"')
            elif kind == "name" and value.lower() in SQL_WORDS:
                raise ExprError(f"has the SQL word {value!r}; a counter expression is arithmetic only "
                                "(quote a counter of that name: \"" + value + "\")")
            out.append((kind, value, pos))
        pos = m.end()
    return out


def _show(kind: str, value: str) -> str:
    return f"counter {value}" if kind == "name" else f"{value!r}"


class _Parser:
    """Recursive descent: sum := product (('+'|'-') product)*; product := unary (('*'|'/') unary)*."""

    def __init__(self, tokens: list[tuple[str, str, int]], text: str):
        self.tokens, self.text, self.i = tokens, text, 0
        self.depth = 0  # parentheses and signs open around the current position

    def _deeper(self, at: int) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise ExprError(f"nests parentheses and signs more than {MAX_DEPTH} deep (at character {at + 1})")

    def peek(self) -> tuple[str, str, int] | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def sum(self) -> Node:
        node = self.product()
        while (t := self.peek()) and t[0] == "op" and t[1] in "+-":
            self.i += 1
            node = Node(t[1], (node, self.product()))
        return node

    def product(self) -> Node:
        node = self.unary()
        while (t := self.peek()) and t[0] == "op" and t[1] in "*/":
            self.i += 1
            node = Node(t[1], (node, self.unary()))
        return node

    def unary(self) -> Node:
        t = self.peek()
        if t and t[0] == "op" and t[1] in "+-":
            self.i += 1
            self._deeper(t[2])
            inner = self.unary()
            self.depth -= 1
            return Node("neg", (inner,)) if t[1] == "-" else inner
        return self.atom()

    def atom(self) -> Node:
        t = self.peek()
        if t is None:
            raise ExprError("ends where a counter or number belongs")
        kind, value, at = t
        self.i += 1
        if kind == "number":
            return Node("num", value=float(value))
        if kind == "name":
            nxt = self.peek()
            if nxt and nxt[0] == "op" and nxt[1] == "(":
                raise ExprError(f"calls {value}(...) at character {at + 1}; functions are not allowed, "
                                "only + - * / and parentheses")
            return Node("name", value=value)
        if value == "(":
            self._deeper(at)
            inner = self.sum()
            self.depth -= 1
            close = self.peek()
            if close is None or close[1] != ")":
                raise ExprError(f"opens a parenthesis at character {at + 1} that is not closed")
            self.i += 1
            return inner
        raise ExprError(f"has {value!r} at character {at + 1} where a counter or number belongs")
