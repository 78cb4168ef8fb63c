"""PM XML (3GPP TS 32.435) parse throughput in counter values/s, and peak RSS, against lxml.

    .venv/bin/python benchmarks/pm_xml.py [--cells 5000] [--periods 96] [--vendor-values 6000000]

Files, generated under --workdir:
- sim/: the simulator's vendor "alpha" writer, one file per 15-min period for --cells cells
  (3 sectors per site, half the sites also 5G; 13 counters), --periods periods;
- sim_day.xml: the same measData concatenated into one multi-period file (a daily OSS export);
- vendor.xml: an Ericsson-style layout like the O-RAN SC samples: pretty-printed, one measInfo
  per managed element and counter group with 40-200 counters each, mostly small integers,
  some multi-value (PDF) counters and empty values.

Each measurement runs in its own process and reports its own peak RSS (VmHWM); a bare
``python -c "import opencem.ingest.pm_xml"`` is shown for the interpreter and library floor.
Baseline, measured in the same run on the same files: lxml ``etree.parse`` of the file plus an
XPath ``count()`` of its ``<r>`` elements, all in C. It only builds the tree the reader does
not need and extracts nothing, so it is a floor for any tree-based reader, not a competitor.
It needs about 18x the file in RAM, so it is skipped for files over --baseline-max-mib.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

HERE = Path(__file__).resolve().parent
PY = sys.executable
T0_MS = 1795478400000  # 2026-11-24 00:00 UTC
# The child's own high-water RSS (wait4's ru_maxrss would include the parent's, copied at fork).
PEAK = ("peak = int(next(line.split()[1] for line in open('/proc/self/status') if line.startswith('VmHWM')))"
        " / 1024\n")

READ = """
import json, os, sys, time
from pathlib import Path
if os.environ.get("ONE_CORE"):
    os.sched_setaffinity(0, {0})
from opencem.ingest import pm_xml
from opencem.ingest.dictionary import load_dictionary
files = [Path(p) for p in sys.argv[2:]]
vendor = load_dictionary(sys.argv[1]) if sys.argv[1] != "-" else None
start = time.perf_counter()
values = sum(t.num_rows for f in files for t in pm_xml.iter_meascollec(f, vendor))
seconds = time.perf_counter() - start
""" + PEAK + """print(json.dumps({"values": values, "seconds": seconds, "peak_rss_mib": peak}))
"""

LXML = """
import json, sys, time
from lxml import etree
start, values = time.perf_counter(), 0
parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=True)
count = etree.XPath("count(/*/m:measData/m:measInfo/m:measValue/m:r)",
                    namespaces={"m": "http://www.3gpp.org/ftp/specs/archive/32_series/32.435#measCollec"})
for f in sys.argv[1:]:
    values += int(count(etree.parse(f, parser)))
seconds = time.perf_counter() - start
""" + PEAK + """print(json.dumps({"values": values, "seconds": seconds, "peak_rss_mib": peak}))
"""

FLOOR = ("import json, opencem.ingest.pm_xml\n" + PEAK
         + "print(json.dumps({'values': 0, 'seconds': 0, 'peak_rss_mib': peak}))")


def run(code: str, args: list[str], one_core: bool = False) -> dict:
    """Run ``code`` in a fresh interpreter; its JSON output: values, seconds, peak_rss_mib."""
    env = dict(os.environ, ONE_CORE="1" if one_core else "")
    proc = subprocess.run([PY, "-c", code, *args], capture_output=True, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"benchmark child failed:\n{proc.stderr.decode()}")
    return json.loads(proc.stdout)


def simulator_files(cells: int, periods: int, out: Path) -> list[Path]:
    """The simulator's alpha XML writer on a measurement table shaped like the simulator's."""
    from opencem.schema.counters import CANONICAL_COUNTERS
    from opencem.simulate.pm_files import MEASUREMENTS, write_pm_files

    rng = np.random.default_rng(7)
    sites = []
    while sum(6 if five_g else 3 for five_g in sites) < cells:
        sites.append(bool(rng.random() < 0.5))
    rows = [(f"C{s:06d}-{sector}-{tech}", f"S{s:05d}", f"ME-S{s:05d}", tech)
            for s, five_g in enumerate(sites) for tech in (("4G", "5G") if five_g else ("4G",))
            for sector in (1, 2, 3)]
    paths = []
    for first in range(0, periods, 8):  # a few periods at a time keeps the table small
        n_periods = min(8, periods - first)
        n = len(rows) * n_periods
        cols = {name: np.tile([r[i] for r in rows], n_periods)
                for i, name in enumerate(["cell_id", "site_id", "managed_element", "technology"])}
        cols["vendor"] = np.full(n, "alpha")
        cols["period_start"] = pa.array(np.repeat(T0_MS + (first + np.arange(n_periods)) * 900_000, len(rows)),
                                        pa.timestamp("ms", tz="UTC"))
        cols["granularity_s"] = pa.array(np.full(n, 900), pa.int32())
        for name, (lte, _) in MEASUREMENTS.items():
            cols[name] = (rng.poisson(400, n).astype(float) if CANONICAL_COUNTERS[lte].kind == "count"
                          else np.round(rng.uniform(0, 99, n), 3))
        cols["thp_volume_dl_kbit"] = np.round(rng.uniform(0, 5e6, n), 3)
        cols["unavailable_s"] = np.where(rng.random(n) < 0.01, 900.0, 0.0)
        paths += write_pm_files(pa.table(cols), out)
    return sorted(paths)


def concatenate(paths: list[Path], out: Path) -> Path:
    """One file with every period: the first header, all measData, the last footer."""
    with open(out, "wb") as f:
        for i, path in enumerate(paths):
            text = path.read_bytes()
            start = 0 if i == 0 else text.index(b"</fileHeader>") + len(b"</fileHeader>\n")
            end = len(text) if i == len(paths) - 1 else text.index(b"<fileFooter>")
            f.write(text[start:end])
    return out


# Counter names of the bundled Ericsson dictionary per measInfo group, written first in each
# group of the ``ericsson_names`` variant so that the dictionary renames, sums and computes.
ERICSSON_NAMES = {
    "NRCellCU_GNBCUCP": ["pmRrcConnEstabAtt", "pmRrcConnEstabSucc", "pmHoExeAttOutIntraGnb", "pmHoExeAttOutInterGnb",
                         "pmHoExeSuccOutIntraGnb", "pmHoExeSuccOutInterGnb", "pmRrcConnLevelSumSa",
                         "pmRrcConnLevelSamp", "pmCellDowntimeAuto"],
    "NRCellDU_GNBDU": ["pmMacVolDlDrb", "pmMacTimeDlDrb", "pmCellDowntimeAuto", "pmCellDowntimeMan"],
    "EUtranCellFDD": ["pmRrcConnEstabAtt", "pmRrcConnEstabSucc", "pmErabEstabAttInit", "pmErabEstabSuccInit",
                      "pmS1SigConnEstabAtt", "pmS1SigConnEstabSucc", "pmErabRelAbnormalEnbAct", "pmSessionTimeUe",
                      "pmPdcpVolDlDrb", "pmPdcpVolDlDrbLastTTI", "pmUeThpTimeDl", "pmCellHoExeAttLteIntraF",
                      "pmCellHoExeAttLteInterF", "pmCellHoExeSuccLteIntraF", "pmCellHoExeSuccLteInterF",
                      "pmCellDowntimeAuto", "pmCellDowntimeMan"],
}


def vendor_file(target_values: int, out: Path, ericsson_names: bool = False) -> Path:
    """Ericsson-style PM file (the O-RAN SC sample layout) with about ``target_values`` values;
    with ``ericsson_names`` each group's first counters are the ones the Ericsson dictionary maps."""
    rng = np.random.default_rng(11)
    groups = [("NRCellCU_GNBCUCP", "GNBCUCPFunction=1,NRCellCU", 90),
              ("NRCellDU_GNBDU", "GNBDUFunction=1,NRCellDU", 200),
              ("EUtranCellFDD", "ENodeBFunction=1,EUtranCellFDD", 40)]
    cells = 6
    per_node = cells * sum(g[2] for g in groups)
    with open(out, "w") as f:
        f.write('<?xml version="1.0" encoding="UTF-8"?>\n'
                '<?xml-stylesheet type="text/xsl" href="MeasDataCollection.xsl"?>\n'
                '<measCollecFile xmlns="http://www.3gpp.org/ftp/specs/archive/32_series/32.435#measCollec"\n'
                '                xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">\n'
                '  <fileHeader fileFormatVersion="32.435 V10.0" vendorName="Ericsson AB" dnPrefix="SubNetwork=G3">\n'
                '    <fileSender localDn="OSS-1" elementType="RadioNode"/>\n'
                '    <measCollec beginTime="2026-11-24T07:00:00+01:00"/>\n  </fileHeader>\n')
        for node in range(max(target_values // per_node, 1)):
            f.write(f'  <measData>\n    <managedElement localDn="GNODEB-{node}" swVersion="CXP2010174_1 R44B17"/>\n')
            for group, function, n_counters in groups:
                f.write(f'    <measInfo measInfoId="PM=1,PmGroup={group}">\n      <job jobId="nr_all"/>\n'
                        '      <granPeriod duration="PT900S"\n                  endTime="2026-11-24T07:15:00+01:00"/>\n'
                        '      <repPeriod duration="PT900S"/>\n')
                known = ERICSSON_NAMES[group] if ericsson_names else []
                names = [known[k - 1] if k <= len(known) else f"pm{group[:6]}Counter{k}"
                         for k in range(1, n_counters + 1)]
                f.write("".join(f'      <measType p="{k}">{name}</measType>\n' for k, name in enumerate(names, 1)))
                values = np.where(rng.random((cells, n_counters)) < 0.6, 0, rng.integers(0, 10**6, (cells, n_counters)))
                for cell in range(cells):
                    text = [str(v) for v in values[cell]]
                    for k in range(len(known), n_counters, 17):  # distribution counters: comma lists
                        text[k] = ",".join(["0"] * 8)
                    text[-1] = ""
                    f.write(f'      <measValue measObjLdn="ManagedElement=GNODEB-{node},{function}={cell + 1}">\n')
                    f.write("".join(f'        <r p="{k}">{t}</r>\n' for k, t in enumerate(text, 1)))
                    f.write("        <suspect>false</suspect>\n      </measValue>\n")
                f.write("    </measInfo>\n")
            f.write("  </measData>\n")
        f.write('  <fileFooter>\n    <measCollec endTime="2026-11-24T07:15:00+01:00"/>\n  </fileFooter>\n'
                "</measCollecFile>\n")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=5000)
    parser.add_argument("--periods", type=int, default=96)
    parser.add_argument("--vendor-values", type=int, default=6_000_000)
    parser.add_argument("--baseline-max-mib", type=int, default=600)
    parser.add_argument("--workdir", type=Path, default=HERE / "out" / "pm_xml")
    args = parser.parse_args()
    work = args.workdir.resolve()
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    started = time.perf_counter()
    per_period = simulator_files(args.cells, args.periods, work / "sim")
    day = concatenate(per_period, work / "sim_day.xml")
    vendor = vendor_file(args.vendor_values, work / "vendor.xml")
    named = vendor_file(args.vendor_values, work / "vendor_ericsson.xml", ericsson_names=True)
    print(f"generated files in {time.perf_counter() - started:.0f} s: {len(per_period)} simulator files of "
          f"{per_period[0].stat().st_size / 2**20:.1f} MiB, sim_day.xml {day.stat().st_size / 2**20:,.0f} MiB, "
          f"vendor.xml {vendor.stat().st_size / 2**20:,.0f} MiB")

    floor = run(FLOOR, [])
    rows = [("python + opencem.ingest.pm_xml imported", None, floor)]
    cases = [("(a) simulator, one file per period", [str(p) for p in per_period]),
             ("(a) simulator, one multi-period file", [str(day)]),
             ("(b) Ericsson-style vendor file", [str(vendor)]),
             ("(c) the same with Ericsson's counter names", [str(named)])]
    results = {}
    for label, files in cases:
        size_mib = max(Path(f).stat().st_size for f in files) / 2**20
        base = run(LXML, files) if size_mib <= args.baseline_max_mib else None
        raw = run(READ, ["-", *files])
        rows += [(label, None, None), ("  reader, names as in the file", raw, base)]
        if "simulator" in label:
            rows.append(("  reader + alpha dictionary (as ingest)", run(READ, ["alpha", *files]), base))
        if "names" in label:
            rows.append(("  reader + ericsson dictionary (as ingest)", run(READ, ["ericsson", *files]), base))
        rows.append(("  reader, pinned to one core", run(READ, ["-", *files], one_core=True), base))
        rows.append(("  baseline: lxml etree.parse + count <r>", base, None) if base else
                    (f"  baseline skipped: a {size_mib:,.0f} MiB file would need ~{size_mib * 18 / 1024:.1f} GiB",
                     None, None))
        results[label] = {"reader": raw, "lxml_parse_count": base}

    print(f"\n{'':44}{'values':>12}{'seconds':>9}{'values/s':>13}{'x baseline':>12}{'peak RSS MiB':>14}")
    for label, r, base in rows:
        if r is None and base is None:
            print(label)
            continue
        if r is None:
            r = base
        if not r["values"]:
            print(f"{label:44}{'':>46}{r['peak_rss_mib']:>14,.0f}")
            continue
        speed = r["values"] / r["seconds"]
        ratio = f"{speed / (base['values'] / base['seconds']):.2f}" if base is not None and r is not base else ""
        print(f"{label:44}{r['values']:>12,}{r['seconds']:>9.2f}{speed:>13,.0f}{ratio:>12}{r['peak_rss_mib']:>14,.0f}")
    (work / "results.json").write_text(json.dumps(results, indent=1))
    print(f"\n(results in {work / 'results.json'}; the reader streams with iter_meascollec and drops each batch)")


if __name__ == "__main__":
    main()
