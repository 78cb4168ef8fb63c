"""Vendor PM files written from the simulator's wide counter table, in each vendor's own format.

Each cell reports the simulator's measurements (:data:`MEASUREMENTS`) under its technology's
counter names: TS 32.425 on 4G cells, TS 28.552 on 5G cells. Vendor ``alpha`` emits 3GPP TS
32.435 measCollec XML (one file per granularity period, one ``measData`` per managed element,
one ``measInfo`` per cell class with that class's measTypes); vendor ``beta`` emits daily wide
CSV exports per cell class (LTE and NR cells apart, as an OSS exports one object class a file)
with its own counter names and units. Ingestion reads them back through the vendor
dictionaries, so the files exercise the same mapping a real operator's OSS feed needs.

Strings are built a column at a time with Arrow (``binary_join_element_wise``) and each file is
written straight from the Arrow string buffer, so a few million values take seconds.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

# What the simulated network measures per cell and period (network_pm.pm_counters' columns), in
# file order, and the counter a 4G and a 5G cell reports each as. TS 28.552 keeps the LTE names
# where the procedure is the same; ERAB.RelNbr, QF.RelNbr and QF.RelAbnormalGnbAct are
# opencem's names where no 3GPP counter was confirmed (schema/counters.py). The catalogue has more
# counters that only real vendors' files carry.
MEASUREMENTS: dict[str, tuple[str, str]] = {
    "rrc_setup_attempts": ("RRC.ConnEstabAtt", "RRC.ConnEstabAtt"),
    "rrc_setup_successes": ("RRC.ConnEstabSucc", "RRC.ConnEstabSucc"),
    "bearer_setup_attempts": ("ERAB.EstabInitAttNbr", "QF.EstabAttNbr"),
    "bearer_setup_successes": ("ERAB.EstabInitSuccNbr", "QF.EstabSuccNbr"),
    "bearer_releases": ("ERAB.RelNbr", "QF.RelNbr"),
    "bearer_drops_active": ("ERAB.RelActNbr", "QF.RelActNbr"),
    "bearer_drops_ran_active": ("ERAB.RelAbnormalEnbAct", "QF.RelAbnormalGnbAct"),
    "thp_volume_dl_kbit": ("DRB.UEThpVolDl", "DRB.UEThpVolDl"),
    "thp_time_dl_ms": ("DRB.UEThpTimeDl", "DRB.UEThpTimeDl"),
    "prb_usage_dl_pct": ("RRU.PrbTotDl", "RRU.PrbTotDl"),
    "rrc_connected_mean": ("RRC.ConnMean", "RRC.ConnMean"),
    # One NR carrier: every handover between the twin's 5G cells is intra-frequency.
    "ho_attempts": ("HO.ExeAtt", "MM.HoExeIntraFreqReq"),
    "ho_successes": ("HO.ExeSucc", "MM.HoExeIntraFreqSucc"),
    "unavailable_s": ("RRU.CellUnavailableTime", "RRU.CellUnavailableTime"),
}
TECHNOLOGIES = ("4G", "5G")
COUNTERS_BY_TECHNOLOGY = {tech: tuple(names[i] for names in MEASUREMENTS.values())
                          for i, tech in enumerate(TECHNOLOGIES)}
# Every counter the simulated network reports, either technology.
COUNTERS = tuple(dict.fromkeys(c for tech in TECHNOLOGIES for c in COUNTERS_BY_TECHNOLOGY[tech]))

XML_NS = "http://www.3gpp.org/ftp/specs/archive/32_series/32.435#measCollec"
KEY_COLUMNS = ("cell_id", "site_id", "managed_element", "technology", "vendor", "period_start",
               "granularity_s")
# technology -> (measInfoId / cell class, managed function RDN)
CELL_CLASS = {"4G": ("EUtranCellFDD", "ENBFunction"), "5G": ("NRCellDU", "GNBDUFunction")}

# Beta's dialect: canonical counter -> (vendor column, vendor value = canonical * mul / div).
BETA_RENAMES = {
    "RRC.ConnEstabSucc": ("RRC_SUCC_TOTAL", 1, 1),
    "ERAB.EstabInitAttNbr": ("ERAB_INIT_SETUP_ATT", 1, 1),
    "ERAB.EstabInitSuccNbr": ("ERAB_INIT_SETUP_SUCC", 1, 1),
    "ERAB.RelNbr": ("ERAB_REL_TOTAL", 1, 1),
    "ERAB.RelActNbr": ("ERAB_REL_ABNORM_ACTIVE", 1, 1),
    "ERAB.RelAbnormalEnbAct": ("ERAB_REL_ABNORM_ENB_ACTIVE", 1, 1),
    "QF.EstabAttNbr": ("QOSFLOW_SETUP_ATT", 1, 1),
    "QF.EstabSuccNbr": ("QOSFLOW_SETUP_SUCC", 1, 1),
    "QF.RelNbr": ("QOSFLOW_REL_TOTAL", 1, 1),
    "QF.RelActNbr": ("QOSFLOW_REL_ABNORM_ACTIVE", 1, 1),
    "QF.RelAbnormalGnbAct": ("QOSFLOW_REL_ABNORM_GNB_ACTIVE", 1, 1),
    "DRB.UEThpVolDl": ("DL_THP_VOL_BYTES", 125, 1),      # kbit -> bytes
    "DRB.UEThpTimeDl": ("DL_THP_TIME_S", 1, 1000),       # ms -> s
    "RRU.PrbTotDl": ("DL_PRB_USAGE_RATIO", 1, 100),      # % -> ratio 0-1
    "RRC.ConnMean": ("RRC_CONN_USERS_AVG", 1, 1),
    "HO.ExeAtt": ("HO_OUT_EXEC_ATT", 1, 1),
    "HO.ExeSucc": ("HO_OUT_EXEC_SUCC", 1, 1),
    "MM.HoExeIntraFreqReq": ("NR_HO_INTRAFREQ_EXEC_ATT", 1, 1),
    "MM.HoExeIntraFreqSucc": ("NR_HO_INTRAFREQ_EXEC_SUCC", 1, 1),
    "RRU.CellUnavailableTime": ("CELL_UNAVAIL_MIN", 1, 60),  # s -> min
}
# Beta's daily export per cell class: (file name prefix) by technology.
BETA_FILES = {"4G": "beta_pm", "5G": "beta_nr_pm"}
# RRC attempts split by cause; MO data takes the remainder so the four sum exactly.
BETA_RRC_CAUSE_SHARES = {"RRC_ATT_MO_SIG": 0.25, "RRC_ATT_MT": 0.15, "RRC_ATT_EMERGENCY": 0.002}


def write_pm_files(counters: pa.Table, out_dir: Path) -> list[Path]:
    """Write the wide measurement table as vendor PM files under ``out_dir/pm/<vendor>/``.

    ``counters`` has the key columns (cell_id, site_id, managed_element, technology, vendor,
    period_start, granularity_s) and one float64 column per measurement of
    :data:`MEASUREMENTS`, in the canonical units of the counters it is reported as. Returns the
    written paths: alpha XML per period, then beta CSV per UTC day and cell class (4G, then 5G).
    """
    missing = [c for c in (*KEY_COLUMNS, *MEASUREMENTS) if c not in counters.column_names]
    if missing:
        raise ValueError(f"The counter table lacks column(s) {', '.join(missing)}.")
    vendors = set(pc.unique(counters["vendor"]).to_pylist())
    unknown = vendors - {"alpha", "beta"}
    if unknown:
        raise ValueError(f"No PM file format for vendor(s) {', '.join(sorted(map(str, unknown)))}.")
    is_alpha = pc.equal(counters["vendor"], "alpha")
    paths = _write_alpha(counters.filter(is_alpha), Path(out_dir) / "pm" / "alpha")
    paths += _write_beta(counters.filter(pc.invert(is_alpha)), Path(out_dir) / "pm" / "beta")
    return paths


def format_values(values: pa.ChunkedArray | pa.Array, null: str = "NIL") -> pa.Array:
    """Numbers as text: integral values without '.0' or exponent, others shortest round-trip."""
    v = pa.chunked_array([values]) if isinstance(values, pa.Array) else values
    v = v.combine_chunks() if v.num_chunks else pa.array([], pa.float64())
    arr = v.to_numpy(zero_copy_only=False)
    # Below 2**53 every integral double is exactly an int64.
    integral = np.isfinite(arr) & (np.floor(arr) == arr) & (np.abs(arr) < 2.0**53)
    as_int = pc.cast(pa.array(np.where(integral, arr, 0).astype(np.int64)), pa.string())
    text = pc.if_else(pa.array(integral), as_int, pc.cast(v, pa.string()))
    return pc.fill_null(text, null)


def _write_alpha(table: pa.Table, out_dir: Path) -> list[Path]:
    if table.num_rows == 0:
        return []
    out_dir.mkdir(parents=True, exist_ok=True)
    table = table.sort_by([("period_start", "ascending"), ("granularity_s", "ascending"),
                           ("managed_element", "ascending"), ("technology", "ascending"),
                           ("cell_id", "ascending")])
    start_ms = table["period_start"].cast(pa.int64()).to_numpy()
    gran_s = table["granularity_s"].cast(pa.int64()).to_numpy()
    # Rows of one file are contiguous after the sort.
    change = np.flatnonzero((start_ms[1:] != start_ms[:-1]) | (gran_s[1:] != gran_s[:-1])) + 1
    bounds = np.concatenate([[0], change, [table.num_rows]])
    paths = []
    for a, b in zip(bounds[:-1], bounds[1:]):
        begin = datetime.fromtimestamp(start_ms[a] / 1000, UTC)
        end = begin + timedelta(seconds=int(gran_s[a]))
        part = table.slice(a, b - a)
        n_me = len(pc.unique(part["managed_element"]))
        # TS 32.432 file name: A = one NE, B = several NEs, single granularity period.
        name = (f"{'A' if n_me == 1 else 'B'}{begin:%Y%m%d.%H%M}+0000-{end:%H%M}+0000"
                f"_OSS-alpha.xml")
        path = out_dir / name
        with open(path, "wb") as f:
            f.write(_xml_header(begin).encode())
            f.write(_meas_data(part, end, int(gran_s[a])))
            f.write(f'<fileFooter>\n<measCollec endTime="{_iso(end)}"/>\n</fileFooter>\n'
                    "</measCollecFile>\n".encode())
        paths.append(path)
    return paths


def _iso(t: datetime) -> str:
    return f"{t:%Y-%m-%dT%H:%M:%S}+00:00"


def _xml_header(begin: datetime) -> str:
    return ('<?xml version="1.0" encoding="UTF-8"?>\n'
            f'<measCollecFile xmlns="{XML_NS}">\n'
            '<fileHeader fileFormatVersion="32.435 V10.0" vendorName="alpha" dnPrefix="SubNetwork=opencem">\n'
            '<fileSender localDn="OSS-alpha" elementType="OSS"/>\n'
            f'<measCollec beginTime="{_iso(begin)}"/>\n'
            '</fileHeader>\n')


def _meas_data(part: pa.Table, end: datetime, gran_s: int) -> bytes:
    """All measData of one period: each row becomes one measValue line, with the measData and
    measInfo open/close tags attached to the first/last row of its managed element/technology."""
    n = part.num_rows
    me = part["managed_element"].combine_chunks()
    tech = part["technology"].combine_chunks()
    bad = pc.invert(pc.is_in(tech, value_set=pa.array(list(CELL_CLASS))))
    if pc.any(bad).as_py():
        raise ValueError(f"Unknown technology {tech.filter(bad)[0]} (expected 4G or 5G).")
    is_5g = pc.equal(tech, "5G")
    cell_class = pc.if_else(is_5g, CELL_CLASS["5G"][0], CELL_CLASS["4G"][0])
    function = pc.if_else(is_5g, CELL_CLASS["5G"][1], CELL_CLASS["4G"][1])

    me_np = np.asarray(me.to_numpy(zero_copy_only=False), dtype=object)
    tech_np = np.asarray(tech.to_numpy(zero_copy_only=False), dtype=object)
    new_me = np.ones(n, bool)
    new_me[1:] = me_np[1:] != me_np[:-1]
    new_info = new_me.copy()
    new_info[1:] |= tech_np[1:] != tech_np[:-1]
    end_me = np.append(new_me[1:], True)
    end_info = np.append(new_info[1:], True)

    data_open = pc.binary_join_element_wise("<measData>\n<managedElement localDn=\"", me, "\"/>\n", "")
    # A cell class's measInfo opens with its own measTypes (the values below are in the same order).
    opens = {t: (f'<measInfo measInfoId="{CELL_CLASS[t][0]}">\n<job jobId="opencem-{t}"/>\n'
                 f'<granPeriod duration="PT{gran_s}S" endTime="{_iso(end)}"/>\n'
                 f'<repPeriod duration="PT{gran_s}S"/>\n'
                 + "".join(f'<measType p="{k}">{name}</measType>\n'
                           for k, name in enumerate(COUNTERS_BY_TECHNOLOGY[t], 1)))
             for t in TECHNOLOGIES}
    info_open = pc.if_else(is_5g, opens["5G"], opens["4G"])
    pieces = ['<measValue measObjLdn="ManagedElement=', me, ",", function, "=1,", cell_class, "=",
              part["cell_id"].combine_chunks(), '">']
    for k, name in enumerate(MEASUREMENTS, 1):
        pieces += [f'<r p="{k}">', format_values(part[name]), "</r>"]
    pieces.append("</measValue>\n")
    empty = pa.scalar("", pa.string())
    line = pc.binary_join_element_wise(
        pc.if_else(pa.array(new_me), data_open, empty),
        pc.if_else(pa.array(new_info), info_open, empty),
        pc.binary_join_element_wise(*pieces, ""),
        pc.if_else(pa.array(end_info), "</measInfo>\n", empty),
        pc.if_else(pa.array(end_me), "</measData>\n", empty), "")
    return _joined_bytes(line)


def _joined_bytes(strings: pa.Array) -> memoryview:
    """The concatenation of all strings: the Arrow data buffer between first and last offset."""
    strings = strings.cast(pa.large_string())
    _, offsets, data = strings.buffers()
    off = np.frombuffer(offsets, np.int64, len(strings) + 1, strings.offset * 8)
    return memoryview(data)[off[0]:off[-1]]


def _write_beta(table: pa.Table, out_dir: Path) -> list[Path]:
    """Beta's daily exports, one per cell class (LTE cells, then NR cells) and UTC day."""
    paths = []
    for tech in TECHNOLOGIES:
        part = table.filter(pc.equal(table["technology"], tech))
        if part.num_rows:
            out_dir.mkdir(parents=True, exist_ok=True)
            paths += _write_beta_class(part, tech, out_dir)
    return paths


def _write_beta_class(table: pa.Table, tech: str, out_dir: Path) -> list[Path]:
    table = table.sort_by([("period_start", "ascending"), ("managed_element", "ascending"),
                           ("cell_id", "ascending")])
    # measurement column of each counter this cell class reports
    column_of = dict(zip(COUNTERS_BY_TECHNOLOGY[tech], MEASUREMENTS))
    day = pc.strftime(table["period_start"], format="%Y%m%d")
    wide = {
        # Seconds unit so %S prints no fraction; beta writes UTC without an offset.
        "Start Time": pc.strftime(table["period_start"].cast(pa.timestamp("s", tz="UTC"), safe=False),
                                  format="%Y-%m-%d %H:%M:%S"),
        "Period(min)": pc.divide(table["granularity_s"].cast(pa.int32()), 60),
        "NE Name": table["managed_element"],
        "Cell Name": table["cell_id"],
    }
    attempts = table[column_of["RRC.ConnEstabAtt"]].to_numpy()
    remainder = attempts.copy()
    causes = {}
    for column, share in BETA_RRC_CAUSE_SHARES.items():
        causes[column] = np.floor(attempts * share)
        remainder = remainder - causes[column]
    wide["RRC_ATT_MO_DATA"] = remainder
    wide.update(causes)
    for canonical, (column, mul, div) in BETA_RENAMES.items():
        if canonical not in column_of:
            continue
        value = pc.multiply(table[column_of[canonical]], float(mul)).to_numpy()
        # Divided units are rounded to 9 decimals as a vendor would print them (0.6457, not
        # 0.6456999999999999); reading back stays within 1e-7 relative of the canonical value.
        wide[column] = value if div == 1 else np.round(value / div, 9)
    # NaN from to_numpy() marks a null value: written as an empty field.
    text = {k: format_values(pa.array(v, pa.float64(), from_pandas=True), null="")
            if isinstance(v, np.ndarray) else v for k, v in wide.items()}
    out = pa.table(text)
    paths = []
    day_np = np.asarray(day.to_numpy(zero_copy_only=False), dtype=object)
    change = np.flatnonzero(day_np[1:] != day_np[:-1]) + 1
    bounds = np.concatenate([[0], change, [out.num_rows]])
    for a, b in zip(bounds[:-1], bounds[1:]):
        path = out_dir / f"{BETA_FILES[tech]}_{day_np[a]}.csv"
        # Counter text is pre-formatted, so ask the writer not to quote it.
        pacsv.write_csv(out.slice(a, b - a), path,
                        pacsv.WriteOptions(quoting_style="none", include_header=True))
        paths.append(path)
    return paths
