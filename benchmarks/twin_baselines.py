"""How the twin's normal operation compares with public operator figures (issue 11, item 4).

    .venv/bin/python benchmarks/twin_baselines.py [--subscribers 10000] [--days 2] [--seed 7]
                                                  [--plots DIR]

Simulates (or reuses, see _twin.py) an operator, then prints each baseline beside the range
real networks report, and the share of poor experience that injected faults cause per service
(from the truth area's cases). Figures come from the observable lake, as a probe or OSS would
see them; only the last table reads the truth. PNG plots of the distributions go to --plots.

The reference ranges, with where they come from:
- RSRP from measurement reports: median -90 to -95 dBm outdoors, deeper indoors (issue 11's
  review; MR statistics of LTE operators).
- SINR: median 5-15 dB, and weakly tied to RSRP in interference-limited urban cells.
- VoLTE: call drop rate 0.2-1 %, call setup success >= 98 %, setup time 1.5-3 s (CSFB 4-7 s).
- Video: stall ratio 1-3 %, initial buffering 2-3.2 s (the review's figures).
- Throughput falls with cell load.
- Complaints: about 0.1 % of the base per day (a real operator; the review found ~1 %).
- Billed data (data and video) within a few % of the xDR volume.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _twin import operator_args, simulated_workspace  # noqa: E402

WORKDIR = Path(__file__).resolve().parent / "out" / "twin"

FIGURES = [
    # (label, SQL returning one number, reference low, high, unit)
    ("RSRP median, all sessions", "SELECT median(rsrp_dbm) FROM xdr_data", -95, -90, "dBm"),
    ("RSRP 10th percentile", "SELECT quantile_cont(rsrp_dbm, 0.1) FROM xdr_data", -115, -105, "dBm"),
    ("RSRP median, IoT meters", "SELECT median(rsrp_dbm) FROM iot_events WHERE service = 'smart_meter'",
     -120, -105, "dBm"),
    ("SINR median", "SELECT median(sinr_db) FROM xdr_data", 5, 15, "dB"),
    ("SINR 10th percentile", "SELECT quantile_cont(sinr_db, 0.1) FROM xdr_data", -5, 3, "dB"),
    ("correlation SINR ~ RSRP", "SELECT corr(sinr_db, rsrp_dbm) FROM xdr_data", 0.3, 0.7, ""),
    ("voice call drop rate", "SELECT 100 * avg(dropped::INT) FILTER (setup_success) FROM xdr_voice", 0.2, 1.0, "%"),
    ("voice setup success (network)", """SELECT 100 - 100 * avg((sip_cause_code IN (500, 503, 504, 408))::INT)
        FROM xdr_voice""", 98, 99.8, "%"),
    ("VoLTE setup time median", """SELECT median(setup_time_ms) FROM xdr_voice
        WHERE setup_success AND voice_bearer <> 'CSFB'""", 1500, 3000, "ms"),
    ("CSFB setup time median", """SELECT median(setup_time_ms) FROM xdr_voice
        WHERE setup_success AND voice_bearer = 'CSFB'""", 4000, 7000, "ms"),
    ("video stall ratio", """SELECT 100 * sum(stall_time_ms) / sum(play_duration_s * 1000 + stall_time_ms)
        FROM xdr_video WHERE start_success""", 1, 3, "%"),
    ("video initial buffering median", "SELECT median(initial_buffering_ms) FROM xdr_video", 2000, 3200, "ms"),
    ("complaints per day, % of base", """SELECT 100 * count(*) / (SELECT count(*) FROM subscribers)
        / (SELECT count(DISTINCT CAST(start_time AS DATE)) FROM xdr_voice) FROM complaints""", 0.05, 0.2, "%"),
    ("billed / xDR data volume per day", """WITH last AS (SELECT max(period_start) AS m FROM billing
          WHERE bill_date <= (SELECT min(start_time) FROM xdr_data))
        SELECT (SELECT sum(data_used_gb) / 30 FROM billing, last WHERE period_start = last.m)
        / (((SELECT sum(bytes_dl + bytes_ul) FROM xdr_data) + (SELECT sum(bitrate_kbps * play_duration_s * 125)
             FROM xdr_video)) / 1e9 / (SELECT count(DISTINCT CAST(start_time AS DATE)) FROM xdr_data))""",
     0.8, 1.2, "ratio"),
    ("RRC setups per cell, busy 15 min (p50)", """SELECT median(v) FROM (SELECT max(value) AS v FROM pm_counters
        WHERE counter_name = 'RRC.ConnEstabAtt' GROUP BY cell_id, CAST(period_start AS DATE))""", 300, 3000, "count"),
]

THROUGHPUT_BY_LOAD = """
WITH prb AS (SELECT cell_id, period_start, value AS prb_pct FROM pm_counters WHERE counter_name = 'RRU.PrbTotDl')
SELECT floor(p.prb_pct / 20) * 20 AS prb_load_from_pct, count(*) AS sessions,
       round(median(d.throughput_dl_kbps)) AS median_throughput_kbps
FROM xdr_data d JOIN prb p ON p.cell_id = d.cell_id
 AND p.period_start = time_bucket(INTERVAL 15 MINUTE, d.start_time)
WHERE d.app IN ('software_update', 'cloud_storage') GROUP BY ALL ORDER BY 1"""

FAULT_SHARE = """
SELECT service, sum(poor_sessions) AS poor_sessions,
       round(100 * sum(poor_sessions) FILTER (domain <> 'none') / sum(poor_sessions), 1) AS caused_by_faults_pct
FROM truth.cases GROUP BY ALL ORDER BY service"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    operator_args(ap)
    ap.add_argument("--plots", type=Path, default=WORKDIR / "plots", help="folder for the PNG plots")
    args = ap.parse_args()
    ws = simulated_workspace(WORKDIR, args)
    from opencem.simulate.truth import connect_with_truth

    con = connect_with_truth(ws.lake, ws.truth_dir)
    print(f"\nTwin baselines: {args.subscribers:,} subscribers x {args.days} days, seed {args.seed}\n")
    print(f"| figure | twin | real networks | |\n|---|---|---|---|")
    for label, sql, lo, hi, unit in FIGURES:
        try:
            value = con.execute(sql).fetchone()[0]
        except Exception as err:  # a column this version does not have: say so, go on
            print(f"| {label} | n/a ({str(err).splitlines()[0][:60]}) | {lo} .. {hi} {unit} | |")
            continue
        ok = value is not None and lo <= value <= hi
        shown = "n/a" if value is None else f"{value:,.2f}" if abs(value) < 100 else f"{value:,.0f}"
        print(f"| {label} | {shown} {unit} | {lo} .. {hi} {unit} | {'in range' if ok else '**out**'} |")
    print("\nThroughput of bulk transfers by the cell's PRB load (PM RRU.PrbTotDl):\n")
    rows = con.execute(THROUGHPUT_BY_LOAD).fetchall()
    print("| PRB load from % | sessions | median throughput kbps |\n|---|---|---|")
    for lo, n, thp in rows:
        print(f"| {lo:.0f} | {n:,} | {thp:,.0f} |")
    print("\nShare of poor sessions caused by injected faults (truth/cases; target 20-50 %):\n")
    print("| service | poor sessions | caused by faults |\n|---|---|---|")
    for service, n, pct in con.execute(FAULT_SHARE).fetchall():
        print(f"| {service} | {n:,} | {pct} % |")
    plots(con, args.plots)


def plots(con, folder: Path) -> None:
    try:
        import matplotlib
    except ImportError:
        print("\n(matplotlib is not installed: no plots)", file=sys.stderr)
        return
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    folder.mkdir(parents=True, exist_ok=True)
    sample = con.execute("SELECT rsrp_dbm, sinr_db FROM xdr_data USING SAMPLE 50000 ROWS").fetchnumpy()
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    axes[0].hist(sample["rsrp_dbm"], bins=60, color="tab:blue")
    axes[0].axvspan(-95, -90, color="tab:green", alpha=0.2, label="real median range")
    axes[0].set(title="RSRP (data sessions)", xlabel="dBm", ylabel="sessions")
    axes[0].legend()
    axes[1].hist(sample["sinr_db"], bins=60, color="tab:orange")
    axes[1].set(title="SINR (data sessions)", xlabel="dB")
    axes[2].hexbin(sample["rsrp_dbm"], sample["sinr_db"], gridsize=40, bins="log", cmap="viridis")
    axes[2].set(title="SINR against RSRP", xlabel="RSRP dBm", ylabel="SINR dB")
    fig.tight_layout()
    fig.savefig(folder / "radio.png", dpi=90)
    plt.close(fig)
    rows = np.array(con.execute(THROUGHPUT_BY_LOAD).fetchall(), dtype=float)
    video = con.execute("""SELECT initial_buffering_ms, stall_time_ms / (play_duration_s * 1000 + stall_time_ms) AS r
        FROM xdr_video WHERE start_success USING SAMPLE 50000 ROWS""").fetchnumpy()
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    if len(rows):
        axes[0].plot(rows[:, 0] + 10, rows[:, 2], marker="o")
    axes[0].set(title="Bulk-transfer throughput by PRB load", xlabel="PRB load %", ylabel="median kbps")
    axes[1].hist(np.clip(video["initial_buffering_ms"], 0, 15000), bins=60, color="tab:purple")
    axes[1].axvspan(2000, 3200, color="tab:green", alpha=0.2, label="real median range")
    axes[1].set(title="Video initial buffering", xlabel="ms")
    axes[1].legend()
    axes[2].hist(np.clip(video["r"] * 100, 0, 30), bins=60, color="tab:red", log=True)
    axes[2].set(title="Video stall ratio per session", xlabel="%")
    fig.tight_layout()
    fig.savefig(folder / "service.png", dpi=90)
    plt.close(fig)
    print(f"\nplots: {folder / 'radio.png'}, {folder / 'service.png'}")


if __name__ == "__main__":
    main()
