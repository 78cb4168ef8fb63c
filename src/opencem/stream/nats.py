"""NATS JetStream source: the records ``opencem simulate --stream --nats URL`` publishes, one
JSON object per message on ``opencem.<run>.<table>``.

One durable pull consumer per run (``opencem-stream``, on stream ``OPENCEM_<run>``). The
position committed with the window state is the last stream sequence a batch held
(``nats:<seq>``); on start the consumer is re-created to deliver from the next sequence, so a
restart reads again exactly what was not committed, in the same order. Messages are
acknowledged (ack policy *all*: the batch's last message) only after the commit. A PM file is
one message on ``opencem.<run>.pm.<vendor>``, its name in the ``Opencem-File`` header, gzip'd
when ``Content-Encoding: gzip`` says so. ``opencem.<run>.control``'s ``end`` message marks the
end of the feed.
"""

from __future__ import annotations

import asyncio
import gzip
import io
import json

import pyarrow as pa
import pyarrow.json as pajson

from ..errors import MissingDependency
from ..schema import Table
from .sources import Batch, Delivery, PMFile, StreamError

CONSUMER = "opencem-stream"
FETCH = 5_000  # messages per pull request



class NatsSource:
    name = "nats"

    def __init__(self, url: str, run: str, tables: dict[str, Table], timeout_s: float = 5.0):
        try:
            import nats  # noqa: F401
        except ImportError:
            raise MissingDependency("Reading a stream from NATS", "nats", "nats-py") from None
        self.url, self.run, self.tables, self.timeout_s = url, run, tables, timeout_s
        self.stream_name, self.prefix = f"OPENCEM_{run}", f"opencem.{run}"
        self.loop = asyncio.Runner()
        self.ended = False
        self.skipped: dict[str, int] = {}
        self.nc = self.sub = None

    def start(self, committed: set[str]) -> None:
        last = max((int(t.removeprefix("nats:")) for t in committed if t.startswith("nats:")), default=0)
        self.loop.run(self._start(last))

    async def _start(self, last: int) -> None:
        import nats
        from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
        from nats.js.errors import NotFoundError

        async def quiet(err: Exception) -> None:
            pass

        try:
            self.nc = await nats.connect(self.url, connect_timeout=self.timeout_s, allow_reconnect=False,
                                         max_reconnect_attempts=1, error_cb=quiet)
        except Exception as err:
            raise StreamError(f"cannot reach NATS at {self.url} ({type(err).__name__}); start a NATS server with "
                              "JetStream (nats-server -js) or give --nats another URL") from None
        js = self.nc.jetstream(timeout=self.timeout_s)
        try:
            await js.stream_info(self.stream_name)
        except NotFoundError:
            await self.nc.close()
            raise StreamError(f"NATS at {self.url} has no stream {self.stream_name}; start the feed first "
                              f"(opencem simulate --stream --nats {self.url} --run {self.run})") from None
        try:
            await js.delete_consumer(self.stream_name, CONSUMER)
        except NotFoundError:
            pass
        # Re-created at the committed position: what was delivered but not committed before a
        # crash comes again first, in stream order (redelivery after ack_wait would reorder it).
        config = ConsumerConfig(durable_name=CONSUMER, ack_policy=AckPolicy.ALL, filter_subject=f"{self.prefix}.>",
                                max_ack_pending=-1, ack_wait=300,
                                **({"deliver_policy": DeliverPolicy.BY_START_SEQUENCE, "opt_start_seq": last + 1}
                                   if last else {"deliver_policy": DeliverPolicy.ALL}))
        await js.add_consumer(self.stream_name, config)
        self.sub = await js.pull_subscribe_bind(CONSUMER, self.stream_name)

    def poll(self, max_records: int, timeout_s: float) -> Batch | None:
        messages = self.loop.run(self._fetch(max_records, timeout_s))
        if not messages:
            return None
        by_table: dict[str, list[bytes]] = {}
        order: list[str] = []
        pm_files: list[PMFile] = []
        for msg in messages:
            table = msg.subject.removeprefix(self.prefix + ".")
            if table == "control":
                self.ended = self.ended or json.loads(msg.data).get("event") == "end"
                continue
            if table.startswith("pm."):
                pm_files.append(self._pm_file(table.removeprefix("pm."), msg))
                continue
            if table not in self.tables:
                self.skipped[table] = self.skipped.get(table, 0) + 1
                continue
            if table not in by_table:
                order.append(table)
            by_table.setdefault(table, []).append(msg.data)
        # Within a batch, each table's records keep their arrival order (the watermark is
        # advanced record by record, so lateness does not depend on how batches are cut).
        deliveries = [Delivery(t, self._records(t, by_table[t])) for t in order] + pm_files
        last = messages[-1].metadata.sequence.stream
        return Batch(deliveries, [f"nats:{last:020d}"], handle=messages[-1])

    async def _fetch(self, max_records: int, timeout_s: float) -> list:
        from nats.errors import TimeoutError as NatsTimeout

        got: list = []
        timeout = timeout_s
        while len(got) < max_records:
            try:
                got += await self.sub.fetch(min(FETCH, max_records - len(got)), timeout=max(timeout, 0.05))
            except (NatsTimeout, asyncio.TimeoutError):
                break
            timeout = 0.05  # once messages come, take what is already there, then stop
        return got

    @staticmethod
    def _pm_file(vendor: str, msg) -> PMFile:
        headers = msg.headers or {}
        name = headers.get("Opencem-File") or f"{msg.metadata.sequence.stream}.xml"
        data = gzip.decompress(msg.data) if headers.get("Content-Encoding") == "gzip" else msg.data
        return PMFile(vendor, name, data)

    def _records(self, table: str, bodies: list[bytes]) -> pa.Table:
        # Every column optional here: a record may leave one out (canonical() fills it with null).
        schema = pa.schema([f.with_nullable(True) for f in self.tables[table].schema])
        options = pajson.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore")
        out = pajson.read_json(io.BytesIO(b"\n".join(bodies)), parse_options=options,
                               read_options=pajson.ReadOptions(block_size=1 << 24))
        return out.select(schema.names) if set(schema.names) <= set(out.column_names) else out

    def ack(self, batch: Batch) -> None:
        if batch.handle is not None:
            self.loop.run(batch.handle.ack_sync(timeout=self.timeout_s))

    def finished(self) -> bool:
        return self.ended

    def close(self) -> None:
        try:
            if self.nc is not None:
                self.loop.run(self.nc.close())
        finally:
            self.loop.close()
