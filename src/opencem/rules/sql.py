"""SQL text helpers shared by the rule evaluators."""

from __future__ import annotations


def q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def lit(value) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    return repr(value)


def fingerprint_sql(rule_name: str, dims: list[str]) -> str:
    """The series fingerprint of ``events.fingerprint`` computed in SQL over the dimension columns."""
    parts = [lit(rule_name), *(f"{lit(d + '=')} || CAST({q(d)} AS VARCHAR)" for d in sorted(dims))]
    return f"substr(sha256(concat_ws(chr(31), {', '.join(parts)})), 1, 16)"
