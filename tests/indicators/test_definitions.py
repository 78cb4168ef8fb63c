"""Definition files: every problem reported at once with file, line and field; expressions
are confined to the whitelist (no SQL reaches an engine unless it passes)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from opencem.indicators.catalog import load_catalog
from opencem.indicators.expr import FUNCTION_NAMES, check_filter, check_kpi, check_kqi
from opencem.indicators.spec import Score
from opencem.schema import TABLES

FIXTURES = Path(__file__).parent / "fixtures"
VOICE = TABLES["xdr_voice"].schema.names


@pytest.mark.parametrize("bad", sorted(FIXTURES.glob("*.bad.yaml")), ids=lambda p: p.stem)
def test_bad_definition_files_give_the_expected_sentences(bad):
    expected = bad.with_suffix(".txt").read_text().strip().splitlines()
    cat = load_catalog(TABLES, [bad], library=False)
    assert cat.errors == expected


def test_the_standard_library_has_no_errors():
    cat = load_catalog(TABLES)
    assert cat.errors == []
    assert len(cat.kpis) >= 40 and len(cat.kqis) >= 20
    assert {n.name for n in cat.cei.indices} >= {"voice", "mobile_data", "video", "iot", "home_broadband"}


@pytest.mark.parametrize("text, problem", [
    ("sum(duration_s) + (select 1)", "subqueries are not allowed"),
    ("count(*) + (select max(x) from cells)", "subqueries are not allowed"),
    ("sum(duration_s) over ()", "WINDOW"),
    ("sum(cast(duration_s as int))", "casts are not allowed"),
    ("sum(duration_s) filter (where dropped)", "FILTER"),
    ("sum(sum(duration_s))", "cannot be nested"),
    ("percentile(setup_time_ms, 95)", "between 0 and 1"),
    ("percentile(setup_time_ms)", "two arguments"),
    ("avg(duration_s) + duration_s", "must be inside an aggregate"),
    ("max(xdr_voice.duration_s)", "unknown column xdr_voice.duration_s"),
    ("count(*) + 1 /", "cannot be parsed"),
    ("emodel_mos(codec)", "emodel_mos takes 3 to 4 arguments"),
    ("sum(duration_s) * upper(codec)", "function upper is not allowed"),
])
def test_expressions_outside_the_whitelist_are_refused(text, problem):
    checked = check_kpi(text, VOICE)
    assert any(problem in issue for issue in checked.issues), checked.issues


def test_counter_names_are_dotted_or_quoted_only_in_counter_sources():
    ok = check_kpi('100 * sum(RRC.ConnEstabSucc) / sum("RRC.ConnEstabAtt.mo-Signalling")',
                   ["cell_id", "granularity_s"], counters=True)
    assert ok.ok and ok.counters == {"RRC.ConnEstabSucc", "RRC.ConnEstabAtt.mo-Signalling"}
    assert not check_kpi("sum(RRC.ConnEstabSucc)", VOICE).ok


def test_filters_and_kqis_take_no_aggregates():
    assert "not allowed in a filter" in check_filter("sum(duration_s) > 1", VOICE).issues[0]
    assert "refer to KPIs by name" in check_kqi("avg(call_drop_rate)", {"call_drop_rate"}).issues[0]
    assert check_kqi("least(a, 100) - b / 2", {"a", "b"}).ok


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from([*"abx_()*+-/,'; 0123456789.", *FUNCTION_NAMES, "select", "from",
                                 " over ", "(select 1)", "::int", "case when", "then", "end", '"']),
                max_size=25).map("".join))
def test_any_text_is_either_accepted_within_the_whitelist_or_refused_with_a_sentence(text):
    checked = check_kpi(text, ["x", "a", "b"])
    if checked.ok:  # accepted trees only hold whitelisted nodes over known columns
        assert checked.aggregates >= 1 and checked.columns <= {"x", "a", "b"}
    else:
        assert all(isinstance(i, str) and i and "\n" not in i for i in checked.issues)


def test_score_breakpoints_follow_direction():
    assert Score(good=99, bad=90).breakpoints() == [(90, 0), (99, 100)]
    assert Score(good=1, bad=3).breakpoints() == [(1, 100), (3, 0)]
    with pytest.raises(ValueError, match="increasing values"):
        Score(points=[(1, 0), (1, 100)])


def test_a_workspace_definition_replaces_the_library_one(tmp_path):
    lib = load_catalog(TABLES)
    name = next(iter(lib.kpis))
    mine = tmp_path / "mine.yaml"
    mine.write_text(f"kpis:\n  - name: {name}\n    source: xdr_voice\n    expr: count(*)\n")
    cat = load_catalog(TABLES, [mine])
    assert cat.errors == [] and cat.kpis[name].expr == "count(*)"
