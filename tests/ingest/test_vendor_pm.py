"""Real vendor PM files through ingest and the library's RAN KPIs: Ericsson (O-RAN SC files) and
the China Mobile NanoCell export (magma); vendor detection and its overrides.

Every expected KPI is computed by hand in the test from the values in the file."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

import pyarrow.compute as pc
import pytest
from lxml import etree

from opencem.ingest.load import discover, ingest
from opencem.ingest.pm_xml import read_meascollec
from opencem.ingest.vendors import choose_dictionary
from opencem.lake import Lake
from tests.conftest import external

ERICSSON = ("3gpp-pm", "o-ran-sc", "A20220418.1900-1915_seliitdus00487.xml")
NANOCELL = ("vendor-pm", "baicells", "pm_file_example.xml")
ME = "seliitdus00487"
T0 = datetime(2022, 4, 18, 19, 0, tzinfo=UTC)
IDLE = {"rrc_setup_success_pct": None, "erab_setup_success_pct": None, "initial_erab_establishment_success_pct": None,
        "erab_drop_pct": None, "erab_drops_per_session_hour": None, "dl_user_throughput_mbps": None,
        "ho_success_pct": None, "prb_utilisation_dl_pct": None, "nr_qos_flow_setup_success_pct": None,
        "bearer_accessibility_pct": None, "bearer_drop_pct": None, "nr_qos_flow_drop_pct": None}


def load(tmp_path: Path, *files: Path, **options) -> tuple[Lake, list]:
    lake = Lake(tmp_path / "lake")
    report = ingest(lake, list(files), **options)
    assert report.count("rejected") == 0, [f.message for f in report.files]
    return lake, report.files


# --- Ericsson ------------------------------------------------------------------------------------

@pytest.mark.external
def test_real_ericsson_rop_gives_availability_and_nulls_for_its_idle_cells(tmp_path, kpis):
    """The ROP is idle: attempts, volumes and times are 0, so every ratio is 0/0 and null.
    pmCellDowntimeMan is 900 s of 900 on EUtranCellFDD=1,2 and NRCellDU=1,2 (locked), 0 on
    NRCellDU=31,32; NRCellCU reports 0 s for the same cells, which must not count."""
    lake, [result] = load(tmp_path, external(*ERICSSON))
    assert result.dictionary == "ericsson (bundled; vendorName 'Ericsson AB')"
    got = kpis(lake)
    assert sorted(cell for _, cell in got) == [f"{ME}/EUtranCellFDD=1", f"{ME}/EUtranCellFDD=2", f"{ME}/NRCell=1",
                                              f"{ME}/NRCell=2", f"{ME}/NRCell=31", f"{ME}/NRCell=32"]
    for cell, available, users in [("EUtranCellFDD=1", 0.0, None), ("EUtranCellFDD=2", 0.0, None),
                                   # NR mean RRC users: pmRrcConnLevelSumSa / pmRrcConnLevelSamp = 0 / 180
                                   ("NRCell=1", 0.0, 0.0), ("NRCell=2", 0.0, 0.0),
                                   ("NRCell=31", 100.0, 0.0), ("NRCell=32", 100.0, 0.0)]:
        want = {**IDLE, "cell_availability_pct": available, "rrc_connected_users_mean": users}
        assert got[(T0, f"{ME}/{cell}")] == pytest.approx(want), cell
    # Counters no entry names are kept under their Ericsson name and reported; those an entry maps
    # on other classes only, with the class they were left on.
    assert len(result.unmapped) == 784 + 4 and "pmAnrNcgiMeasFailUeCap" in result.unmapped
    assert {u for u in result.unmapped if " on " in u} == {
        "pmCellDowntimeAuto on NRCellCU", "pmCellDowntimeMan on NRCellCU",  # the cell's downtime is the DU's
        "pmRrcConnLevelSamp on GNBCUCPFunction", "pmRrcConnLevelSumSa on GNBCUCPFunction"}  # mapped on NRCellCU
    # Every value is accounted for: the sums (handover, downtime, LTE drops eNB + MME) and
    # expressions (LTE volume, NR users) each fold two values of a cell into one row, 50 values
    # into 26 rows.
    assert (result.rows_read, result.rows_accepted, result.rows_quarantined) == (2667, 2667 - 50 + 26, 0)
    assert "folded 50 values into 26 rows" in result.message


# Non-zero values written into a copy of the real file (same layout and objects), per measured
# object: {object DN suffix: {counter: value}}.
BUSY = {
    "EUtranCellFDD=1": {"pmRrcConnEstabAtt": 200, "pmRrcConnEstabSucc": 190, "pmErabEstabAttInit": 180,
                        "pmErabEstabSuccInit": 171, "pmS1SigConnEstabAtt": 190, "pmS1SigConnEstabSucc": 190,
                        "pmErabRelAbnormalEnbAct": 3, "pmErabRelAbnormalMmeAct": 1, "pmSessionTimeUe": 5400,
                        "pmPdcpVolDlDrb": 120000, "pmPdcpVolDlDrbLastTTI": 20000, "pmUeThpTimeDl": 4000,
                        "pmCellHoExeAttLteIntraF": 40, "pmCellHoExeSuccLteIntraF": 38,
                        "pmCellHoExeAttLteInterF": 10, "pmCellHoExeSuccLteInterF": 9,
                        "pmCellDowntimeAuto": 0, "pmCellDowntimeMan": 90},
    "EUtranCellFDD=2": {"pmRrcConnEstabAtt": 100, "pmRrcConnEstabSucc": 99, "pmErabEstabAttInit": 0,
                        "pmErabEstabSuccInit": 0, "pmCellDowntimeAuto": 0, "pmCellDowntimeMan": 0},
    "NRCellCU=31": {"pmRrcConnEstabAtt": 50, "pmRrcConnEstabSucc": 49, "pmHoExeAttOutIntraGnb": 20,
                    "pmHoExeSuccOutIntraGnb": 19, "pmHoExeAttOutInterGnb": 5, "pmHoExeSuccOutInterGnb": 5,
                    "pmRrcConnLevelSumSa": 900, "pmRrcConnLevelSamp": 180,
                    # The CU's downtime is not the cell's (the DU's is): it must not count.
                    "pmCellDowntimeAuto": 900},
    "NRCellDU=31": {"pmMacVolDlDrb": 12_500_000, "pmMacTimeDlDrb": 40000, "pmCellDowntimeAuto": 45,
                    "pmCellDowntimeMan": 0},
}
BUSY_KPIS = {
    "EUtranCellFDD=1": {
        "rrc_setup_success_pct": 100 * 190 / 200, "erab_setup_success_pct": 100 * 171 / 180,
        "initial_erab_establishment_success_pct": 100 * (190 / 200) * (171 / 180),
        "erab_drops_per_session_hour": 3600 * 3 / 5400,           # TS 32.450 6.2.1: 2 per hour
        # No counter of every E-RAB release in the file (ERAB.RelNbr): no drop percentage.
        "erab_drop_pct": None, "bearer_drop_pct": None,
        "dl_user_throughput_mbps": ((120000 - 20000) / 1000) / (4000 / 1000),   # kbit, ms: 25 Mbit/s
        "ho_success_pct": 100 * (38 + 9) / (40 + 10),
        "cell_availability_pct": 100 * (1 - 90 / 900)},
    "EUtranCellFDD=2": {"rrc_setup_success_pct": 99.0, "erab_setup_success_pct": None, "cell_availability_pct": 100.0},
    "NRCell=31": {
        "rrc_setup_success_pct": 100 * 49 / 50, "ho_success_pct": 100 * (19 + 5) / (20 + 5),
        "rrc_connected_users_mean": 900 / 180,
        # bytes x 0.008 = kbit, 125 us x 0.125 = ms: 100000 kbit in 5000 ms, 20 Mbit/s
        "dl_user_throughput_mbps": (12_500_000 * 0.008 / 1000) / (40000 * 0.125 / 1000),
        "cell_availability_pct": 100 * (1 - 45 / 900), "erab_drop_pct": None},
}


def busy_copy(source: Path, target: Path) -> Path:
    """The real file with the BUSY values written into its r elements (nothing else changed)."""
    tree = etree.parse(str(source), etree.XMLParser(resolve_entities=False, no_network=True))
    ns = {"m": tree.getroot().nsmap[None]}
    done = set()
    for info in tree.iterfind(".//m:measInfo", ns):
        names = {t.get("p"): t.text for t in info.iterfind("m:measType", ns)}
        for mv in info.iterfind("m:measValue", ns):
            values = BUSY.get(mv.get("measObjLdn").rsplit(",", 1)[-1], {})
            for r in mv.iterfind("m:r", ns):
                if names[r.get("p")] in values:
                    r.text = str(values[names[r.get("p")]])
                    done.add((mv.get("measObjLdn").rsplit(",", 1)[-1], names[r.get("p")]))
    assert done == {(obj, c) for obj, counters in BUSY.items() for c in counters}  # every value placed
    tree.write(str(target), xml_declaration=True, encoding="UTF-8")
    return target


@pytest.mark.external
def test_ericsson_layout_with_traffic_gives_hand_computed_kpis(tmp_path, kpis):
    path = busy_copy(external(*ERICSSON), tmp_path / "A20220418.1900-1915_busy.xml")
    lake, _ = load(tmp_path, path)
    got = kpis(lake)
    for cell, want in BUSY_KPIS.items():
        assert {k: got[(T0, f"{ME}/{cell}")][k] for k in want} == pytest.approx(want), cell
    # The others stayed idle: the copy changed nothing else.
    assert got[(T0, f"{ME}/NRCell=1")]["cell_availability_pct"] == 0.0
    # LTE session time and NR mean users come out in canonical units in the lake.
    raw = read_meascollec(path, "ericsson")
    rows = {(r["object_dn"].rsplit(",", 1)[-1], r["counter_name"]): r["value"] for r in raw.to_pylist()}
    assert rows[("EUtranCellFDD=1", "ERAB.SessionTimeUE")] == 5400.0
    # TS 32.425's ERAB.RelActNbr: every abnormal release of an active E-RAB, eNB's and MME's;
    # ERAB.RelAbnormalEnbAct the eNB's alone.
    assert (rows[("EUtranCellFDD=1", "ERAB.RelActNbr")], rows[("EUtranCellFDD=1", "ERAB.RelAbnormalEnbAct")]) == (4.0, 3.0)
    assert rows[("EUtranCellFDD=1", "DRB.UEThpVolDl")] == 100000.0
    assert rows[("NRCellDU=31", "DRB.UEThpTimeDl")] == 5000.0
    assert rows[("NRCellCU=31", "pmCellDowntimeAuto")] == 900.0   # kept under its own name
    assert ("NRCellCU=31", "RRU.CellUnavailableTime") not in rows


@pytest.mark.external
@pytest.mark.parametrize("name", ["A20230515.0700_0100-0715_0100_GNODEB-0.xml", "pm.xml.gz"])
def test_anonymised_ericsson_files_are_detected_and_every_counter_reported_unmapped(tmp_path, name):
    path = external("3gpp-pm", "o-ran-sc", name)
    lake, [result] = load(tmp_path, path)
    assert result.dictionary == "ericsson (bundled; vendorName 'Ericsson AB')"
    names = set(pc.unique(read_meascollec(path)["counter_name"]).to_pylist())
    # Anonymised: names are pmCounterNumber<N> (GNODEB-0 keeps one real one, pmEndcUeCapabilityUlPdcpDelay).
    assert len([n for n in names if n.startswith("pmCounterNumber")]) >= len(names) - 1 > 800
    assert set(result.unmapped) == names


# --- CMCC NanoCell --------------------------------------------------------------------------------

@pytest.mark.external
def test_real_nanocell_export_gives_rrc_setup_success_99_of_123(tmp_path, kpis):
    lake, [result] = load(tmp_path, external(*NANOCELL))
    assert result.dictionary == "nanocell (bundled; sender 'NanoCell-eNB-PM-V2.5.0')"
    # 545 values read; the two handover sums fold 4 of them into 2 rows, the PRB expression 2 into 1.
    assert (result.rows_read, result.rows_accepted, result.rows_quarantined) == (545, 545 - 6 + 3, 0)
    assert (result.mapping.folded, result.mapping.derived) == (6, 3)
    got = kpis(lake)
    # One cell; every NanoCell is ManagedElement=1, so its UserLabel (BJ01) names the device. The
    # file's minute 06:24-06:25 UTC falls in the 06:15 quarter-hour.
    assert list(got) == [(datetime(2018, 5, 25, 6, 15, tzinfo=UTC), "BJ01/EutranCellTdd=1")]
    [cell] = got.values()
    assert cell == pytest.approx({
        "rrc_setup_success_pct": 100 * 99 / 123,              # RRC.SuccConnEstab / RRC.AttConnEstab
        "rrc_connected_users_mean": 0.0,                      # RRC.ConnMean 0 over 60 s
        "prb_utilisation_dl_pct": 100 * 0 / 100,              # RRU.PdschPrbTotMeanDl / RRU.PdschPrbMeanTot
        "ho_success_pct": None,                               # (0 + 0) / (0 + 0)
        "erab_setup_success_pct": None, "initial_erab_establishment_success_pct": None,  # not mapped
        "erab_drop_pct": None, "erab_drops_per_session_hour": None, "dl_user_throughput_mbps": None,
        "cell_availability_pct": None, "nr_qos_flow_setup_success_pct": None,
        "bearer_accessibility_pct": None, "bearer_drop_pct": None, "nr_qos_flow_drop_pct": None})


@pytest.mark.external
def test_nanocells_in_device_folders_stay_apart(tmp_path, kpis):
    """Two devices both write ManagedElement=1 and EutranCellTdd=1: the pm/<vendor>/<device>/
    folder names each (magma names a device by the serial of its upload, not by the file)."""
    for serial in ("120200002618AGP0003", "120200002618AGP0004"):
        folder = tmp_path / "landing" / "pm" / "baicells" / serial
        folder.mkdir(parents=True)
        shutil.copy(external(*NANOCELL), folder / "pm_file_example.xml")
    (tmp_path / "landing" / "pm" / "baicells" / "120200002618AGP0004" / "pm_file_example.xml").write_bytes(
        external(*NANOCELL).read_bytes().replace(b'<V i="5">123</V>', b'<V i="5">110</V>'))
    lake, results = load(tmp_path, tmp_path / "landing")
    assert [r.dictionary.split(" (")[0] for r in results] == ["nanocell", "nanocell"]
    got = {cell: v["rrc_setup_success_pct"] for (_, cell), v in kpis(lake).items()}
    assert got == pytest.approx({"120200002618AGP0003/EutranCellTdd=1": 100 * 99 / 123,
                                 "120200002618AGP0004/EutranCellTdd=1": 100 * 99 / 110})


# --- detection and overrides ----------------------------------------------------------------------

@pytest.mark.external
def test_each_shipped_dictionary_is_detected_from_its_files(tmp_path):
    from opencem.schema import TABLES

    def chosen(path: Path, vendor: str | None = None) -> str:
        [src], _ = discover([path], TABLES)
        return choose_dictionary(src, None, vendor).label

    omes = tmp_path / "PM.BTS.xml"
    omes.write_text('<?xml version="1.0"?><OMeS><PMSetup startTime="2024-03-05T10:00:00+02:00" interval="15">'
                    '<PMMOResult><MO><DN>PLMN-PLMN/MRBTS-1/LNBTS-1/LNCEL-1</DN></MO><PMTarget '
                    'measurementType="LTE_UE_State"><M8013C5>1</M8013C5></PMTarget></PMMOResult></PMSetup></OMeS>')
    assert chosen(external(*ERICSSON)) == "ericsson (bundled; vendorName 'Ericsson AB')"
    assert chosen(external(*NANOCELL)) == "nanocell (bundled; sender 'NanoCell-eNB-PM-V2.5.0')"
    assert chosen(omes) == "nokia (bundled; vendorName 'Nokia')"
    # --vendor wins over what the file says; a dictionary of another format is refused.
    alpha = tmp_path / "copy.xml"
    shutil.copy(external(*ERICSSON), alpha)
    assert chosen(alpha, "alpha") == "alpha (bundled; --vendor)"
    with pytest.raises(Exception, match=r"nokia.yaml \(--vendor\) is for omes files, but this file is xml_32435"):
        chosen(alpha, "nokia")
    # The pm/<vendor>/ folder wins over detection; a folder naming no dictionary is detected.
    for folder, label in (("alpha", "alpha (bundled; folder pm/alpha/)"),
                          ("site-7", "ericsson (bundled; vendorName 'Ericsson AB')")):
        (tmp_path / "pm" / folder).mkdir(parents=True)
        shutil.copy(external(*ERICSSON), tmp_path / "pm" / folder / "A.xml")
        assert chosen(tmp_path / "pm" / folder / "A.xml") == label


def ericsson_like(vendor_name: str, ldn: str) -> str:
    return ('<?xml version="1.0" encoding="UTF-8"?>\n<measCollecFile xmlns="http://www.3gpp.org/ftp/specs/archive/'
            f'32_series/32.435#measCollec"><fileHeader fileFormatVersion="32.435 V10.0" vendorName="{vendor_name}">'
            '<fileSender elementType="gNB-CU"/><measCollec beginTime="2024-01-01T00:00:00Z"/></fileHeader><measData>'
            '<managedElement localDn="me1"/><measInfo><granPeriod duration="PT900S" endTime="2024-01-01T00:15:00Z"/>'
            '<measType p="1">pmRrcConnEstabAtt</measType><measType p="2">pmRrcConnEstabSucc</measType>'
            f'<measValue measObjLdn="{ldn}"><r p="1">10</r><r p="2">20</r></measValue></measInfo></measData>'
            "</measCollecFile>\n")


def test_a_declared_vendor_is_not_overridden_by_counter_names_that_look_like_another(tmp_path):
    """A Samsung file whose counters start with pm is Samsung's: no Ericsson mapping, no
    vendor column rewritten."""
    path = tmp_path / "A.xml"
    path.write_text(ericsson_like("Samsung Electronics", "ManagedElement=me1,EUtranCellFDD=1"))
    lake, [result] = load(tmp_path, path)
    assert result.dictionary == ("none: counter names kept as in the file (vendorName 'Samsung Electronics' is in no "
                                 "dictionary's detect.vendor_names)")
    rows = read_meascollec(path)
    assert set(rows["vendor"].to_pylist()) == {"Samsung Electronics"}
    assert sorted(rows["counter_name"].to_pylist()) == ["pmRrcConnEstabAtt", "pmRrcConnEstabSucc"]
    # Without a vendor name, the counter names still point at Ericsson.
    path.write_text(ericsson_like("", "ManagedElement=me1,EUtranCellFDD=1"))
    [src], _ = discover([path], lake.tables)
    assert choose_dictionary(src).label == "ericsson (bundled; counter names like pmRrcConnEstabAtt)"


def test_counters_a_dictionary_maps_only_on_other_classes_are_listed_as_unmapped(tmp_path):
    """The Ericsson dictionary maps pmRrcConnEstabAtt on EUtranCellFDD and NRCellCU; on an
    EUtranCellTDD it stays a vendor counter, and ingest says so (evaluate points there)."""
    path = tmp_path / "A.xml"
    path.write_text(ericsson_like("Ericsson AB", "ManagedElement=me1,ENodeBFunction=1,EUtranCellTDD=1"))
    lake, [result] = load(tmp_path, path)
    assert result.unmapped == ("pmRrcConnEstabAtt on EUtranCellTDD", "pmRrcConnEstabSucc on EUtranCellTDD")
