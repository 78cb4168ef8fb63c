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
from ..folders import replace_folder
from . import behaviour, drive_routes, fixed_iot, labels, mobile
from .config import SimConfig, rng_for
from .faults import faults_table, plan_faults
from .frame import SEGMENT_DATA, SEGMENT_VOICE, day_start_ms, draw_frame, hourly_profile
from .geography import build_network, cells_table
from .network_pm import CellTraffic, alarms, pm_counters
from .population import build_population, subscribers_table
from .truth import write_marker

Progress = Callable[[str], None]

MARKER = ".opencem-simulation"  # written first, so even an interrupted run's folder can be replaced
VOICE_PER_DAY, DATA_PER_DAY, VIDEO_PER_DAY = 3.0, 8.0, 1.2
# Sessions are generated for this many subscribers at a time, bounding memory at any scale.
CHUNK_SUBSCRIBERS = 250_000


@dataclass
class SimResult:
    out_dir: Path
    rows: dict[str, int] = field(default_factory=dict)
    files: int = 0
    pm_files: int = 0
    truth_rows: dict[str, int] = field(default_factory=dict)


def total_steps(cfg: SimConfig) -> int:
    return 3 + cfg.days + 2


def simulate(cfg: SimConfig, out_dir: Path, progress: Progress | None = None, force: bool = False) -> SimResult:
    """Simulate ``cfg`` into ``out_dir``. Deterministic for a seed. The folder is replaced only
    if it is new, empty or an earlier simulator output (its :data:`MARKER` file), or with
    ``force``; see :func:`opencem.folders.replace_folder`."""
    step = progress or (lambda _msg: None)
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
    bills, latest_error = behaviour.billing(cfg, pop)
    write("billing", bills)
    step("billing history")

    exp = behaviour.Experience.empty(pop.n, cfg.days)
    counters = []
    next_id = {"voice": 0, "data": 0, "video": 0, "iot": 0}
    for day in range(cfg.days):
        label = (cfg.start_date + timedelta(days=day)).isoformat()
        rng = rng_for(cfg.seed, f"traffic-day-{day}")
        traffic = CellTraffic(net.n_cells, day)
        poor_sub, poor_cell, day_cases = [], [], []
        chunks = [slice(lo, lo + CHUNK_SUBSCRIBERS) for lo in range(0, pop.n, CHUNK_SUBSCRIBERS)]
        for (kind, per_day, hours, factor, gen), (k, chunk) in itertools.product((
            ("voice", VOICE_PER_DAY, hourly_profile((11.0, 17.5)), SEGMENT_VOICE, mobile.voice_calls),
            ("data", DATA_PER_DAY, hourly_profile((13.0, 21.0)), SEGMENT_DATA, mobile.data_sessions),
            ("video", VIDEO_PER_DAY, hourly_profile((21.0,), 0.05), SEGMENT_DATA, mobile.video_sessions),
        ), enumerate(chunks)):
            frame = draw_frame(cfg, net, pop, plan, day, per_day, hours, rng, factor, chunk)
            frame.location = mobile.geolocate(frame, pop, rng_for(cfg.seed, f"geolocation-{kind}-{day}-{k}"))
            table, outcome = gen(frame, net, pop, plan, rng, next_id[kind])
            day_cases.append(labels.mobile_cases("mobile_data" if kind == "data" else kind, frame, outcome.poor,
                                                 plan, net, index, outcome.cdn, outcome.source))
            next_id[kind] += len(frame)
            write(f"xdr_{kind}", table, label if len(chunks) == 1 else f"{label}-part{k}")
            traffic.add(outcome)
            poor_sub.append(frame.sub[outcome.poor])
            poor_cell.append(frame.cell[outcome.poor])
            if kind == "voice":
                exp.add("voice_drops", frame.sub, day, outcome.abnormal_release)
                exp.add("voice_failures", frame.sub, day, outcome.setup_failed)
            elif kind == "data":
                no_response = table.column("http_status").to_numpy() == 0
                exp.add("data_failures", frame.sub, day, outcome.setup_failed | no_response)
                exp.add("data_poor", frame.sub, day, outcome.poor)
            else:
                exp.add("video_poor", frame.sub, day, outcome.poor)
            del frame, table, outcome  # keep one chunk of one service in memory at a time
        exp.set_worst_cell(day, np.concatenate(poor_sub), np.concatenate(poor_cell), net.n_cells)

        iot_table, iot_outcome = fixed_iot.iot_events(cfg, net, pop, plan, day, rng, next_id["iot"])
        next_id["iot"] += iot_table.num_rows
        write("iot_events", iot_table, label)
        traffic.add(iot_outcome)
        bb_table, lines = fixed_iot.broadband_sessions(cfg, net, pop, plan, day, rng)
        write("broadband_sessions", bb_table, label)
        exp.add("broadband_outage_s", lines.sub, day, lines.outage_s)
        day_cases.append(labels.broadband_cases(lines.sub, lines.t_ms, lines.olt, lines.outage_s,
                                                lines.wifi_quality, plan, net, index))
        write_truth("cases", pa.concat_tables(day_cases), label)
        del day_cases, lines
        counters.append(pm_counters(net, plan, traffic, day, rng))
        write("drive_tests", drive_routes.drive_tests(cfg, net, plan, day), label)
        step(f"traffic {label}")

    rng = rng_for(cfg.seed, "alarms")
    write("alarms", alarms(net, plan, cfg.days, rng))
    complaints, interactions, complaints_per_sub = behaviour.complaints_and_care(cfg, net, pop, exp, latest_error)
    write("complaints", complaints)
    write("interactions", interactions)
    write("surveys", behaviour.surveys(cfg, pop, exp, complaints_per_sub))
    write("social_posts", behaviour.social_posts(cfg, net, pop, exp))
    write("churn_events", behaviour.churn(cfg, pop, exp, complaints_per_sub, suspended_any))
    step("customer behaviour")

    from .pm_files import write_pm_files

    pm_paths = write_pm_files(pa.concat_tables(counters), out_dir)
    result.pm_files = len(pm_paths)
    result.rows["pm_counter_values"] = sum(t.num_rows for t in counters) * (counters[0].num_columns - 7)
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
