"""Nokia OMeS and NanoCell PmFile readers: values/s and peak RSS, against a bare lxml floor.

    .venv/bin/python benchmarks/pm_vendor.py [--values 2000000,20000000] [--workdir DIR] [--src DIR] [--repeat N]

Files, generated under --workdir (kept, so a second run only measures):
- omes_<n>.xml: a NetAct-style export, four PMSetups (15-min periods), one PMMOResult per cell
  and measurementType; per cell and period the counters the Nokia dictionary reads (eight
  measurementTypes) plus filler counters, 100 values in all. Read with the Nokia dictionary.
- nanocell_<n>.xml: one PmFile period, an EutranCellTdd block of 200 names (the NanoCell
  dictionary's, a CV with 10 SN/SV pairs, fillers), one Pm per cell, then a ManagedElement block
  whose UserLabel names the device (after the cells, as in the real export). Read with the
  NanoCell dictionary and no device folder (the reader finds the label).

Each measurement runs in a fresh interpreter and reports its own peak RSS (VmHWM). The floor,
measured in the same run on the same file: lxml ``iterparse`` with the reader's tag filter,
freeing each element, extracting nothing (what any lxml-based reader pays). ``--src`` runs the
readers from another source tree (e.g. ``git archive <commit> src | tar -x -C /tmp/old``), to
print figures before and after a change on the same files.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
from pathlib import Path

PY = sys.executable
SRC = Path(__file__).resolve().parents[1] / "src"
PEAK = ("peak = int(next(line.split()[1] for line in open('/proc/self/status') if line.startswith('VmHWM')))"
        " / 1024\n")

READ = """
import json, sys, time
from opencem.ingest.dictionary import load_dictionary
kind, path = sys.argv[1], sys.argv[2]
if kind == "omes":
    from opencem.ingest.pm_omes import read_omes_parts as read
    args = (load_dictionary("nokia"),)
else:
    from opencem.ingest.pm_nanocell import read_pmfile_parts as read
    args = (load_dictionary("nanocell"),)
start = time.perf_counter()
rows = parts = 0
for part in read(path, *args):
    rows += part.data.num_rows
    parts += 1
seconds = time.perf_counter() - start
""" + PEAK + """print(json.dumps({"seconds": seconds, "peak_rss_mib": peak, "rows": rows, "parts": parts}))
"""

FLOOR = """
import json, sys, time
from lxml import etree
kind, path = sys.argv[1], sys.argv[2]
tags = ("{*}PMSetup", "{*}PMMOResult") if kind == "omes" else ("{*}Pm", "{*}Measurements")
start = time.perf_counter()
for _, elem in etree.iterparse(path, events=("end",), tag=tags, resolve_entities=False, no_network=True):
    elem.clear(keep_tail=False)
    while elem.getprevious() is not None:
        del elem.getparent()[0]
seconds = time.perf_counter() - start
""" + PEAK + """print(json.dumps({"seconds": seconds, "peak_rss_mib": peak, "rows": 0, "parts": 0}))
"""

# Per measurementType the counters the Nokia dictionary reads (tests/ingest/test_pm_omes.py).
NOKIA_TYPES = {
    "LTE_UE_State": ["M8013C5", "M8013C17", "M8013C18", "M8013C19", "M8013C34", "M8013C31", "M8013C21",
                     "M8013C93", "M8013C91"],
    "LTE_EPS_Bearer": ["M8006C0", "M8006C1", "M8006C261", "M8006C254", "M8006C255", "M8006C258", "M8006C341",
                       "M8006C301", "M8006C309", "M8006C311", "M8006C313", "M8006C6", "M8006C7", "M8006C8",
                       "M8006C9", "M8006C277", "M8006C303", "M8006C306", "M8006C310", "M8006C312"],
    "LTE_Intra_eNB_HO": ["M8009C6", "M8009C7"],
    "LTE_Inter_eNB_HO": ["M8014C6", "M8014C7", "M8014C18", "M8014C19"],
    "LTE_Cell_Avail": ["M8020C3", "M8020C6"],
    "LTE_Cell_Resource": ["M8011C37"],
    "LTE_UE_Quantity": ["M8051C60", "M8051C61"],
}
OMES_PER_OBJECT = 100
OMES_PERIODS = 4
NANO_NAMES = ["RRC.AttConnEstab", "RRC.SuccConnEstab", "RRC.ConnMean", "S1SIG.ConnEstabAtt",
              "S1SIG.ConnEstabSucc", "HO.AttOutExecInterEnbS1", "HO.AttOutExecInterEnbX2",
              "HO.SuccOutInterEnbS1", "HO.SuccOutInterEnbX2", "RRU.PdschPrbTotMeanDl", "RRU.PdschPrbMeanTot"]
NANO_PER_OBJECT = 200
NANO_CV_PAIRS = 10


def omes_file(path: Path, values: int) -> int:
    """Write an OMeS file of about ``values`` values; returns the exact count."""
    rnd = random.Random(1)
    fixed = sum(len(c) for c in NOKIA_TYPES.values())
    fillers = [f"M8013C{200 + i}" for i in range(OMES_PER_OBJECT - fixed)]
    types = {**NOKIA_TYPES, "LTE_Filler": fillers}
    cells = max(1, values // (OMES_PER_OBJECT * OMES_PERIODS))
    with open(path, "w") as out:
        out.write('<?xml version="1.0" encoding="UTF-8"?>\n<OMeS version="2.3">\n')
        for p in range(OMES_PERIODS):
            out.write(f'<PMSetup startTime="2024-03-05T{10 + p // 4:02d}:{15 * (p % 4):02d}:00.000+02:00:00" '
                      'interval="15">\n')
            for c in range(cells):
                dn = f"PLMN-PLMN/MRBTS-{c // 3}/LNBTS-{c // 3}/LNCEL-{c % 3}"
                for mtype, names in types.items():
                    body = "".join(f"<{n}>{rnd.randint(0, 1000)}</{n}>" for n in names)
                    out.write(f'<PMMOResult><MO dimension="network_element"><DN>{dn}</DN></MO>'
                              f'<PMTarget measurementType="{mtype}">{body}</PMTarget></PMMOResult>\n')
            out.write("</PMSetup>\n")
        out.write("</OMeS>\n")
    return cells * OMES_PER_OBJECT * OMES_PERIODS


def nanocell_file(path: Path, values: int) -> int:
    """Write a NanoCell PmFile of about ``values`` values; returns the exact count."""
    rnd = random.Random(1)
    plain = NANO_PER_OBJECT - NANO_CV_PAIRS
    names = NANO_NAMES + [f"X.Filler{i}" for i in range(plain - len(NANO_NAMES))]
    cells = max(1, values // NANO_PER_OBJECT)
    with open(path, "w") as out:
        out.write('<?xml version="1.0" encoding="UTF-8"?>\n<PmFile><FileHeader><InfoModelReferenced>'
                  "NanoCell-eNB-PM-V2.5.0</InfoModelReferenced><DnPrefix>CMCC</DnPrefix><SenderName>x"
                  "</SenderName><VendorName></VendorName><JobId>1</JobId><BeginTime>2024-01-01T08:00:00+08:00"
                  "</BeginTime><EndTime>2024-01-01T08:15:00+08:00</EndTime></FileHeader>\n"
                  "<Measurements><ObjectType>EutranCellTdd</ObjectType><PmName>")
        out.write("".join(f'<N i="{i + 1}">{n}</N>' for i, n in enumerate(names)))
        out.write(f'<N i="{len(names) + 1}">RRC.AttConnEstab._Cause</N></PmName><PmData>\n')
        for c in range(cells):
            body = "".join(f'<V i="{i + 1}">{rnd.randint(0, 1000)}</V>' for i in range(len(names)))
            cv = "".join(f"<SN>RRC.AttConnEstab.C{k}</SN><SV>{rnd.randint(0, 9)}</SV>" for k in range(NANO_CV_PAIRS))
            out.write(f'<Pm Dn="CMCC,SubNetwork=1,ManagedElement=1,EnbFunction=1,EutranCellTdd={c}" '
                      f'UserLabel="cell{c}">{body}<CV i="{len(names) + 1}">{cv}</CV></Pm>\n')
        out.write('</PmData></Measurements>\n<Measurements><ObjectType>ManagedElement</ObjectType><PmName>'
                  '<N i="1">EQPT.CpuMeanUsage</N></PmName><PmData><Pm Dn="CMCC,SubNetwork=1,ManagedElement=1" '
                  'UserLabel="BJ01"><V i="1">12</V></Pm></PmData></Measurements></PmFile>\n')
    return cells * NANO_PER_OBJECT + 1


def run(code: str, args: list[str], src: Path) -> dict:
    env = dict(os.environ, PYTHONPATH=str(src))
    proc = subprocess.run([PY, "-c", code, *args], capture_output=True, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"benchmark child failed:\n{proc.stderr.decode()}")
    return json.loads(proc.stdout)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--values", default="2000000,20000000", help="file sizes in values, comma-separated")
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/opencem-bench-vendor"))
    ap.add_argument("--src", type=Path, default=SRC, help="source tree the readers are imported from")
    ap.add_argument("--kinds", default="omes,nanocell")
    ap.add_argument("--no-floor", action="store_true", help="skip the lxml floor")
    ap.add_argument("--repeat", type=int, default=1, help="runs per measurement; the fastest is shown")
    args = ap.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    print(f"readers from {args.src}")
    print(f"{'file':22s} {'values':>11s} {'what':8s} {'seconds':>8s} {'kvalues/s':>10s} {'peak MiB':>9s} "
          f"{'rows':>11s} {'parts':>6s}")
    for kind in args.kinds.split(","):
        for n in (int(v) for v in args.values.split(",")):
            path = args.workdir / f"{kind}_{n}.xml"
            count_file = path.with_suffix(".count")
            if not path.exists() or not count_file.exists():
                count_file.write_text(str((omes_file if kind == "omes" else nanocell_file)(path, n)))
            values = int(count_file.read_text())
            todo = [("reader", READ)] + ([] if args.no_floor else [("floor", FLOOR)])
            for what, code in todo:
                r = min((run(code, [kind, str(path)], args.src) for _ in range(args.repeat)),
                        key=lambda x: x["seconds"])
                print(f"{path.name:22s} {values:>11,} {what:8s} {r['seconds']:8.2f} "
                      f"{values / r['seconds'] / 1e3:10.0f} {r['peak_rss_mib']:9.0f} {r['rows']:>11,} {r['parts']:>6,}",
                      flush=True)


if __name__ == "__main__":
    main()
