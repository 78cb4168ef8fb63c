"""``opencem alerts`` and ``opencem silences`` on both databases (the workspace's SQLite file,
PostgreSQL through $OPENCEM_DATABASE_URL): listing with filters in every format, showing the
evidence, dispatching to the outbox, checking a config, and silences added, listed, expired."""

from __future__ import annotations

import csv
import io
import json

import pytest

from opencem.rules.alerting_spec import load_config
from opencem.rules.apply import apply_events
from opencem.store import open_store
from opencem.store.models import AuditEntry
from opencem.workspace import Workspace
from tests.cli.conftest import cli
from tests.rules.alerting_support import (FIXTURES, MIN, T0, backend, database, env, fires, resolves,  # noqa: F401
                                          rows, _no_database_url)


@pytest.fixture
def ws(tmp_path) -> Workspace:
    return Workspace(tmp_path / "ws")  # the folder the database fixture's SQLite file is in


@pytest.fixture
def alerts(database):
    events = (fires("CellDown", {"cell_id": "C1"}, T0, labels={"site_id": "S1"})
              + fires("CellDown", {"cell_id": "C2"}, T0, labels={"site_id": "S2"})
              + fires("RepeatedDroppedCalls", {"subscriber_id": "S9"}, T0, labels={"action": "notify_customer"}))
    events.append(resolves("CellDown", {"cell_id": "C2"}, T0, T0 + 30 * MIN, labels={"site_id": "S2"}))
    with open_store(database) as store, store.transaction() as session:
        apply_events(session, events, load_config(), T0 + 60 * MIN)


def test_alerts_list_filters_by_state_rule_and_label_in_each_format(ws, env, alerts):
    table = cli("alerts", "list", ws=ws, env=env)
    assert table.exit_code == 0, table.output
    assert "RepeatedDroppedCalls" in table.stdout and "C1" in table.stdout
    firing = json.loads(cli("alerts", "list", "--state", "firing", "--format", "json", ws=ws, env=env).stdout)
    assert sorted(a["object_id"] for a in firing) == ["C1", "S9"]
    by_label = json.loads(cli("alerts", "list", "--label", 'site_id=~"S[12]"', "--label", "cell_id!=C1",
                              "-f", "json", ws=ws, env=env).stdout)
    assert [(a["object_id"], a["state"]) for a in by_label] == [("C2", "resolved")]
    by_rule = list(csv.DictReader(io.StringIO(cli("alerts", "list", "--rule", "RepeatedDroppedCalls", "-f", "csv",
                                                  ws=ws, env=env).stdout)))
    assert [(r["object_id"], r["fired_at"]) for r in by_rule] == [("S9", "2026-11-02T08:01:00.000000Z")]
    bad = cli("alerts", "list", "--state", "burning", ws=ws, env=env)
    assert bad.exit_code == 2 and "--state 'burning' is not one of" in bad.stderr
    bad = cli("alerts", "list", "--label", "site_id", ws=ws, env=env)
    assert bad.exit_code == 2 and "--label 'site_id'" in bad.stderr


def test_alerts_show_gives_the_evidence_and_what_it_caused(ws, env, alerts):
    listed = json.loads(cli("alerts", "list", "--rule", "RepeatedDroppedCalls", "-f", "json", ws=ws, env=env).stdout)
    shown = cli("alerts", "show", str(listed[0]["id"]), "-f", "json", ws=ws, env=env)
    detail = json.loads(shown.stdout)
    assert detail["evidence"]["expr"] == "RepeatedDroppedCalls expr" and detail["state"] == "firing"
    assert [(n["channel"], n["status"]) for n in detail["notifications"]] == [("sms:customer-apology", "queued")]
    assert [(a["type"], a["status"], a["subscriber_id"]) for a in detail["actions"]] == [("sms", "requested", "S9")]
    table = cli("alerts", "show", str(listed[0]["id"]), ws=ws, env=env)
    assert table.exit_code == 0 and "evidence" in table.stdout
    missing = cli("alerts", "show", "9999", ws=ws, env=env)
    assert missing.exit_code == 2 and "there is no alert 9999" in missing.stderr


def test_alerts_dispatch_sends_what_is_queued_once(ws, env, alerts):
    first = cli("alerts", "dispatch", ws=ws, env=env)
    assert first.exit_code == 0, first.output
    assert "4 notifications due: 4 sent" in first.stdout  # the SMS; C1 and C2 firing, C2 resolved to the NOC
    second = cli("alerts", "dispatch", ws=ws, env=env)
    assert "0 notifications due" in second.stdout
    (sms,) = [json.loads(x) for x in (ws.root / "outbox" / "sms.jsonl").read_text().splitlines()]
    assert sms["to"] == "S9" and sms["text"].startswith("We are sorry")
    noc = [json.loads(x) for x in (ws.root / "outbox" / "noc.jsonl").read_text().splitlines()]
    assert sorted(n["status"] for n in noc) == ["firing", "firing", "resolved"]


def test_alerts_check_config_reports_each_problem_and_exits_1(ws):
    good = cli("alerts", "check-config", ws=ws)
    assert good.exit_code == 0 and "ok (3 routes, 2 receivers, 2 inhibit rules)" in good.stdout
    bad = cli("alerts", "check-config", str(FIXTURES / "semantics.bad.yaml"), ws=ws)
    assert bad.exit_code == 1
    expected = (FIXTURES / "semantics.bad.txt").read_text().splitlines()
    got = [line.removeprefix("error: ") for line in bad.stderr.splitlines()]
    assert got == expected
    broken = cli("alerts", "check-config", str(FIXTURES / "yaml.bad.yaml"), ws=ws)
    assert broken.exit_code == 2 and "gives key 'receiver' twice" in broken.stderr


def test_silences_add_list_expire(ws, env, database):
    added = cli("silences", "add", "--matcher", "site_id=S1", "--matcher", 'alertname=~"Cell.*"', "--duration", "2h",
                "--comment", "planned works", "--author", "noc@op", ws=ws, env=env)
    assert added.exit_code == 0, added.output
    sid = int(added.stdout.split()[1])
    listed = json.loads(cli("silences", "list", "-f", "json", ws=ws, env=env).stdout)
    assert [(s["id"], s["state"], s["matchers"], s["created_by"]) for s in listed] == [
        (sid, "active", 'site_id="S1", alertname=~"Cell.*"', "noc@op")]
    expired = cli("silences", "expire", str(sid), "--author", "ops@op", ws=ws, env=env)
    assert expired.exit_code == 0 and f"silence {sid} expired" in expired.stdout
    assert json.loads(cli("silences", "list", "-f", "json", ws=ws, env=env).stdout) == []
    assert [s["state"] for s in json.loads(cli("silences", "list", "--all", "-f", "json", ws=ws, env=env).stdout)] == [
        "expired"]
    again = cli("silences", "expire", str(sid), ws=ws, env=env)
    assert again.exit_code == 2 and "already ended" in again.stderr
    with open_store(database) as store, store.transaction() as session:
        assert [(a.action, a.actor) for a in rows(session, AuditEntry)] == [("silence.add", "noc@op"),
                                                                           ("silence.expire", "ops@op")]


@pytest.mark.parametrize("args, message", [
    (["--matcher", "site_id=S1"], "give --duration or --until"),
    (["--matcher", "site_id=S1", "--duration", "soon"], "--duration: 'soon' is not a duration"),
    (["--matcher", "site_id=S1", "--until", "2026-11-02T18:00"], "has no time zone"),
    (["--matcher", "site_id=S1", "--until", "yesterday"], "is not a time like"),
    (["--matcher", 'site_id=~".*"', "--duration", "1h"], "would mute every alert"),
    (["--matcher", 'site_id=~"("', "--duration", "1h"], "is not a regular expression"),
])
def test_silences_add_refuses_in_one_sentence(ws, env, database, args, message):
    out = cli("silences", "add", *args, ws=ws, env=env)
    assert out.exit_code == 2 and message in out.stderr and "Traceback" not in out.output
