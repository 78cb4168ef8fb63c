"""Run the digital twin: build the operator, generate each day, write what its systems export.

Output layout (what ``opencem ingest`` reads)::

    OUT/.opencem-simulation                 marker: this folder is the simulator's to replace
    OUT/manifest.json                       config, row counts, files
    OUT/tables/<table>.parquet              snapshots and whole-window tables
    OUT/tables/<table>/<YYYY-MM-DD>.parquet per-day session tables
    OUT/pm/alpha/*.xml                      vendor alpha: 3GPP TS 32.435 measCollecFile
    OUT/pm/beta/*.csv                       vendor beta: CSV export with its own counter names
    OUT/truth/                              what really happened, never ingested (truth.py):
        faults.parquet, fault_periods.parquet, cell_periods.parquet, cases/<YYYY-MM-DD>.parquet
"""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .. import __version__
from ..errors import ConfigError
from ..folders import replace_folder
from ..schema.truth import SIMULATION_MARKER
from . import behaviour, drive_routes, fixed_iot, labels, load, mobile
from .config import SimConfig, rng_for
from .faults import faults_table, plan_faults
from .frame import SEGMENT_DATA, SEGMENT_VOICE, day_start_ms, draw_frame
from .geography import build_network, cells_table
from .network_pm import CellTraffic, alarms, pm_counters
from .pm_files import write_pm_files
from .population import build_population, subscribers_table
from .truth import write_marker

Progress = Callable[[str], None]

MARKER = SIMULATION_MARKER  # written first, so even an interrupted run's folder can be replaced
# Sessions are generated for this many subscribers at a time, bounding memory at any scale.
CHUNK_SUBSCRIBERS = 250_000


@dataclass
class SimResult:
    out_dir: Path
    rows: dict[str, int] = field(default_factory=dict)
    files: int = 0
    pm_files: int = 0
    truth_rows: dict[str, int] = field(default_factory=dict)


# Peak memory: a fixed part and about 3.2 KB per subscriber (measured: 0.8 GiB at 100,000 x 7 days,
# 3.4 GiB at 1,000,000 x 7 days); the window's length adds little, sessions are made day by day.
BASE_MB, MB_PER_SUBSCRIBER = 450.0, 0.0032


def estimated_peak_mb(cfg: SimConfig) -> float:
    return BASE_MB + MB_PER_SUBSCRIBER * cfg.subscribers * (1 + cfg.days / 60)


def check_fits(cfg: SimConfig) -> None:
    """Refuse, before writing anything, a run this machine's memory cannot hold."""
    import psutil

    need, have = estimated_peak_mb(cfg), psutil.virtual_memory().total / 2**20
    if need > 0.9 * have:
        raise ConfigError(f"--subscribers {cfg.subscribers:,} x --days {cfg.days} needs about {need / 1024:,.1f} GiB of "
                          f"memory and this machine has {have / 1024:,.1f} GiB; simulate fewer subscribers")


def total_steps(cfg: SimConfig) -> int:
    return 3 + cfg.days + 2


def simulate(cfg: SimConfig, out_dir: Path, progress: Progress | None = None, force: bool = False) -> SimResult:
    """Simulate ``cfg`` into ``out_dir``. Deterministic for a seed. The folder is replaced only
    if it is new, empty or an earlier simulator output (its :data:`MARKER` file), or with
    ``force``; see :func:`opencem.folders.replace_folder`."""
    step = progress or (lambda _msg: None)
    check_fits(cfg)
    out_dir = replace_folder(Path(out_dir), MARKER, "opencem simulate", force)
    (out_dir / "tables").mkdir(parents=True)
    (out_dir / "truth").mkdir()
    generator, config = f"opencem {__version__} simulator", json.loads(cfg.model_dump_json())
    # first, so ingest refuses even an interrupted run's truth; complete once the run ends
    write_marker(out_dir / "truth", generator, config, complete=False)
    result = SimResult(out_dir)

    def write(name: str, table: pa.Table, day: str | None = None) -> None:
        path = out_dir / "tables" / (f"{name}/{day}.parquet" if day else f"{name}.parquet")
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, path, compression="zstd")
        result.rows[name] = result.rows.get(name, 0) + table.num_rows
        result.files += 1

    def write_truth(name: str, table: pa.Table, day: str | None = None) -> None:
        path = out_dir / "truth" / (f"{name}/{day}.parquet" if day else f"{name}.parquet")
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, path, compression="zstd")
        result.truth_rows[name] = result.truth_rows.get(name, 0) + table.num_rows

    step("building network and subscribers")
    n_lines = int(cfg.subscribers * cfg.broadband_share)
    net = build_network(cfg, n_lines)
    pop = build_population(cfg, net)
    start_ms = day_start_ms(cfg, 0)
    plan = plan_faults(cfg, net, pop, start_ms)
    load.offered_load(cfg, net, pop, plan)
    step("planning faults")
    write("cells", cells_table(net))
    suspended_any = np.isfinite(plan.suspended_from_ms)
    accounts = behaviour.account_history(cfg, pop, plan)  # BSS: the snapshot's state, then dated changes
    write("subscribers", subscribers_table(pop, net, accounts.status, accounts.volte_provisioned))
    write("subscriber_events", accounts.events)
    index = labels.FaultIndex.of(plan)
    write_truth("faults", faults_table(plan))
    write_truth("fault_periods", labels.fault_periods_table(plan, index))
    write_truth("cell_periods", labels.cell_periods_table(plan, net, index))
    step("billing history")

    exp = behaviour.Experience.empty(pop.n, cfg.days)
    pm_files = 0
    next_id = {"voice": 0, "data": 0, "video": 0, "iot": 0}
    for day in range(cfg.days):
        label = (cfg.start_date + timedelta(days=day)).isoformat()
        rng = rng_for(cfg.seed, f"traffic-day-{day}")
        traffic = CellTraffic(net.n_cells, day)
        poor_sub, poor_cell, day_cases = [], [], []
        chunks = [slice(lo, lo + CHUNK_SUBSCRIBERS) for lo in range(0, pop.n, CHUNK_SUBSCRIBERS)]
        mix = cfg.services
        for (kind, per_day, factor, gen), (k, chunk) in itertools.product((
            ("voice", mix.voice_per_day, SEGMENT_VOICE, mobile.voice_calls),
            ("data", mix.data_per_day, SEGMENT_DATA, mobile.data_sessions),
            ("video", mix.video_per_day, SEGMENT_DATA, mobile.video_sessions),
        ), enumerate(chunks)):
            frame = draw_frame(cfg, net, pop, plan, day, per_day, kind, rng, factor, chunk)
            frame.location = mobile.geolocate(frame, pop, rng_for(cfg.seed, f"geolocation-{kind}-{day}-{k}"))
            table, outcome = gen(frame, net, pop, plan, rng, next_id[kind])
            day_cases.append(labels.mobile_cases("mobile_data" if kind == "data" else kind, frame, outcome.poor,
                                                 plan, net, index))
            next_id[kind] += len(frame)
            write(f"xdr_{kind}", table, label if len(chunks) == 1 else f"{label}-part{k}")
            traffic.add(outcome)
            poor_sub.append(frame.sub[outcome.poor])
            exp.first_poor(frame.sub[outcome.poor], day, frame.t_ms[outcome.poor], day_start_ms(cfg, day))
            poor_cell.append(frame.cell[outcome.poor])
            if kind == "voice":
                exp.add("voice_drops", frame.sub, day, outcome.abnormal_release)
                exp.add("voice_failures", frame.sub, day, outcome.setup_failed)
            elif kind == "data":
                no_response = table.column("http_status").to_numpy() == 0
                exp.add("data_failures", frame.sub, day, outcome.setup_failed | no_response)
                exp.add("data_gb", frame.sub, day, (table.column("bytes_dl").to_numpy()
                                                    + table.column("bytes_ul").to_numpy()) / 1e9)
                exp.add("data_poor", frame.sub, day, outcome.poor)
            else:
                exp.add("video_poor", frame.sub, day, outcome.poor)
                exp.add("data_gb", frame.sub, day, outcome.bytes_dl / 1e9)
            del frame, table, outcome  # keep one chunk of one service in memory at a time
        exp.set_worst_cell(day, np.concatenate(poor_sub), np.concatenate(poor_cell), net.n_cells)

        iot_table, iot_outcome = fixed_iot.iot_events(cfg, net, pop, plan, day, rng, next_id["iot"])
        next_id["iot"] += iot_table.num_rows
        write("iot_events", iot_table, label)
        traffic.add(iot_outcome)
        bb_table, lines = fixed_iot.broadband_sessions(cfg, net, pop, plan, day, rng)
        write("broadband_sessions", bb_table, label)
        exp.add("broadband_outage_s", lines.sub, day, lines.outage_s)
        down = lines.outage_s >= 60
        exp.first_poor(lines.sub[down], day, lines.t_ms[down], day_start_ms(cfg, day))
        day_cases.append(labels.broadband_cases(lines.sub, lines.t_ms, lines.olt_fault, lines.outage_s,
                                                lines.wifi_quality, plan, index))
        write_truth("cases", pa.concat_tables(day_cases), label)
        del day_cases, lines
        # a day's PM files now, so the window's counters are never all held at once
        day_counters = pm_counters(net, plan, traffic, day, rng)
        pm_files += len(write_pm_files(day_counters, out_dir))
        result.rows["pm_counter_values"] = (result.rows.get("pm_counter_values", 0)
                                            + day_counters.num_rows * (day_counters.num_columns - 7))
        del day_counters
        write("drive_tests", drive_routes.drive_tests(cfg, net, plan, day), label)
        step(f"traffic {label}")

    rng = rng_for(cfg.seed, "alarms")
    write("alarms", alarms(net, plan, cfg.days, rng))
    bills, latest_error = behaviour.billing(cfg, pop, exp)
    write("billing", bills)
    complaints, interactions, complaints_per_sub = behaviour.complaints_and_care(cfg, net, pop, exp, latest_error)
    write("complaints", complaints)
    write("interactions", interactions)
    write("surveys", behaviour.surveys(cfg, pop, exp, complaints_per_sub))
    write("social_posts", behaviour.social_posts(cfg, net, pop, exp))
    write("churn_events", behaviour.churn(cfg, pop, exp, complaints_per_sub, suspended_any))
    step("customer behaviour")

    result.pm_files = pm_files
    step("vendor PM files")

    write_marker(out_dir / "truth", generator, config, complete=True)
    manifest = {
        "generator": generator,
        "config": config,
        "rows": result.rows,
        "pm_files": result.pm_files,
        "truth_rows": result.truth_rows,
    }
    tmp = out_dir / "manifest.json.tmp"
    tmp.write_text(json.dumps(manifest, indent=2))
    os.replace(tmp, out_dir / "manifest.json")
    return result
