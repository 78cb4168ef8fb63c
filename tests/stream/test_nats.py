"""The NATS JetStream source on the real server: a stream of its own per test, deleted after;
skipped without the server (failed with OPENCEM_REQUIRE_SERVICES=1)."""

from __future__ import annotations

import asyncio
import json
import uuid

import duckdb
import pytest

from opencem.indicators.catalog import load_catalog
from opencem.schema import TABLES
from opencem.stream import StreamConfig, run_stream
from opencem.stream.nats import NatsSource

from ..conftest import require_service
from .test_semantics import CUBE, KPIS, counts, windows


def message(call_id: str, minute: int, dropped: bool) -> bytes:
    return json.dumps({"call_id": call_id, "start_time": f"2026-11-02T10:{minute:02d}:00.000Z", "cell_id": "C1",
                       "setup_success": True, "dropped": dropped, "unknown_extra": 1}).encode()


@pytest.fixture
def nats_run():
    host, port = require_service("nats")
    url, run = f"nats://{host}:{port}", f"t{uuid.uuid4().hex[:10]}"

    async def call(what, *args):
        import nats

        nc = await nats.connect(url)
        js = nc.jetstream()
        try:
            if what == "create":
                await js.add_stream(name=f"OPENCEM_{run}", subjects=[f"opencem.{run}.>"])
            elif what == "delete":
                await js.delete_stream(f"OPENCEM_{run}")
            else:
                for subject, body, msg_id, *headers in args:
                    await js.publish(f"opencem.{run}.{subject}", body,
                                     headers={"Nats-Msg-Id": msg_id, **(headers[0] if headers else {})})
        finally:
            await nc.close()

    asyncio.run(call("create"))
    yield url, run, lambda *messages: asyncio.run(call("publish", *messages))
    asyncio.run(call("delete"))


def consume(url: str, run: str, state) -> duckdb.DuckDBPyConnection:
    run_stream(state, NatsSource(url, run, TABLES), load_catalog(TABLES, []), TABLES,
               StreamConfig(lateness_s=3600, cubes=[CUBE], kpis=KPIS, max_records=2, idle_exit_s=0.5, poll_s=0.2))
    return duckdb.connect(str(state), read_only=True)


def test_nats_dedup_restart_and_ack_after_commit(nats_run, tmp_path):
    url, run, publish = nats_run
    publish(("xdr_voice", message("a", 1, False), "xdr_voice:a"),
            ("xdr_voice", message("b", 2, True), "xdr_voice:b"),
            ("xdr_voice", message("a", 1, False), "xdr_voice:a#resent"),  # a deliberate re-send
            ("drive_tests", b"{}", "drive_tests:x"))  # a table no streamed cube reads
    state = tmp_path / "s.duckdb"
    con = consume(url, run, state)
    assert windows(con) == {"10:00": (2, 50.0)}
    assert counts(con) == (3, 2, 0, 1, 0)
    committed = con.sql("SELECT max(token) FROM consumed").fetchall()[0][0]
    con.close()
    # After a restart the consumer delivers from the committed sequence on: nothing twice.
    publish(("xdr_voice", message("c", 20, True), "xdr_voice:c"))
    con = consume(url, run, state)
    assert windows(con) == {"10:00": (2, 50.0), "10:15": (1, 100.0)}
    assert counts(con) == (4, 3, 0, 1, 0)
    assert con.sql("SELECT max(token) FROM consumed").fetchall()[0][0] > committed
    con.close()

    async def ack_floor():
        import nats

        nc = await nats.connect(url)
        try:
            info = await nc.jetstream().consumer_info(f"OPENCEM_{run}", "opencem-stream")
            return info.ack_floor.stream_seq, info.num_ack_pending
        finally:
            await nc.close()

    floor, pending = asyncio.run(ack_floor())
    assert floor == 5 and pending == 0  # acknowledged up to the last message, after its commit


def test_nats_pm_files_are_read_once(nats_run, day, tmp_path):
    """A PM file message (gzip'd, as the simulator sends a large one) read with ingest's
    readers; its re-sent copy counts as duplicates."""
    import gzip

    url, run, publish = nats_run
    path = sorted((day / "land" / "pm" / "alpha").glob("*.xml"))[0]
    headers = {"Opencem-File": path.name, "Content-Encoding": "gzip"}
    body = gzip.compress(path.read_bytes())
    publish(("pm.alpha", body, f"pm/alpha/{path.name}", headers),
            ("pm.alpha", body, f"pm/alpha/{path.name}#resent", headers))
    state = tmp_path / "s.duckdb"
    run_stream(state, NatsSource(url, run, TABLES), load_catalog(TABLES, []), TABLES,
               StreamConfig(lateness_s=3600, cubes=[CUBE], kpis=["prb_utilisation_dl_pct"], max_records=1,
                            idle_exit_s=0.5, poll_s=0.2))  # one message per batch: the copy comes alone
    con = duckdb.connect(str(state), read_only=True)
    (rows, copies), = con.sql("SELECT rows, copies FROM pm_files").fetchall()
    assert rows > 0 and copies == 2
    assert con.sql("SELECT delivered, accepted, duplicates FROM counts WHERE source = 'pm_counters'"
                   ).fetchall() == [(2 * rows, rows, rows)]
    assert con.sql(f"SELECT count(prb_utilisation_dl_pct) FROM {CUBE}").fetchall()[0][0] > 0
