"""HTTP source: records POSTed as JSON Lines or Arrow IPC streams, PM files as the OSS wrote them.

    POST /v1/records/<table>          application/x-ndjson (JSON Lines) or application/vnd.apache.arrow.stream
    POST /v1/pm/<vendor>/<file name>  a PM file's bytes (read with ingest's readers, like a landing folder's)
    POST /v1/end                      the feed has ended
    GET  /v1/health                   {"status": "ok", ...}, without a token

The reply to a POST is its acknowledgement: 200 with the request's counts (delivered, accepted,
updates, duplicates, late) is sent only after the batch holding the request is committed. A
client that gets no reply (a timeout, a reset connection, a server restarted after a crash)
sends the same body again; record-id dedup makes the copy count once (as duplicates), so the
window outputs are those of a single delivery. Nothing is kept for a request the stream has
not committed, so no token of it is either.

A bad request is refused whole, before it is queued, with a 4xx and one sentence naming the
table, line and field: unknown table (404), malformed JSON line N, a value of the wrong type or
outside its range, a missing key (400, as ingest's validation says it), an unknown column, an
unsupported Content-Type (415), a body past the size cap (413, also once gunzipped), a missing
or wrong bearer token (401). A PM file that cannot be read is recorded in ``rejected_records``
with the reason and answered 422 after the commit. The server is the standard library's
ThreadingHTTPServer: request threads parse (Arrow releases the GIL) while the runner evaluates.
"""

from __future__ import annotations

import hmac
import io
import ipaddress
import json
import queue
import re
import socket
import threading
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

import numpy as np
import pyarrow as pa
import pyarrow.json as pajson

from ..schema import Table
from .sources import Batch, Delivery, PMFile, StreamError

JSON_LINES = ("application/x-ndjson", "application/jsonl", "application/json-lines")
ARROW_STREAM = "application/vnd.apache.arrow.stream"
MAX_REQUEST_BYTES = 64 << 20
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+,=@\-]{0,199}$")  # a vendor or a PM file name: no path in it


class Refused(Exception):
    """A request answered with ``status`` and one sentence."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}


@dataclass
class _Request:
    """One POST waiting for its batch's commit (``delivery`` None: the end of the feed)."""

    delivery: Delivery | PMFile | None
    rows: int
    done: threading.Event = field(default_factory=threading.Event)
    status: int = 0
    reply: dict = field(default_factory=dict)

    def answer(self, status: int, reply: dict) -> None:
        if not self.done.is_set():
            self.status, self.reply = status, reply
            self.done.set()


def parse_address(value: str) -> tuple[str, int]:
    """``HOST:PORT``, ``:PORT`` or ``PORT`` (host 127.0.0.1); ``[::1]:PORT`` for IPv6."""
    m = re.fullmatch(r"(?:(?:\[(?P<v6>[^\]]+)\]|(?P<host>[^:\[\]]*)):)?(?P<port>\d{1,5})", value.strip())
    if m is None or int(m["port"]) > 65535:
        raise StreamError(f"--http {value!r} is not HOST:PORT (e.g. 127.0.0.1:8080)")
    return (m["v6"] or m["host"] or "127.0.0.1"), int(m["port"])


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class HttpSource:
    name = "http"

    def __init__(self, host: str, port: int, tables: dict[str, Table], token: str | None = None,
                 max_request_bytes: int = MAX_REQUEST_BYTES, max_queued_records: int = 2_000_000,
                 reply_timeout_s: float = 120.0, on_listening: Callable[[str], None] | None = None,
                 max_connections: int = 64):
        if token is not None and not token.strip():
            raise StreamError("the HTTP token is empty; write a secret of at least 16 characters in the token file")
        self.host, self.port, self.tables = host, port, tables
        self.token = token.strip() if token else None
        self.max_request_bytes, self.max_queued_records = max_request_bytes, max_queued_records
        self.reply_timeout_s, self.on_listening = reply_timeout_s, on_listening
        self.max_connections = max_connections
        self.queue: queue.Queue[_Request] = queue.Queue()
        self.queued_records = 0
        self.lock = threading.Lock()
        self.inflight: list[_Request] = []
        self.ending = self.ended = False
        self.skipped: dict[str, int] = {}
        self.server: ThreadingHTTPServer | None = None
        self.address = ""

    # -- the Source interface -----------------------------------------------------------
    def start(self, committed: set[str]) -> None:
        """Listen (nothing to resume: a request not committed was not answered, so it comes again)."""
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        try:
            self.server = _Server(family, self.max_connections)((self.host, self.port), _handler(self))
        except OSError as err:
            raise StreamError(f"cannot listen on {self.host}:{self.port} ({err.strerror or err})") from None
        host, port = self.server.server_address[:2]
        self.address = f"[{host}]:{port}" if family == socket.AF_INET6 else f"{host}:{port}"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True,
                         name="opencem-http").start()
        if self.on_listening:
            self.on_listening(self.address)

    def poll(self, max_records: int, timeout_s: float) -> Batch | None:
        try:
            first = self.queue.get(timeout=timeout_s)
        except queue.Empty:
            return None
        taken, rows = [first], first.rows
        while rows < max_records:
            try:
                item = self.queue.get_nowait()
            except queue.Empty:
                break
            taken.append(item)
            rows += item.rows
        with self.lock:
            self.queued_records -= rows
            self.inflight = taken
        return Batch([r.delivery for r in taken if r.delivery is not None], [], handle=taken, want_receipts=True)

    def ack(self, batch: Batch) -> None:
        receipts = iter(batch.receipts)
        for request in batch.handle:
            if request.delivery is None:
                self.ended = True
                request.answer(200, {"ended": True})
                continue
            counts = next(receipts, {})
            reply = {"table": request.delivery.table, **counts, "committed": True}
            if isinstance(request.delivery, PMFile):
                reply["file"] = f"pm/{request.delivery.vendor}/{request.delivery.name}"
            request.answer(422 if counts.get("error") else 200, reply)
        with self.lock:
            self.inflight = []

    def finished(self) -> bool:
        return self.ended and self.queue.empty()

    def close(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
        gone = {"error": "the stream stopped before this request was committed; send it again (its records count once)"}
        with self.lock:
            waiting, self.inflight = self.inflight, []
        while True:
            try:
                waiting.append(self.queue.get_nowait())
            except queue.Empty:
                break
        for request in waiting:
            request.answer(503, gone)

    # -- requests -------------------------------------------------------------------------
    def submit(self, delivery: Delivery | PMFile | None, rows: int) -> _Request:
        with self.lock:
            if self.ending:
                raise Refused(409, "the feed has ended (POST /v1/end came before); start the stream again to send more")
            if delivery is not None and self.queued_records + rows > self.max_queued_records and self.queued_records:
                raise Refused(503, f"the stream is {self.queued_records:,} records behind; retry in a moment",
                              {"Retry-After": "1"})
            if delivery is None:
                self.ending = True
            self.queued_records += rows
            request = _Request(delivery, rows)
            self.queue.put(request)
        return request

    def records(self, table: str, content_type: str, body: bytes) -> Delivery:
        """A POST /v1/records/<table> body as the table's canonical records, or Refused."""
        spec = self.tables.get(table)
        if spec is None or spec.domain == "ops":  # ingest_log, quarantine: opencem's own, never posted
            known = sorted(n for n, t in self.tables.items() if t.domain != "ops")
            raise Refused(404, f"unknown table {table!r}; known tables: {', '.join(known)}")
        if content_type in JSON_LINES:
            raw, lines = read_json_lines(body, spec)
        elif content_type == ARROW_STREAM:
            raw, lines = read_arrow_stream(body, spec), None
        else:
            raise Refused(415, f"Content-Type {content_type or '(none)'!r} is not {JSON_LINES[0]} (JSON Lines) or "
                               f"{ARROW_STREAM} (an Arrow IPC stream)")
        return Delivery(table, validated(raw, spec, lines))


def read_json_lines(body: bytes, spec: Table) -> tuple[pa.Table, np.ndarray]:
    """JSON Lines as the table's columns, and the line number (1-based) of each record."""
    lines = record_lines(body)
    if not len(lines):
        raise Refused(400, f"{spec.name}: the request holds no records")
    schema = json_schema(spec)
    try:
        out = pajson.read_json(io.BytesIO(body), read_options=pajson.ReadOptions(block_size=len(body) + 1),
                               parse_options=pajson.ParseOptions(explicit_schema=schema,
                                                                 unexpected_field_behavior="error"))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as err:
        raise Refused(400, json_problem(body, spec, str(err))) from None
    if out.num_rows != len(lines):  # two objects on one line: one of the lines is not one record
        raise Refused(400, json_problem(body, spec, "more than one JSON value on a line"))
    for f in spec.schema:  # to the table's unit; a finer fraction is cut, as a probe's clock would
        if pa.types.is_timestamp(f.type):
            out = out.set_column(out.schema.get_field_index(f.name), f.name, out[f.name].cast(f.type, safe=False))
    return out, lines


def json_schema(spec: Table) -> pa.Schema:
    """What a JSON line may hold: every column optional; times in ns, so any ISO 8601 fraction parses."""
    return pa.schema([f.with_type(pa.timestamp("ns", f.type.tz)).with_nullable(True) if pa.types.is_timestamp(f.type)
                      else f.with_nullable(True) for f in spec.schema])


def record_lines(body: bytes) -> np.ndarray:
    """The line numbers (1-based) of the lines holding anything but white space."""
    data = np.frombuffer(body, np.uint8)
    ends = np.flatnonzero(data == 10)
    if not len(data) or data[-1] != 10:
        ends = np.r_[ends, len(data)]
    filled = np.cumsum(~np.isin(data, (9, 10, 13, 32)))
    upto = np.r_[0, filled][np.asarray(ends)]
    return np.flatnonzero(np.diff(np.r_[0, upto]) > 0) + 1


def json_problem(body: bytes, spec: Table, arrow_says: str) -> str:
    """The first line that is not a record of the table, in one sentence (only run on a bad body)."""
    known = {f.name: f for f in json_schema(spec)}
    for number, line in enumerate(body.split(b"\n"), 1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as err:
            if err.msg == "Extra data":
                return (f"{spec.name} line {number} holds more than one JSON value (the second starts at column "
                        f"{err.colno}); JSON Lines has one record per line")
            return f"{spec.name} line {number} is not valid JSON ({err.msg} at column {err.colno})"
        except ValueError as err:  # not UTF-8
            return f"{spec.name} line {number} is not valid JSON ({err})"
        if not isinstance(value, dict):
            return f"{spec.name} line {number} is a JSON {type(value).__name__}, not an object with the table's fields"
        for key, v in value.items():
            if key not in known:
                return f"{spec.name} line {number}: field {key!r} is not a column of {spec.name}"
            f = known[key]
            try:
                pajson.read_json(io.BytesIO(json.dumps({key: v}).encode()),
                                 parse_options=pajson.ParseOptions(explicit_schema=pa.schema([f])))
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                kind = ("a timestamp with its zone (ISO 8601, e.g. 2026-11-02T10:00:00Z)"
                        if pa.types.is_timestamp(f.type) else f"a {f.type}")
                return f"{spec.name} line {number}: field {key!r} value {json.dumps(v)[:80]} is not {kind}"
    return f"{spec.name}: the body is not JSON Lines ({arrow_says.splitlines()[0][:200]})"


def read_arrow_stream(body: bytes, spec: Table) -> pa.Table:
    try:
        out = pa.ipc.open_stream(pa.BufferReader(body)).read_all()
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OSError) as err:
        raise Refused(400, f"{spec.name}: the body is not an Arrow IPC stream ({str(err).splitlines()[0][:200]})") from None
    unknown = [n for n in out.column_names if n not in spec.schema.names]
    if unknown:
        raise Refused(400, f"{spec.name}: column {unknown[0]!r} is not a column of {spec.name}")
    if not out.num_rows:
        raise Refused(400, f"{spec.name}: the request holds no records")
    return out


def validated(raw: pa.Table, spec: Table, lines: np.ndarray | None) -> pa.Table:
    """The records checked as ingest checks them (types, keys, ranges); any bad one refuses the request."""
    from ..ingest.validate import IngestError, conform

    try:
        c = conform(raw, spec, spec.name)
    except IngestError as err:
        raise Refused(400, str(err)) from None
    if not c.n_quarantined:
        return c.accepted
    row = int(c.rejected_rows[0])
    where = f"line {int(lines[row])}" if lines is not None else f"record {row + 1}"
    more = f"; {c.n_quarantined - 1:,} other record(s) are refused too" if c.n_quarantined > 1 else ""
    value = "" if c.values[0] is None else f" value {c.values[0]!r}"
    raise Refused(400, f"{spec.name} {where}: field {c.fields[0]!r}{value}: {c.reasons[0]}{more}; "
                       "nothing of this request was taken")


def _Server(family: int, max_connections: int) -> type[ThreadingHTTPServer]:
    """A thread per connection, at most ``max_connections`` at once: beyond, a connection gets
    503 and is closed (a flood of idle connections cannot take every thread and all memory)."""

    class Server(ThreadingHTTPServer):
        address_family = family
        daemon_threads = True
        # The listen backlog: socketserver's 5 overflows when tens of clients reconnect at once
        # after a commit answers them all (measured: connections reset, benchmarks/alert_latency.py).
        request_queue_size = max_connections

        def __init__(self, *args):
            self.slots = threading.BoundedSemaphore(max_connections)
            super().__init__(*args)

        def process_request(self, request, client_address) -> None:
            if not self.slots.acquire(blocking=False):
                body = b'{"error": "too many connections; retry in a moment"}\n'
                try:
                    request.sendall(b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                                    b"Retry-After: 1\r\nConnection: close\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
                finally:
                    self.shutdown_request(request)
                return
            super().process_request(request, client_address)

        def process_request_thread(self, request, client_address) -> None:
            try:
                super().process_request_thread(request, client_address)
            finally:
                self.slots.release()

    return Server


def _handler(source: HttpSource) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive: a client sends batch after batch on one connection
        timeout = 60  # a client that stops sending mid-body does not hold a thread for ever
        server_version = "opencem-stream"

        def log_message(self, format, *args) -> None:  # no line per request on stderr
            pass

        def do_GET(self) -> None:
            if urlsplit(self.path).path != "/v1/health":
                return self.send(404, {"error": f"no such resource {urlsplit(self.path).path}; GET /v1/health"})
            self.send(200, {"status": "ok", "queued_records": source.queued_records, "ended": source.ending})

        def do_POST(self) -> None:
            try:
                self.authorise()
                body = self.body()
                request = self.route(unquote(urlsplit(self.path).path), body)
            except Refused as err:
                return self.send(err.status, {"error": err.message}, err.headers)
            if not request.done.wait(source.reply_timeout_s):
                return self.send(503, {"error": f"not committed within {source.reply_timeout_s:.0f} s; send it "
                                                "again (its records count once)"}, {"Retry-After": "1"})
            self.send(request.status, request.reply)

        def do_PUT(self) -> None:
            self.send(405, {"error": "use POST for records, PM files and the end of the feed; GET /v1/health"},
                      {"Allow": "GET, POST"})

        do_DELETE = do_PATCH = do_PUT

        def authorise(self) -> None:
            if source.token is None:
                return
            given = self.headers.get("Authorization", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {source.token}".encode()):
                self.close_connection = True  # the body is not read
                raise Refused(401, "a valid bearer token is required (Authorization: Bearer ...)",
                              {"WWW-Authenticate": 'Bearer realm="opencem-stream"'})

        def body(self) -> bytes:
            if self.headers.get("Transfer-Encoding"):
                self.close_connection = True
                raise Refused(411, "send the body with a Content-Length header, not chunked")
            try:
                length = int(self.headers.get("Content-Length", ""))
            except ValueError:
                self.close_connection = True
                raise Refused(411, "a POST needs a Content-Length header") from None
            if length < 0 or length > source.max_request_bytes:
                self.close_connection = True
                raise Refused(413, f"the body is {length:,} bytes, more than the {source.max_request_bytes:,} a request "
                                   "may hold; send smaller batches")
            body = self.rfile.read(length)
            if len(body) != length:
                self.close_connection = True
                raise Refused(400, f"the body ended after {len(body):,} of its {length:,} bytes")
            encoding = self.headers.get("Content-Encoding", "identity").strip().lower()
            if encoding == "gzip":
                return gunzip(body, source.max_request_bytes)
            if encoding != "identity":
                raise Refused(415, f"Content-Encoding {encoding!r} is not gzip or identity")
            return body

        def route(self, path: str, body: bytes) -> _Request:
            parts = path.strip("/").split("/")
            if parts[:2] == ["v1", "records"] and len(parts) == 3:
                content_type = self.headers.get("Content-Type", "").split(";")[0].strip().lower()
                delivery = source.records(parts[2], content_type, body)
                return source.submit(delivery, delivery.records.num_rows)
            if parts[:2] == ["v1", "pm"] and len(parts) == 4:
                vendor, name = parts[2], parts[3]
                for what, value in (("vendor", vendor), ("file name", name)):
                    if not NAME.match(value):
                        raise Refused(400, f"PM {what} {value!r} must be letters, digits and . _ + , = @ - "
                                           "(no path, not starting with '.')")
                if not body:
                    raise Refused(400, f"pm/{vendor}/{name}: the body is empty")
                from .landing import PM_BYTES_PER_ROW

                return source.submit(PMFile(vendor, name, body), max(1, len(body) // PM_BYTES_PER_ROW))
            if parts == ["v1", "end"]:
                return source.submit(None, 0)
            raise Refused(404, f"no such resource {path}; POST /v1/records/<table>, /v1/pm/<vendor>/<file> or /v1/end")

        def send(self, status: int, reply: dict, headers: dict[str, str] | None = None) -> None:
            data = (json.dumps(reply) + "\n").encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                if self.close_connection:
                    self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(data)
            except OSError:  # the client went away; it will send again
                self.close_connection = True

    return Handler


def gunzip(body: bytes, cap: int) -> bytes:
    """A gzip'd body, refused past ``cap`` bytes once inflated (a small bomb is not a big request)."""
    d = zlib.decompressobj(wbits=31)
    try:
        out = d.decompress(body, cap + 1)
    except zlib.error as err:
        raise Refused(400, f"the body is not valid gzip ({err})") from None
    if len(out) > cap or d.unconsumed_tail:
        raise Refused(413, f"the body inflates past the {cap:,} bytes a request may hold; send smaller batches")
    return out
