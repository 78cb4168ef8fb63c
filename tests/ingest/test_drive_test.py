"""Drive-test reader: the UCC 5G production dataset zip, synthetic zips and CSVs, errors."""

from __future__ import annotations

import csv
import io
import re
import statistics
import zipfile
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import h3
import numpy as np
import pyarrow.compute as pc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from opencem.ingest.drive_test_zip import read_drive_test_csv, read_drive_test_zip
from opencem.ingest.validate import IngestError, conform
from opencem.schema.network import DRIVE_TESTS

UCC_ZIP = (Path(__file__).resolve().parents[2].parent / "shared" / "data" / "external"
           / "ucc-5g-drive-test" / "5G-production-dataset.zip")
HEADER = ("Timestamp,Longitude,Latitude,Speed,Operatorname,CellID,NetworkMode,RSRP,RSRQ,SNR,CQI,RSSI,"
          "DL_bitrate,UL_bitrate,State,PINGAVG,PINGMIN,PINGMAX,PINGSTDEV,PINGLOSS,CELLHEX,NODEHEX,"
          "LACHEX,RAWCELLID,NRxRSRP,NRxRSRQ")


def line(time: str = "2019.12.16_13.40.04", mode: str = "5G", rsrp: str = "-103", dl: str = "72",
         lat: str = "51.886141", lon: str = "-8.394624") -> str:
    return (f"{time},{lon},{lat},0,B,11,{mode},{rsrp},-15,1.0,15,-90,{dl},20,D,-,-,-,-,-,B,A4DF,9CBA,"
            "10805003,-106.0,-11.0")


def csv_bytes(*lines: str, newline: str = "\n") -> bytes:
    return newline.join([HEADER, *lines, ""]).encode()


def write_zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return path


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


def one_sentence(message: str) -> bool:
    return message.endswith(".") and "\n" not in message and ". " not in message.rstrip(".")


# --- the real dataset ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def ucc():
    if not UCC_ZIP.exists():
        pytest.skip(f"UCC 5G drive-test dataset not available: {UCC_ZIP}")
    [part] = read_drive_test_zip(UCC_ZIP)
    return part


def row(part, test_id: str, record_number: int) -> dict:
    mask = pc.and_(pc.equal(part.data["test_id"], test_id),
                   pc.equal(part.data["record_number"], record_number))
    [found] = part.data.filter(mask).to_pylist()
    return found


@pytest.mark.external
def test_ucc_zip_reads_every_record_of_its_83_runs(ucc):
    assert ucc.table == "drive_tests"
    assert ucc.data.num_rows + len(ucc.rejects) == 188_711
    assert ucc.rejects == []
    assert pc.count_distinct(ucc.data["test_id"]).as_py() == 83
    assert ucc.data.column_names == DRIVE_TESTS.schema.names
    # Row numbers run across members in zip order: 1..188,711, each once.
    assert np.array_equal(np.sort(ucc.source_row_numbers()), np.arange(1, 188_712))
    runs = ucc.data.group_by(["service", "scenario"]).aggregate([("test_id", "count_distinct")])
    counts = {(r["service"], r["scenario"]): r["test_id_count_distinct"] for r in runs.to_pylist()}
    assert counts == {("download", "static"): 5, ("download", "driving"): 16,
                      ("amazon_prime", "static"): 8, ("amazon_prime", "driving"): 21,
                      ("netflix", "static"): 10, ("netflix", "driving"): 23}
    technology = dict(zip(*pc.value_counts(ucc.data["technology"]).flatten()))
    assert {k.as_py(): v.as_py() for k, v in technology.items()} == {
        "5G": 136_403, "4G": 35_212, "3G": 17_005, "2G": 91}


@pytest.mark.external
def test_ucc_5g_static_download_rows(ucc):
    # Download/Static/B_2019.12.16_13.40.04.csv, lines 2 and 8.
    first = row(ucc, "Download/Static/B_2019.12.16_13.40.04", 1)
    assert first["measured_at"] == utc(2019, 12, 16, 13, 40, 4)  # GMT in December: local = UTC
    assert (first["lat"], first["lon"]) == (51.886140999999995, -8.394624)
    assert (first["technology"], first["cell_id"], first["operator"]) == ("5G", "10805003", "B")
    assert (first["rsrp_dbm"], first["rsrq_db"], first["sinr_db"], first["cqi"], first["rssi_dbm"]) == (
        -103.0, -15.0, 1.0, 15.0, -90.0)
    assert (first["dl_throughput_kbps"], first["ul_throughput_kbps"], first["state"]) == (72.0, 20.0, "D")
    assert (first["ping_avg_ms"], first["ping_loss_pct"]) == (None, None)  # '-' in the file
    # NRxRSRP/NRxRSRQ (-106.0/-11.0 here) are neighbour-cell values, not the NR leg.
    assert (first["nr_rsrp_dbm"], first["nr_rsrq_db"]) == (None, None)
    assert (first["service"], first["scenario"]) == ("download", "static")
    pinged = row(ucc, "Download/Static/B_2019.12.16_13.40.04", 7)
    assert (pinged["measured_at"], pinged["ping_avg_ms"], pinged["ping_loss_pct"]) == (
        utc(2019, 12, 16, 13, 40, 9), 90.0, 0.0)


@pytest.mark.external
def test_ucc_peak_throughput_lte_and_legacy_rows(ucc):
    # The dataset's highest DL_bitrate: Download/Driving/B_2019.12.16_07.22.43.csv line 787.
    peak = row(ucc, "Download/Driving/B_2019.12.16_07.22.43", 786)
    assert peak["dl_throughput_kbps"] == 532_905.0 == pc.max(ucc.data["dl_throughput_kbps"]).as_py()
    assert (peak["measured_at"], peak["speed_kmh"], peak["rsrp_dbm"], peak["sinr_db"]) == (
        utc(2019, 12, 16, 7, 35, 29), 22.0, -57.0, 27.0)
    assert (peak["lat"], peak["lon"], peak["cell_id"]) == (51.911727, -8.471733, "10807307")
    lte = row(ucc, "Netflix/Driving/animated-RickandMorty/B_2019.11.21_10.20.17", 1)
    assert (lte["technology"], lte["rsrp_dbm"], lte["rsrq_db"], lte["dl_throughput_kbps"]) == (
        "4G", -102.0, -12.0, 37.0)
    assert (lte["service"], lte["scenario"]) == ("netflix", "driving")
    # On 3G/2G samples the RSRP/RSRQ columns hold RSCP and Ec/No: not loaded as RSRP.
    hspa = row(ucc, "Download/Driving/B_2019.12.16_11.49.59", 99)
    assert (hspa["technology"], hspa["rsrp_dbm"], hspa["rsrq_db"], hspa["cell_id"]) == (
        "3G", None, None, "19767027")
    assert (hspa["dl_throughput_kbps"], hspa["speed_kmh"]) == (18_962.0, 63.0)
    gprs = row(ucc, "Amazon_Prime/Driving/Season3-TheExpanse/B_2019.12.02_09.39.35", 805)
    assert (gprs["technology"], gprs["state"], gprs["rsrp_dbm"]) == ("2G", "V", None)


@pytest.mark.external
def test_ucc_h3_index_is_the_cell_of_each_rows_position(ucc):
    lat, lon = ucc.data["lat"].to_pylist(), ucc.data["lon"].to_pylist()
    cells = {p: h3.latlng_to_cell(*p, 9) for p in set(zip(lat, lon))}
    assert ucc.data["h3_index"].to_pylist() == [cells[p] for p in zip(lat, lon)]
    first = row(ucc, "Download/Static/B_2019.12.16_13.40.04", 1)
    assert first["h3_index"] == h3.latlng_to_cell(51.886140999999995, -8.394624, 9) == "89182a31467ffff"


@pytest.mark.external
def test_ucc_per_h3_statistics_in_duckdb(ucc):
    data = ucc.data  # noqa: F841 - read by DuckDB's replacement scan
    stats = duckdb.sql("""
        SELECT h3_index, count(*) AS samples, median(rsrp_dbm) AS rsrp_dbm,
               median(dl_throughput_kbps) AS dl_kbps
        FROM data GROUP BY h3_index ORDER BY samples DESC, h3_index""").fetchall()
    assert len(stats) == 276
    cell, samples, rsrp, dl = stats[0]
    # The same cell from the raw CSV text, with RSRP from LTE/5G samples only.
    raw_rsrp, raw_dl = [], []
    with zipfile.ZipFile(UCC_ZIP) as z:
        for name in z.namelist():
            if name.endswith(".csv") and not name.startswith("__MACOSX"):
                for r in csv.DictReader(io.TextIOWrapper(z.open(name), "utf-8")):
                    if h3.latlng_to_cell(float(r["Latitude"]), float(r["Longitude"]), 9) == cell:
                        raw_dl.append(float(r["DL_bitrate"]))
                        if r["NetworkMode"] in ("LTE", "5G"):
                            raw_rsrp.append(float(r["RSRP"]))
    assert samples == len(raw_dl) > 10_000
    assert rsrp == statistics.median(raw_rsrp)
    assert dl == statistics.median(raw_dl)


@pytest.mark.external
def test_ucc_rows_conform_to_the_canonical_table(ucc):
    conformed = conform(ucc.data, DRIVE_TESTS, str(UCC_ZIP))
    assert conformed.accepted.schema == DRIVE_TESTS.schema
    assert conformed.accepted.num_rows + conformed.n_quarantined == 188_711
    # Three LTE samples report RSRP -200 dBm (G-NetTrack's floor), outside the 3GPP range.
    assert conformed.n_quarantined == 3
    assert set(conformed.fields) == {"rsrp_dbm"}


# --- synthetic files ----------------------------------------------------------------------------

def test_zip_with_broken_lines_and_junk_members(tmp_path):
    first = csv_bytes(
        line("2019.12.16_13.40.04"),
        line("2019.12.16_13.40.05")[:40],  # cut short
        "",
        line("2019.13.45_13.40.06"),  # no such date
        line("2019.12.16_13.40.07", rsrp="n/a"),
        line("2019.12.16_13.40.08", mode="LTE") + ",extra",
        line("2019.12.16_13.40.09", mode="HSPA+", rsrp="-75"),
    )
    second = csv_bytes(line("2019.11.21_10.20.17", mode="LTE", dl="37"))
    path = write_zip(tmp_path / "runs.zip", {
        "runs/Download/Static/B_1.csv": first,
        "__MACOSX/runs/Download/Static/._B_1.csv": b"\x00\x05\x16\x07 Mac OS X \xff",
        "runs/.DS_Store": b"\x00\x00\x00\x01Bud1",
        "runs/notes.txt": b"not a drive test",
        "runs/Netflix/Driving/show/B_2.csv": second,
    })
    [part] = read_drive_test_zip(path)
    rows = part.data.to_pylist()
    assert [(r["test_id"], r["record_number"]) for r in rows] == [
        ("Download/Static/B_1", 1), ("Download/Static/B_1", 7), ("Netflix/Driving/show/B_2", 1)]
    assert [r["technology"] for r in rows] == ["5G", "3G", "4G"]
    assert [(r["service"], r["scenario"]) for r in rows] == [
        ("download", "static"), ("download", "static"), ("netflix", "driving")]
    assert rows[1]["rsrp_dbm"] is None and rows[2]["rsrp_dbm"] == -103.0
    # B_1 has 7 data lines (the blank one included), so B_2's record 1 is row 8 of the zip.
    assert part.source_row_numbers().tolist() == [1, 7, 8]
    assert [(r.row_number, r.reason, r.field, r.value) for r in part.rejects] == [
        (2, "has 4 fields, expected 26", None, None),
        (4, "has Timestamp '2019.13.45_13.40.06', expected YYYY.MM.DD_HH.MM.SS", "Timestamp",
         "2019.13.45_13.40.06"),
        (5, "has RSRP 'n/a', which is not a number", "RSRP", "n/a"),
        (6, "has 27 fields, expected 26", None, None),
    ]
    assert part.rejects[0].record_text == "runs/Download/Static/B_1.csv:3: " + line()[:40].replace(
        "13.40.04", "13.40.05")
    assert part.rejects[2].record_text.startswith("runs/Download/Static/B_1.csv:6: 2019.12.16_13.40.07,")
    assert part.rows_read == 7


def test_csv_path_bytes_crlf_bom_and_summer_time(tmp_path):
    lines = [line("2019.12.01_12.00.00"), line("2019.07.01_12.00.00"), line("2019.10.27_01.30.00")]
    data = b"\xef\xbb\xbf" + csv_bytes(*lines, newline="\r\n")
    [part] = read_drive_test_csv(data, "trace-1")
    # Irish local time: GMT in winter, IST (UTC+1) in summer; the repeated hour reads as IST.
    assert part.data["measured_at"].to_pylist() == [
        utc(2019, 12, 1, 12), utc(2019, 7, 1, 11), utc(2019, 10, 27, 0, 30)]
    assert part.data["test_id"].to_pylist() == ["trace-1"] * 3
    assert part.data["service"].null_count == 3 and part.rejects == []
    [in_utc] = read_drive_test_csv(data, "trace-1", local_tz="UTC")
    assert in_utc.data["measured_at"][1].as_py() == utc(2019, 7, 1, 12)

    file = tmp_path / "Amazon_Prime" / "Driving" / "animated-AdventureTime" / "B_2019.11.28_07.27.57.csv"
    file.parent.mkdir(parents=True)
    file.write_bytes(csv_bytes(line()))
    [part] = read_drive_test_csv(file)
    r = part.data.to_pylist()[0]
    assert (r["test_id"], r["service"], r["scenario"]) == (
        "Amazon_Prime/Driving/animated-AdventureTime/B_2019.11.28_07.27.57", "amazon_prime", "driving")
    loose = tmp_path / "B_x.csv"
    loose.write_bytes(csv_bytes(line(), line()))
    [part] = read_drive_test_csv(loose)
    assert part.data["test_id"].to_pylist() == ["B_x", "B_x"]
    assert part.data["record_number"].to_pylist() == [1, 2]


def test_header_only_and_missing_optional_columns():
    [empty] = read_drive_test_csv(csv_bytes(), "empty")
    assert empty.data.num_rows == 0 and empty.data.column_names == DRIVE_TESTS.schema.names
    # An older G-NetTrack layout without RAWCELLID, ping or NR columns still loads.
    [old] = read_drive_test_csv(b"Timestamp,Longitude,Latitude,CellID,NetworkMode,RSRP\n"
                                b"2017.11.22_10.07.03,-8.5,51.8,2,LTE,-119\n", "old")
    r = old.data.to_pylist()[0]
    assert (r["cell_id"], r["technology"], r["rsrp_dbm"], r["ping_avg_ms"]) == ("2", "4G", -119.0, None)


# Records in random order of good, short, long and blank lines; Speed holds the line number.
@settings(max_examples=60, deadline=None)
@given(kinds=st.lists(st.sampled_from(["good", "short", "long", "blank"]), max_size=40),
       newline=st.sampled_from(["\n", "\r\n"]))
def test_every_line_is_a_row_a_reject_or_blank(kinds, newline):
    lines = []
    for number, kind in enumerate(kinds, start=1):
        text = line().replace(",0,B,", f",{number},B,")
        lines.append({"good": text, "short": text[:30], "long": text + ",x", "blank": ""}[kind])
    [part] = read_drive_test_csv(csv_bytes(*lines, newline=newline), "t")
    good = [n for n, k in enumerate(kinds, start=1) if k == "good"]
    assert part.data["record_number"].to_pylist() == good
    assert part.data["speed_kmh"].to_pylist() == [float(n) for n in good]
    assert [r.row_number for r in part.rejects] == [
        n for n, k in enumerate(kinds, start=1) if k in ("short", "long")]
    assert all(r.record_text.startswith(f"t:{r.row_number + 1}: ") for r in part.rejects)


# --- files that cannot be read ------------------------------------------------------------------

def test_not_a_zip_corrupt_and_empty_zips_raise_one_sentence(tmp_path):
    text = tmp_path / "trace.zip"
    text.write_text(HEADER + "\n")
    good = write_zip(tmp_path / "good.zip", {"Download/Static/B_1.csv": csv_bytes(*[line()] * 200)})
    truncated = tmp_path / "truncated.zip"
    truncated.write_bytes(good.read_bytes()[:200])
    flipped = tmp_path / "flipped.zip"
    data = bytearray(good.read_bytes())
    start = 30 + len("Download/Static/B_1.csv")  # first byte of the member's compressed data
    data[start + 20:start + 40] = bytes(20)
    flipped.write_bytes(bytes(data))
    no_csv = write_zip(tmp_path / "no_csv.zip", {"readme.txt": b"hello", "__MACOSX/._a.csv": b"x"})
    wrong = write_zip(tmp_path / "wrong.zip", {"a.csv": b"time,value\n1,2\n"})
    cases = {
        text: "not a readable zip archive",
        truncated: "not a readable zip archive",
        flipped: "member Download/Static/B_1.csv cannot be read",
        no_csv: "holds no CSV files",
        wrong: "lacks column(s) 'Timestamp', 'Longitude', 'Latitude'",
        tmp_path / "missing.zip": "no such file",
    }
    for path, expected in cases.items():
        with pytest.raises(IngestError) as err:
            read_drive_test_zip(path)
        message = str(err.value)
        assert message.startswith(str(path)) and expected in message, message
        assert one_sentence(re.sub(r"\(.*\)", "()", message)), message


def test_unreadable_csv_path_raises(tmp_path):
    with pytest.raises(IngestError, match=re.escape(str(tmp_path / "nope.csv")) + ": cannot be read"):
        read_drive_test_csv(tmp_path / "nope.csv")
    bad = tmp_path / "bad.csv"
    bad.write_bytes(b"Timestamp,Longitude\xff,Latitude\n")
    with pytest.raises(IngestError, match="header is not UTF-8 text"):
        read_drive_test_csv(bad)
