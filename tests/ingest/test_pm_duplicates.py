"""A second value for a PM measurement (same object_dn, counter_name, period_start and
granularity_s) is never added to the first: within a file, across the files of one ingest, and
against the lake. A correction delivered under the file's own name, or reloaded, replaces."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from opencem.engines.duckdb import run_user_sql
from opencem.ingest.load import ingest
from opencem.ingest.pm_xml import read_pm_xml_parts
from opencem.lake import Lake

NS = "http://www.3gpp.org/ftp/specs/archive/32_series/32.435#measCollec"
ME = "ManagedElement=me1,ENodeBFunction=1,EUtranCellFDD=1"
# Ericsson's handover attempts are a sum of two counters: a repeat would be added into it.
TYPES = ["pmRrcConnEstabAtt", "pmRrcConnEstabSucc", "pmCellHoExeAttLteIntraF", "pmCellHoExeAttLteInterF"]


def pm_file(values: list[tuple[str, list[int]]], end: str = "2024-01-01T00:15:00Z",
            types: list[str] = TYPES) -> str:
    """An Ericsson file of one measInfo: per (measObjLdn, values in measType order)."""
    mt = "".join(f'<measType p="{i}">{t}</measType>' for i, t in enumerate(types, 1))
    mv = "".join(f'<measValue measObjLdn="{ldn}">' + "".join(f'<r p="{i}">{v}</r>' for i, v in enumerate(vs, 1))
                 + "</measValue>" for ldn, vs in values)
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n<measCollecFile xmlns="{NS}"><fileHeader '
            'fileFormatVersion="32.435 V10.0" vendorName="Ericsson AB"><measCollec beginTime="2024-01-01T00:00:00Z"/>'
            f'</fileHeader><measData><managedElement localDn="me1"/><measInfo><granPeriod duration="PT900S" '
            f'endTime="{end}"/>{mt}{mv}</measInfo></measData></measCollecFile>\n')


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def lake_values(lake: Lake) -> dict[tuple[str, str], float]:
    return dict(((r[0], r[1]), r[2]) for r in run_user_sql(
        lake, "SELECT cell_id, counter_name, sum(value) FROM pm_counters GROUP BY 1, 2").fetchall())


def quarantined(lake: Lake) -> list[tuple]:
    return run_user_sql(lake, "SELECT regexp_extract(source_path, '[^/]*$'), row_number, value, reason "
                              "FROM quarantine ORDER BY ALL").fetchall()


def accounts(result) -> bool:
    """Every value read is accepted, quarantined, folded by the dictionary or left out by it."""
    m = result.mapping
    return result.rows_read == (result.rows_accepted + result.rows_quarantined + m.folded - m.derived
                                + sum(m.dropped.values()))


def test_a_measvalue_written_twice_is_one_reject_each_not_added_into_a_sum(tmp_path):
    path = write(tmp_path / "A.xml", pm_file([(ME, [100, 90, 10, 5]), (ME, [100, 50, 10, 5])]))
    [part] = read_pm_xml_parts(path, "ericsson")
    got = {r["counter_name"]: r["value"] for r in part.data.to_pylist()}
    assert got == {"RRC.ConnEstabAtt": 100.0, "RRC.ConnEstabSucc": 90.0, "HO.ExeAtt": 15.0}  # not 30
    assert [(r.row_number, r.value) for r in part.rejects] == [(2, t) for t in TYPES]
    assert part.rejects[0].reason == ("repeats pmRrcConnEstabAtt of ManagedElement=me1,ENodeBFunction=1,"
                                      "EUtranCellFDD=1 for the 900 s period from 2024-01-01T00:00:00Z, which record 1 "
                                      "of this file gave first; the first is kept")
    lake = Lake(tmp_path / "lake")
    [result] = ingest(lake, [path]).files
    assert (result.rows_read, result.rows_accepted, result.rows_quarantined) == (8, 3, 4)  # 8 = 3 + 4 + 2 - 1


def test_a_counter_name_written_twice_in_one_measinfo_keeps_the_first(tmp_path):
    path = write(tmp_path / "A.xml", pm_file([(ME, [100, 90, 80])], types=TYPES[:2] + ["pmRrcConnEstabSucc"]))
    lake = Lake(tmp_path / "lake")
    [result] = ingest(lake, [path]).files
    assert lake_values(lake) == {("me1/EUtranCellFDD=1", "RRC.ConnEstabAtt"): 100.0,
                                 ("me1/EUtranCellFDD=1", "RRC.ConnEstabSucc"): 90.0}
    assert [q[:3] for q in quarantined(lake)] == [("A.xml", 1, "pmRrcConnEstabSucc")] and accounts(result)


@pytest.mark.parametrize("one_call", [True, False], ids=["same ingest", "later ingest"])
def test_the_same_period_under_another_name_is_quarantined_naming_the_first_file(tmp_path, one_call):
    """A retry of a ROP under a new name (100/90, then 100/50) gave 70 % instead of 90 %."""
    first = write(tmp_path / "in" / "A20240101.0000-0015_me1.xml", pm_file([(ME, [100, 90, 10, 5])]))
    retry = write(tmp_path / "in" / "A20240101.0000-0015_me1_retry.xml", pm_file([(ME, [100, 50, 10, 5])]))
    lake = Lake(tmp_path / "lake")
    if one_call:
        results = ingest(lake, [tmp_path / "in"]).files
    else:
        results = ingest(lake, [first]).files + ingest(lake, [retry]).files
    assert lake_values(lake) == {("me1/EUtranCellFDD=1", "RRC.ConnEstabAtt"): 100.0,
                                 ("me1/EUtranCellFDD=1", "RRC.ConnEstabSucc"): 90.0,
                                 ("me1/EUtranCellFDD=1", "HO.ExeAtt"): 15.0}
    assert [(r.rows_accepted, r.rows_quarantined) for r in results] == [(3, 0), (0, 3)]
    assert all(accounts(r) for r in results)
    where = (f"came from {first} earlier in this ingest" if one_call else
             f"is already in the lake, loaded from {first} (batch {lake.manifest().batches[0]['batch']})")
    reason = (f"the same measurement (object_dn, counter_name, period_start and granularity_s) {where}; a second "
              "delivery under another file name is not added (deliver a correction under the earlier file's name, "
              "or reload that file, to replace what it loaded)")
    # HO.ExeAtt is a sum: its reason adds that a sum's terms must come in one file.
    assert {q[3] for q in quarantined(lake)} == {reason, reason + (
        "; HO.ExeAtt is computed from pmCellHoExeAttLteIntraF, pmCellHoExeAttLteInterF: if the earlier file held "
        "others of them than this one (an export split per measurement type), they must come in one file")}
    assert results[1].message.startswith(f"3 rows measure again what was already given (3 from {first}")


def test_a_correction_under_the_same_name_or_a_reload_replaces(tmp_path):
    path = write(tmp_path / "A.xml", pm_file([(ME, [100, 90, 10, 5])]))
    lake = Lake(tmp_path / "lake")
    ingest(lake, [path])
    write(path, pm_file([(ME, [100, 50, 10, 5])]))  # corrected content, same name
    [replaced] = ingest(lake, [path]).files
    assert replaced.status == "replaced" and replaced.rows_quarantined == 0
    assert lake_values(lake)[("me1/EUtranCellFDD=1", "RRC.ConnEstabSucc")] == 50.0
    [again] = ingest(lake, [path], reload=True).files
    assert again.status == "replaced" and again.rows_quarantined == 0
    assert lake_values(lake)[("me1/EUtranCellFDD=1", "RRC.ConnEstabSucc")] == 50.0


def test_a_later_file_with_some_new_objects_adds_only_those(tmp_path):
    cell2 = ME.replace("EUtranCellFDD=1", "EUtranCellFDD=2")
    lake = Lake(tmp_path / "lake")
    ingest(lake, [write(tmp_path / "a.xml", pm_file([(ME, [100, 90, 10, 5])]))])
    [b] = ingest(lake, [write(tmp_path / "b.xml", pm_file([(ME, [1, 1, 1, 1]), (cell2, [20, 10, 2, 2])]))]).files
    assert (b.rows_accepted, b.rows_quarantined) == (3, 3) and accounts(b)
    assert lake_values(lake)[("me1/EUtranCellFDD=1", "RRC.ConnEstabAtt")] == 100.0
    assert lake_values(lake)[("me1/EUtranCellFDD=2", "RRC.ConnEstabAtt")] == 20.0
    # Another period of the same cell is a new measurement.
    [c] = ingest(lake, [write(tmp_path / "c.xml", pm_file([(ME, [7, 7, 7, 7])], end="2024-01-01T00:30:00Z"))]).files
    assert (c.rows_accepted, c.rows_quarantined) == (3, 0)


def day_file(path: Path, ldn: str, node: str, start: str, values: list[int]) -> Path:
    end = datetime.fromisoformat(start.replace("Z", "+00:00")).timestamp() + 900
    text = pm_file([(ldn, values)], end=datetime.fromtimestamp(end, UTC).isoformat().replace("+00:00", "Z"))
    return write(path, text.replace("2024-01-01T00:00:00Z", start).replace('localDn="me1"', f'localDn="{node}"'))


def break_data_pages(path: Path) -> None:
    """Zero everything between the leading magic and the footer: statistics stay readable, rows do not."""
    data = bytearray(path.read_bytes())
    footer = int.from_bytes(data[-8:-4], "little")
    data[4:len(data) - 8 - footer] = bytes(len(data) - 12 - footer)
    path.write_bytes(bytes(data))


def test_the_lake_check_reads_only_what_could_hold_the_measurements(tmp_path):
    """Committed rows the new file cannot repeat are not read: another day's file, and on the same
    day the row groups whose period or managed element statistics rule them out."""
    lake = Lake(tmp_path / "lake")
    ingest(lake, [day_file(tmp_path / "d1.xml", ME, "me1", "2024-01-01T00:00:00Z", [1, 1, 1, 1])])
    ingest(lake, [day_file(tmp_path / "d2.xml", ME, "me1", "2024-01-02T00:00:00Z", [2, 2, 2, 2])])
    for f in lake.files("pm_counters"):
        break_data_pages(lake.root / f.path)
    with pytest.raises(OSError):  # the rows really are unreadable now
        pq.read_table(lake.root / lake.files("pm_counters")[0].path)
    other = ME.replace("me1", "me9")
    files = ingest(lake, [day_file(tmp_path / "d3.xml", ME, "me1", "2024-01-03T00:00:00Z", [3, 3, 3, 3]),
                          day_file(tmp_path / "later.xml", ME, "me1", "2024-01-02T01:00:00Z", [4, 4, 4, 4]),
                          day_file(tmp_path / "me9.xml", other, "me9", "2024-01-02T00:00:00Z", [5, 5, 5, 5])]).files
    assert [(f.status, f.rows_accepted, f.rows_quarantined) for f in files] == [("loaded", 3, 0)] * 3


def test_two_nanocells_that_call_themselves_alike_are_not_merged(tmp_path):
    """Two devices with UserLabel BJ01 in one flat folder: the second file's values are not added to
    the first's (put each device's files in pm/<vendor>/<serial>/ to tell them apart)."""
    doc = ('<?xml version="1.0" encoding="UTF-8"?>\n<PmFile><FileHeader><InfoModelReferenced>NanoCell-eNB-PM-V2.5.0'
           '</InfoModelReferenced><DnPrefix>CMCC</DnPrefix><SenderName>x</SenderName><VendorName></VendorName><JobId>1'
           '</JobId><BeginTime>2024-01-01T08:00:00+08:00</BeginTime><EndTime>2024-01-01T08:15:00+08:00</EndTime>'
           '</FileHeader><Measurements><ObjectType>EutranCellTdd</ObjectType><PmName><N i="1">RRC.AttConnEstab</N>'
           '<N i="2">RRC.SuccConnEstab</N></PmName><PmData><Pm Dn="CMCC,SubNetwork=1,ManagedElement=1,EnbFunction=1,'
           'EutranCellTdd=1" UserLabel="BJ01"><V i="1">100</V><V i="2">{succ}</V></Pm></PmData></Measurements>'
           '</PmFile>\n')
    write(tmp_path / "flat" / "dev1.xml", doc.format(succ=90))
    write(tmp_path / "flat" / "dev2.xml", doc.format(succ=10))
    lake = Lake(tmp_path / "lake")
    files = ingest(lake, [tmp_path / "flat"]).files
    assert [(f.rows_accepted, f.rows_quarantined) for f in files] == [(2, 0), (0, 2)]
    assert lake_values(lake) == {("BJ01/EutranCellTdd=1", "RRC.ConnEstabAtt"): 100.0,
                                 ("BJ01/EutranCellTdd=1", "RRC.ConnEstabSucc"): 90.0}


def test_repeats_of_a_dry_run_are_found_too(tmp_path):
    a = write(tmp_path / "in" / "a.xml", pm_file([(ME, [100, 90, 10, 5])]))
    write(tmp_path / "in" / "b.xml", pm_file([(ME, [100, 50, 10, 5])]))
    report = ingest(Lake(tmp_path / "lake"), [tmp_path / "in"], dry_run=True)
    assert [(f.rows_accepted, f.rows_quarantined) for f in report.files] == [(3, 0), (0, 3)]
    assert {r["reason"].split(";")[0] for r in report.quarantine.to_pylist()} == {
        f"the same measurement (object_dn, counter_name, period_start and granularity_s) came from {a} earlier in "
        "this ingest"}


# --- every reader, not only 3GPP ------------------------------------------------------------------

NOKIA_HO = ('<PMMOResult><MO><DN>PLMN-PLMN/MRBTS-1/LNBTS-1/LNCEL-1</DN></MO><PMTarget measurementType="{t}">'
            "{body}</PMTarget></PMMOResult>")


def test_an_omes_result_written_twice_is_not_added_into_a_sum(tmp_path):
    """HO.ExeAtt = M8009C6 + M8014C6 + M8014C18 (Nokia LTE_5043a); the inter-eNB result delivered
    twice would count its attempts twice."""
    intra = NOKIA_HO.format(t="LTE_Intra_eNB_HO", body="<M8009C6>10</M8009C6>")
    inter = NOKIA_HO.format(t="LTE_Inter_eNB_HO", body="<M8014C6>5</M8014C6><M8014C18>1</M8014C18>")
    path = write(tmp_path / "PM.BTS-1.xml", '<?xml version="1.0"?>\n<OMeS version="2.3"><PMSetup startTime='
                 f'"2024-03-05T10:00:00.000+02:00:00" interval="15">{intra}{inter}{inter}</PMSetup></OMeS>\n')
    lake = Lake(tmp_path / "lake")
    [result] = ingest(lake, [path]).files
    assert lake_values(lake)[("MRBTS-1/LNCEL=1", "HO.ExeAtt")] == 16.0  # not 22
    assert [q[1:3] for q in quarantined(lake)] == [(4, "M8014C6"), (5, "M8014C18")]  # the 4th and 5th values
    assert result.rows_quarantined == 2 and accounts(result)


def test_a_nanocell_pm_written_twice_keeps_the_first(tmp_path):
    pm = ('<Pm Dn="CMCC,SubNetwork=1,ManagedElement=1,EnbFunction=1,EutranCellTdd=1" UserLabel="BJ01">'
          '<V i="1">100</V><V i="2">{}</V></Pm>')
    doc = ('<?xml version="1.0" encoding="UTF-8"?>\n<PmFile><FileHeader><InfoModelReferenced>NanoCell-eNB-PM-V2.5.0'
           '</InfoModelReferenced><DnPrefix>CMCC</DnPrefix><VendorName></VendorName><BeginTime>2024-01-01T08:00:00'
           '+08:00</BeginTime><EndTime>2024-01-01T08:15:00+08:00</EndTime></FileHeader><Measurements><ObjectType>'
           'EutranCellTdd</ObjectType><PmName><N i="1">RRC.AttConnEstab</N><N i="2">RRC.SuccConnEstab</N></PmName>'
           f'<PmData>{pm.format(90)}{pm.format(10)}</PmData></Measurements></PmFile>\n')
    path = write(tmp_path / "dev.xml", doc)
    lake = Lake(tmp_path / "lake")
    [result] = ingest(lake, [path]).files
    assert lake_values(lake) == {("BJ01/EutranCellTdd=1", "RRC.ConnEstabAtt"): 100.0,
                                 ("BJ01/EutranCellTdd=1", "RRC.ConnEstabSucc"): 90.0}
    assert [q[1:3] for q in quarantined(lake)] == [(2, "RRC.AttConnEstab"), (2, "RRC.SuccConnEstab")]  # Pm #2
    assert (result.rows_read, result.rows_quarantined) == (4, 2) and accounts(result)


def test_a_vendor_csv_line_written_twice_is_not_added_into_a_sum(tmp_path):
    """beta's RRC.ConnEstabAtt sums the per-cause attempt columns: a repeated line would double it."""
    header = "Start Time,Period(min),NE Name,Cell Name,RRC_ATT_MO_DATA,RRC_ATT_MO_SIG,RRC_SUCC_TOTAL\n"
    line = "2026-11-02 00:00:00,15,ME-1,C1,5,1,6\n"
    path = write(tmp_path / "pm" / "beta" / "beta_20261102.csv", header + line + line)
    lake = Lake(tmp_path / "lake")
    [result] = ingest(lake, [path]).files
    got = lake_values(lake)
    assert (got[("ME-1/Cell=C1", "RRC.ConnEstabAtt")], got[("ME-1/Cell=C1", "RRC.ConnEstabSucc")]) == (6.0, 6.0)
    assert sorted(q[1] for q in quarantined(lake)) == [3, 3, 3]  # line 3, each of its three values
    assert accounts(result)
