"""Values no counter can take never reach the lake: infinities (a number too big for a float, a
3GPP ``1e400``) and negative canonical counts, times, volumes and means are quarantined, each with
its reason, by every PM reader; rows read = accepted + quarantined."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from opencem.ingest import pm_xml
from opencem.ingest.load import ingest
from opencem.ingest.validate import conform
from opencem.lake import Lake
from opencem.schema.network import PM_COUNTERS

NS = "http://www.3gpp.org/ftp/specs/archive/32_series/32.435#measCollec"
CELL = "ManagedElement=me1,ENodeBFunction=1,EUtranCellFDD="
INF = "not a finite number (infinite)"


def table(lake: Lake, name: str) -> list[dict]:
    paths = lake.paths(lake.files(name))
    return pa.concat_tables([pq.read_table(p) for p in paths]).to_pylist() if paths else []


def ingest_one(tmp_path: Path, name: str, text: str) -> tuple[Lake, object]:
    path = tmp_path / "in" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    lake = Lake(tmp_path / "lake")
    [result] = ingest(lake, [path]).files
    assert result.status == "loaded", result.message
    m = result.mapping  # values read = accepted + quarantined + folded - derived + dropped
    assert result.rows_read == (result.rows_accepted + result.rows_quarantined + m.folded - m.derived
                                + sum(m.dropped.values()))
    return lake, result


def ericsson(values: dict[str, tuple[str, str]]) -> str:
    """A 3GPP file in the plain layout the fast path reads: per cell (att, succ) as written."""
    mvs = "".join(f'<measValue measObjLdn="{CELL}{cell}"><r p="1">{att}</r><r p="2">{succ}</r></measValue>'
                  for cell, (att, succ) in values.items())
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n<measCollecFile xmlns="{NS}"><fileHeader '
            'fileFormatVersion="32.435 V10.0" vendorName="Ericsson AB"><measCollec beginTime="2024-01-01T00:00:00Z"/>'
            '</fileHeader><measData><managedElement localDn="me1"/><measInfo measInfoId="x"><granPeriod '
            'duration="PT900S" endTime="2024-01-01T00:15:00Z"/><measType p="1">pmRrcConnEstabAtt</measType>'
            f'<measType p="2">pmRrcConnEstabSucc</measType>{mvs}</measInfo></measData></measCollecFile>\n')


@pytest.mark.parametrize("fast", [True, False], ids=["fast path", "lxml path"])
def test_3gpp_infinities_and_negative_counts_are_quarantined(tmp_path, monkeypatch, fast):
    monkeypatch.setattr(pm_xml, "FAST_PATH", fast)
    lake, result = ingest_one(tmp_path, "A.xml", ericsson({
        "1": ("1e400", "5"), "2": ("9" * 400, "-3"), "3": ("10", "9"), "4": ("-1e400", "0")}))
    accepted = {(r["cell_id"].rpartition("=")[2], r["counter_name"]): r["value"] for r in table(lake, "pm_counters")}
    assert accepted == {("1", "RRC.ConnEstabSucc"): 5.0, ("3", "RRC.ConnEstabAtt"): 10.0,
                        ("3", "RRC.ConnEstabSucc"): 9.0, ("4", "RRC.ConnEstabSucc"): 0.0}
    quarantined = sorted((q["field"], q["value"], q["reason"]) for q in table(lake, "quarantine"))
    assert quarantined == [("value", "-3.0", "RRC.ConnEstabSucc is a count, which cannot be negative"),
                           ("value", "-inf", INF), ("value", "inf", INF), ("value", "inf", INF)]
    assert (result.rows_accepted, result.rows_quarantined) == (4, 4)


def test_omes_negative_count_and_negative_mean_are_quarantined(tmp_path):
    dn = "PLMN-PLMN/MRBTS-1/LNBTS-1/LNCEL-1"
    text = ('<?xml version="1.0"?>\n<OMeS version="2.3"><PMSetup startTime="2024-03-05T10:00:00.000+02:00:00" '
            f'interval="15"><PMMOResult><MO><DN>{dn}</DN></MO><PMTarget measurementType="LTE_UE_State">'
            "<M8013C5>-7</M8013C5><M8013C17>10</M8013C17></PMTarget></PMMOResult><PMMOResult><MO><DN>"
            f'{dn}</DN></MO><PMTarget measurementType="LTE_UE_Quantity"><M8051C60>-90</M8051C60>'
            "<M8051C61>9</M8051C61></PMTarget></PMMOResult></PMSetup></OMeS>\n")
    lake, result = ingest_one(tmp_path, "PM.BTS-1.xml", text)
    accepted = {r["counter_name"]: r["value"] for r in table(lake, "pm_counters")}
    # The mean's negative numerator is quarantined before the expression reads it, which then
    # has no value (as with a NIL term).
    assert accepted == {"RRC.ConnEstabAtt": 10.0, "RRC.ConnMean": None}
    assert sorted((q["value"], q["reason"]) for q in table(lake, "quarantine")) == [
        ("-7.0", "RRC.ConnEstabSucc is a count, which cannot be negative"),
        ("-90.0", "M8051C60 value -90 is negative, but RRC.ConnMean, a mean, is computed from it and cannot be negative")]


def test_nanocell_negative_canonical_count_is_quarantined_and_a_vendor_one_kept(tmp_path):
    text = ('<?xml version="1.0" encoding="UTF-8"?>\n<PmFile><FileHeader><InfoModelReferenced>'
            "NanoCell-eNB-PM-V2.5.0</InfoModelReferenced><DnPrefix>CMCC</DnPrefix><VendorName></VendorName>"
            "<BeginTime>2024-01-01T08:00:00+08:00</BeginTime><EndTime>2024-01-01T08:15:00+08:00</EndTime>"
            "</FileHeader><Measurements><ObjectType>EutranCellTdd</ObjectType><PmName><N i=\"1\">RRC.AttConnEstab"
            '</N><N i="2">RRC.SuccConnEstab</N><N i="3">X.Offset</N></PmName><PmData><Pm Dn="CMCC,SubNetwork=1,'
            'ManagedElement=1,EnbFunction=1,EutranCellTdd=1" UserLabel="BJ01"><V i="1">10</V><V i="2">-5</V>'
            '<V i="3">-2</V></Pm></PmData></Measurements></PmFile>\n')
    lake, _ = ingest_one(tmp_path, "pm_file.xml", text)
    # X.Offset is the vendor's own counter: its kind is unknown, so its sign is the vendor's business.
    assert {r["counter_name"]: r["value"] for r in table(lake, "pm_counters")} == {
        "RRC.ConnEstabAtt": 10.0, "X.Offset": -2.0}
    assert [(q["value"], q["reason"]) for q in table(lake, "quarantine")] == [
        ("-5.0", "RRC.ConnEstabSucc is a count, which cannot be negative")]


def test_conform_keeps_every_row_accounted_for():
    n = 6
    rows = pa.table({
        "object_dn": ["a"] * n, "managed_element": ["m"] * n, "cell_id": ["c"] * n,
        "period_start": pa.array([0] * n).cast(pa.timestamp("ms", tz="UTC")), "granularity_s": [900] * n,
        "counter_name": ["DRB.UEThpVolDl", "DRB.UEThpVolDl", "RRU.CellUnavailableTime", "pmX", "HO.ExeAtt",
                         "RRU.PrbTotDl"],
        "value": [-0.0, -1.5, float("-inf"), -4.0, None, 0.0],
        "vendor": ["v"] * n, "suspect": [False] * n})
    c = conform(rows, PM_COUNTERS, "f.xml")
    assert c.accepted["value"].to_pylist() == [-0.0, -4.0, None, 0.0]
    assert list(c.rejected_rows) == [1, 2]
    assert c.reasons == ["DRB.UEThpVolDl is a volume (in kbit), which cannot be negative", INF]
    assert c.accepted.num_rows + c.n_quarantined == n
