"""Where a stream (:mod:`.stream`) delivers: a landing folder, or NATS JetStream.

**Landing folder** (:class:`LandingSink`), laid out so ``opencem ingest DIR`` reads it whole and
``opencem ingest --watch`` can follow each folder::

    DIR/.opencem-stream              marker: the folder is the stream's to replace
    DIR/manifest.json                the simulation's config, the stream's settings, at the end what it delivered
    DIR/tables/<table>_<YYYYMMDDTHHMMSS>.parquet   one micro-batch of one source, named by its delivery time
    DIR/pm/<vendor>/<file>           PM files as the OSS hands them over (a re-delivery: <stem>_resent<ext>)

Every file is written under a hidden temporary name (``.<name>.tmp``) and renamed when
complete, so a reader never sees half a file.

**NATS JetStream** (:class:`NatsSink`): one message per record on ``opencem.<run>.<table>``, its
body the record as one JSON object (the table's column names; times ISO 8601 UTC text, so a
dump of the subject is a JSON Lines file ``opencem ingest`` reads); one message per PM file on
``opencem.<run>.pm.<vendor>`` with the file's name in the ``Opencem-File`` header (gzip'd, with
``Content-Encoding: gzip``, when larger than the server's max payload). ``opencem.<run>.control``
carries a ``start`` and an ``end`` message (the simulated start, the speed-up, what was
delivered). The stream ``OPENCEM_<run>`` (subjects ``opencem.<run>.>``) is created when missing.
``Nats-Msg-Id`` is the record id (:func:`~.stream.record_ids`), ``#update`` added for an alarm's
or complaint's closing update: a publisher retry is dropped by JetStream's duplicate window. The
stream's deliberate duplicates are re-sends after that window in a real feed, so they carry the
id with ``#resent``: JetStream keeps them and consumers meet them, as they would.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import os
import re
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import MissingDependency
from ..folders import replace_folder
from .stream import DUPLICATE, UPDATE, StreamError, iso_strings, record_ids

LANDING_MARKER = ".opencem-stream"
# Messages published before their acknowledgements are awaited: below the client's limit of
# 4,000 outstanding, so publishing never stalls on it.
ACK_EVERY = 3_000
RUN_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")


def _stamp(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y%m%dT%H%M%S")


def write_atomically(path: Path, write) -> None:
    """``write(tmp)`` fills a hidden temporary file beside ``path``, which is then renamed to it."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


class LandingSink:
    """Micro-batch files in a landing folder (replaced if an earlier stream wrote it)."""

    def __init__(self, folder: Path, force: bool = False):
        self.folder = replace_folder(Path(folder), LANDING_MARKER, "opencem simulate --stream", force)
        (self.folder / "tables").mkdir()
        self.files = 0

    def start(self, manifest: dict) -> None:
        self._manifest(manifest, complete=False)

    def records(self, source: str, tick_ms: int, rows: pa.Table, kinds: np.ndarray) -> None:
        path = self.folder / "tables" / f"{source}_{_stamp(tick_ms)}.parquet"
        # snappy: on files of a few hundred rows zstd costs twice the time for little gain
        write_atomically(path, lambda tmp: pq.write_table(rows, tmp, compression="snappy"))
        self.files += 1

    def file(self, vendor: str, name: str, data: bytes, tick_ms: int, kind: int) -> None:
        folder = self.folder / "pm" / vendor
        folder.mkdir(parents=True, exist_ok=True)
        if kind == DUPLICATE:
            stem, dot, ext = name.rpartition(".")
            name = f"{stem}_resent.{ext}" if dot else f"{name}_resent"
        write_atomically(folder / name, lambda tmp: tmp.write_bytes(data))
        self.files += 1

    def tick(self, tick_ms: int) -> None:
        pass

    def close(self, manifest: dict | None, complete: bool) -> None:
        if manifest is not None:
            self._manifest(manifest, complete)

    def _manifest(self, manifest: dict, complete: bool) -> None:
        text = json.dumps({**manifest, "complete": complete}, indent=2, default=str)
        write_atomically(self.folder / "manifest.json", lambda tmp: tmp.write_text(text))


class NatsSink:
    """Messages on NATS JetStream, published asynchronously and acknowledged per micro-batch."""

    def __init__(self, url: str, run: str = "twin", timeout_s: float = 5.0):
        if not RUN_NAME.fullmatch(run):
            raise StreamError(f"--run {run!r}: use 1-64 letters, digits, '-' or '_' (it becomes a subject token)")
        try:
            import nats  # noqa: F401
        except ImportError:
            raise MissingDependency("Streaming to NATS", "nats", "nats-py") from None
        self.url, self.run, self.timeout_s = url, run, timeout_s
        self.stream_name, self.prefix = f"OPENCEM_{run}", f"opencem.{run}"
        self.messages: list[tuple[str, bytes, dict]] = []
        self.unacked: list[asyncio.Future] = []
        self.published = self.dropped_by_server = 0
        self.loop = asyncio.Runner()
        try:  # fail now, before a long simulation, if the server is not there
            self.loop.run(self._connect())
            self.loop.run(self.nc.close())  # an idle connection would miss the server's pings
        except BaseException:
            self.loop.close()
            raise

    async def _connect(self) -> None:
        import nats
        from nats.js.errors import NotFoundError

        async def quiet(err: Exception) -> None:  # nats-py prints a traceback per failed attempt otherwise
            pass

        try:
            self.nc = await nats.connect(self.url, connect_timeout=self.timeout_s, allow_reconnect=False,
                                         max_reconnect_attempts=1, reconnect_time_wait=0.2, error_cb=quiet)
        except Exception as err:  # nats raises OSError, TimeoutError or its own NoServersError
            raise StreamError(f"cannot reach NATS at {self.url} ({_reason(err)}); start a NATS server "
                              "with JetStream (nats-server -js) or give --nats another URL") from None
        self.js = self.nc.jetstream(timeout=self.timeout_s)
        try:
            try:
                await self.js.stream_info(self.stream_name)
            except NotFoundError:
                await self.js.add_stream(name=self.stream_name, subjects=[f"{self.prefix}.>"])
        except Exception as err:
            await self.nc.close()
            raise StreamError(f"NATS at {self.url} does not offer JetStream stream {self.stream_name} "
                              f"({_reason(err)}); run the server with JetStream enabled (nats-server -js)") from None

    def start(self, manifest: dict) -> None:
        self.loop.run(self._connect())
        self._control("start", manifest)
        self.tick(0)

    def records(self, source: str, tick_ms: int, rows: pa.Table, kinds: np.ndarray) -> None:
        subject = f"{self.prefix}.{source}"
        ids = record_ids(source, rows).to_pylist()
        suffix = np.where(kinds == DUPLICATE, "#resent", np.where(kinds == UPDATE, "#update", ""))
        for record, id_, end in zip(json_records(rows), ids, suffix):
            self.messages.append((subject, record, {"Nats-Msg-Id": id_ + end}))

    def file(self, vendor: str, name: str, data: bytes, tick_ms: int, kind: int) -> None:
        headers = {"Nats-Msg-Id": f"pm/{vendor}/{name}" + ("#resent" if kind == DUPLICATE else ""),
                   "Opencem-File": name}
        if len(data) > self.nc.max_payload:
            data, headers["Content-Encoding"] = gzip.compress(data), "gzip"
            if len(data) > self.nc.max_payload:
                raise StreamError(f"PM file {name} is {len(data):,} bytes gzip'd, more than the NATS server's "
                                  f"max_payload of {self.nc.max_payload:,}; raise max_payload or stream to a folder")
        self.messages.append((f"{self.prefix}.pm.{vendor}", data, headers))

    def tick(self, tick_ms: int) -> None:
        batch, self.messages = self.messages, []
        if batch:
            self.loop.run(self._publish(batch))

    async def _publish(self, batch: list[tuple[str, bytes, dict]], wait: bool = False) -> None:
        """Publish; take the acknowledgements once :data:`ACK_EVERY` are outstanding (waiting
        for each micro-batch's would bound the rate by round trips) or when ``wait``."""
        try:
            for subject, payload, headers in batch:
                self.unacked.append(await self.js.publish_async(subject, payload, headers=headers))
            if len(self.unacked) < ACK_EVERY and not wait:
                return
            futures, self.unacked = self.unacked, []
            acks = await asyncio.wait_for(asyncio.gather(*futures), timeout=max(self.timeout_s, len(futures) / 1000))
        except Exception as err:
            raise StreamError(f"NATS at {self.url} did not take the messages ({_reason(err)})") from None
        self.published += len(acks)
        self.dropped_by_server += sum(bool(a.duplicate) for a in acks)

    def close(self, manifest: dict | None, complete: bool) -> None:
        try:
            self.messages = []  # an interrupted micro-batch is not sent in part
            if manifest is not None:
                self._control("end", {**manifest, "complete": complete})
                batch, self.messages = self.messages, []
                self.loop.run(self._publish(batch, wait=True))
                self.loop.run(self.nc.drain())
        finally:
            self.loop.close()

    def _control(self, event: str, manifest: dict) -> None:
        body = json.dumps({"event": event, **manifest}, default=str).encode()
        self.messages.append((f"{self.prefix}.control", body, {"Nats-Msg-Id": f"control:{event}:{manifest['stream']['started_at']}"}))


def json_records(rows: pa.Table) -> list[bytes]:
    """Each record as one JSON object (UTF-8): times as ISO 8601 UTC text, nulls as null."""
    text = pa.table({f.name: iso_strings(rows[f.name]) if pa.types.is_timestamp(f.type) else rows[f.name]
                     for f in rows.schema})
    dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode
    return [dumps(r).encode() for r in text.to_pylist()]


def _reason(err: BaseException) -> str:
    text = str(err).strip().splitlines()[0] if str(err).strip() else ""
    return f"{type(err).__name__}: {text}" if text else type(err).__name__
