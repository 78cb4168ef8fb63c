"""The source interface: what the stream runner asks of a feed (a landing folder, NATS
JetStream, an HTTP endpoint; Kafka would be one more module).

A source hands over :class:`Batch` es of records in arrival order. Each batch names what it
consumed in ``tokens``; the runner commits those tokens in the same transaction as the window
state and outputs, and only then calls :meth:`Source.ack`. On restart the source is given the
tokens committed so far and resumes right after them, so a batch is either wholly committed
or delivered again, in the same order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import pyarrow as pa

from ..errors import OpencemError


class StreamError(OpencemError):
    """A stream that cannot start or go on, in one sentence."""


@dataclass
class Delivery:
    """Records of one canonical table, in the order they arrived (columns by canonical name)."""

    table: str
    records: pa.Table


@dataclass
class PMFile:
    """One PM file as delivered (a landing folder's ``pm/<vendor>/<name>``, a NATS
    ``pm.<vendor>`` message): read by the runner with ingest's PM readers and dictionaries."""

    vendor: str
    name: str
    data: bytes = field(repr=False)

    @property
    def table(self) -> str:
        return "pm_counters"


@dataclass
class Batch:
    deliveries: list[Delivery | PMFile]
    tokens: list[str]  # what this batch consumed (file names, a stream sequence), committed with it
    handle: object = field(default=None, repr=False)  # the source's own (messages to ack)
    # A source that answers each delivery (HTTP) asks for receipts: the runner then fills
    # ``receipts`` with one dict of counts per delivery, in order, before the commit.
    want_receipts: bool = False
    receipts: list[dict] = field(default_factory=list, repr=False)
    pm_rows: int = 0  # rows of its PM files, known once the runner read them (copies included)

    @property
    def records(self) -> int:
        """Records of the tables delivered, and the rows of its PM files once they are read."""
        return sum(d.records.num_rows for d in self.deliveries if isinstance(d, Delivery)) + self.pm_rows


class Source(Protocol):
    """A feed of canonical records."""

    name: str

    def start(self, committed: set[str]) -> None:
        """Resume right after what ``committed`` (tokens of committed batches) covers."""

    def poll(self, max_records: int, timeout_s: float) -> Batch | None:
        """The next batch (about ``max_records`` at most, whole files or messages), or None
        when nothing arrived within ``timeout_s``."""

    def ack(self, batch: Batch) -> None:
        """The batch is committed: tell the feed (a broker acknowledgement)."""

    def finished(self) -> bool:
        """The feed says it has ended (a landing folder's manifest, a NATS end message)."""

    def close(self) -> None: ...
