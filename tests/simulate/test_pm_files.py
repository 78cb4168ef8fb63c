"""Vendor PM files from the simulator: 32.435 XML for alpha, daily CSV for beta, each cell under its
technology's counter names (TS 32.425 on 4G, TS 28.552 on 5G), read back exactly."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from lxml import etree

from opencem.schema.counters import CANONICAL_COUNTERS
from opencem.ingest.pm_csv import read_vendor_csv
from opencem.ingest.pm_xml import read_meascollec
from opencem.simulate.pm_files import COUNTERS_BY_TECHNOLOGY, MEASUREMENTS, XML_NS, format_values, write_pm_files

NS = {"m": XML_NS}
T0_MS = 1795478400000 - 2 * 900_000  # 2026-11-23 23:30 UTC: three periods cross midnight
CELLS = [  # cell_id, site_id, managed_element, technology, vendor
    ("C000001-1-4G", "S00001", "ME-S00001", "4G", "alpha"),
    ("C000001-2-5G", "S00001", "ME-S00001", "5G", "alpha"),
    ("C000002-1-4G", "S00002", "ME-S00002", "4G", "alpha"),
    ("C000003-1-4G", "S00003", "ME-S00003", "4G", "beta"),
    ("C000003-2-5G", "S00003", "ME-S00003", "5G", "beta"),
]


def wide_counters(n_periods: int = 3, seed: int = 5) -> pa.Table:
    """A small wide measurement table like the simulator's, with one cell down in period 1."""
    rng = np.random.default_rng(seed)
    n = len(CELLS) * n_periods
    cols = {name: np.repeat([c[i] for c in CELLS], n_periods)
            for i, name in enumerate(["cell_id", "site_id", "managed_element", "technology", "vendor"])}
    cols["period_start"] = pa.array(np.tile(T0_MS + np.arange(n_periods) * 900_000, len(CELLS)),
                                    pa.timestamp("ms", tz="UTC"))
    cols["granularity_s"] = pa.array(np.full(n, 900), pa.int32())
    for name, (lte, _) in MEASUREMENTS.items():
        info = CANONICAL_COUNTERS[lte]
        cols[name] = rng.poisson(400, n).astype(float) if info.kind == "count" else np.round(rng.uniform(0, 99, n), 3)
    cols["thp_volume_dl_kbit"] = np.round(rng.uniform(0, 5e6, n), 3)
    cols["thp_time_dl_ms"] = np.round(rng.uniform(0, 9e5, n))
    cols["unavailable_s"] = np.zeros(n)
    down = 1  # C000001-1-4G, second period: outage, no traffic
    for name in MEASUREMENTS:
        cols[name][down] = 0.0
    cols["unavailable_s"][down] = 900.0
    cols["unavailable_s"][n - 1] = 37.0  # minutes that do not divide evenly
    cols["rrc_setup_attempts"][n - 2] = 1001.0
    return pa.table(cols)


@pytest.fixture(scope="module")
def written(tmp_path_factory) -> tuple[pa.Table, list[Path]]:
    table = wide_counters()
    return table, write_pm_files(table, tmp_path_factory.mktemp("pm"))


def test_files_are_named_per_period_and_per_day(written):
    _, paths = written
    names = [(p.parent.name, p.name) for p in paths]
    assert names == [
        ("alpha", "B20261123.2330+0000-2345+0000_OSS-alpha.xml"),
        ("alpha", "B20261123.2345+0000-0000+0000_OSS-alpha.xml"),
        ("alpha", "B20261124.0000+0000-0015+0000_OSS-alpha.xml"),
        ("beta", "beta_pm_20261123.csv"),
        ("beta", "beta_pm_20261124.csv"),
        ("beta", "beta_nr_pm_20261123.csv"),
        ("beta", "beta_nr_pm_20261124.csv"),
    ]


def test_alpha_xml_follows_ts_32435(written):
    _, paths = written
    root = etree.parse(str(paths[0])).getroot()
    assert root.tag == f"{{{XML_NS}}}measCollecFile"
    header = root.find("m:fileHeader", NS)
    assert header.get("fileFormatVersion") == "32.435 V10.0" and header.get("vendorName") == "alpha"
    assert header.find("m:fileSender", NS).get("localDn") == "OSS-alpha"
    assert header.find("m:measCollec", NS).get("beginTime") == "2026-11-23T23:30:00+00:00"
    assert root.find("m:fileFooter/m:measCollec", NS).get("endTime") == "2026-11-23T23:45:00+00:00"
    data = root.findall("m:measData", NS)
    assert [d.find("m:managedElement", NS).get("localDn") for d in data] == ["ME-S00001", "ME-S00002"]
    infos = data[0].findall("m:measInfo", NS)
    assert [i.get("measInfoId") for i in infos] == ["EUtranCellFDD", "NRCellDU"]
    gran = infos[0].find("m:granPeriod", NS)
    assert (gran.get("duration"), gran.get("endTime")) == ("PT900S", "2026-11-23T23:45:00+00:00")
    assert infos[0].find("m:repPeriod", NS).get("duration") == "PT900S"
    types = infos[0].findall("m:measType", NS)
    assert [(t.get("p"), t.text) for t in types[:2]] == [("1", "RRC.ConnEstabAtt"), ("2", "RRC.ConnEstabSucc")]
    # Each cell class its own measTypes: TS 32.425 on EUtranCellFDD, TS 28.552 on NRCellDU.
    lte, nr = ([t.text for t in info.findall("m:measType", NS)] for info in infos)
    assert lte == list(COUNTERS_BY_TECHNOLOGY["4G"]) and nr == list(COUNTERS_BY_TECHNOLOGY["5G"]) and len(lte) == 14
    assert {"QF.EstabAttNbr", "QF.RelActNbr", "MM.HoExeIntraFreqReq"} <= set(nr)
    assert not any(name.startswith(("ERAB.", "HO.")) for name in nr)
    assert not any(name.startswith(("QF.", "MM.")) for name in lte)
    ldns = [v.get("measObjLdn") for i in infos for v in i.findall("m:measValue", NS)]
    assert ldns == ["ManagedElement=ME-S00001,ENBFunction=1,EUtranCellFDD=C000001-1-4G",
                    "ManagedElement=ME-S00001,GNBDUFunction=1,NRCellDU=C000001-2-5G"]


def test_alpha_values_are_written_without_trailing_zero(written):
    table, paths = written
    text = paths[1].read_text()
    # C000001-1-4G is down in the second period: zero traffic, 900 s unavailable.
    line = next(x for x in text.splitlines() if "EUtranCellFDD=C000001-1-4G" in x)
    assert '<r p="1">0</r>' in line and '<r p="14">900</r>' in line
    assert ".0<" not in text
    first = table.filter(pc.equal(table["cell_id"], "C000001-1-4G"))["rrc_setup_attempts"][0].as_py()
    assert f'<r p="1">{int(first)}</r>' in paths[0].read_text()


def test_beta_csv_speaks_the_vendor_dialect(written):
    table, paths = written
    rows = list(csv.DictReader(paths[3].open()))
    assert list(rows[0])[:4] == ["Start Time", "Period(min)", "NE Name", "Cell Name"]
    assert {"RRC_ATT_MO_DATA", "DL_THP_VOL_BYTES", "CELL_UNAVAIL_MIN", "DL_PRB_USAGE_RATIO"} <= set(rows[0])
    assert rows[0]["Start Time"] == "2026-11-23 23:30:00" and rows[0]["Period(min)"] == "15"
    beta = table.filter(pc.equal(table["vendor"], "beta")).to_pylist()
    src = next(r for r in beta if r["cell_id"] == rows[0]["Cell Name"]
               and r["period_start"].strftime("%Y-%m-%d %H:%M:%S") == rows[0]["Start Time"])
    causes = [float(rows[0][c]) for c in ("RRC_ATT_MO_DATA", "RRC_ATT_MO_SIG", "RRC_ATT_MT", "RRC_ATT_EMERGENCY")]
    assert sum(causes) == src["rrc_setup_attempts"] and min(causes) >= 0
    assert float(rows[0]["DL_THP_VOL_BYTES"]) == src["thp_volume_dl_kbit"] * 125
    assert float(rows[0]["DL_PRB_USAGE_RATIO"]) == pytest.approx(src["prb_usage_dl_pct"] / 100, rel=1e-12)
    assert float(rows[0]["ERAB_REL_ABNORM_ACTIVE"]) == src["bearer_drops_active"]
    # LTE and NR cells are exported apart, each file with its class's columns only.
    assert {r["Cell Name"] for r in rows} == {"C000003-1-4G"} and "QOSFLOW_SETUP_ATT" not in rows[0]
    nr = list(csv.DictReader(paths[5].open()))
    assert {r["Cell Name"] for r in nr} == {"C000003-2-5G"}
    assert {"QOSFLOW_SETUP_ATT", "QOSFLOW_REL_ABNORM_ACTIVE", "NR_HO_INTRAFREQ_EXEC_ATT"} <= set(nr[0])
    assert not any(c.startswith(("ERAB_", "HO_OUT")) for c in nr[0])
    last = list(csv.DictReader(paths[6].open()))[-1]
    assert last["Cell Name"] == "C000003-2-5G" and last["CELL_UNAVAIL_MIN"] == "0.616666667"


def test_round_trip_gives_back_every_canonical_value(written):
    """Both vendors' files, read through their dictionaries, give the simulator's values under
    each cell's technology's names: no E-RAB or LTE handover counter on a 5G cell, no QoS flow
    or MM counter on a 4G cell."""
    table, paths = written
    back = pa.concat_tables([read_meascollec(p, "alpha") if p.suffix == ".xml" else read_vendor_csv(p, "beta")
                             for p in paths])
    expected = {}
    for row in table.to_pylist():
        for measurement, name in zip(MEASUREMENTS, COUNTERS_BY_TECHNOLOGY[row["technology"]]):
            expected[(row["cell_id"], row["period_start"], name)] = (row[measurement], row["vendor"])
    got = {(r["cell_id"], r["period_start"], r["counter_name"]): (r["value"], r["vendor"], r["granularity_s"])
           for r in back.to_pylist()}
    assert back.num_rows == len(expected) == len(got) == table.num_rows * 14
    assert set(got) == set(expected)
    for key, (value, vendor) in expected.items():
        v, got_vendor, gran = got[key]
        assert (got_vendor, gran) == (vendor, 900)
        if vendor == "alpha" or CANONICAL_COUNTERS[key[2]].kind == "count":
            assert v == value, key
        else:
            assert v == pytest.approx(value, rel=1e-6, abs=1e-9), key
    assert got[("C000003-2-5G", table["period_start"][-1].as_py(), "RRU.CellUnavailableTime")][0] == \
        pytest.approx(37.0, rel=1e-6)
    alpha_dn = back.filter(pc.equal(back["cell_id"], "C000001-2-5G"))["object_dn"][0].as_py()
    beta_dn = back.filter(pc.equal(back["cell_id"], "C000003-1-4G"))["object_dn"][0].as_py()
    assert alpha_dn == "ManagedElement=ME-S00001,GNBDUFunction=1,NRCellDU=C000001-2-5G"
    assert beta_dn == "NE=ME-S00003,Cell=C000003-1-4G"


def test_ingest_loads_every_file_into_the_lake_under_each_technologys_names(written, tmp_path):
    """Through ``opencem ingest`` as an operator runs it (pm/<vendor>/ folders, bundled
    dictionaries), the lake holds the simulator's values: 14 counters per cell and period, the
    TS 28.552 ones on 5G cells, the TS 32.425 ones on 4G cells, none of the other's."""
    from opencem.engines.duckdb import connect
    from opencem.ingest.load import ingest
    from opencem.lake import Lake

    table, paths = written
    lake = Lake(tmp_path / "lake")
    report = ingest(lake, [paths[0].parents[2]])
    assert report.count("rejected") == 0 and len(report.files) == len(paths)
    rows = connect(lake).execute("SELECT object_dn, period_start, counter_name, value FROM pm_counters").fetchall()
    got = {(dn.rsplit("=", 1)[-1], t, name): v for dn, t, name, v in rows}
    want = {(r["cell_id"], r["period_start"], name): r[measurement] for r in table.to_pylist()
            for measurement, name in zip(MEASUREMENTS, COUNTERS_BY_TECHNOLOGY[r["technology"]])}
    assert len(rows) == len(got) == table.num_rows * 14 and set(got) == set(want)
    assert all(got[k] == pytest.approx(v, rel=1e-6, abs=1e-9) for k, v in want.items())
    nr_names = {name for (cell, _, name) in got if cell.endswith("-5G")}
    lte_names = {name for (cell, _, name) in got if cell.endswith("-4G")}
    assert nr_names == set(COUNTERS_BY_TECHNOLOGY["5G"]) and lte_names == set(COUNTERS_BY_TECHNOLOGY["4G"])
    assert not {n for n in nr_names if n.startswith("ERAB.")} and not {n for n in lte_names if n.startswith("QF.")}


def test_format_values_keeps_integers_plain_and_others_exact():
    text = format_values(pa.array([234.0, 0.1, 1e15, 123456789012.0, -0.0, None, 1 / 3, 1e300]))
    assert text.to_pylist() == ["234", "0.1", "1000000000000000", "123456789012", "0", "NIL",
                                "0.3333333333333333", "1e+300"]


def test_bad_tables_are_refused_with_the_reason(tmp_path):
    table = wide_counters(1)
    with pytest.raises(ValueError, match="lacks column.*ho_successes"):
        write_pm_files(table.drop_columns(["ho_successes"]), tmp_path)
    gamma = table.set_column(table.column_names.index("vendor"), "vendor",
                             pa.array(["gamma"] * table.num_rows))
    with pytest.raises(ValueError, match="No PM file format for vendor.*gamma"):
        write_pm_files(gamma, tmp_path)
