"""The alerting config and routing: bad files report every problem at once (the ``*.bad.yaml``
fixtures beside the text they must produce), the shipped default is valid and sends the
SysMech alert to the apology SMS, the route tree walks as Alertmanager's does, matchers are
anchored and linear-time, and templates run no code whatever their text or the labels say."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from opencem.rules.alerting_spec import AlertingConfigError, check_config, load_config
from opencem.rules.apply import apply_events
from opencem.rules.matchers import Matcher, matches_empty
from opencem.rules.messages import fit, render_message
from opencem.rules.routing import group_key, group_labels, match_routes
from opencem.specfile import SpecError
from opencem.store.models import Notification
from tests.rules.alerting_support import (FIXTURES, MIN, T0, backend, config_from, database, fires, rows,  # noqa: F401
                                          store, _no_database_url)

BAD = sorted(FIXTURES.glob("*.bad.yaml"))


@pytest.mark.parametrize("path", BAD, ids=[p.stem for p in BAD])
def test_a_bad_config_reports_every_problem_with_its_line_and_field(path: Path):
    expected = path.with_suffix("").with_suffix(".bad.txt").read_text().splitlines()
    try:
        _, issues = check_config(path)
        got = [("" if i.level == "error" else "warning: ") + str(i) for i in issues]
    except SpecError as err:  # YAML-level problems stop before the model
        got = [str(err)]
    assert got == expected
    with pytest.raises(AlertingConfigError if "yaml" not in path.name else SpecError):
        load_config(path)


def test_the_shipped_config_is_valid_and_sends_repeated_dropped_calls_to_an_apology_sms():
    config, issues = check_config()
    assert issues == []
    labels = {"alertname": "RepeatedDroppedCalls", "action": "notify_customer", "subscriber_id": "S42",
              "severity": "info"}
    (route,) = match_routes(config.route, labels)
    (sms,) = config.receivers[route.receiver]
    assert (route.receiver, route.group_by, route.group_wait_s, sms.type, sms.channel) == (
        "customer-apology", ("subscriber_id",), 0, "sms", "sms:customer-apology")
    text = render_message(sms.text, labels, 3.0, {}, sms.max_chars)
    assert text.startswith("We are sorry: your last calls were interrupted (3 in the last hour).")
    assert config.cool_down_s == 86_400 and config.quiet_hours.during == "hold"
    assert [(r.equal, [str(m) for m in r.source]) for r in config.inhibit_rules] == [
        (("site_id",), ['outage=~"site|backhaul"']), (("province",), ['outage="core"'])]


TREE = """
route:
  receiver: default
  group_by: [alertname]
  routes:
    - matchers: ['team="ran"']
      receiver: ran
      continue: true
      routes:
        - matchers: ['severity=~"critical|major"']
          receiver: ran-pager
    - matchers: ['team=~"ran|video"', 'severity!="info"']
      receiver: experience
      group_by: ['...']
    - matchers: ['cell_id!~"C9.*"']
      receiver: not-c9
receivers:
  - {name: default}
  - {name: ran}
  - {name: ran-pager}
  - {name: experience}
  - {name: not-c9}
"""


@pytest.mark.parametrize("labels, receivers", [
    ({"team": "ran", "severity": "major"}, ["ran-pager", "experience"]),   # continue: on to the next sibling
    ({"team": "ran", "severity": "minor"}, ["ran", "experience"]),         # no child matched: the node itself
    ({"team": "ran", "severity": "info"}, ["ran", "not-c9"]),              # "" !~ C9.*: a missing label is ""
    ({"team": "video", "severity": "major"}, ["experience"]),              # first match stops (no continue)
    ({"team": "ranx", "cell_id": "C91"}, ["default"]),                     # anchored: ranx is not ran
    ({"cell_id": "C1"}, ["not-c9"]),
])
def test_the_route_tree_walks_as_alertmanager_does(tmp_path, labels, receivers):
    config = config_from(tmp_path, TREE)
    assert [r.receiver for r in match_routes(config.route, labels)] == receivers


def test_group_by_picks_its_labels_and_dots_take_them_all(tmp_path):
    config = config_from(tmp_path, TREE)
    ran = config.routes_by_id["root.0"]
    everything = config.routes_by_id["root.1"]
    labels = {"alertname": "A", "team": "ran", "cell_id": "C1"}
    assert group_labels(ran, labels) == {"alertname": "A"}  # inherited from the root
    assert group_labels(everything, labels) == labels
    assert group_key(ran, labels)[0] != group_key(everything, labels)[0]
    assert group_key(ran, labels) == group_key(ran, {**labels, "cell_id": "C2"})  # same group


def test_matchers_parse_quotes_and_refuse_what_would_mute_everything():
    assert Matcher.parse('summary="say \\"hi\\""').value == 'say "hi"'
    assert Matcher.parse("cell_id = C1").matches({"cell_id": "C1"})
    assert matches_empty([Matcher.parse('cell_id=~".*"')])
    assert not matches_empty([Matcher.parse('cell_id=~".+"')])
    for bad in ("cell_id", "1x=2", "a=~(", "x" * 1001 + "=1"):
        with pytest.raises(ValueError):
            Matcher.parse(bad)


def test_a_pathological_regex_runs_in_linear_time():
    matcher = Matcher.parse('cell_id=~"(a+)+$"')  # catastrophic for a backtracking engine
    started = time.perf_counter()
    assert not matcher.matches({"cell_id": "a" * 50_000 + "!"})
    assert time.perf_counter() - started < 1.0


def test_templates_insert_values_as_text_never_as_template_or_code():
    labels = {"subscriber_id": "{{ $value }}", "cell_id": "C1\x00\x1b[31m\nnext line", "big": "x" * 10_000}
    text = render_message("Hi {{ $labels.subscriber_id }} at {{ $labels.cell_id }}: {{ $labels.big }} {{ $value }}",
                          labels, 3.0, {}, 480)
    assert text == "Hi {{ $value }} at C1  [31m next line: " + "x" * 199 + "… 3"  # not expanded, controls blanked
    assert len(render_message("{{ $labels.big }}", labels, None, {}, 50)) == 50
    assert render_message("{{ $labels.missing }}!", {}, None, {}, 100) == "!"
    with pytest.raises(AlertingConfigError, match="at most 2,000"):
        load_config(_write_template("{{" * 5_000))


def _write_template(text: str) -> Path:
    import tempfile

    path = Path(tempfile.mkdtemp()) / "alerting.yaml"
    path.write_text("route: {receiver: r}\nreceivers: [{name: r, sms_configs: [{template: t}]}]\n"
                    f"templates:\n  t: {text!r}\n")
    return path


def test_fit_keeps_short_values_and_shortens_long_ones_stably():
    assert fit("C1", 100) == "C1"
    long = "S" * 10_000
    assert len(fit(long, 100)) == 100 and fit(long, 100) == fit(long, 100) != fit(long + "x", 100)


def test_an_alert_routed_to_two_receivers_is_grouped_and_notified_on_each(store, tmp_path):
    config = config_from(tmp_path, TREE.replace("{name: ran}", "{name: ran, outbox: true}"))
    events = fires("CellStall", {"cell_id": "C1"}, T0, labels={"team": "ran", "severity": "major"})
    with store.transaction() as session:
        apply_events(session, events, config, T0 + 10 * MIN)
        got = sorted(n.channel for n in rows(session, Notification))
    assert got == ["outbox:experience", "outbox:ran-pager"]
