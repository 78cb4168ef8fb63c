"""The Nokia OMeS reader and the Nokia dictionary, on files built here from Nokia's published
counter ids (the OSSMediator KPI formulas): ingest, then the library's RAN KPIs by hand."""

from __future__ import annotations

import csv
import gzip
from datetime import UTC, datetime
from pathlib import Path

import pytest

from opencem.ingest.dictionary import load_dictionary
from opencem.ingest.load import ingest
from opencem.ingest.pm_omes import read_omes, read_omes_parts
from opencem.ingest.pm_xml_rows import PMFileError
from opencem.lake import Lake
from opencem.schema.network import PM_COUNTERS
from tests.conftest import external

# Two LTE cells on two MRBTS that share the local cell number 1, and one NR cell.
L1 = "PLMN-PLMN/MRBTS-101/LNBTS-101/LNCEL-1"
L2 = "PLMN-PLMN/MRBTS-202/LNBTS-202/LNCEL-1"
N1 = "PLMN-PLMN/MRBTS-303/NRBTS-303/NRCELL-1"
P1, P2 = "2024-03-05T10:00:00.000+02:00:00", "2024-03-05T10:15:00.000+02:00:00"  # Nokia offsets carry seconds
T1, T2 = datetime(2024, 3, 5, 8, 0, tzinfo=UTC), datetime(2024, 3, 5, 8, 15, tzinfo=UTC)
RRC_ATT_LTE = ["M8013C17", "M8013C18", "M8013C19", "M8013C34", "M8013C31", "M8013C21", "M8013C93", "M8013C91"]
RRC_ATT_NR = ["M55124C01001", "M55124C01002", "M55124C01003", "M55124C01004", "M55124C01005", "M55124C01006",
              "M55124C01014", "M55124C01015", "M55124C01016", "M55124C01017"]
THP_VOL = [f"M55350C010{i:02d}" for i in range(5, 21)]
THP_TIME = [f"M55350C000{i:02d}" for i in range(5, 21)]
# LTE_5025i parts: numerator 3+2-1-0-1-1+1+0+1 = 4, denominator 100 (DROPS_A); 9 and 105 (DROPS_B).
DROPS_A = {"M8006C261": 3, "M8006C254": 2, "M8006C255": 1, "M8006C258": 0, "M8006C341": 1, "M8006C301": 1,
           "M8006C309": 1, "M8006C311": 0, "M8006C313": 1, "M8006C6": 66, "M8006C7": 10, "M8006C8": 5,
           "M8006C9": 4, "M8006C277": 2, "M8006C303": 3, "M8006C306": 2, "M8006C310": 1, "M8006C312": 1}
DROPS_B = {**DROPS_A, "M8006C261": 8}


def lte(rrc_att, rrc_succ, erab, drops, ho, avail, prb, rrc_conn) -> dict[str, dict]:
    """One LNCEL's counters in one period, by OMeS measurementType."""
    (intra, x2, s1) = ho
    return {"LTE_UE_State": {"M8013C5": rrc_succ, **dict(zip(RRC_ATT_LTE, rrc_att))},
            "LTE_EPS_Bearer": {"M8006C0": erab[0], "M8006C1": erab[1], **drops},
            "LTE_Intra_eNB_HO": {"M8009C6": intra[0], "M8009C7": intra[1]},
            "LTE_Inter_eNB_HO": {"M8014C6": x2[0], "M8014C7": x2[1], "M8014C18": s1[0], "M8014C19": s1[1]},
            "LTE_Cell_Avail": {"M8020C3": avail[0], "M8020C6": avail[1]},
            "LTE_Cell_Resource": {"M8011C37": prb},
            "LTE_UE_Quantity": {"M8051C60": rrc_conn[0], "M8051C61": rrc_conn[1]}}


# NR_5358b RAN-view drop parts (NG reset, RNL unspecified, UE lost, unspecified, TNL, partial HO).
QF_DROPS_RAN = ["M55125C09001", "M55125C09003", "M55125C09005", "M55125C09006", "M55125C09007", "M55125C10504"]


def nr(rrc_att, rrc_succ, nsa_erab, qf, thp, avail, prb, qf_rel) -> dict[str, dict]:
    """One NRCELL's counters in one period, by OMeS measurementType; ``qf_rel`` is (all QoS flow
    releases, drops of active QoS flows, the RAN-view drop parts)."""
    releases, active_drops, ran = qf_rel
    return {"NRRCC": {"M55124C01031": rrc_succ, **dict(zip(RRC_ATT_NR, rrc_att))},
            "NX2CC": {"M55112C03001": nsa_erab[0], "M55112C03002": nsa_erab[1]},
            "NNGCC": {"M55125C08501": qf[0], "M55125C08502": qf[1], "M55125C08503": releases,
                      "M55125C09026": active_drops, **dict(zip(QF_DROPS_RAN, ran))},
            "PDCPC": {**{c: thp[0] for c in THP_VOL}, **{c: thp[1] for c in THP_TIME}},
            "NCAV": {"M55601C00001": avail[0], "M55601C00002": avail[1]},
            "NCELA": dict(zip(["M55308C10001", "M55308C10015", "M55308C10011", "M55308C10003"], prb))}


VALUES = {
    (L1, P1): lte([40, 30, 10, 5, 5, 4, 3, 3], 95, (80, 78), DROPS_A, ((20, 19), (25, 24), (5, 4)), (90, 90), 500, (900, 90)),
    (L1, P2): lte([80, 60, 20, 10, 10, 8, 6, 6], 196, (120, 118), DROPS_A, ((20, 19), (25, 24), (5, 4)), (45, 90), 300,
                  (1800, 90)),
    (L2, P1): lte([20, 15, 5, 3, 2, 2, 2, 1], 45, (40, 36), DROPS_B, ((10, 10), (30, 27), (0, 0)), (90, 90), 100, (450, 90)),
    (L2, P2): lte([20, 15, 5, 3, 2, 2, 2, 1], 40, (60, 54), DROPS_B, ((10, 10), (30, 27), (0, 0)), (81, 90), 200,
                  ("NIL", 90)),  # NIL: the element measured nothing
    (N1, P1): nr([30, 20, 10, 10, 10, 5, 5, 5, 3, 2], 98, (50, 49), (40, 39), (10000, 125), (900, 900), (1000, 200, 300, 3000),
                 (200, 3, (1, 0, 2, 0, 0, 1))),
    (N1, P2): nr([30, 20, 10, 10, 10, 5, 5, 5, 3, 2], 96, (50, 48), (60, 57), (5625, 187.5), (900, 810), (600, 0, 0, 3000),
                 (400, 2, (0, 0, 1, 0, 0, 0))),
}
# Each KPI by hand with Nokia's formula (KPI ids in ingest/dictionaries/nokia.yaml), per cell and period.
EXPECTED = {
    ("MRBTS-101/LNCEL=1", T1): {"rrc_setup_success_pct": 95.0, "erab_setup_success_pct": 100 * 78 / 80,
                                "erab_drop_pct": 4.0, "ho_success_pct": 100 * 47 / 50, "cell_availability_pct": 100.0,
                                "prb_utilisation_dl_pct": 50.0, "rrc_connected_users_mean": 10.0},
    ("MRBTS-101/LNCEL=1", T2): {"rrc_setup_success_pct": 98.0, "erab_setup_success_pct": 100 * 118 / 120,
                                "erab_drop_pct": 4.0, "ho_success_pct": 94.0,
                                "cell_availability_pct": 100 * (1 - (900 * (1 - 45 / 90)) / 900),   # 50 %
                                "prb_utilisation_dl_pct": 30.0, "rrc_connected_users_mean": 20.0},
    ("MRBTS-202/LNCEL=1", T1): {"rrc_setup_success_pct": 90.0, "erab_setup_success_pct": 90.0,
                                "erab_drop_pct": 100 * 9 / 105, "ho_success_pct": 100 * 37 / 40,
                                "cell_availability_pct": 100.0, "prb_utilisation_dl_pct": 10.0,
                                "rrc_connected_users_mean": 5.0},
    ("MRBTS-202/LNCEL=1", T2): {"rrc_setup_success_pct": 80.0, "erab_setup_success_pct": 90.0,
                                "erab_drop_pct": 100 * 9 / 105, "ho_success_pct": 92.5,
                                "cell_availability_pct": 100 * 81 / 90, "prb_utilisation_dl_pct": 20.0,
                                "rrc_connected_users_mean": None},   # M8051C60 was NIL
    ("MRBTS-303/NRCELL=1", T1): {"rrc_setup_success_pct": 98.0, "erab_setup_success_pct": 98.0,
                                 "nr_qos_flow_setup_success_pct": 100 * 39 / 40,
                                 # NR_1477a: 16 x 10000 kbit over 16 x 125 ms = 80 Mbit/s
                                 "dl_user_throughput_mbps": (16 * 10000 / 1000) / (16 * 125 / 1000),
                                 "cell_availability_pct": 100.0, "prb_utilisation_dl_pct": 100 * 1500 / 3000,
                                 "ho_success_pct": None, "erab_drop_pct": None,
                                 # NR_5358b: (1 + 0 + 2 + 0 + 0 + 1) / 200; active drops 3 of 200
                                 "nr_qos_flow_drop_pct": 2.0, "bearer_drop_pct": 1.5},
    ("MRBTS-303/NRCELL=1", T2): {"rrc_setup_success_pct": 96.0, "erab_setup_success_pct": 96.0,
                                 "nr_qos_flow_setup_success_pct": 95.0,
                                 "dl_user_throughput_mbps": (16 * 5625 / 1000) / (16 * 187.5 / 1000),   # 30
                                 "cell_availability_pct": 90.0, "prb_utilisation_dl_pct": 20.0,
                                 "nr_qos_flow_drop_pct": 0.25, "bearer_drop_pct": 0.5},
}


def omes_text(values: dict = VALUES, style: str = "netact", extra: str = "") -> str:
    """An OMeS document: one PMSetup per period, one PMMOResult per object and measurementType."""
    out = ['<?xml version="1.0" encoding="UTF-8"?>\n<OMeS version="2.3">']
    for period in sorted({p for _, p in values}):
        out.append(f'  <PMSetup startTime="{period}" interval="15">')
        for (dn, p), by_type in values.items():
            if p != period:
                continue
            for mtype, counters in by_type.items():
                if style == "netact":
                    mo, target = f'<MO dimension="network_element"><DN>{dn}</DN></MO>', "PMTarget"
                else:  # the BTS's own files: baseId + localMoid, a NE-... target element
                    base, _, rest = dn.removeprefix("PLMN-PLMN/").partition("/")
                    mo, target = f"<MO><baseId>NE-{base}</baseId><localMoid>DN:NE-{rest}</localMoid></MO>", "NE-WBTS_1.0"
                body = "".join(f"<{c}>{x:g}</{c}>" if isinstance(x, int | float) else f"<{c}>{x}</{c}>"
                               for c, x in counters.items())
                out.append(f'    <PMMOResult>{mo}<{target} measurementType="{mtype}">{body}</{target}></PMMOResult>')
        out.append("  </PMSetup>")
    return "\n".join([*out, extra, "</OMeS>\n"])


def n_values(values: dict = VALUES) -> int:
    return sum(len(c) for by_type in values.values() for c in by_type.values())


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(text.encode()) if path.name.endswith(".gz") else text.encode())
    return path


def test_ingest_gives_nokia_kpis_per_cell_and_period(tmp_path, kpis):
    path = write(tmp_path / "in" / "PM.BTS-101.20240305.100000.xml.gz", omes_text())
    lake = Lake(tmp_path / "lake")
    [result] = ingest(lake, [path]).files
    assert result.dictionary == "nokia (bundled; vendorName 'Nokia')" and result.status == "loaded"
    assert result.rows_quarantined == 0
    got = kpis(lake)
    # Two MRBTS with an LNCEL-1 each stay two cells; the CU/DU question does not arise for Nokia.
    assert sorted({cell for _, cell in got}) == ["MRBTS-101/LNCEL=1", "MRBTS-202/LNCEL=1", "MRBTS-303/NRCELL=1"]
    for (cell, period), want in EXPECTED.items():
        assert {k: got[(period, cell)][k] for k in want} == pytest.approx(want), (cell, period)
    # Counters no entry maps (the inter-frequency HO M8021 is not written here) are none.
    assert result.unmapped == ()


def test_reader_rows_nil_and_garbage(tmp_path):
    bad = {k: {t: dict(c) for t, c in v.items()} for k, v in VALUES.items()}
    bad[(L1, P1)]["LTE_Cell_Resource"]["M8011C37"] = "12a"
    bad[(N1, P1)]["NRRCC"]["M55124C01031"] = ""
    [part] = read_omes_parts(write(tmp_path / "bad.xml", omes_text(bad)))
    assert part.data.schema == PM_COUNTERS.schema
    assert part.rows_read == n_values() and part.data.num_rows == n_values() - 1
    assert [(r.field, r.value, r.reason, r.record_text) for r in part.rejects] == [
        ("M8011C37", "12a", "counter M8011C37 value '12a' is not a number", L1)]
    rows = {(r["object_dn"], r["counter_name"], r["period_start"]): r for r in part.data.to_pylist()}
    assert rows[(N1, "M55124C01031", T1)]["value"] is None          # empty: a null row, like NIL
    assert rows[(L2, "M8051C60", T2)]["value"] is None              # NIL
    r = rows[(L1, "M8013C5", T1)]
    assert (r["value"], r["managed_element"], r["cell_id"], r["granularity_s"], r["vendor"]) == (95.0, "MRBTS-101", "1",
                                                                                                 900, "nokia")
    assert sorted([*part.row_numbers, *(x.row_number for x in part.rejects)]) == list(range(1, n_values() + 1))


def test_bts_layout_reads_like_the_netact_one(tmp_path):
    one = {k: v for k, v in VALUES.items() if k[0] == L1}
    bts = read_omes(write(tmp_path / "bts.xml", omes_text(one, style="bts")))
    netact = read_omes(write(tmp_path / "netact.xml", omes_text(one)))
    assert set(bts["object_dn"].to_pylist()) == {"NE-MRBTS-101/NE-LNBTS-101/LNCEL-1"}
    assert bts.drop_columns(["object_dn"]).equals(netact.drop_columns(["object_dn"]))


def test_several_mos_and_bad_setups(tmp_path):
    text = ('<OMeS><PMSetup startTime="2024-03-05T10:00:00.000+02:00" interval="60"><PMMOResult>'
            f'<MO><DN>{L1}</DN></MO><MO dimension="plmn"><DN>PLMN-PLMN/MCC-244/MNC-05</DN></MO>'
            '<PMTarget measurementType="LTE_UE_State"><M8013C5>7</M8013C5></PMTarget></PMMOResult></PMSetup>'
            '<PMSetup startTime="yesterday" interval="15"><PMMOResult><MO><DN>x</DN></MO><PMTarget '
            'measurementType="LTE_UE_State"><M8013C5>1</M8013C5></PMTarget></PMMOResult></PMSetup>'
            '<PMSetup startTime="2024-03-05T10:00:00+02:00" interval="quarter"><PMMOResult><MO/><PMTarget '
            'measurementType="LTE_UE_State"><M8013C5>1</M8013C5></PMTarget></PMMOResult></PMSetup></OMeS>')
    [part] = read_omes_parts(write(tmp_path / "mo.xml", text))
    [row] = part.data.to_pylist()
    assert row["object_dn"] == f"{L1},PLMN-PLMN/MCC-244/MNC-05" and row["granularity_s"] == 3600
    assert (row["managed_element"], row["cell_id"]) == ("MRBTS-101", "1")
    assert [(r.row_number, r.reason) for r in part.rejects] == [
        (2, "PMSetup startTime 'yesterday' is not an ISO 8601 time"),
        (3, "PMSetup interval 'quarter' is not a whole number of minutes (1-1440)")]


@pytest.mark.parametrize(("text", "sentence"), [
    (omes_text().replace('<OMeS version="2.3">', '<!DOCTYPE OMeS [<!ENTITY n "12">]>\n<OMeS version="2.3">', 1)
     .replace("<M8013C5>95</M8013C5>", "<M8013C5>&n;</M8013C5>"),
     "PM file f.xml: declares XML entities in its DTD, which PM files never need."),
    ('<?xml version="1.0"?>\n<measCollecFile xmlns="http://www.3gpp.org/ftp/specs/archive/32_series/32.435#measCollec">'
     "</measCollecFile>", "PM file f.xml: is not a Nokia OMeS PM file (root element is <measCollecFile>)."),
    (omes_text()[:-40], "PM file f.xml: is not well-formed XML"),
], ids=["entity", "not omes", "truncated"])
def test_broken_or_hostile_files_are_one_sentence(tmp_path, text, sentence):
    with pytest.raises(PMFileError) as err:
        read_omes(write(tmp_path / "f.xml", text))
    assert str(err.value).startswith(sentence)


def test_a_3gpp_file_forced_to_nokia_is_refused_in_one_sentence(tmp_path):
    path = write(tmp_path / "a.xml", '<?xml version="1.0"?><measCollecFile xmlns="http://www.3gpp.org/ftp/specs/'
                                     'archive/32_series/32.435#measCollec"><fileHeader vendorName="Acme"/></measCollecFile>')
    [result] = ingest(Lake(tmp_path / "lake"), [path], vendor="nokia").files
    assert result.status == "rejected"
    assert result.message == ("Counter dictionary nokia.yaml (--vendor) is for omes files, but this file is xml_32435; "
                              "choose the dictionary of this file's vendor.")


@pytest.mark.external
def test_every_nokia_counter_in_the_dictionary_is_in_nokias_formulas():
    """Never invent a counter: each id the dictionary reads occurs in a published Nokia KPI formula
    and has a measurement type in Nokia's counter list."""
    formulas = external("vendor-pm", "nokia", "OSSMediator_grafana_kpi_formulas.csv").read_text()
    with open(external("vendor-pm", "nokia", "OSSMediator_counter_to_measurement_type.csv")) as f:
        types = {row[0]: row[1] for row in csv.reader(f)}
    ids = load_dictionary("nokia").source_names()
    assert ids and all(i in formulas for i in ids), sorted(i for i in ids if i not in formulas)
    assert all(i in types for i in ids), sorted(i for i in ids if i not in types)
    # The files built above use each id under its published measurement type.
    written = {c: t for by_type in VALUES.values() for t, cs in by_type.items() for c in cs}
    assert {c: t for c, t in written.items() if c in ids} == {c: types[c] for c in written if c in ids}


def test_same_part_keeps_row_numbers_after_mapping(tmp_path):
    parts = list(read_omes_parts(write(tmp_path / "m.xml", omes_text()), load_dictionary("nokia")))
    rows = [r for part in parts for r in part.data.to_pylist()]
    numbers = [int(n) for part in parts for n in part.row_numbers]
    # The LTE_5025i numerator of L1 in P1 is one row citing the first M8006 value it read.
    [drop] = [(n, r) for n, r in zip(numbers, rows) if r["object_dn"] == L1
              and r["counter_name"] == "ERAB.RelAbnormalEnbAct" and r["period_start"] == T1]
    assert drop[1]["value"] == 4.0 and drop[0] == 1 + len(VALUES[(L1, P1)]["LTE_UE_State"]) + 2
    assert all(len(part.row_numbers) == part.data.num_rows for part in parts)
