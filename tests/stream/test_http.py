"""The HTTP source: a reply only after the commit, retries counted once, bad input refused with
one sentence, and kill -9 mid-request then a retry equal to an uninterrupted run."""

from __future__ import annotations

import gzip
import http.client
import io
import json
import random
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from opencem.indicators.catalog import load_catalog
from opencem.schema import TABLES
from opencem.stream import StreamConfig, StreamError, run_stream
from opencem.stream.http import HttpSource, parse_address
from opencem.stream.landing import LandingSource

from .conftest import OPENCEM
from .test_semantics import CUBE, KPIS, counts, windows
from .test_semantics import calls as some_calls

TOKEN = "s3cret-token-for-tests-only"


def calls(*rows: tuple[str, int, bool]) -> pa.Table:
    """xdr_voice records as test_semantics makes them, with the subscriber ingest requires."""
    table = some_calls(*rows)
    return table.append_column("subscriber_id", pa.array(["S1"] * table.num_rows))


def post(address: str, path: str, body: bytes, content_type: str = "application/x-ndjson", token: str | None = None,
         timeout: float = 30, headers: dict | None = None) -> tuple[int, dict]:
    host, port = parse_address(address)
    con = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        con.request("POST", path, body, {"Content-Type": content_type, **({"Authorization": f"Bearer {token}"} if token else {}),
                                         **(headers or {})})
        response = con.getresponse()
        return response.status, json.loads(response.read() or b"{}")
    finally:
        con.close()


def json_lines(table: pa.Table) -> bytes:
    return b"".join(json.dumps(r, default=lambda v: v.isoformat().replace("+00:00", "Z")).encode() + b"\n"
                    for r in table.to_pylist())


def arrow_stream(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue()


class Served:
    """run_stream over an HttpSource in a thread of this process."""

    def __init__(self, state: Path, token: str | None = None, max_request_bytes: int = 1 << 20, kpis=KPIS):
        ready = threading.Event()
        self.source = HttpSource("127.0.0.1", 0, TABLES, token=token, max_request_bytes=max_request_bytes,
                                 on_listening=lambda a: ready.set())
        self.state = state
        self.thread = threading.Thread(daemon=True, target=run_stream, args=(
            state, self.source, load_catalog(TABLES, []), TABLES,
            StreamConfig(lateness_s=3600, cubes=[CUBE], kpis=kpis, until_finished=True, poll_s=0.05)))
        self.thread.start()
        assert ready.wait(30)
        self.address = self.source.address

    def end(self) -> duckdb.DuckDBPyConnection:
        assert post(self.address, "/v1/end", b"")[0] == 200
        self.thread.join(60)
        assert not self.thread.is_alive()
        return duckdb.connect(str(self.state), read_only=True)


@pytest.mark.parametrize("address, expected", [
    ("8080", ("127.0.0.1", 8080)), ("44835", ("127.0.0.1", 44835)), (":9000", ("127.0.0.1", 9000)),
    ("0.0.0.0:80", ("0.0.0.0", 80)), ("[::1]:8443", ("::1", 8443)), ("localhost:1", ("localhost", 1))])
def test_addresses(address, expected):
    # a bare PORT once parsed as host "808", port 0 (the host part swallowed the digits)
    assert parse_address(address) == expected


@pytest.mark.parametrize("address", ["99999", "host:", "a:b", "1.2.3.4:70000", ""])
def test_bad_addresses_are_one_sentence(address):
    with pytest.raises(StreamError, match=r"^--http '.*' is not HOST:PORT \(e\.g\. 127\.0\.0\.1:8080\)$"):
        parse_address(address)


def test_a_reply_comes_after_the_commit_and_a_retry_counts_once(tmp_path):
    served = Served(tmp_path / "s.duckdb")
    body = json_lines(calls(("a", 1, False), ("b", 2, True)))
    status, reply = post(served.address, "/v1/records/xdr_voice", body)
    assert (status, reply["accepted"], reply["duplicates"], reply["committed"]) == (200, 2, 0, True)
    # Committed before the reply: another process can see it in the state's tables right away
    # (here: the same body again is all duplicates, as a client's retry after a timeout is).
    status, reply = post(served.address, "/v1/records/xdr_voice", body)
    assert (status, reply["delivered"], reply["accepted"], reply["duplicates"]) == (200, 2, 0, 2)
    status, reply = post(served.address, "/v1/records/xdr_voice", arrow_stream(calls(("c", 3, True), ("a", 1, False))),
                         "application/vnd.apache.arrow.stream")
    assert (status, reply["accepted"], reply["duplicates"]) == (200, 1, 1)
    gz = gzip.compress(json_lines(calls(("d", 20, False))))
    assert post(served.address, "/v1/records/xdr_voice", gz, headers={"Content-Encoding": "gzip"})[1]["accepted"] == 1
    status, reply = post(served.address, "/v1/records/drive_tests", b'{"test_id": "x", "record_number": 1, "measured_at": "2026-11-02T10:00:00Z"}\n')
    assert status == 200 and reply.get("ignored")  # no streamed cube reads it: counted, not kept
    # Clients at once: each reply comes after the commit of the batch holding its request.
    replies = []
    senders = [threading.Thread(target=lambda i=i: replies.append(post(served.address, "/v1/records/xdr_voice",
                                                                          json_lines(calls((f"p{i}", 30 + i, i % 2 == 0))))))
               for i in range(8)]
    for t in senders:
        t.start()
    for t in senders:
        t.join()
    assert sorted((status, r["accepted"]) for status, r in replies) == [(200, 1)] * 8
    con = served.end()
    assert windows(con) == {"10:00": (3, 100 * 2 / 3), "10:15": (1, 0.0), "10:30": (8, 50.0)}
    assert counts(con) == (15, 12, 0, 3, 0)


def test_the_listen_backlog_admits_every_connection_served():
    # socketserver's default backlog of 5 reset connections when tens of clients reconnected at
    # once after a commit answered them all (benchmarks/alert_latency.py: 31 resets in one run)
    source = HttpSource("127.0.0.1", 0, TABLES, max_connections=48)
    source.start(set())
    try:
        assert source.server.request_queue_size == 48
    finally:
        source.close()


def test_connections_past_the_cap_get_503(tmp_path):
    source = HttpSource("127.0.0.1", 0, TABLES, max_connections=2)
    source.start(set())
    try:
        held = [socket.create_connection(parse_address(source.address)) for _ in range(2)]  # idle, never send
        time.sleep(0.2)
        status, reply = post(source.address, "/v1/end", b"", timeout=10)
        assert status == 503 and "too many connections" in reply["error"]
        for s in held:
            s.close()
        time.sleep(0.2)
        con = http.client.HTTPConnection(*parse_address(source.address), timeout=10)  # a slot is free again
        con.request("GET", "/v1/health")
        assert con.getresponse().status == 200
        con.close()
    finally:
        source.close()


def test_bad_requests_are_refused_whole_with_one_sentence(tmp_path):
    served = Served(tmp_path / "s.duckdb", token=TOKEN, max_request_bytes=64 << 10)
    a = served.address
    good = json_lines(calls(("a", 1, False)))

    def refused(status: int, words: list[str], *args, **kwargs) -> None:
        got, reply = post(a, *args, **{"token": TOKEN, **kwargs})
        assert got == status, reply
        assert all(w in reply["error"] for w in words), reply["error"]

    refused(401, ["bearer token"], "/v1/records/xdr_voice", good, token=None)
    refused(401, ["bearer token"], "/v1/records/xdr_voice", good, token="wrong" + TOKEN)
    refused(404, ["unknown table 'xdr_voize'"], "/v1/records/xdr_voize", good)
    refused(404, ["unknown table 'quarantine'"], "/v1/records/quarantine", good)
    refused(400, ["xdr_voice line 3 is not valid JSON"], "/v1/records/xdr_voice", good + b"\n" + b'{"call_id": "b",\n')
    refused(400, ["line 2", "'cell_idd'", "not a column"], "/v1/records/xdr_voice", good + b'{"call_id": "b", "cell_idd": 1}\n')
    refused(400, ["line 2", "'dropped'", "not a bool"], "/v1/records/xdr_voice",
            good + b'{"call_id": "b", "subscriber_id": "S1", "start_time": "2026-11-02T10:05:00Z", "dropped": "maybe"}\n')
    refused(400, ["line 2", "'start_time'", "missing"], "/v1/records/xdr_voice", good + b'{"call_id": "b", "subscriber_id": "S1"}\n')
    refused(400, ["line 1", "not an object"], "/v1/records/xdr_voice", b"[1, 2]\n")
    refused(400, ["more than one", "line 1"], "/v1/records/xdr_voice", good.strip() + b" " + good)
    refused(400, ["'setup_time_ms'", "outside the valid range"], "/v1/records/xdr_voice",
            b'{"call_id": "b", "subscriber_id": "S1", "start_time": "2026-11-02T10:05:00Z", "setup_success": true, '
            b'"setup_time_ms": -5}\n')
    refused(400, ["holds no records"], "/v1/records/xdr_voice", b"\n\n")
    refused(400, ["not an Arrow IPC stream"], "/v1/records/xdr_voice", b"garbage", "application/vnd.apache.arrow.stream")
    refused(400, ["'colour'", "not a column"], "/v1/records/xdr_voice", arrow_stream(pa.table({"colour": ["red"]})),
            "application/vnd.apache.arrow.stream")
    refused(415, ["Content-Type 'text/csv'"], "/v1/records/xdr_voice", b"call_id\nx\n", "text/csv")
    refused(413, ["more than the 65,536"], "/v1/records/xdr_voice", b" " * (65 << 10))
    bomb = gzip.compress(b" " * (10 << 20))  # 10 kB that inflate to 10 MiB
    refused(413, ["inflates past"], "/v1/records/xdr_voice", bomb, headers={"Content-Encoding": "gzip"})
    refused(400, ["file name '..'"], "/v1/pm/alpha/..", b"<xml/>")
    refused(404, ["no such resource"], "/v1/records", good)
    con = http.client.HTTPConnection(*parse_address(a), timeout=10)
    con.request("GET", "/v1/health")
    assert json.loads(con.getresponse().read())["status"] == "ok"  # no token needed to see it is up
    con.close()
    status, reply = post(a, "/v1/pm/alpha/A20261102.1000+0000-1015+0000_cell.xml", b"<not-pm/>", token=TOKEN)
    assert status == 200 and reply.get("ignored")  # the cube read here takes no PM counters
    status, _ = post(a, "/v1/records/xdr_voice", good, token=TOKEN)
    assert status == 200
    assert post(a, "/v1/end", b"", token=TOKEN)[0] == 200
    served.thread.join(60)
    con = duckdb.connect(str(served.state), read_only=True)
    assert counts(con) == (1, 1, 0, 0, 0)  # nothing of a refused request was taken


def test_pm_files_over_http_are_read_once_and_a_bad_one_is_422(day, tmp_path):
    served = Served(tmp_path / "s.duckdb", max_request_bytes=64 << 20, kpis=["prb_utilisation_dl_pct"])
    path = sorted((day / "land" / "pm" / "alpha").glob("*.xml"))[0]
    status, first = post(served.address, f"/v1/pm/alpha/{path.name}", path.read_bytes(), "application/xml")
    assert status == 200 and first["accepted"] > 0 and first["duplicates"] == 0, first
    status, again = post(served.address, f"/v1/pm/alpha/{path.name}", path.read_bytes(), "application/xml")
    assert status == 200 and again["accepted"] == 0 and again["duplicates"] == first["accepted"], again
    status, bad = post(served.address, "/v1/pm/alpha/broken.xml", b"<measCollecFile><oops", "application/xml")
    assert status == 422 and "pm/alpha/broken.xml: cannot be read" in bad["error"], bad
    con = served.end()
    assert con.sql("SELECT file, reason LIKE '%cannot be read%' FROM rejected_records").fetchall() == [
        ("pm/alpha/broken.xml", True)]
    assert con.sql(f"SELECT count(prb_utilisation_dl_pct) FROM {CUBE}").fetchall()[0][0] > 0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def everything(path: Path) -> dict:
    con = duckdb.connect(str(path), read_only=True)
    try:
        return {t: con.sql(f"SELECT * FROM {t} ORDER BY ALL").fetchall() for t in (CUBE, "late_records", "watermarks")} | {
            "counts": con.sql("SELECT source, accepted, updates, late FROM counts ORDER BY ALL").fetchall()}
    finally:
        con.close()


def test_kill_9_mid_request_then_a_retry_equals_an_uninterrupted_run(day, tmp_path):
    """The first landing files of the simulated day POSTed one by one (Arrow and JSON Lines in
    turn) to `opencem stream run --http`, killed with SIGKILL while requests wait for their
    commit, restarted, each unanswered request sent again: the outputs equal those of the same
    files read from a landing folder without interruption."""
    files = sorted((day / "land" / "tables").glob("xdr_voice_*.parquet"))[:40]
    reference_land = tmp_path / "land"
    (reference_land / "tables").mkdir(parents=True)
    for f in files:
        (reference_land / "tables" / f.name).write_bytes(f.read_bytes())
    (reference_land / "manifest.json").write_text('{"complete": true}')
    reference = tmp_path / "reference.duckdb"
    run_stream(reference, LandingSource(reference_land, TABLES), load_catalog(TABLES, []), TABLES,
               StreamConfig(lateness_s=300, cubes=[CUBE], kpis=KPIS, until_finished=True, poll_s=0.01))

    port = free_port()
    address = f"127.0.0.1:{port}"
    state = tmp_path / "killed.duckdb"
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    command = [*OPENCEM, "--workspace", str(tmp_path / "ws"), "stream", "run", "--http", address, "--state", str(state),
               "--cube", CUBE, *[a for k in KPIS for a in ("--kpi", k)], "--lateness", "300s", "--until-finished",
               "--http-token-file", str(token_file)]

    def serve() -> subprocess.Popen:
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return process
            except OSError:
                assert process.poll() is None, process.stderr.read().decode()
                time.sleep(0.1)
        raise AssertionError("the stream did not listen")

    rng = random.Random(5)
    kill_at = set(rng.sample(range(len(files)), 3))
    process = serve()
    retried = 0
    try:
        for i, f in enumerate(files):
            table = pq.read_table(f)
            body, kind = ((arrow_stream(table), "application/vnd.apache.arrow.stream") if i % 2 else
                          (json_lines(table), "application/x-ndjson"))
            if i in kill_at:  # the request is sent, then the server dies while it waits for the commit
                sender = threading.Thread(target=_try_post, args=(address, body, kind))
                sender.start()
                time.sleep(rng.uniform(0.0, 0.3))
                process.send_signal(signal.SIGKILL)
                process.wait()
                sender.join()
                process = serve()
                retried += 1
            status, reply = _try_post(address, body, kind)
            assert status == 200, reply
        assert post(address, "/v1/end", b"", token=TOKEN)[0] == 200
        assert process.wait(60) == 0, process.stderr.read().decode()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert retried == 3
    got, expected = everything(state), everything(reference)
    assert len(expected[CUBE]) > 20
    assert got == expected


def _try_post(address: str, body: bytes, kind: str) -> tuple[int, dict]:
    try:
        return post(address, "/v1/records/xdr_voice", body, kind, token=TOKEN, timeout=60)
    except (OSError, http.client.HTTPException) as err:
        return 0, {"error": str(err)}
