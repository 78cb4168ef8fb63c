"""Big and hostile PM files: the OMeS and NanoCell readers stream (Parts cut between objects, a
dictionary sum still sees every term of an object and period, wherever the file puts them), and
what a hostile file can make a reader hold or inflate is refused in one sentence naming the limit,
by the 3GPP fast path as by its lxml reference. Memory itself is measured by benchmarks/pm_vendor.py."""

from __future__ import annotations

import gzip
import random
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from opencem.ingest import pm_groups, pm_limits, pm_nanocell, pm_omes, pm_xml
from opencem.ingest.dictionary import load_dictionary
from opencem.ingest.dictionary_apply import map_counters
from opencem.ingest.pm_nanocell import read_pmfile_parts
from opencem.ingest.pm_omes import read_omes_parts
from opencem.ingest.pm_xml import read_pm_xml_parts
from opencem.ingest.pm_xml_rows import PMFileError

NS = "http://www.3gpp.org/ftp/specs/archive/32_series/32.435#measCollec"
# measurementType -> counters, the Nokia dictionary's sums, expr and renames across types among them.
TYPES = {"LTE_UE_State": ["M8013C5", "M8013C17", "M8013C18", "M8013C19", "M8013C34", "M8013C200"],
         "LTE_Intra_eNB_HO": ["M8009C6", "M8009C7"],
         "LTE_Inter_eNB_HO": ["M8014C6", "M8014C7", "M8014C18", "M8014C19"],
         "LTE_UE_Quantity": ["M8051C60", "M8051C61"]}
PERIODS = ["2024-03-05T10:00:00.000+02:00:00", "2024-03-05T10:15:00.000+02:00:00"]


def write(path: Path, data: bytes | str) -> Path:
    data = data.encode() if isinstance(data, str) else data
    path.write_bytes(gzip.compress(data) if path.name.endswith(".gz") else data)
    return path


def omes_type_major(cells: int, seed: int = 7) -> str:
    """One PMSetup per measurementType and period, the types of one cell far apart in the file."""
    rnd = random.Random(seed)
    out = ['<?xml version="1.0"?>\n<OMeS version="2.3">']
    for mtype, names in TYPES.items():
        for period in PERIODS:
            out.append(f'<PMSetup startTime="{period}" interval="15">')
            for c in range(cells):
                body = "".join(f"<{n}>{rnd.randint(1, 999)}</{n}>" for n in names)
                out.append(f"<PMMOResult><MO><DN>PLMN-PLMN/MRBTS-{c // 3}/LNBTS-{c // 3}/LNCEL-{c % 3}</DN></MO>"
                           f'<PMTarget measurementType="{mtype}">{body}</PMTarget></PMMOResult>')
            out.append("</PMSetup>")
    return "\n".join([*out, "</OMeS>\n"])


def rows_of(parts) -> list[tuple]:
    return sorted((int(n), *r.values()) for p in parts for n, r in zip(p.row_numbers, p.data.to_pylist()))


def test_omes_streams_in_parts_and_sums_see_every_term_wherever_they_are(tmp_path, monkeypatch):
    path = write(tmp_path / "PM.xml", omes_type_major(cells=30))
    nokia = load_dictionary("nokia")
    [whole] = read_omes_parts(path)  # no dictionary, one Part: the reference
    reference = map_counters(whole.data, nokia, whole.row_numbers)
    monkeypatch.setattr(pm_omes, "BATCH_VALUES", 7)
    monkeypatch.setattr(pm_groups, "HOLD_ROWS", 20)  # sum/expr rows go to disk, buckets split again
    parts = list(read_omes_parts(path, nokia))
    assert len(parts) > 10
    assert rows_of(parts) == sorted((int(n), *r.values()) for n, r in zip(reference[1], reference[0].to_pylist()))
    # HO.ExeAtt adds M8009C6 (in the first PMSetups) and M8014C6 + M8014C18 (in later ones).
    ho = [r for p in parts for r in p.data.to_pylist() if r["counter_name"] == "HO.ExeAtt"]
    assert len(ho) == 30 * 2 and all(r["value"] is not None for r in ho)
    # Without a dictionary the Parts are the values as read, in file order.
    monkeypatch.setattr(pm_omes, "BATCH_VALUES", 50)
    raw = list(read_omes_parts(path))
    assert len(raw) > 10 and pa.concat_tables([p.data for p in raw]).equals(whole.data)
    assert np.concatenate([p.row_numbers for p in raw]).tolist() == whole.row_numbers.tolist()


def test_one_object_period_too_big_to_hold_is_refused(tmp_path, monkeypatch):
    """A repeated value is rejected before it is held, so only distinct counters that a sum or
    expr reads fill an object-period: every one the Nokia dictionary reads, over a limit of one less."""
    nokia = load_dictionary("nokia")
    names = pm_groups.grouped_names(nokia).to_pylist()
    body = "".join(f"<{n}>1</{n}>" for n in names)
    mo = ('<PMMOResult><MO><DN>PLMN-PLMN/MRBTS-1/LNBTS-1/LNCEL-1</DN></MO><PMTarget measurementType="LTE_UE_State">'
          f"{body}</PMTarget></PMMOResult>")
    path = write(tmp_path / "PM.xml", f'<OMeS><PMSetup startTime="{PERIODS[0]}" interval="15">{mo * 3}</PMSetup></OMeS>')
    monkeypatch.setattr(pm_groups, "HOLD_ROWS", 5)
    monkeypatch.setattr(pm_groups, "MAX_GROUP_VALUES", len(names) - 1)
    with pytest.raises(PMFileError) as err:
        list(read_omes_parts(path, nokia))
    assert str(err.value) == (f"PM file PM.xml: has more than {len(names) - 1} values for object "
                              "'PLMN-PLMN/MRBTS-1/LNBTS-1/LNCEL-1' in one period, far more counters than any managed "
                              "object has.")
    # The same MO three times is two rejects per value, not three times as many values held.
    monkeypatch.setattr(pm_groups, "MAX_GROUP_VALUES", len(names))
    parts = list(read_omes_parts(path, nokia))
    assert sum(len(p.rejects) for p in parts) == 2 * len(names)
    assert sum(p.rows_read for p in parts) == 3 * len(names)


def nanocell(cells: int, label_last: str = "BJ07") -> str:
    pms = "".join(f'<Pm Dn="CMCC,SubNetwork=1,ManagedElement=1,EnbFunction=1,EutranCellTdd={c}" UserLabel="cell{c}">'
                  f'<V i="1">{c}</V><V i="2">{c + 1}</V><V i="3">{2 * c}</V></Pm>' for c in range(cells))
    return ('<?xml version="1.0" encoding="UTF-8"?>\n<PmFile><FileHeader><InfoModelReferenced>NanoCell-eNB-PM-V2.5.0'
            "</InfoModelReferenced><DnPrefix>CMCC</DnPrefix><VendorName></VendorName><BeginTime>"
            "2024-01-01T08:00:00+08:00</BeginTime><EndTime>2024-01-01T08:15:00+08:00</EndTime></FileHeader>"
            '<Measurements><ObjectType>EutranCellTdd</ObjectType><PmName><N i="1">RRC.AttConnEstab</N>'
            '<N i="2">HO.AttOutExecInterEnbS1</N><N i="3">HO.AttOutExecInterEnbX2</N></PmName><PmData>'
            f"{pms}</PmData></Measurements><Measurements><ObjectType>ManagedElement</ObjectType><PmName>"
            '<N i="1">EQPT.CpuMeanUsage</N></PmName><PmData><Pm Dn="CMCC,SubNetwork=1,ManagedElement=1" '
            f'UserLabel="{label_last}"><V i="1">5</V></Pm></PmData></Measurements></PmFile>\n')


def test_nanocell_streams_in_parts_named_by_the_device_label_written_after_the_cells(tmp_path, monkeypatch):
    path = write(tmp_path / "pm_file.xml.gz", nanocell(cells=40))
    d = load_dictionary("nanocell")
    whole = list(read_pmfile_parts(path, d))  # the sums' rows come last, in a Part of their own
    assert len(whole) == 2
    monkeypatch.setattr(pm_nanocell, "BATCH_VALUES", 10)
    parts = list(read_pmfile_parts(path, d))
    assert len(parts) > 5
    assert rows_of(parts) == rows_of(whole)
    rows = [r for p in parts for r in p.data.to_pylist()]
    # The first Part was due before the ManagedElement object was read: its label was looked up.
    assert {r["managed_element"] for r in rows} == {"BJ07"}
    assert {r["value"] for r in rows if r["object_dn"].endswith("EutranCellTdd=3") and r["counter_name"] == "HO.ExeAtt"} \
        == {(3 + 1) + 2 * 3}
    # A device folder names the device without that look-up.
    assert {r["managed_element"] for p in read_pmfile_parts(path, d, element_id="dev9") for r in p.data.to_pylist()} \
        == {"dev9"}


def test_nanocell_rejects_are_the_same_whatever_the_part_size(tmp_path, monkeypatch):
    bad = ('<Pm Dn="CMCC,SubNetwork=1,ManagedElement=1,EnbFunction=1,EutranCellTdd=99" UserLabel="x"><V i="1">4</V>'
           '<V i="1">5</V><V i=" 2 ">6</V><V i="x">7</V><V i="8">8</V><Q i="1">9</Q><V i="3">abc</V>'
           '<CV i="3"><SN>S.a</SN><SV>1</SV><SN>S.b</SN></CV></Pm>')
    path = write(tmp_path / "pm_file.xml", nanocell(cells=12).replace("</PmData>", bad + "</PmData>", 1))
    [whole] = read_pmfile_parts(path)
    monkeypatch.setattr(pm_nanocell, "BATCH_VALUES", 4)
    parts = list(read_pmfile_parts(path))
    assert len(parts) > 3 and rows_of(parts) == rows_of([whole])
    rejects = [r for p in parts for r in p.rejects]
    assert rejects == whole.rejects
    assert [(r.row_number, r.reason, r.field, r.value) for r in rejects] == [
        (13, "V i='x' is not a whole number", "i", "x"),
        (13, "V i=8 matches no N of the PmName of Measurements 'EutranCellTdd'", "i", "8"),
        (13, "Pm holds <Q>, which is neither V nor CV", "Q", None),
        (13, "SN S.b of HO.AttOutExecInterEnbX2 has no SV", "S.b", None),
        (13, "Pm repeats counter RRC.AttConnEstab", "RRC.AttConnEstab", "5"),
        (13, "value 'abc' of HO.AttOutExecInterEnbX2 is not a number", "HO.AttOutExecInterEnbX2", "abc")]
    cell99 = {r["counter_name"]: r["value"] for p in parts for r in p.data.to_pylist() if r["object_dn"].endswith("=99")}
    assert cell99 == {"RRC.AttConnEstab": 4.0, "HO.AttOutExecInterEnbS1": 6.0, "S.a": 1.0}


# --- hostile files ---------------------------------------------------------------------------------

def meas_file(body: bytes, before: bytes = b"") -> bytes:
    info = (b'<measInfo measInfoId="x"><granPeriod duration="PT900S" endTime="2024-01-01T00:15:00Z"/>'
            b'<measType p="1">pmA</measType>' + body + b"</measInfo>")
    return (b'<?xml version="1.0" encoding="UTF-8"?>\n<measCollecFile xmlns="' + NS.encode() + b'"><fileHeader '
            b'vendorName="Acme"><measCollec beginTime="2024-01-01T00:00:00Z"/></fileHeader><measData>'
            b'<managedElement localDn="me1"/>' + before + info + b"</measData></measCollecFile>\n")


def mv(i: int, text: bytes = b"1") -> bytes:
    return b'<measValue measObjLdn="ManagedElement=me1,EUtranCellFDD=%d"><r p="1">' % i + text + b"</r></measValue>"


def read_3gpp(path: Path, fast: bool):
    pm_xml.FAST_PATH = fast
    try:
        return read_pm_xml_parts(path)
    finally:
        pm_xml.FAST_PATH = True


@pytest.mark.parametrize(("name", "content", "fast_says", "lxml_says"), [
    ("gap.xml.gz", meas_file(mv(1), before=b" " * (17 << 20) + b"<measInfo/>"),
     "has more than 16 MiB between two measInfos, far more than the few tags a PM file puts there.",
     "is not well-formed XML (Resource limit exceeded: Text node too long"),
    ("value.xml.gz", meas_file(mv(1, b"9" * 10_000_001)),
     "has a text of more than 10,000,000 bytes between two tags, more than XML parsers accept (a value that "
     "long is no PM counter).",
     "is not well-formed XML (Resource limit exceeded: Text node too long"),
], ids=["whitespace between measInfos", "a value over libxml2's limit"])
def test_3gpp_bombs_are_refused_by_both_paths(tmp_path, name, content, fast_says, lxml_says):
    path = write(tmp_path / name, content)
    for fast, says in ((True, fast_says), (False, lxml_says)):
        with pytest.raises(PMFileError) as err:
            read_3gpp(path, fast)
        assert str(err.value).startswith(f"PM file {name}: {says}")


def test_3gpp_value_at_the_text_limit_is_read_by_both_paths_as_infinite(tmp_path):
    path = write(tmp_path / "edge.xml.gz", meas_file(mv(1, b"9" * 10_000_000)))
    for fast in (True, False):
        [part] = read_3gpp(path, fast)
        assert part.data["value"].to_pylist() == [float("inf")]  # ingest quarantines it


def test_3gpp_measinfo_over_the_fast_path_limit_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(pm_limits, "MAX_MEASINFO_BYTES", 64 << 10)
    monkeypatch.setattr(pm_xml, "READ_BYTES", 4096)
    path = write(tmp_path / "big.xml", meas_file(b"".join(mv(i) for i in range(3000))))
    with pytest.raises(PMFileError) as err:
        read_3gpp(path, True)
    assert str(err.value) == ("PM file big.xml: has a measInfo of more than 0.0625 MiB, more than the fast reader "
                              "holds; split the file per managed element.")
    [part] = read_3gpp(path, False)  # lxml holds one measInfo as a tree, with no limit but libxml2's
    assert part.data.num_rows == 3000


INFLATED = "decompresses to more than 100 times its {:,} bytes, far more than PM files do, so it is refused as " \
           "a decompression bomb."


@pytest.mark.parametrize("reader", ["3gpp", "3gpp lxml", "omes", "nanocell"])
def test_gzip_bombs_are_refused_by_every_reader(tmp_path, monkeypatch, reader):
    monkeypatch.setattr(pm_limits, "MIN_INFLATED_BYTES", 1 << 20)
    monkeypatch.setattr(pm_limits, "MAX_INFLATION", 100)  # gzip gets no further than ~300:1 on these
    if reader.startswith("3gpp"):
        content, read = meas_file(mv(1) * 150_000), lambda p: read_3gpp(p, reader == "3gpp")
    elif reader == "omes":
        mo = (b"<PMMOResult><MO><DN>PLMN-PLMN/MRBTS-1/LNBTS-1/LNCEL-1</DN></MO><PMTarget measurementType=\"x\">"
              b"<M1>1</M1></PMTarget></PMMOResult>")
        content, read = b'<OMeS><PMSetup startTime="%s" interval="15">' % PERIODS[0].encode() + mo * 100_000 + \
            b"</PMSetup></OMeS>", lambda p: list(read_omes_parts(p))
    else:
        pm = b'<Pm Dn="CMCC,ManagedElement=1,EutranCellTdd=1" UserLabel="x"><V i="1">1</V></Pm>'
        content = nanocell(1).encode().replace(b"<PmData>", b"<PmData>" + pm * 100_000, 1)
        read = lambda p: list(read_pmfile_parts(p))  # noqa: E731
    path = write(tmp_path / "bomb.xml.gz", content)
    assert len(content) > 100 * path.stat().st_size
    with pytest.raises(PMFileError) as err:
        read(path)
    assert str(err.value) == "PM file bomb.xml.gz: " + INFLATED.format(path.stat().st_size)


@pytest.mark.parametrize(("reader", "unit"), [("omes", "PMMOResult"), ("nanocell", "Pm")])
def test_one_element_too_big_to_hold_is_refused(tmp_path, reader, unit):
    if reader == "omes":
        content = (b'<OMeS><PMSetup startTime="%s" interval="15"><PMMOResult><MO><DN>PLMN-PLMN/MRBTS-1</DN></MO>'
                   b'<PMTarget measurementType="x">' % PERIODS[0].encode() + b"<M1>1</M1>" * 500_000
                   + b"</PMTarget></PMMOResult></PMSetup></OMeS>")
        read = read_omes_parts
    else:
        content = nanocell(1).encode().replace(b'<V i="1">0</V>', b'<V i="1">0</V>' * 400_000, 1)
        read = read_pmfile_parts
    path = write(tmp_path / "huge.xml.gz", content)
    with pytest.raises(PMFileError) as err:
        list(read(path))
    assert str(err.value) == f"PM file huge.xml.gz: has more than 4 MiB in one {unit} or between two, far more " \
                             f"than a real {unit} holds."
