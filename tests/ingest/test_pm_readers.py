"""PM file readers (3GPP XML, vendor CSV) and vendor counter dictionaries."""

from __future__ import annotations

import gzip
import resource
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from opencem.ingest import pm_xml
from opencem.ingest.dictionary import DictionaryError, load_dictionary
from opencem.ingest.pm_csv import read_vendor_csv, read_vendor_csv_part
from opencem.ingest.parts import Reject
from opencem.ingest.pm_xml import PMFileError, cell_id_of, iter_meascollec, read_meascollec, read_pm_xml_parts
from opencem.schema.network import PM_COUNTERS

EXTERNAL_PM = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "external" / "3gpp-pm"
NS = "http://www.3gpp.org/ftp/specs/archive/32_series/32.435#measCollec"


def external_pm(*parts: str) -> Path:
    path = EXTERNAL_PM.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"shared 3GPP PM samples not available: {path}")
    return path


def rows(table: pa.Table) -> dict[tuple[str, str], dict]:
    """(object_dn, counter_name) -> row, for files with one period."""
    return {(r["object_dn"], r["counter_name"]): r for r in table.to_pylist()}


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


def meas_file(body: str, doctype: str = "") -> str:
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n{doctype}<measCollecFile xmlns="{NS}">\n'
            '<fileHeader fileFormatVersion="32.435 V10.0" vendorName="Acme">'
            '<measCollec beginTime="2026-03-01T10:00:00+01:00"/></fileHeader>\n'
            f'<measData><managedElement localDn="ME-1"/>{body}</measData>\n'
            '<fileFooter><measCollec endTime="2026-03-01T10:15:00+01:00"/></fileFooter></measCollecFile>\n')


# --- real files from ONAP and O-RAN-SC -----------------------------------------------------------

@pytest.mark.external
def test_onap_file_with_utrancells_suspect_flags_and_offsets():
    t = read_meascollec(external_pm("onap/csit/tests/pmmapper/assets/A20181002.0000-1000-0015-1000_5G.xml"))
    assert t.schema == PM_COUNTERS.schema
    assert t.num_rows == 28
    r = rows(t)
    # measObjLdn is the LDN below the measData's managed element (TS 32.432 measObjInstId).
    rnc = "SubNetwork=CountryNN,MeContext=MEC-Gbg-1,ManagedElement=RNC-Gbg-1"
    first = r[(f"{rnc},RncFunction=RF-1,UtranCell=Gbg-997", "attTCHSeizures")]
    assert (first["value"], first["cell_id"], first["suspect"], first["vendor"]) == (234.0, "Gbg-997", False, "Company NN")
    # endTime 14:14:30+02:00 minus PT900S
    assert (first["period_start"], first["granularity_s"]) == (utc(2000, 3, 1, 11, 59, 30), 900)
    assert r[(f"{rnc},RncFunction=RF-1,UtranCell=Gbg-999", "succImmediateAssignProcs")]["value"] == 789.0
    assert all(r[(f"{rnc},RncFunction=RF-1,UtranCell=Gbg-999", c)]["suspect"] for c in ("attTCHSeizures", "attTCHSeizures5"))
    assert r[(f"{rnc},RncFunction=RF-1,UtranCell=Gbg-998", "attTCHSeizures5")]["value"] == 898.0
    # An LDN that starts with the ManagedElement continues the localDn from there.
    enb = r[(f"{rnc},ENodeBFunction=1", "attTCHSeizures1")]
    assert (enb["value"], enb["cell_id"]) == (4.0, None)
    # A multi-value (array) counter is not a number.
    assert r[(f"{rnc},ENodeBFunction=1", "succTCHSeizures2")]["value"] is None


@pytest.mark.external
def test_oran_gnodeb_file_with_basic_format_offsets():
    t = read_meascollec(external_pm("o-ran-sc/A20230515.0700_0100-0715_0100_GNODEB-0.xml"))
    r = rows(t)
    meter = r[("ManagedElement=GNODEB-0,Equipment=1,FieldReplaceableUnit=BB-1,EnergyMeter=1", "pmCounterNumber530")]
    assert (meter["value"], meter["cell_id"], meter["vendor"]) == (83.0, None, "Ericsson AB")
    assert meter["period_start"] == utc(2023, 5, 15, 6, 0)  # 07:15+0100 minus 15 min
    assert r[("ManagedElement=GNODEB-0,Equipment=1,FieldReplaceableUnit=BB-1,EnergyMeter=1",
              "pmCounterNumber530Accumulated")]["value"] == 34846.0
    du = r[("ManagedElement=GNODEB-0,GNBDUFunction=1,NRCellDU=32", "pmCounterNumber101")]
    assert du["cell_id"] == "32"
    assert set(pc.unique(t["cell_id"]).to_pylist()) == {"32", "31", "2", "1", None}


@pytest.mark.external
def test_oran_gzipped_file_is_read_transparently():
    t = read_meascollec(external_pm("o-ran-sc/pm.xml.gz"))
    assert t.num_rows == 2667
    r = rows(t)
    cu = r[("ManagedElement=nodedntest,GNBCUCPFunction=1,NRCellCU=31", "pmCounterNumber7")]
    assert (cu["value"], cu["cell_id"], cu["period_start"]) == (180.0, "31", utc(2022, 4, 18, 19, 0))
    assert r[("ManagedElement=nodedntest,GNBCUCPFunction=1,NRCellCU=31", "pmCounterNumber0")]["value"] == 0.0


@pytest.mark.external
def test_onap_list_form_and_multiple_periods():
    t = read_meascollec(external_pm("onap/mapper_test/mapping_data/32.435/meas_types_and_meas_results_many_meas_values/test.xml"))
    r = rows(t)
    # localDn="Dublin" (a bare name) is ManagedElement=Dublin, above every measObjLdn.
    assert [r[("ManagedElement=Dublin,objLdn", c)]["value"] for c in "abc"] == [76.0, 27.0, 98.0]
    assert [r[("ManagedElement=Dublin,some other objLdn", c)]["value"] for c in "abc"] == [1.0, 2.0, 9.0]
    assert r[("ManagedElement=Dublin,objLdn", "a")]["period_start"] == utc(2018, 10, 2, 12, 0)
    c = read_meascollec(external_pm("onap/csit/tests/pmmapper/assets/C20190328.0000-0015.xml")).to_pylist()
    periods = {(x["counter_name"], x["period_start"], x["granularity_s"], x["value"]) for x in c}
    assert ("b2", utc(2002, 10, 2, 12, 11, 40), 200, 2222.0) in periods
    assert ("zz3", utc(2003, 10, 2, 12, 10, 0), 300, 333.0) in periods


@pytest.mark.external
def test_onap_28532_measdatafile_is_read_too():
    t = read_meascollec(external_pm("onap/mapper_test/mapping_data/28.532/meas_type_and_r/test.xml"))
    assert [(x["counter_name"], x["value"]) for x in t.to_pylist()] == [("a", 86.0), ("b", 67.0), ("c", 14.0)]


BAD_DURATION = [Reject(1, "measInfo 'some measInfoId' has granPeriod duration 'some duration', not an ISO 8601 "
                          "duration", "some measObjLdn")] * 3
ABC = [("ManagedElement=Dublin,some measObjLdn", c, v) for c, v in (("a", 86.0), ("b", 67.0), ("c", 14.0))]


@pytest.mark.external
@pytest.mark.parametrize(("name", "values", "rejects"), [
    # No managedElement (the DN stays the measObjLdn), but a granPeriod duration that is not one.
    ("csit/tests/pmmapper/assets/A_no_managed_element.xml", [], BAD_DURATION),
    ("xml_validator_test/test_data/lte/no_managed_element/test.xml", [], BAD_DURATION),
    ("xml_validator_test/test_data/nr/no_measured_entity/test.xml", [], BAD_DURATION),
    ("csit/tests/pmmapper/assets/A_no_measdata.xml", [], []),
    ("xml_validator_test/test_data/lte/no_measdata/test.xml", [], []),
    ("xml_validator_test/test_data/nr/no_measdata/test.xml", [], []),
    # No fileHeader (no vendorName, no beginTime): granPeriod endTime is enough.
    ("xml_validator_test/test_data/lte/no_file_header/test.xml", ABC, []),
    ("xml_validator_test/test_data/nr/no_file_header/test.xml", ABC, []),
    ("xml_validator_test/test_data/not_supported_type/no_file_header/test.xml", ABC, []),
    ("mapper_test/mapping_data/32.435/no_sw_version/test.xml", None, []),
    ("mapper_test/mapping_data/28.532/no_sw_version/test.xml", None, []),
])
def test_malformed_onap_files_are_read_leniently_and_report_the_rest(name, values, rejects):
    [part] = read_pm_xml_parts(external_pm("onap", *name.split("/")))
    assert part.table == "pm_counters" and part.data.schema == PM_COUNTERS.schema
    got = [(r["object_dn"], r["counter_name"], r["value"]) for r in part.data.to_pylist()]
    if values is not None:
        assert got == values
    else:
        assert len(got) == 3
    assert part.rejects == rejects
    assert part.rows_read == len(got) + len(rejects)
    if values:
        assert part.row_numbers.tolist() == [1, 1, 1]
        assert set(part.data["period_start"].to_pylist()) == {utc(2018, 10, 2, 12, 0)}
        assert part.data["vendor"].null_count == 3  # no fileHeader, no vendorName


# --- XML features on small inline files -----------------------------------------------------------

def test_nil_empty_suspect_and_aliases(tmp_path):
    body = ('<measInfo measInfoId="EUtranCellFDD"><granPeriod duration="PT900S" endTime="2026-03-01T10:15:00+01:00"/>'
            '<measType p="1">RRC.ConnEstabAtt.Sum</measType><measType p="2">HO.ExeAtt</measType>'
            '<measType p="3">pmVendorSpecial</measType>'
            '<measValue measObjLdn="ManagedElement=ME-1,ENBFunction=1,EUtranCellFDD=C9">'
            '<r p="3">7.5</r><r p="1">NIL</r><r p="2"></r><suspect>true</suspect></measValue>'
            '<measValue measObjLdn="ManagedElement=ME-1,ENBFunction=1,EUtranCellFDD=C8">'
            '<r p="1"> 12 </r><r p="2">3e2</r><r p="3">-1</r></measValue></measInfo>')
    path = tmp_path / "a.xml"
    path.write_text(meas_file(body))
    raw = rows(read_meascollec(path))
    c9 = "ManagedElement=ME-1,ENBFunction=1,EUtranCellFDD=C9"
    assert raw[(c9, "RRC.ConnEstabAtt.Sum")]["value"] is None and raw[(c9, "HO.ExeAtt")]["value"] is None
    assert raw[(c9, "pmVendorSpecial")] | {"period_start": None} == {
        "object_dn": c9, "managed_element": "ME-1", "cell_id": "C9", "period_start": None, "granularity_s": 900,
        "counter_name": "pmVendorSpecial", "value": 7.5, "vendor": "Acme", "suspect": True}
    assert raw[(c9, "HO.ExeAtt")]["period_start"] == utc(2026, 3, 1, 9, 0)
    mapped = rows(read_meascollec(path, vendor="alpha"))
    c8 = "ManagedElement=ME-1,ENBFunction=1,EUtranCellFDD=C8"
    assert mapped[(c8, "RRC.ConnEstabAtt")]["value"] == 12.0  # alias -> canonical name
    assert mapped[(c8, "HO.ExeAtt")]["value"] == 300.0
    assert mapped[(c8, "pmVendorSpecial")]["value"] == -1.0   # unmapped counters are kept
    assert {r["vendor"] for r in mapped.values()} == {"alpha"}
    assert (c8, "RRC.ConnEstabAtt.Sum") not in mapped


def test_dictionary_sums_and_scales_xml_counters(tmp_path):
    (tmp_path / "gamma.yaml").write_text(
        "vendor: gamma\nformat: xml_32435\nkeep_unmapped: false\ncounters:\n"
        "  RRC.ConnEstabAtt: {sum: [pmRrcAttMo, pmRrcAttMt]}\n"
        "  DRB.UEThpVolDl: {from: pmPdcpVolDlByte, scale: 0.008}\n")
    body = ('<measInfo><granPeriod duration="PT15M" endTime="2026-03-01T10:15:00+01:00"/>'
            '<measTypes>pmRrcAttMo pmRrcAttMt pmPdcpVolDlByte pmOther</measTypes>'
            '<measValue measObjLdn="ManagedElement=ME-1,GNBDUFunction=1,NRCellDU=N1">'
            '<measResults>10 5 1000 1</measResults><suspect>true</suspect></measValue>'
            '<measValue measObjLdn="ManagedElement=ME-1,GNBDUFunction=1,NRCellDU=N2">'
            '<measResults>NIL 4 NIL 1</measResults></measValue></measInfo>')
    path = tmp_path / "g.xml"
    path.write_text(meas_file(body))
    t = read_meascollec(path, vendor=tmp_path / "gamma.yaml")
    got = {(r["cell_id"], r["counter_name"]): (r["value"], r["suspect"]) for r in t.to_pylist()}
    assert got == {("N1", "RRC.ConnEstabAtt"): (15.0, True), ("N1", "DRB.UEThpVolDl"): (8.0, True),
                   ("N2", "RRC.ConnEstabAtt"): (4.0, False), ("N2", "DRB.UEThpVolDl"): (None, False)}
    assert set(t["granularity_s"].to_pylist()) == {900}


def test_streaming_yields_batches_and_frees_the_tree(tmp_path, monkeypatch):
    def info(node: int) -> str:
        values = "".join(f'<measValue measObjLdn="ManagedElement=ME-{node},ENBFunction=1,EUtranCellFDD=C{i}">'
                         f'<r p="1">{i}</r></measValue>' for i in range(50))
        return ('<measInfo><granPeriod duration="PT900S" endTime="2026-03-01T10:15:00+01:00"/>'
                f'<measType p="1">x</measType>{values}</measInfo>')

    text = meas_file(info(1)).replace("</measData>", "</measData>" + "".join(
        f"<measData>{info(node)}</measData>" for node in (2, 3, 4)))
    path = tmp_path / "big.xml.gz"  # the reader looks at magic bytes, not names
    path.write_bytes(gzip.compress(text.encode()))
    monkeypatch.setattr(pm_xml, "BATCH_VALUES", 60)
    batches = list(iter_meascollec(path))
    assert [b.num_rows for b in batches] == [100, 100]
    assert pa.concat_tables(batches)["value"].to_pylist() == [float(i) for i in range(50)] * 4


def test_cell_id_is_the_last_cell_class_rdn():
    assert cell_id_of("ManagedElement=ME1,ENBFunction=1,EUtranCellTDD=T1") == "T1"
    assert cell_id_of("SubNetwork=1,MeContext=x,ManagedElement=ME,GNBCUCPFunction=1,NRCellCU=7") == "7"
    assert cell_id_of("BscFunction=1,GsmCell=G1,Trx=3") == "G1"
    assert cell_id_of("ManagedElement=ME1,ENBFunction=1") is None


# --- hostile and broken files --------------------------------------------------------------------

def test_billion_laughs_is_refused_without_expanding(tmp_path):
    entities = '<!ENTITY lol "lol">' + "".join(
        f'<!ENTITY lol{i} "{("&lol" + (str(i - 1) if i > 1 else "") + ";") * 10}">' for i in range(1, 10))
    body = ('<measInfo><granPeriod duration="PT900S" endTime="2026-03-01T10:15:00Z"/>'
            '<measTypes>a</measTypes><measValue measObjLdn="x"><measResults>&lol9;</measResults>'
            '</measValue></measInfo>')
    path = tmp_path / "lol.xml"
    path.write_text(meas_file(body, f"<!DOCTYPE measCollecFile [{entities}]>\n"))
    before_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(PMFileError, match=r"lol.xml: .*(entit|amplification)"):
        read_meascollec(path)
    # A full expansion would be 3 GB; peak memory must not have grown by more than a little.
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before_kb < 100_000


def test_any_declared_entity_is_refused(tmp_path):
    body = ('<measInfo><granPeriod duration="PT900S" endTime="2026-03-01T10:15:00Z"/>'
            '<measTypes>a</measTypes><measValue measObjLdn="x"><measResults>1&five;</measResults>'
            '</measValue></measInfo>')
    path = tmp_path / "ent.xml"
    path.write_text(meas_file(body, '<!DOCTYPE measCollecFile [<!ENTITY five "5">]>\n'))
    with pytest.raises(PMFileError, match="ent.xml: declares XML entities"):
        read_meascollec(path)


@pytest.mark.parametrize(("content", "reason"), [
    (b"<measCollecFile><measData>", "not well-formed XML"),
    (b"\x1f\x8b\x08\x00garbage", "cannot be read"),
    (b'<?xml version="1.0"?><html><body/></html>', "not a 3GPP measCollecFile"),
])
def test_unreadable_files_raise_pm_file_error_naming_the_file(tmp_path, content, reason):
    path = tmp_path / "broken.xml"
    path.write_bytes(content)
    with pytest.raises(PMFileError, match=f"PM file broken.xml: .*{reason}"):
        read_meascollec(path)


GRAN = '<granPeriod duration="PT900S" endTime="2026-03-01T10:15:00Z"/>'
X = "ManagedElement=ME-1,x"  # measObjLdn="x" below the measData's localDn="ME-1"


@pytest.mark.parametrize(("body", "values", "rejects"), [
    # measResults shorter than measTypes: the values that pair up are kept, each gap reported.
    (f'<measInfo>{GRAN}<measTypes>a b c</measTypes><measValue measObjLdn="x"><measResults>1</measResults>'
     "</measValue></measInfo>",
     [(1, "a", 1.0)], [Reject(1, "measValue has 1 measResults for 3 measTypes", X, "b"),
                       Reject(1, "measValue has 1 measResults for 3 measTypes", X, "c")]),
    # ... and longer: the extra values are reported with their text.
    (f'<measInfo>{GRAN}<measTypes>a</measTypes><measValue measObjLdn="x"><measResults>1 2</measResults>'
     '</measValue><measValue measObjLdn="y"><measResults>3</measResults></measValue></measInfo>',
     [(1, "a", 1.0), (2, "a", 3.0)],
     [Reject(1, "measValue has 2 measResults for 1 measTypes", X, "measResults", "2")]),
    # r whose p no measType declares, r without p, p that is not a number.
    (f'<measInfo measInfoId="M">{GRAN}<measType p="1">a</measType><measValue measObjLdn="x"><r p="4">1</r>'
     '<r>2</r><r p="one">3</r><r p="1">5</r></measValue></measInfo>',
     [(1, "a", 5.0)], [Reject(1, "r p=4 matches no measType of measInfo 'M'", X, "p", "4"),
                       Reject(1, "r has no p attribute", X, "p"),
                       Reject(1, "r p='one' is not a whole number", X, "p", "one")]),
    # measValue without measObjLdn; no measInfoId nor job; an empty measInfo and measData.
    (f'<measInfo>{GRAN}<measType p="1">a</measType><measValue><r p="1">1</r></measValue>'
     '<measValue measObjLdn="y"><r p="1">2</r></measValue></measInfo><measInfo/></measData><measData>',
     [(2, "a", 2.0)], [Reject(1, "measValue in measInfo (no measInfoId) has no measObjLdn",
                              "measInfo (no measInfoId)", "measObjLdn")]),
    # No granPeriod endTime: the file's beginTime is the period start; no granPeriod at all: reported.
    ('<measInfo><granPeriod duration="PT900S"/><measTypes>a</measTypes><measValue measObjLdn="x">'
     '<measResults>7</measResults></measValue></measInfo><measInfo measInfoId="N"><measTypes>a</measTypes>'
     '<measValue measObjLdn="z"><measResults>8</measResults></measValue></measInfo>',
     [(1, "a", 7.0)], [Reject(2, "measInfo 'N' has no granPeriod", "ManagedElement=ME-1,z")]),
])
def test_values_that_cannot_be_used_are_reported_one_by_one(tmp_path, body, values, rejects):
    path = tmp_path / "m.xml"
    path.write_text(meas_file(body))
    for fast in (True, False):  # the byte-level reader and the lxml one agree
        pm_xml.FAST_PATH = fast
        try:
            [part] = read_pm_xml_parts(path)
        finally:
            pm_xml.FAST_PATH = True
        got = [(int(n), r["counter_name"], r["value"]) for n, r in zip(part.row_numbers, part.data.to_pylist())]
        assert (got, part.rejects) == (values, rejects)
        assert part.rows_read == len(values) + len(rejects)
        assert set(part.data["period_start"].to_pylist()) <= {utc(2026, 3, 1, 10, 0), utc(2026, 3, 1, 9, 0)}
    assert read_meascollec(path).num_rows == len(values)


@pytest.mark.parametrize("prefix", [b"\n  ", b"\xef\xbb\xbf", b'<?xml-stylesheet href="x.xsl"?>\n',
                                    b"\n\xef\xbb\xbf<!-- exported by OSS -->\n", b""])
@pytest.mark.parametrize("declaration", [True, False])
def test_junk_before_the_xml_declaration_is_skipped(tmp_path, prefix, declaration):
    text = meas_file(f'<measInfo>{GRAN}<measTypes>a</measTypes><measValue measObjLdn="x"><measResults>4'
                     "</measResults></measValue></measInfo>").encode()
    if not declaration:
        text = text.split(b"?>", 1)[1]
    path = tmp_path / "j.xml"
    path.write_bytes(prefix + text)
    assert read_meascollec(path)["value"].to_pylist() == [4.0]


@pytest.mark.parametrize("encoding", ["UTF-16", "ISO-8859-1", "UTF-8"])
def test_other_declared_encodings_are_read(tmp_path, encoding):
    body = (f'<measInfo>{GRAN}<measType p="1">a</measType><measValue measObjLdn="Cell=Malmö">'
            '<r p="1">5</r></measValue></measInfo>')
    path = tmp_path / "e.xml"
    path.write_bytes(meas_file(body).replace("UTF-8", encoding).encode(encoding.lower()))
    assert [(r["object_dn"], r["value"]) for r in read_meascollec(path).to_pylist()] == [
        ("ManagedElement=ME-1,Cell=Malmö", 5.0)]


def test_latin1_bytes_in_a_utf8_file_are_refused(tmp_path):
    path = tmp_path / "l.xml"
    path.write_bytes(meas_file(f'<measInfo>{GRAN}<measTypes>a</measTypes><measValue measObjLdn="Malmö">'
                               "<measResults>1</measResults></measValue></measInfo>").encode("latin-1"))
    with pytest.raises(PMFileError, match=r"PM file l.xml: is not well-formed XML \(Invalid bytes in character"):
        read_pm_xml_parts(path)


def test_row_numbers_follow_the_dictionary(tmp_path):
    """Renamed counters keep their measValue; a sum cites the first measValue of its parts."""
    (tmp_path / "delta.yaml").write_text(
        "vendor: delta\nformat: xml_32435\ncounters:\n  RRC.ConnEstabAtt: {sum: [pmMo, pmMt]}\n"
        "  HO.ExeAtt: {from: pmHo}\n")
    body = (f'<measInfo measInfoId="A">{GRAN}<measTypes>pmHo pmMo</measTypes>'
            '<measValue measObjLdn="c1"><measResults>1 2</measResults></measValue>'
            '<measValue measObjLdn="c2"><measResults>3 4</measResults></measValue></measInfo>'
            f'<measInfo measInfoId="B">{GRAN}<measTypes>pmMt pmX</measTypes>'
            '<measValue measObjLdn="c2"><measResults>5 6</measResults></measValue></measInfo>')
    path = tmp_path / "d.xml"
    path.write_text(meas_file(body))
    [part] = read_pm_xml_parts(path, tmp_path / "delta.yaml")
    got = {(r["object_dn"], r["counter_name"]): (int(n), r["value"])
           for n, r in zip(part.row_numbers, part.data.to_pylist())}
    c1, c2 = "ManagedElement=ME-1,c1", "ManagedElement=ME-1,c2"
    assert got == {(c1, "HO.ExeAtt"): (1, 1.0), (c2, "HO.ExeAtt"): (2, 3.0), (c1, "RRC.ConnEstabAtt"): (1, 2.0),
                   (c2, "RRC.ConnEstabAtt"): (2, 9.0), (c2, "pmX"): (3, 6.0)}
    renames_only = load_dictionary("alpha")
    [alpha] = read_pm_xml_parts(path, renames_only)
    assert alpha.row_numbers.tolist() == [1, 1, 2, 2, 3, 3]


# --- vendor CSV --------------------------------------------------------------------------------

CSV_HEADER = ("Start Time,Period(min),NE Name,Cell Name,RRC_ATT_MO_DATA,RRC_ATT_MO_SIG,RRC_ATT_MT,"
              "RRC_ATT_EMERGENCY,DL_THP_VOL_BYTES,CELL_UNAVAIL_MIN,DL_PRB_USAGE_RATIO,VENDOR_EXTRA\n")


def test_vendor_csv_is_mapped_through_the_dictionary(tmp_path):
    path = tmp_path / "beta_pm_20261123.csv"
    path.write_text(CSV_HEADER
                    + "2026-11-23 00:15:00,15,ME-1,C1,10,4,3,1,1000,0.5,0.25,7\n"
                    + "2026-11-23 00:15:00,15,ME-1,C2,,,,,,,,\n")
    t = read_vendor_csv(path, "beta")
    assert t.schema == PM_COUNTERS.schema
    got = {(r["object_dn"], r["counter_name"]): r for r in t.to_pylist()}
    c1 = got[("NE=ME-1,Cell=C1", "RRC.ConnEstabAtt")]
    assert c1 == {"object_dn": "NE=ME-1,Cell=C1", "managed_element": "ME-1", "cell_id": "C1",
                  "period_start": utc(2026, 11, 23, 0, 15),
                  "granularity_s": 900, "counter_name": "RRC.ConnEstabAtt", "value": 18.0,
                  "vendor": "beta", "suspect": False}
    assert got[("NE=ME-1,Cell=C1", "DRB.UEThpVolDl")]["value"] == pytest.approx(8.0, rel=1e-12)
    assert got[("NE=ME-1,Cell=C1", "RRU.CellUnavailableTime")]["value"] == 30.0
    assert got[("NE=ME-1,Cell=C1", "RRU.PrbTotDl")]["value"] == 25.0
    assert got[("NE=ME-1,Cell=C1", "VENDOR_EXTRA")]["value"] == 7.0
    assert got[("NE=ME-1,Cell=C2", "RRC.ConnEstabAtt")]["value"] is None
    # Counters absent from this export are skipped, not invented.
    assert ("NE=ME-1,Cell=C1", "HO.ExeAtt") not in got
    assert t.num_rows == 2 * 5


def test_vendor_csv_missing_key_column_names_file_and_column(tmp_path):
    path = tmp_path / "beta_pm_20261124.csv"
    path.write_text("Start Time,Period(min),NE,Cell Name,RRC_SUCC_TOTAL\n2026-11-24 00:00:00,15,ME-1,C1,3\n")
    with pytest.raises(PMFileError, match="beta_pm_20261124.csv: lacks column.*'NE Name'"):
        read_vendor_csv(path, load_dictionary("beta"))


def test_vendor_csv_bad_time_is_reported(tmp_path):
    path = tmp_path / "beta_pm_x.csv"
    path.write_text("Start Time,Period(min),NE Name,Cell Name,RRC_SUCC_TOTAL\n23/11/2026 00:00,15,ME-1,C1,3\n")
    part = read_vendor_csv_part(path, "beta")
    assert part.data.num_rows == 0
    assert [(r.row_number, r.field, r.value) for r in part.rejects] == [(2, "Start Time", "23/11/2026 00:00")]


# --- dictionaries --------------------------------------------------------------------------------

def test_bundled_dictionaries_cover_the_simulated_counters():
    from opencem.simulate.pm_files import COUNTERS

    alpha, beta = load_dictionary("alpha"), load_dictionary("beta")
    assert set(alpha.counters) == set(beta.counters) == set(COUNTERS)
    assert all(s.from_ == name and s.scale == 1.0 for name, [s] in alpha.counters.items())
    assert beta.counters["RRC.ConnEstabAtt"][0].sum == ["RRC_ATT_MO_DATA", "RRC_ATT_MO_SIG", "RRC_ATT_MT",
                                                        "RRC_ATT_EMERGENCY"]
    assert beta.counters["DRB.UEThpVolDl"][0].scale == 0.008 and beta.csv.cell_column == "Cell Name"


@pytest.mark.parametrize(("text", "message"), [
    ("vendor: x\nformat: xml_32435\ncounters:\n  HO.ExeAtt: {from: a, scal: 2}\n",
     "Counter dictionary bad.yaml, line 4, field counters[HO.ExeAtt].scal: unknown key (check the spelling)."),
    ("vendor: x\nformat: xml_32435\ncounters:\n  HO.ExeAtt: {from: a, sum: [b]}\n",
     "Counter dictionary bad.yaml, line 4, field counters[HO.ExeAtt]: give exactly one of 'from' or 'sum'."),
    ("vendor: x\nformat: csv\ncounters: {}\n",
     "Counter dictionary bad.yaml, field (top level): 'csv' layout is required for format csv and only allowed there."),
    ("vendor: x\nformat: parquet\ncounters: {}\n",
     "Counter dictionary bad.yaml, line 2, field format: Input should be 'xml_32435', 'csv', 'omes' or 'nanocell_pmfile'."),
    ("vendor: x\nformat: xml_32435\ncounters:\n  HO.ExeAtt: {from: a, scale: lots}\n",
     "Counter dictionary bad.yaml, line 4, field counters[HO.ExeAtt].scale: Input should be a valid number, "
     "unable to parse string as a number."),
    ("vendor: x\nformat: xml_32435\ncounters:\n  HO.ExeAtt: {from: a\n",
     "Counter dictionary bad.yaml line 5 is not valid YAML: expected ',' or '}', but got '<stream end>'."),
])
def test_bad_dictionary_gives_one_sentence_naming_file_and_field(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(DictionaryError) as err:
        load_dictionary(path)
    assert str(err.value) == message


def test_every_dictionary_problem_is_reported_at_once(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("vendor: x\nformat: xml_32435\nextra: 1\ncounters:\n  A: {form: a}\n")
    with pytest.raises(DictionaryError) as err:
        load_dictionary(path)
    # In file order; the consistency rules run once the fields themselves are valid.
    assert err.value.sentences == [
        "Counter dictionary bad.yaml, line 3, field extra: unknown key (check the spelling).",
        "Counter dictionary bad.yaml, line 5, field counters.A.form: unknown key (check the spelling).",
        "Counter dictionary bad.yaml, line 5, field counters.A: A is not a canonical counter; a dictionary maps "
        "vendor counters onto the names in src/opencem/schema/counters.py (vendor counters it does not name are "
        "kept as they are).",
    ]


def test_unknown_vendor_lists_the_bundled_ones():
    with pytest.raises(DictionaryError, match=r"No counter dictionary for vendor 'gamma' \(bundled: alpha, beta, "
                                              r"ericsson, nanocell, nokia\)"):
        load_dictionary("gamma")


@pytest.mark.parametrize(("damage", "reason"), [
    (lambda text: text[:-40], "not well-formed XML"),                                     # truncated
    (lambda text: text.replace(b'"C47">', b'"C47\xff">'), "Invalid bytes in character encoding"),
    (lambda text: text.replace(b"<r p=\"1\">48</r>", b"<r p=\"1\">48</x>"), "Opening and ending tag mismatch"),
], ids=["truncated", "latin-1 byte", "tag mismatch"])
def test_damage_late_in_a_large_file_is_still_an_error(tmp_path, monkeypatch, damage, reason):
    """Blocks are read while libxml2 checks the file beside them: what it finds still fails the file."""
    values = "".join(f'<measData><measInfo>{GRAN}<measType p="1">x</measType><measValue measObjLdn="C{i}">'
                     f'<r p="1">{i}</r></measValue></measInfo></measData>' for i in range(50))
    path = tmp_path / "late.xml"
    path.write_bytes(damage(meas_file("").replace("<measData><managedElement localDn=\"ME-1\"/></measData>",
                                                  values).encode()))
    monkeypatch.setattr(pm_xml, "READ_BYTES", 256)
    monkeypatch.setattr(pm_xml, "BATCH_VALUES", 10)
    with pytest.raises(PMFileError, match=f"PM file late.xml: .*{reason}"):
        read_pm_xml_parts(path)
    batches = iter_meascollec(path)
    assert next(batches).num_rows == 10  # streaming hands out what it has read before the damage
    with pytest.raises(PMFileError, match=reason):
        list(batches)


def test_managed_element_is_parsed_from_the_dn():
    import pyarrow as pa

    from opencem.ingest.pm_xml_rows import managed_elements

    dns = pa.array(["SubNetwork=G3,MeContext=ctx1,ManagedElement=me1,GNBDUFunction=1,NRCellDU=7",
                    "SubNetwork=CountryNN,MeContext=MEC-Gbg-1", "NE=ME-3,Cell=C1",
                    "RncFunction=RF-1,UtranCell=Gbg-997", None])
    # A MeContext names the node (Ericsson: MeContext=<node>,ManagedElement=1), else the ManagedElement.
    assert managed_elements(dns).to_pylist() == ["ctx1", "MEC-Gbg-1", "ME-3", None, None]


def _every_shared_pm_file():
    root = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "external" / "3gpp-pm"
    return sorted([*root.rglob("*.xml"), *root.rglob("*.xml.gz")]) if root.is_dir() else []


@pytest.mark.skipif(not _every_shared_pm_file(), reason="shared 3GPP PM samples not available")
@pytest.mark.parametrize("path", _every_shared_pm_file(), ids=lambda p: "/".join(p.parts[-3:]))
def test_every_shared_pm_file_parses_and_accounts_for_every_value(path):
    from lxml import etree

    from opencem.ingest.pm_xml import read_pm_xml_parts

    raw = path.read_bytes()
    tree = etree.fromstring(gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw)
    in_file = len(tree.findall(".//{*}r")) + sum(len((e.text or "").split()) for e in tree.iter("{*}measResults"))
    part = read_pm_xml_parts(path)[0]
    assert part.data.num_rows + len(part.rejects) == in_file
