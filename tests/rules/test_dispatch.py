"""Dispatch, on SQLite and PostgreSQL: the outbox writes one line per key even when the
dispatcher is killed (SIGKILL, a real process) between writing and recording; HTTP gateways and
webhooks against a real local HTTP server: signatures that verify, 500 then 200 retried with
backoff, 4xx not retried (429 is), timeouts retried, giving up after max_attempts."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from opencem.rules.alerting_spec import load_config
from opencem.rules.apply import apply_events
from opencem.rules.dispatch import backoff, dispatch
from opencem.rules.gateways import (SIGNATURE_HEADER, Delivery, OutboxGateway, build_gateways, sign,
                                    verify_signature)
from opencem.store.models import Action, ActionStatus, Notification, NotificationStatus
from tests.rules.alerting_support import (MIN, T0, backend, config_from, database, env, fires, rows,  # noqa: F401
                                          store, _no_database_url)
from tests.store.conftest import url_of

DISPATCHER = Path(__file__).with_name("fixtures") / "alerting" / "dispatcher.py"
ROOT = Path(__file__).resolve().parents[2]
SECRET = "s3cret-for-tests-only"


def dropped_calls(n: int, at=T0):
    events = []
    for i in range(n):
        events += fires("RepeatedDroppedCalls", {"subscriber_id": f"S{i:04d}"}, at,
                        labels={"action": "notify_customer", "severity": "info"}, value=3.0)
    return events


def queue_sms(store, n: int) -> list[str]:
    with store.transaction() as session:
        apply_events(session, dropped_calls(n), load_config(), T0 + 10 * MIN)
        return sorted(x.idempotency_key for x in rows(session, Notification))


def test_the_outbox_gets_each_sms_once_and_the_actions_are_done(store, tmp_path):
    keys = queue_sms(store, 5)
    gateways = build_gateways(load_config(), tmp_path / "outbox", environ={})
    report = dispatch(store.transaction, gateways, T0 + 20 * MIN)
    again = dispatch(store.transaction, gateways, T0 + 30 * MIN)
    lines = [json.loads(x) for x in (tmp_path / "outbox" / "sms.jsonl").read_text().splitlines()]
    assert (report.sent, again.due) == (5, 0)
    assert sorted(x["key"] for x in lines) == keys
    assert sorted(x["to"] for x in lines) == [f"S000{i}" for i in range(5)]
    assert lines[0]["text"].startswith("We are sorry: your last calls were interrupted (3 in the last hour).")
    with store.transaction() as session:
        assert {n.status for n in rows(session, Notification)} == {NotificationStatus.sent}
        assert {(a.action_type, a.status) for a in rows(session, Action)} == {("sms", ActionStatus.done)}


def test_the_outbox_drops_a_line_a_crash_cut_short_and_never_repeats_a_key(tmp_path):
    gateway = OutboxGateway(tmp_path, "sms")
    gateway.send(Delivery("k1", "sms:x", {"to": "S1"}, 1))
    with open(gateway.path, "ab") as f:  # a writer killed mid-line
        f.write(b'{"key":"k2","chan')
    fresh = OutboxGateway(tmp_path, "sms")  # another process, knowing nothing
    fresh.send(Delivery("k1", "sms:x", {"to": "S1"}, 2))
    fresh.send(Delivery("k2", "sms:x", {"to": "S2"}, 1))
    assert gateway.path.read_bytes().count(b"\n") == 2 and gateway.keys() == ["k1", "k2"]
    gateway.send(Delivery("k2", "sms:x", {"to": "S2"}, 3))  # the first instance catches up on k2
    assert gateway.keys() == ["k1", "k2"]


def run_dispatcher(database, outbox: Path, now, linger: bool) -> subprocess.Popen:
    args = [sys.executable, str(DISPATCHER), url_of(database), str(outbox), now.isoformat()]
    return subprocess.Popen(args + (["--linger"] if linger else []), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=ROOT)


def test_a_dispatcher_killed_between_sending_and_recording_sends_nothing_twice(store, database, tmp_path):
    keys = queue_sms(store, 12)
    outbox = tmp_path / "outbox"
    rng = random.Random(12)
    killed_after_send = 0
    for _ in range(3):  # killed in the gap after an outbox write, before the send is recorded
        proc = run_dispatcher(database, outbox, T0 + 60 * MIN, linger=True)
        wanted = rng.randrange(1, 3)
        for line in proc.stdout:
            if line.startswith("sent"):
                wanted -= 1
                if wanted == 0:
                    proc.send_signal(signal.SIGKILL)
                    killed_after_send += 1
                    break
        proc.wait(timeout=60)
        assert proc.returncode == -signal.SIGKILL, proc.stderr.read()
    for _ in range(2):  # and at a random moment
        proc = run_dispatcher(database, outbox, T0 + 90 * MIN, linger=False)
        time.sleep(rng.uniform(0.5, 1.5))
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    proc = run_dispatcher(database, outbox, T0 + 24 * 60 * MIN, linger=False)  # every backoff has passed
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    written = OutboxGateway(outbox, "sms").keys()
    assert sorted(written) == keys and len(written) == len(set(written)) == 12  # each once, none lost
    with store.transaction() as session:
        notes = rows(session, Notification)
        assert {n.status for n in notes} == {NotificationStatus.sent}
        assert sum(n.attempts > 1 for n in notes) >= killed_after_send  # those were sent again, found there
        assert {a.status for a in rows(session, Action)} == {ActionStatus.done}


# --- HTTP ---------------------------------------------------------------------------------------

class Recorder(BaseHTTPRequestHandler):
    """Answers POSTs with the statuses the test scripted, in order (200 once they run out),
    waiting ``delay`` seconds first when the script says so; keeps every request."""

    def do_POST(self):  # noqa: N802 - http.server's name
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        server = self.server
        with server.lock:
            server.requests.append((dict(self.headers), body))
            step = server.script.pop(0) if server.script else 200
        status, delay = step if isinstance(step, tuple) else (step, 0)
        if delay:
            time.sleep(delay)
        try:
            self.send_response(status)
            self.end_headers()
            self.wfile.write(b'{"ok": true}' if status < 300 else b"nope")
        except OSError:
            pass  # the client gave up waiting

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    httpd.requests, httpd.script, httpd.lock = [], [], threading.Lock()
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def http_config(tmp_path, port: int, **webhook):
    options = "".join(f"\n        {k}: {v}" for k, v in webhook.items())
    return config_from(tmp_path, f"""
route:
  receiver: noc
  group_by: [alertname, site_id]
  group_wait: 0s
  group_interval: 1m
  routes:
    - matchers: ['action="notify_customer"']
      receiver: care
      group_by: [subscriber_id]
      group_wait: 0s
receivers:
  - name: noc
    webhook_configs:
      - url: http://127.0.0.1:{port}/hook
        secret_env: TEST_WEBHOOK_SECRET{options}
  - name: care
    sms_configs:
      - text: "Sorry about the calls ({{{{ $value }}}})."
        url: http://127.0.0.1:{port}/sms
        token_env: TEST_SMS_TOKEN
        max_attempts: 3
""")


def cell_alert(store, config, n=1):
    events = []
    for i in range(n):
        events += fires("CellDown", {"cell_id": f"C{i}"}, T0, labels={"site_id": "S1"})
    with store.transaction() as session:
        apply_events(session, events, config, T0 + 5 * MIN)


def environ():
    return {"TEST_WEBHOOK_SECRET": SECRET, "TEST_SMS_TOKEN": "tok-123"}


def test_a_webhook_is_signed_and_a_500_is_retried_with_backoff_until_a_200(store, server, tmp_path):
    config = http_config(tmp_path, server.server_port)
    cell_alert(store, config, 3)
    gateways = build_gateways(config, tmp_path / "outbox", environ())
    server.script = [500, 503]
    now = T0 + 6 * MIN
    first = dispatch(store.transaction, gateways, now)
    early = dispatch(store.transaction, gateways, now + timedelta(seconds=29))  # backoff not over: nothing
    second = dispatch(store.transaction, gateways, now + timedelta(seconds=30))
    third = dispatch(store.transaction, gateways, now + timedelta(seconds=30 + 60))  # 2nd backoff 60 s
    assert (first.retrying, early.due, second.retrying, third.sent) == (1, 0, 1, 1)
    assert len(server.requests) == 3
    keys = {h["Idempotency-Key"] for h, _ in server.requests}
    assert len(keys) == 1  # the same key on every attempt
    for headers, body in server.requests:
        assert verify_signature(SECRET.encode(), headers[SIGNATURE_HEADER], body, time.time())
        assert not verify_signature(b"another secret", headers[SIGNATURE_HEADER], body, time.time())
        assert not verify_signature(SECRET.encode(), headers[SIGNATURE_HEADER], body + b" ", time.time())
    payload = json.loads(server.requests[-1][1])
    assert (payload["status"], payload["firing"], sorted(a["labels"]["cell_id"] for a in payload["alerts"])) == (
        "firing", 3, ["C0", "C1", "C2"])
    with store.transaction() as session:
        (n,) = rows(session, Notification)
        assert (n.status, n.attempts, n.sent_at, n.last_error) == (NotificationStatus.sent, 3, now + timedelta(seconds=90),
                                                                   None)


def test_a_signature_too_old_is_refused():
    body = b'{"a": 1}'
    header = sign(b"k", body, 1_000_000)
    assert verify_signature(b"k", header, body, 1_000_100)
    assert not verify_signature(b"k", header, body, 1_000_000 + 301)
    assert not verify_signature(b"k", "t=x,v1=00", body, 1_000_000)
    assert not verify_signature(b"k", "garbage", body, 1_000_000)


@pytest.mark.parametrize("status, retried", [(400, False), (401, False), (404, False), (422, False), (429, True)])
def test_a_4xx_fails_at_once_except_429(store, server, tmp_path, status, retried):
    config = http_config(tmp_path, server.server_port)
    cell_alert(store, config)
    server.script = [status]
    report = dispatch(store.transaction, build_gateways(config, tmp_path, environ()), T0 + 6 * MIN)
    assert (report.retrying, report.failed) == ((1, 0) if retried else (0, 1))
    with store.transaction() as session:
        (n,) = rows(session, Notification)
    assert f"answered {status}" in n.last_error and len(server.requests) == 1
    assert n.status == (NotificationStatus.retrying if retried else NotificationStatus.failed)


def test_a_timeout_is_retried_and_the_sms_gateway_gives_up_after_max_attempts(store, server, tmp_path):
    config = http_config(tmp_path, server.server_port, timeout="1s")
    cell_alert(store, config)
    server.script = [(200, 2.5)]  # answers after the client stopped waiting
    gateways = build_gateways(config, tmp_path, environ())
    report = dispatch(store.transaction, gateways, T0 + 6 * MIN)
    with store.transaction() as session:
        (n,) = rows(session, Notification)
    assert report.retrying == 1 and "did not answer within 1 s" in n.last_error

    with store.transaction() as session:  # an SMS through the HTTP gateway, always answered 503
        apply_events(session, dropped_calls(1), config, T0 + 6 * MIN)
    server.script = [503] * 10
    now = T0 + 7 * MIN
    for attempt in range(1, 4):
        dispatch(store.transaction, gateways, now)
        now += backoff(attempt)
    with store.transaction() as session:
        sms = [n for n in rows(session, Notification) if n.channel == "sms:care"][0]
        (action,) = rows(session, Action)
    assert (sms.status, sms.attempts) == (NotificationStatus.failed, 3) and sms.last_error.startswith("gave up after attempt 3")
    assert action.status == ActionStatus.failed
    sms_requests = [(h, json.loads(b)) for h, b in server.requests if json.loads(b).get("to")]
    assert len(sms_requests) == 3
    assert {h["Authorization"] for h, _ in sms_requests} == {"Bearer tok-123"}
    assert {h["Idempotency-Key"] for h, _ in sms_requests} == {sms.idempotency_key}
    assert sms_requests[0][1]["text"] == "Sorry about the calls (3)."


def test_a_webhook_without_its_secret_waits_in_the_queue_saying_why(store, server, tmp_path):
    config = http_config(tmp_path, server.server_port)
    cell_alert(store, config)
    report = dispatch(store.transaction, build_gateways(config, tmp_path, environ={}), T0 + 6 * MIN)
    with store.transaction() as session:
        (n,) = rows(session, Notification)
    assert report.retrying == 1 and server.requests == []
    assert n.last_error == "the webhook:noc webhook's secret comes from $TEST_WEBHOOK_SECRET, which is not set"


def test_a_connection_refused_is_retried(store, tmp_path):
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = http_config(tmp_path, port)
    cell_alert(store, config)
    report = dispatch(store.transaction, build_gateways(config, tmp_path, environ()), T0 + 6 * MIN)
    with store.transaction() as session:
        (n,) = rows(session, Notification)
    assert report.retrying == 1 and n.last_error.startswith("cannot reach 127.0.0.1")


def test_backoff_doubles_and_is_capped():
    assert [backoff(a).total_seconds() for a in (1, 2, 3, 4)] == [30, 60, 120, 240]
    assert backoff(20).total_seconds() == 3600


def test_two_dispatchers_at_once_send_each_notification_once(store, tmp_path):
    keys = queue_sms(store, 20)
    gateways = build_gateways(load_config(), tmp_path / "outbox", environ={})
    reports = []
    threads = [threading.Thread(target=lambda: reports.append(dispatch(store.transaction, gateways, T0 + 60 * MIN)))
               for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(r.sent for r in reports) == 20
    assert sorted(OutboxGateway(tmp_path / "outbox", "sms").keys()) == keys
    assert os.path.getsize(tmp_path / "outbox" / "sms.jsonl") > 0
