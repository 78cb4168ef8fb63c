"""Counter dictionaries: the format (lists of sources, objects, expr), its validation sentences,
how an entry is applied, and what the shipped dictionaries may name."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from opencem.ingest import counter_expr
from opencem.ingest.dictionary import DICTIONARY_DIR, CounterDictionary, DictionaryError, load_dictionary
from opencem.ingest.dictionary_apply import map_counters
from opencem.ingest.dn import object_classes
from opencem.ingest.pm_csv import read_vendor_csv
from opencem.schema.counters import CANONICAL_COUNTERS
from opencem.schema.network import PM_COUNTERS
from tests.conftest import external

FIXTURES = Path(__file__).parent / "fixtures"
T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
T1 = datetime(2026, 3, 1, 9, 15, tzinfo=UTC)


@pytest.mark.parametrize("bad", sorted(FIXTURES.glob("*.bad.yaml")), ids=lambda p: p.stem)
def test_bad_dictionary_files_give_the_expected_sentences(bad):
    expected = bad.with_suffix(".txt").read_text().strip().splitlines()
    with pytest.raises(DictionaryError) as err:
        load_dictionary(bad)
    assert err.value.sentences == expected


def test_bundled_dictionaries_produce_only_canonical_names():
    for path in sorted(DICTIONARY_DIR.glob("*.yaml")):
        d = load_dictionary(path)
        assert d.vendor == path.stem, path.name
        assert set(d.counters) <= set(CANONICAL_COUNTERS), (path.name, set(d.counters) - set(CANONICAL_COUNTERS))
        assert d.detect is not None or d.format == "csv", path.name


def _names_by_class(path: Path) -> set[tuple[str, str]]:
    from opencem.ingest.pm_nanocell import read_pmfile
    from opencem.ingest.pm_xml import read_meascollec

    t = read_pmfile(path) if path.name.startswith("pm_file") else read_meascollec(path)
    classes = object_classes(t["object_dn"].combine_chunks()).to_pylist()
    return set(zip(t["counter_name"].to_pylist(), classes))


@pytest.mark.external
@pytest.mark.parametrize(("vendor", "file"), [
    ("ericsson", ("3gpp-pm", "o-ran-sc", "A20220418.1900-1915_seliitdus00487.xml")),
    ("nanocell", ("vendor-pm", "baicells", "pm_file_example.xml")),
])
def test_every_counter_a_shipped_dictionary_reads_is_in_the_real_file_on_its_objects(vendor, file):
    """Never invent a counter: each name occurs in the vendor's real file, on each class listed."""
    present = _names_by_class(external(*file))
    for canonical, sources in load_dictionary(vendor).counters.items():
        for s in sources:
            for name in s.source_names:
                classes = s.objects or [c for n, c in present if n == name][:1]
                assert classes and all((name, c) in present for c in classes), (canonical, name, classes)


# --- the expression language ---------------------------------------------------------------------

def test_expressions_follow_arithmetic_and_null_rules():
    tree = counter_expr.parse('granularity_s * (1 - a / b) + -"odd name (x)" * 2')
    assert counter_expr.names(tree) == ["a", "b", "odd name (x)"]
    cols = {"a": (np.array([45.0, 1.0, 5.0, 0.0]), np.array([True, True, False, True])),
            "b": (np.array([90.0, 0.0, 5.0, 4.0]), np.array([True, True, True, True])),
            "odd name (x)": (np.array([1.0, 1.0, 1.0, 1.0]), np.array([True, True, True, True]))}
    value, valid = counter_expr.evaluate(tree, cols, np.array([900, 900, 900, 60]))
    # 900 * 0.5 - 2; x/0 is null; a null operand is null; 60 * (1 - 0) - 2
    assert valid.tolist() == [True, False, False, True]
    assert value[valid].tolist() == [448.0, 58.0]
    assert counter_expr.parse("1 - 2 - 3") == counter_expr.parse("(1 - 2) - 3")  # left to right
    _, ok = counter_expr.evaluate(counter_expr.parse("a + missing"), cols, np.zeros(4))
    assert not ok.any()  # an absent counter makes the result null


@pytest.mark.parametrize(("text", "message"), [
    ("(" * 60 + "a" + ")" * 60, "nests parentheses and signs more than 50 deep (at character 51)"),
    ("-" * 100 + "a", "nests parentheses and signs more than 50 deep (at character 51)"),
    (" + ".join(["a"] * 600), "has 1,199 counters, numbers and operators; at most 1,000 are allowed"),
    ("(" * 50_000 + "a" + ")" * 50_000, "is 100,001 characters long; at most 20,000 are allowed"),
])
def test_expressions_too_deep_or_long_are_one_sentence_not_a_recursion_error(text, message):
    with pytest.raises(counter_expr.ExprError) as err:
        counter_expr.parse(text)
    assert str(err.value) == message


def test_the_longest_expression_allowed_evaluates_even_deep_in_the_call_stack():
    """A chain of 500 terms is a tree 500 deep: evaluating it must not recurse once per level."""
    import sys

    tree = counter_expr.parse(" + ".join(["a"] * 500))
    cols = {"a": (np.array([1.0, 2.0]), np.array([True, True]))}

    def deep(k: int):
        return deep(k - 1) if k else counter_expr.evaluate(tree, cols, np.array([900, 900]))

    value, valid = deep(sys.getrecursionlimit() - 100)
    assert value.tolist() == [500.0, 1000.0] and valid.all()


def test_a_workspace_dictionary_with_a_deep_expression_stops_ingest_in_one_sentence(tmp_path):
    own = tmp_path / "dictionaries"
    own.mkdir()
    (own / "deep.yaml").write_text('vendor: deep\nformat: xml_32435\ncounters:\n  RRC.ConnEstabAtt: {expr: "'
                                   + "-" * 50_000 + 'pmA"}\n')
    from opencem.ingest.load import ingest
    from opencem.lake import Lake

    with pytest.raises(DictionaryError) as err:
        ingest(Lake(tmp_path / "lake"), [tmp_path], dictionaries=own)
    assert err.value.sentences == [
        "Counter dictionary deep.yaml, line 4, field counters[RRC.ConnEstabAtt].expr: expression '"
        + "-" * 60 + "...' is 50,003 characters long; at most 20,000 are allowed."]


# --- applying a dictionary ------------------------------------------------------------------------

def raw(rows: list[tuple]) -> pa.Table:
    """PM rows (object_dn, period_start, counter, value, suspect) as a reader gives them."""
    return pa.table({
        "object_dn": [r[0] for r in rows], "managed_element": ["me1"] * len(rows), "cell_id": ["1"] * len(rows),
        "period_start": pa.array([r[1] for r in rows], pa.timestamp("ms", tz="UTC")),
        "granularity_s": pa.array([900] * len(rows), pa.int32()), "counter_name": [r[2] for r in rows],
        "value": pa.array([r[3] for r in rows], pa.float64()), "vendor": ["x"] * len(rows),
        "suspect": [r[4] for r in rows]}).cast(PM_COUNTERS.schema)


DU, CU = "ManagedElement=me1,GNBDUFunction=1,NRCellDU=1", "ManagedElement=me1,GNBCUCPFunction=1,NRCellCU=1"
LTE = "ManagedElement=me1,ENodeBFunction=1,EUtranCellFDD=1"


def test_entries_by_object_class_expression_and_shared_counters():
    d = CounterDictionary.model_validate({"vendor": "v", "format": "xml_32435", "counters": {
        "RRU.CellUnavailableTime": {"sum": ["down_a", "down_m"], "objects": ["EUtranCellFDD", "NRCellDU"]},
        "DRB.UEThpVolDl": [{"expr": "vol - vol_last", "objects": ["EUtranCellFDD"]},
                           {"from": "mac_vol", "scale": 0.008, "objects": ["NRCellDU"]}],
        "ERAB.RelAbnormalEnbAct": {"from": "rel_abn"},
        "ERAB.RelActNbr": {"sum": ["rel_abn", "rel_norm"]},     # rel_abn feeds two entries
        "RRC.ConnMean": {"expr": "level_sum / level_samp"}}})
    table = raw([
        (LTE, T0, "down_a", 0.0, False), (LTE, T0, "down_m", 90.0, True),
        (DU, T0, "down_a", None, False), (DU, T0, "down_m", None, False),   # all parts null: null
        (CU, T0, "down_a", 900.0, False),                                   # CU: not the cell's downtime
        (LTE, T0, "vol", 1200.0, False), (LTE, T0, "vol_last", 200.0, False),
        (LTE, T1, "vol", 50.0, False),                                      # vol_last absent: null
        (DU, T0, "mac_vol", 1000.0, False),
        (LTE, T0, "rel_abn", 3.0, False), (LTE, T0, "rel_norm", 7.0, False),
        (CU, T0, "level_sum", 900.0, False), (CU, T0, "level_samp", 0.0, False),   # x/0: null
        (CU, T1, "level_sum", 900.0, False), (CU, T1, "level_samp", 180.0, False),
    ])
    out, rows = map_counters(table, d, np.arange(101, 101 + table.num_rows))
    got = {(r["object_dn"].rsplit(",", 1)[1], r["period_start"], r["counter_name"]): (r["value"], r["suspect"], int(n))
           for r, n in zip(out.to_pylist(), rows)}
    assert got == {
        ("EUtranCellFDD=1", T0, "RRU.CellUnavailableTime"): (90.0, True, 101),
        ("NRCellDU=1", T0, "RRU.CellUnavailableTime"): (None, False, 103),
        ("NRCellCU=1", T0, "down_a"): (900.0, False, 105),                     # kept under its own name
        ("EUtranCellFDD=1", T0, "DRB.UEThpVolDl"): (1000.0, False, 106),
        ("EUtranCellFDD=1", T1, "DRB.UEThpVolDl"): (None, False, 108),
        ("NRCellDU=1", T0, "DRB.UEThpVolDl"): (8.0, False, 109),
        ("EUtranCellFDD=1", T0, "ERAB.RelAbnormalEnbAct"): (3.0, False, 110),
        ("EUtranCellFDD=1", T0, "ERAB.RelActNbr"): (10.0, False, 110),
        ("NRCellCU=1", T0, "RRC.ConnMean"): (None, False, 112),
        ("NRCellCU=1", T1, "RRC.ConnMean"): (5.0, False, 114),
    }
    assert set(out["vendor"].to_pylist()) == {"v"}


def test_csv_exports_go_through_the_same_implementation(tmp_path):
    (tmp_path / "d.yaml").write_text(
        "vendor: flat\nformat: csv\ncsv: {time_column: T, period_column: P, ne_column: NE, cell_column: C}\n"
        "counters:\n  RRU.CellUnavailableTime: {expr: 'granularity_s * (1 - AVAIL_PCT / 100)'}\n"
        "  HO.ExeAtt: {sum: [HO_X2, HO_S1]}\n")
    path = tmp_path / "e.csv"
    path.write_text("T,P,NE,C,AVAIL_PCT,HO_X2,HO_S1\n2026-03-01 09:00:00,15,me1,c1,90,3,\n"
                    "2026-03-01 09:00:00,15,me1,c2,,,\n")
    t = read_vendor_csv(path, tmp_path / "d.yaml")
    got = {(r["cell_id"], r["counter_name"]): r["value"] for r in t.to_pylist()}
    assert got == pytest.approx({("c1", "RRU.CellUnavailableTime"): 90.0, ("c1", "HO.ExeAtt"): 3.0,
                                 ("c2", "RRU.CellUnavailableTime"): None, ("c2", "HO.ExeAtt"): None})


def test_values_read_count_what_the_file_holds_and_say_what_the_dictionary_did(tmp_path):
    """keep_unmapped: false drops pmB; a sum folds three values into one row: 5 values are read,
    2 rows accepted, and the log says where the other 3 went."""
    from opencem.ingest.load import ingest
    from opencem.lake import Lake

    own = tmp_path / "dictionaries"
    own.mkdir()
    (own / "drop.yaml").write_text("vendor: drop\nformat: xml_32435\ndetect: {vendor_names: [drop]}\n"
                                   "keep_unmapped: false\ncounters:\n  RRC.ConnEstabAtt: {from: pmA}\n"
                                   "  HO.ExeAtt: {sum: [pmC, pmD, pmE]}\n")
    path = tmp_path / "A.xml"
    path.write_text('<?xml version="1.0" encoding="UTF-8"?>\n<measCollecFile xmlns="http://www.3gpp.org/ftp/specs/'
                    'archive/32_series/32.435#measCollec"><fileHeader vendorName="drop"><measCollec beginTime='
                    '"2024-01-01T00:00:00Z"/></fileHeader><measData><managedElement localDn="me1"/><measInfo>'
                    '<granPeriod duration="PT900S" endTime="2024-01-01T00:15:00Z"/><measTypes>pmA pmB pmC pmD pmE'
                    '</measTypes><measValue measObjLdn="ManagedElement=me1,EUtranCellFDD=1"><measResults>1 2 3 4 5'
                    "</measResults></measValue></measInfo></measData></measCollecFile>\n")
    [result] = ingest(Lake(tmp_path / "lake"), [path], dictionaries=own).files
    assert (result.rows_read, result.rows_accepted, result.rows_quarantined) == (5, 2, 0)
    assert (result.mapping.folded, result.mapping.derived, result.mapping.dropped) == (3, 1, {"pmB": 1})
    assert result.message.startswith(
        "5 values read: the dictionary's sum and expr entries folded 3 values into 1 row; 1 value of counters the "
        "dictionary does not map were left out (keep_unmapped: false): pmB (1) (values read = rows accepted + "
        "quarantined + folded - derived + left out)")
