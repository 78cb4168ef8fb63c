"""The canonical data model: one Arrow schema per table, grouped by domain.

``TABLES`` maps table name to :class:`Table`; ``docs/data-model.md`` is rendered from it
by ``opencem schema --markdown``. The simulator's truth tables (``schema.truth``) are not among
them: they never enter the lake.
"""

from . import customers, network, ops, sessions
from .base import TIMESTAMP, Table, description_of, unit_of

TABLES: dict[str, Table] = {
    t.name: t for mod in (network, sessions, customers, ops) for t in mod.TABLES
}

__all__ = ["TABLES", "TIMESTAMP", "Table", "description_of", "get", "unit_of"]


def get(name: str) -> Table:
    try:
        return TABLES[name]
    except KeyError:
        raise KeyError(f"unknown table {name!r}; known tables: {', '.join(TABLES)}") from None
