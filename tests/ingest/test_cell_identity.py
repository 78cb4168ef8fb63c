"""Cell identity in pm_counters: keys unique per managed element, NR CU and DU as one cell, the
cells inventory (from a planning tool) deciding the key, an empty measObjLdn as the measured
entity itself, and the worked examples under examples/."""

from __future__ import annotations

import shutil
from datetime import UTC, date, datetime
from pathlib import Path

import pyarrow as pa
import pytest

from opencem.engines.duckdb import run_user_sql
from opencem.ingest import pm_xml
from opencem.ingest.dictionary import load_dictionary
from opencem.ingest.load import ingest
from opencem.ingest.parts import Reject
from opencem.ingest.pm_csv import read_vendor_csv
from opencem.ingest.pm_xml import cell_id_of, read_pm_xml_parts
from opencem.ingest.pm_xml_rows import managed_elements
from opencem.lake import Lake
from tests.conftest import PROJECT, external

NS = "http://www.3gpp.org/ftp/specs/archive/32_series/32.435#measCollec"
T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
INVENTORY = PROJECT / "examples" / "cells-inventory"
ERICSSON = ("3gpp-pm", "o-ran-sc", "A20220418.1900-1915_seliitdus00487.xml")


def meas_file(*measdata: tuple[str | None, str]) -> str:
    """A 3GPP file with one measData per (managedElement localDn or None, measInfos)."""
    body = "".join(f"<measData>{'' if me is None else f'<managedElement localDn={me!r}/>'}{infos}</measData>"
                   for me, infos in measdata)
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n<measCollecFile xmlns="{NS}"><fileHeader vendorName="Acme">'
            '<measCollec beginTime="2026-03-01T10:00:00+01:00"/></fileHeader>'
            f'{body}<fileFooter><measCollec endTime="2026-03-01T10:15:00+01:00"/></fileFooter></measCollecFile>\n')


def info(*values: tuple[str, str]) -> str:
    """A measInfo of RRC.ConnEstabAtt / RRC.ConnEstabSucc values, per (measObjLdn attribute, "att succ")."""
    mvs = "".join(f"<measValue{ldn}><measResults>{r}</measResults></measValue>" for ldn, r in values)
    return ('<measInfo><granPeriod duration="PT900S" endTime="2026-03-01T10:15:00+01:00"/>'
            f"<measTypes>RRC.ConnEstabAtt RRC.ConnEstabSucc</measTypes>{mvs}</measInfo>")


def ldn(dn: str) -> str:
    return f' measObjLdn="{dn}"'


def cells(lake: Lake) -> dict[str, float]:
    """cell_id -> RRC.ConnEstabAtt in the lake."""
    rows = run_user_sql(lake, "SELECT cell_id, sum(value) FROM pm_counters WHERE counter_name = 'RRC.ConnEstabAtt' "
                              "GROUP BY 1").fetchall()
    return dict(rows)


def test_two_managed_elements_with_cell_1_stay_two_cells(tmp_path):
    path = tmp_path / "A.xml"
    path.write_text(meas_file(("gNB-A", info((ldn("ManagedElement=gNB-A,GNBCUCPFunction=1,NRCellCU=1"), "10 9"))),
                              ("gNB-B", info((ldn("ManagedElement=gNB-B,GNBCUCPFunction=1,NRCellCU=1"), "20 18")))))
    lake = Lake(tmp_path / "lake")
    [result] = ingest(lake, [path]).files
    assert cells(lake) == {"gNB-A/NRCell=1": 10.0, "gNB-B/NRCell=1": 20.0}
    assert result.message == (
        "2 of 2 cells are not in a cells inventory (none is loaded); their counters are kept under derived keys "
        "such as gNB-A/NRCell=1: to key them to your cells, load the inventory (cells with managed_element and "
        "local_cell_id), then run opencem ingest --reload on these PM files")


def test_cu_and_du_of_one_nr_cell_are_one_cell_and_lte_1_is_another(tmp_path, kpis):
    down = ('<measInfo><granPeriod duration="PT900S" endTime="2026-03-01T10:15:00+01:00"/>'
            "<measTypes>RRU.CellUnavailableTime</measTypes>"
            '<measValue measObjLdn="ManagedElement=me1,GNBDUFunction=1,NRCellDU=1"><measResults>90</measResults>'
            "</measValue></measInfo>")
    path = tmp_path / "A.xml"
    path.write_text(meas_file(("me1", info((ldn("ManagedElement=me1,GNBCUCPFunction=1,NRCellCU=1"), "50 49"),
                                           (ldn("ManagedElement=me1,ENBFunction=1,EUtranCellFDD=1"), "10 5")) + down)))
    lake = Lake(tmp_path / "lake")
    ingest(lake, [path])
    got = kpis(lake)
    assert {cell: (v["rrc_setup_success_pct"], v["cell_availability_pct"]) for (_, cell), v in got.items()} == \
        {"me1/NRCell=1": (98.0, 90.0), "me1/EUtranCellFDD=1": (50.0, None)}


def test_inventory_in_the_same_call_keys_pm_cells_by_node_local_id_and_technology(tmp_path):
    """The inventory file sorts after pm/ by name, yet ingest reads it first."""
    landing = tmp_path / "landing"
    (landing / "pm" / "acme").mkdir(parents=True)
    (landing / "pm" / "acme" / "A.xml").write_text(meas_file(("me1", info(
        (ldn("ManagedElement=me1,ENBFunction=1,EUtranCellFDD=1"), "10 9"),
        (ldn("ManagedElement=me1,GNBDUFunction=1,NRCellDU=1"), "20 19"),
        (ldn("ManagedElement=me1,GNBDUFunction=1,NRCellDU=7"), "30 29"),      # not in the inventory
        (ldn("ManagedElement=me2,ENBFunction=1,EUtranCellFDD=C-9"), "40 39"),  # cell_id compared: no local id
    ))))
    (landing / "zz").mkdir()
    (landing / "zz" / "cells.csv").write_text(
        "cell_id,site_id,managed_element,local_cell_id,technology,vendor\n"
        "S1-L1,S1,me1,1,4G,acme\nS1-N1,S1,me1,1,5G,acme\nC-9,S2,me2,,4G,acme\nX-1,S3,me3,1,4G,acme\n")
    lake = Lake(tmp_path / "lake")
    files = ingest(lake, [landing]).files
    assert [f.table for f in files] == ["cells", "pm_counters"]
    assert cells(lake) == {"S1-L1": 10.0, "S1-N1": 20.0, "me1/NRCell=7": 30.0, "C-9": 40.0}
    assert files[1].message.startswith("1 of 4 cells are not in the cells inventory; their counters are kept under "
                                       "derived keys such as me1/NRCell=7")
    # Both sides agree: every inventory-keyed PM cell joins its cell and managed element.
    assert run_user_sql(lake, "SELECT count(*) FROM pm_counters p JOIN cells c USING (cell_id) "
                              "WHERE p.managed_element = c.managed_element").fetchone()[0] == 3 * 2


@pytest.mark.external
def test_a_planning_tool_inventory_keys_real_pm_cells_and_feeds_site_and_city_lookups(tmp_path, kpis):
    lake = Lake(tmp_path / "lake")
    pm = external(*ERICSSON)
    first = ingest(lake, [pm]).files[0]  # before the inventory: derived keys, and how to re-key
    assert "6 of 6 cells are not in a cells inventory (none is loaded)" in first.message
    [inv] = ingest(lake, [INVENTORY / "example_cells.csv"], mapping=INVENTORY / "mapping.yaml",
                   as_of=date(2022, 4, 18)).files
    assert (inv.table, inv.rows_accepted, inv.rows_quarantined) == ("cells", 6, 0)
    again = ingest(lake, [pm], reload=True).files[0]
    assert again.status == "replaced" and "not in" not in again.message
    t0 = datetime(2022, 4, 18, 19, 0, tzinfo=UTC)
    by_cell = {cell: v["cell_availability_pct"] for (_, cell), v in kpis(lake).items()}
    assert by_cell == {"NT001-L-1": 0.0, "NT001-L-2": 0.0, "NT001-N-1": 0.0, "NT001-N-2": 0.0,
                       "ST002-N-31": 100.0, "ST002-N-32": 100.0}
    # Locked cells (900 s down of 900) at NT001, cells up at ST002; one ROP each.
    assert {site: v["cell_availability_pct"] for (_, site), v in kpis(lake, ("site_id",)).items()} == \
        {"NT001": 100 * (1 - 4 * 900 / (4 * 900)), "ST002": 100.0}
    assert {city: v["cell_availability_pct"] for (_, city), v in kpis(lake, ("city",), "day").items()} == \
        {"Northtown": 0.0, "Southport": 100.0}
    grids = {grid for (_, grid) in kpis(lake, ("grid",), "hour")}
    assert len(grids) == 2 and None not in grids
    assert run_user_sql(lake, "SELECT count(*) FROM pm_counters").fetchone()[0] == again.rows_accepted
    assert kpis(lake)[(t0, "ST002-N-31")]["rrc_connected_users_mean"] == 0.0


# --- an empty measObjLdn is the measured entity itself ---------------------------------------------

@pytest.mark.parametrize("fast", [True, False], ids=["fast path", "lxml"])
def test_empty_measobjldn_loads_against_the_managed_element(tmp_path, fast):
    path = tmp_path / "E.xml"
    path.write_text(meas_file(("seli1", info((' measObjLdn=""', "5 4"), (' measObjLdn="  "', "6 5"))),
                              ("SubNetwork=S,ManagedElement=me2", info((' measObjLdn=""', "7 6"))),
                              (None, info((' measObjLdn=""', "8 7"), ("", "9 8")))))
    pm_xml.FAST_PATH = fast
    try:
        [part] = read_pm_xml_parts(path)
    finally:
        pm_xml.FAST_PATH = True
    got = [(r["object_dn"], r["managed_element"], r["cell_id"], r["counter_name"], r["value"])
           for r in part.data.to_pylist()]
    # A bare localDn is a ManagedElement name; a DN is taken as written.
    assert got == [("ManagedElement=seli1", "seli1", None, "RRC.ConnEstabAtt", 5.0),
                   ("ManagedElement=seli1", "seli1", None, "RRC.ConnEstabSucc", 4.0),
                   ("SubNetwork=S,ManagedElement=me2", "me2", None, "RRC.ConnEstabAtt", 7.0),
                   ("SubNetwork=S,ManagedElement=me2", "me2", None, "RRC.ConnEstabSucc", 6.0)]
    empty = "measValue in measInfo (no measInfoId) has an empty measObjLdn and its measData names no managed " \
            "element (managedElement or measEntity localDn)"
    missing = "measValue in measInfo (no measInfoId) has no measObjLdn"
    where = "measInfo (no measInfoId)"
    # A blank measObjLdn is the element too, so the second measValue measures it again: not added.
    again = [Reject(2, f"repeats {c} of ManagedElement=seli1 for the 900 s period from 2026-03-01T09:00:00Z, which "
                       "record 1 of this file gave first; the first is kept", "ManagedElement=seli1", "counter_name", c)
             for c in ("RRC.ConnEstabAtt", "RRC.ConnEstabSucc")]
    assert part.rejects == [*again, Reject(4, empty, where, "measObjLdn", ""), Reject(4, empty, where, "measObjLdn", ""),
                            Reject(5, missing, where, "measObjLdn"), Reject(5, missing, where, "measObjLdn")]


def test_an_ldn_relative_to_its_managed_element_is_read_below_it(tmp_path):
    """TS 32.435's own example writes measObjLdn below the managedElement's localDn; the MeContext
    names the node."""
    path = tmp_path / "R.xml"
    path.write_text(meas_file(("SubNetwork=N,MeContext=M,ManagedElement=RNC-1",
                               info((ldn("RncFunction=RF-1,UtranCell=Gbg-997"), "1 1")))))
    [part] = read_pm_xml_parts(path)
    row = part.data.to_pylist()[0]
    assert (row["object_dn"], row["managed_element"], row["cell_id"]) == (
        "SubNetwork=N,MeContext=M,ManagedElement=RNC-1,RncFunction=RF-1,UtranCell=Gbg-997", "M", "Gbg-997")
    lake = Lake(tmp_path / "lake")
    ingest(lake, [path])
    assert set(cells(lake)) == {"M/UtranCell=Gbg-997"}


# --- nodes named above the measObjLdn: dnPrefix, MeContext (TS 32.435) -----------------------------

def ericsson_file(dn_prefix: str, *measdata: tuple[str, str, str]) -> str:
    """An Ericsson-style file: per measData (localDn, measObjLdn, "att succ") of pmRrcConnEstab*."""
    body = "".join(
        f'<measData><managedElement localDn="{me}"/><measInfo measInfoId="PM=1,PmGroup=EUtranCellFDD">'
        '<granPeriod duration="PT900S" endTime="2024-01-01T00:15:00Z"/><measType p="1">pmRrcConnEstabAtt</measType>'
        f'<measType p="2">pmRrcConnEstabSucc</measType><measValue measObjLdn="{obj}"><r p="1">{r.split()[0]}</r>'
        f'<r p="2">{r.split()[1]}</r></measValue></measInfo></measData>' for me, obj, r in measdata)
    prefix = f' dnPrefix="{dn_prefix}"' if dn_prefix else ""
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n<measCollecFile xmlns="{NS}"><fileHeader '
            f'fileFormatVersion="32.435 V10.0" vendorName="Ericsson AB"{prefix}><fileSender elementType="RadioNode"/>'
            f'<measCollec beginTime="2024-01-01T00:00:00Z"/></fileHeader>{body}</measCollecFile>\n')


def rrc_success(lake: Lake) -> dict[str, float]:
    rows = run_user_sql(lake, "SELECT cell_id, 100 * sum(value) FILTER (counter_name = 'RRC.ConnEstabSucc') / "
                              "sum(value) FILTER (counter_name = 'RRC.ConnEstabAtt') FROM pm_counters GROUP BY 1")
    return dict(rows.fetchall())


def test_ericsson_mecontext_nodes_each_with_managed_element_1_stay_two_nodes(tmp_path):
    """ENM names the node in MeContext and every node's ManagedElement 1: two nodes, each with
    EUtranCellFDD=1 at 99 % and 1 %, must not become one cell at 50 %."""
    cell = "ManagedElement=1,ENodeBFunction=1,EUtranCellFDD=1"
    path = tmp_path / "A.xml"
    path.write_text(ericsson_file("SubNetwork=ONRM_ROOT_MO", ("SubNetwork=ONRM_ROOT_MO,MeContext=NodeA", cell, "100 99"),
                                  ("SubNetwork=ONRM_ROOT_MO,MeContext=NodeB", cell, "100 1")))
    lake = Lake(tmp_path / "lake")
    [result] = ingest(lake, [path]).files
    assert result.rows_quarantined == 0
    assert rrc_success(lake) == {"NodeA/EUtranCellFDD=1": 99.0, "NodeB/EUtranCellFDD=1": 1.0}
    dns = sorted(r[0] for r in run_user_sql(lake, "SELECT DISTINCT object_dn, managed_element FROM pm_counters")
                 .fetchall())
    assert dns == [f"SubNetwork=ONRM_ROOT_MO,MeContext=Node{n},{cell}" for n in "AB"]


def test_a_dnprefix_that_names_the_node_is_above_localdn_managed_element_1(tmp_path):
    """ENM's per-node files: dnPrefix ends in MeContext=<node>, localDn is ManagedElement=1."""
    cell = "ManagedElement=1,ENodeBFunction=1,EUtranCellFDD=1"
    for node, succ in (("NodeA", 99), ("NodeB", 1)):
        (tmp_path / f"{node}.xml").write_text(ericsson_file(f"SubNetwork=ONRM_ROOT_MO,MeContext={node}",
                                                            ("ManagedElement=1", cell, f"100 {succ}")))
    lake = Lake(tmp_path / "lake")
    files = ingest(lake, [tmp_path / "NodeA.xml", tmp_path / "NodeB.xml"]).files
    assert [f.rows_quarantined for f in files] == [0, 0]
    assert rrc_success(lake) == {"NodeA/EUtranCellFDD=1": 99.0, "NodeB/EUtranCellFDD=1": 1.0}
    # A dnPrefix naming no node (the OSS's own, SubNetwork=G3 in O-RAN's files) stays out of the DN.
    [part] = read_pm_xml_parts(_write(tmp_path / "G3.xml", ericsson_file(
        "SubNetwork=G3", ("me7", "ManagedElement=me7,ENodeBFunction=1,EUtranCellFDD=2", "5 4"))))
    assert set(part.data["object_dn"].to_pylist()) == {"ManagedElement=me7,ENodeBFunction=1,EUtranCellFDD=2"}
    assert set(part.data["managed_element"].to_pylist()) == {"me7"}


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


# --- escaped commas in RDN values (TS 32.300: "\,") ---------------------------------------------------

def test_cells_whose_names_hold_an_escaped_comma_stay_apart_and_keep_their_class(tmp_path):
    path = tmp_path / "C.xml"
    path.write_text(ericsson_file("", ("me1", "ManagedElement=me1,ENodeBFunction=1,EUtranCellFDD=a\\,b", "100 90"),
                                  ("me1", "ManagedElement=me1,ENodeBFunction=1,EUtranCellFDD=a\\,c", "50 10")))
    lake = Lake(tmp_path / "lake")
    [result] = ingest(lake, [path]).files
    # The class is recognised, so the Ericsson dictionary's EUtranCellFDD entries map the counters.
    assert result.unmapped == ()
    assert rrc_success(lake) == {"me1/EUtranCellFDD=a\\,b": 90.0, "me1/EUtranCellFDD=a\\,c": 20.0}
    assert cell_id_of("ManagedElement=me1,EUtranCellFDD=x\\,EUtranCellTDD=y") == "x\\,EUtranCellTDD=y"
    assert managed_elements(pa.array(["Site=a\\,ManagedElement=b,ManagedElement=c"])).to_pylist() == ["c"]


# --- cell keys that must not merge two cells ----------------------------------------------------------

def test_two_du_functions_each_with_nrcelldu_1_stay_two_cells(tmp_path, kpis):
    down = ('<measInfo><granPeriod duration="PT900S" endTime="2026-03-01T10:15:00+01:00"/>'
            "<measTypes>RRU.CellUnavailableTime</measTypes>"
            '<measValue measObjLdn="ManagedElement=me1,GNBDUFunction=1,NRCellDU=1"><measResults>0</measResults>'
            '</measValue><measValue measObjLdn="ManagedElement=me1,GNBDUFunction=2,NRCellDU=1"><measResults>900'
            "</measResults></measValue></measInfo>")
    path = tmp_path / "D.xml"
    path.write_text(meas_file(("me1", down)))
    lake = Lake(tmp_path / "lake")
    ingest(lake, [path])
    # Not one cell at 50 %: the first DU's cell keeps the usual key, the second DU's names its DU.
    assert {cell: v["cell_availability_pct"] for (_, cell), v in kpis(lake).items()} == {
        "me1/NRCell=1": 100.0, "me1/GNB=2/NRCell=1": 0.0}


def test_an_fdd_and_a_tdd_cell_of_one_node_do_not_share_one_inventory_cell(tmp_path):
    """The inventory says me1 has a 4G cell 1; the node reports EUtranCellFDD=1 and EUtranCellTDD=1.
    Neither is keyed to it (which one is meant is not known) until the inventory says which."""
    pm = tmp_path / "pm" / "acme" / "A.xml"
    pm.parent.mkdir(parents=True)
    pm.write_text(meas_file(("me1", info((ldn("ManagedElement=me1,ENBFunction=1,EUtranCellFDD=1"), "100 90"),
                                         (ldn("ManagedElement=me1,ENBFunction=1,EUtranCellTDD=1"), "100 10"),
                                         (ldn("ManagedElement=me1,GNBCUCPFunction=1,NRCellCU=1"), "100 70"),
                                         (ldn("ManagedElement=me2,ENBFunction=1,EUtranCellFDD=1"), "100 50")))))
    inventory = tmp_path / "cells.csv"
    inventory.write_text("cell_id,site_id,managed_element,local_cell_id,technology,vendor\n"
                         "CELL-A,S1,me1,1,4G,acme\nCELL-B,S2,me2,1,4G,acme\nCELL-C,S1,me1,1,5G,acme\n")
    lake = Lake(tmp_path / "lake")
    files = ingest(lake, [inventory, pm]).files
    assert cells(lake) == {"me1/EUtranCellFDD=1": 100.0, "me1/EUtranCellTDD=1": 100.0, "CELL-B": 100.0,
                           "CELL-C": 100.0}
    assert ("PM cells me1/EUtranCellFDD=1, me1/EUtranCellTDD=1 all match inventory cell CELL-A by managed_element "
            "and local_cell_id, so none is keyed to it; write its local_cell_id as one of EUtranCellFDD=1, "
            "EUtranCellTDD=1 to say which it is") in files[1].message
    # Said so in the inventory, the TDD cell is CELL-A and the FDD cell keeps its own key.
    inventory.write_text(inventory.read_text().replace("CELL-A,S1,me1,1,", "CELL-A,S1,me1,EUtranCellTDD=1,"))
    ingest(lake, [inventory], as_of=date(2030, 1, 1))
    ingest(lake, [pm], reload=True)
    assert cells(lake) == {"me1/EUtranCellFDD=1": 100.0, "CELL-A": 100.0, "CELL-B": 100.0, "CELL-C": 100.0}
    assert run_user_sql(lake, "SELECT value FROM pm_counters WHERE cell_id = 'CELL-A' AND "
                              "counter_name = 'RRC.ConnEstabSucc'").fetchall() == [(10.0,)]


# --- the worked workspace dictionary ----------------------------------------------------------------

def test_the_example_workspace_dictionary_maps_the_simulated_export_like_beta(tmp_path, sim_dir):
    gamma = load_dictionary(PROJECT / "examples" / "vendor-dictionary" / "gamma.yaml")
    export = next((sim_dir / "pm" / "beta").glob("beta_pm_*.csv"))  # an LTE cells' export
    mine = read_vendor_csv(export, gamma)
    beta = read_vendor_csv(export, "beta")
    key = lambda r: (r["object_dn"], r["period_start"], r["counter_name"])  # noqa: E731
    want = {key(r): r["value"] for r in beta.to_pylist()}
    got = {key(r): r["value"] for r in mine.to_pylist()}
    assert set(got) == set(want) and len(got) == beta.num_rows
    assert all(got[k] == pytest.approx(v, rel=1e-12) if v is not None else got[k] is None for k, v in want.items())
    assert set(mine["vendor"].to_pylist()) == {"gamma"}
    # Through ingest, as an operator would run it: pm/gamma/ and the workspace dictionaries folder.
    landing = tmp_path / "pm" / "gamma"
    landing.mkdir(parents=True)
    shutil.copy(export, landing / export.name)
    own = tmp_path / "dictionaries"
    own.mkdir()
    shutil.copy(PROJECT / "examples" / "vendor-dictionary" / "gamma.yaml", own / "gamma.yaml")
    [result] = ingest(Lake(tmp_path / "lake"), [landing], dictionaries=own).files
    assert result.dictionary == "gamma (workspace; folder pm/gamma/)" and result.rows_accepted == beta.num_rows
    assert result.unmapped == ()
