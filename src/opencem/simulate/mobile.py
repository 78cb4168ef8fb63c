"""Mobile services: voice calls, web/app data sessions and video sessions.

Each generator turns a :class:`Frame` into a canonical xDR table and an :class:`Outcome`
that the PM counter and customer behaviour models aggregate.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from ..schema import Table
from ..schema.sessions import XDR_DATA, XDR_VIDEO, XDR_VOICE
from .faults import FaultPlan
from .frame import Frame, sigmoid
from .geography import Network, to_latlon
from .ids import ids, take, timestamps_ms
from .population import DEVICE_NAMES, DEVICES, Population
from .services import APPS, CDN_NODES, HOST_RTT_MS, HOSTS, PROGRAM_SOURCES  # noqa: F401 - APPS, HOSTS re-exported


@dataclass
class Outcome:
    """What PM counters and customer behaviour need from a service's sessions."""

    frame: Frame
    setup_failed: np.ndarray  # failed for network reasons (radio, transport, core)
    abnormal_release: np.ndarray
    bytes_dl: np.ndarray
    transfer_ms: np.ndarray
    connected_s: np.ndarray
    poor: np.ndarray  # a session the customer would call bad


def _common(frame: Frame, net: Network, pop: Population, id_prefix: str, first_id: int) -> dict:
    n = len(frame)
    return {
        "id": ids(id_prefix, first_id + np.arange(n), 10),
        "subscriber_id": ids("S", frame.sub, 8),
        "start_time": timestamps_ms(frame.t_ms),
        "cell_id": take(net.cell_ids, frame.cell),
        "technology": take(["4G", "5G"], frame.tech),
        "device_model": take(DEVICE_NAMES, pop.device[frame.sub]),
        "rsrp_dbm": np.round(frame.rsrp_dbm, 1).astype(np.float32),
        "sinr_db": np.round(frame.sinr_db, 1).astype(np.float32),
        "cqi": frame.cqi,
        # A probe does not see PRB load; PM counters carry it (RRU.PrbTotDl).
        "prb_load_pct": pa.nulls(len(frame), pa.float32()),
    }


# MR/MDT geolocation: a share of sessions carries a position estimate. Its error radius is
# 50-200 m (MDT with GNSS is better, MR fingerprinting worse), and the true offset is uniform
# over that disc. Where the UE was is its daily place (anchor) plus ~30 m of movement.
LOCATED_SHARE = 0.3
LOCATION_ERROR_M = (50.0, 200.0)
MOVEMENT_M = 30.0


def geolocate(frame: Frame, pop: Population, rng: np.random.Generator) -> dict[str, pa.Array]:
    """ue_lat, ue_lon and location_error_m of the sessions of ``frame`` (null where a session
    was not located); drawn from their own random stream, so other records do not change."""
    n = len(frame)
    anchor = frame.anchor if frame.anchor is not None else np.zeros(n, np.int64)
    x_km = pop.anchor_x[frame.sub, anchor] + rng.normal(0, MOVEMENT_M / 1000, n)
    y_km = pop.anchor_y[frame.sub, anchor] + rng.normal(0, MOVEMENT_M / 1000, n)
    located = rng.random(n) < LOCATED_SHARE
    radius_m = rng.uniform(*LOCATION_ERROR_M, n)
    offset_km = radius_m * np.sqrt(rng.random(n)) / 1000
    angle = rng.uniform(0, 2 * np.pi, n)
    lat, lon = to_latlon(x_km + offset_km * np.cos(angle), y_km + offset_km * np.sin(angle))
    missing = ~located
    return {"ue_lat": pa.array(np.round(lat, 6), pa.float64(), mask=missing),
            "ue_lon": pa.array(np.round(lon, 6), pa.float64(), mask=missing),
            "location_error_m": pa.array(np.round(radius_m).astype(np.float32), pa.float32(), mask=missing)}


def _as_table(cols: dict, frame: Frame, spec: Table) -> pa.Table:
    """The columns a probe writes, in the table's order: the position when the frame was
    geolocated (run.py does so from a stream of its own), never location_h3, which ingest
    derives."""
    n = len(frame)
    where = frame.location or {"ue_lat": pa.nulls(n, pa.float64()), "ue_lon": pa.nulls(n, pa.float64()),
                               "location_error_m": pa.nulls(n, pa.float32())}
    schema = spec.observed_schema
    return pa.table({**cols, **where}).select(schema.names).cast(schema)


def null_where(mask: np.ndarray, values: np.ndarray) -> pa.Array:
    """float32 values with nulls where not measured (null, not NaN: SQL aggregates skip it)."""
    return pa.array(np.asarray(values, np.float32), mask=np.asarray(mask, bool))


def voice_calls(frame: Frame, net: Network, pop: Population, plan: FaultPlan,
                rng: np.random.Generator, first_id: int) -> tuple[pa.Table, Outcome]:
    n = len(frame)
    sub = frame.sub
    volte_off = plan.volte_off[sub]
    fw_bug = plan.firmware_bug[sub]  # severity 0.5-1 of the defect on this handset's firmware
    # 0 VoLTE, 1 VoNR, 2 CSFB: a handset with VoLTE off always falls back; others do too where
    # IMS voice is not reachable (weak coverage at the cell edge, an IMS registration lost)
    ordinary_csfb = rng.random(n) < 0.01 + 0.25 * sigmoid((-112 - frame.rsrp_dbm) / 3)
    bearer = np.where(volte_off | ordinary_csfb, 2, frame.tech)
    cs = bearer == 2  # a circuit-switched call: slower setup, AMR-NB, longer delay

    user_fail = rng.random(n) < 0.04  # busy, no answer, cancelled: not the network's fault
    p_net = frame.radio_failure_prob() + 0.012 * fw_bug
    net_fail = (rng.random(n) < p_net) & ~user_fail
    blocked = frame.suspended
    success = ~(user_fail | net_fail | blocked)
    cause = np.full(n, 200, np.int16)
    cause[user_fail] = rng.choice([486, 480, 487], user_fail.sum(), p=[0.6, 0.25, 0.15])
    # 403 is not only a barred account: IMS also forbids a call it finds misprovisioned
    cause[net_fail] = rng.choice([503, 500, 408, 504, 403], net_fail.sum(), p=[0.45, 0.2, 0.2, 0.1, 0.05])
    cause[blocked] = 403

    setup_ms = (np.where(frame.tech == 1, 1500.0, 1800.0) * rng.lognormal(0, 0.25, n)
                * (1 + 0.5 * frame.load) + 300 * (frame.sinr_db < 0) + 3500 * cs
                + 2000 * frame.core)
    duration = np.where(success, np.clip(rng.lognormal(np.log(70), 1.0, n), 2, 7200), 0.0)
    # the defect makes calls drop 2-3 times as often as on a sound firmware
    p_drop = (frame.drop_prob() * (1 + 2 * fw_bug) + 0.3 * frame.sleep_severity) * (np.maximum(duration, 1) / 120) ** 0.3
    dropped = success & (rng.random(n) < p_drop)
    # Call ends early when dropped.
    duration = np.where(dropped, duration * rng.uniform(0.05, 0.9, n), duration)

    evs = np.array([d.evs for d in DEVICES])[pop.device[sub]]
    u = rng.random(n)
    codec = np.where(cs, 0, np.where(evs & (u < 0.45), 2, np.where(u < 0.8, 1, 0)))
    codec_rate = np.array([12.2, 12.65, 13.2], np.float32)[codec]
    loss = (rng.exponential(0.15, n) + 6 * sigmoid((-2 - frame.sinr_db) / 2) + 3 * frame.backhaul ** 2
            + 2 * frame.load ** 4)
    jitter = 4 + 25 * frame.load ** 3 + 20 * frame.backhaul + rng.exponential(2, n)
    delay = (70 + 10 * (frame.tech == 0) + 30 * frame.load ** 2 + 50 * frame.backhaul
             + 60 * frame.core + rng.normal(0, 5, n) + 40 * cs)
    failed = ~success
    cols = _common(frame, net, pop, "V", first_id)
    cols.update({
        "call_id": cols.pop("id"),
        "direction": take(["MO", "MT"], (rng.random(n) < 0.5).astype(int)),
        "voice_bearer": take(["VoLTE", "VoNR", "CSFB"], bearer),
        "setup_success": success,
        "sip_cause_code": cause,
        "setup_time_ms": np.round(setup_ms).astype(np.float32),
        "duration_s": np.round(duration, 1).astype(np.float32),
        "dropped": dropped,
        "codec": take(["AMR-NB", "AMR-WB", "EVS"], codec),
        "codec_rate_kbps": codec_rate,
        "packet_loss_pct": null_where(failed, np.round(np.clip(loss, 0, 100), 2)),
        "jitter_ms": null_where(failed, np.round(jitter, 1)),
        "one_way_delay_ms": null_where(failed, np.round(delay, 1)),
    })
    table = _as_table(cols, frame, XDR_VOICE)
    poor = net_fail | blocked | dropped | (success & (loss > 3)) | (setup_ms > 5000)
    # A handset cause is on a call's path only where it does what it does: the defect fails and
    # drops calls, VoLTE off makes the slow CS setup (a call poor for packet loss on such a
    # handset is poor for its radio, not its firmware).
    frame.hits["firmware"] = np.where(net_fail | dropped, plan.subscriber_fault["firmware"][sub], -1)
    frame.hits["volte_off"] = np.where(setup_ms > 5000, plan.subscriber_fault["volte_off"][sub], -1)
    return table, Outcome(frame, net_fail, dropped, codec_rate * duration * 125,
                          duration * 1000, duration, poor)


def data_sessions(frame: Frame, net: Network, pop: Population, plan: FaultPlan,
                  rng: np.random.Generator, first_id: int) -> tuple[pa.Table, Outcome]:
    n = len(frame)
    shares = np.array([a[1] for a in APPS])
    app = rng.choice(len(APPS), n, p=shares / shares.sum())
    first_host = np.cumsum([0] + [len(a[4]) for a in APPS])[:-1]
    host = first_host[app] + (rng.random(n) * np.array([len(a[4]) for a in APPS])[app]).astype(int)

    host_fault, host_sev = plan.hit("host", host, frame.t_ms, rng.random(n))
    dns_fault, dns_sev = plan.hit("province_dns", net.site_province[frame.site], frame.t_ms, rng.random(n))

    blocked = frame.suspended | plan.wrong_apn[frame.sub]
    # name lookups time out now and then (0.2 %), much more in a DNS failure
    dns_fail = (rng.random(n) < 0.002 + dns_sev) & ~blocked
    # the lookups that failed for the DNS fault (the rest of its share resolved)
    dns_fault = np.where(dns_fail, dns_fault, -1)
    net_fail = (rng.random(n) < frame.radio_failure_prob()) & ~blocked & ~dns_fail
    server_error = rng.random(n) < 0.008 + 0.3 * host_sev
    ok = ~(blocked | net_fail | dns_fail)

    bytes_dl = np.where(ok, rng.lognormal(np.log(np.array([a[2] for a in APPS])[app]), 1.0), 0)
    demand = np.array([a[3] for a in APPS], float)[app]
    thp = np.minimum(frame.capacity_kbps() * (1 - 0.95 * frame.sleep_severity), demand) * rng.lognormal(0, 0.25, n)
    thp = np.where(frame.throttled, np.minimum(thp, frame.policer_kbps), thp)  # a policer is a hard cap
    rtt_ran = frame.rtt_ran_ms(rng)
    rtt_net = HOST_RTT_MS[host] + 60 * frame.core + rng.exponential(5, n)
    # servers have a tail of their own: one request in fifty waits seconds (no fault)
    server_ms = (rng.lognormal(np.log(80), 0.5, n) + (rng.random(n) < 0.02) * rng.lognormal(np.log(3000), 0.6, n)) \
        * (1 + 8 * host_sev)
    # a resolver gives up after 5 s, and a client retries once or twice before it does
    timeout = 5000.0 * rng.integers(1, 4, n) + rng.uniform(0, 400, n)
    response = np.where(dns_fail, timeout, rtt_ran + rtt_net + server_ms)
    transfer_ms = bytes_dl * 8 / np.maximum(thp, 1)  # kbit / kbps = s; x1000 ms / 1000 bytes->kbit
    web = app == 0
    page_load = response + 4 * (rtt_ran + rtt_net) + transfer_ms
    status = np.where(ok, np.where(server_error, rng.choice([404, 500, 502], n), 200), 0).astype(np.int16)
    abnormal = ok & (rng.random(n) < frame.drop_prob() * 0.5)

    cols = _common(frame, net, pop, "D", first_id)
    failed = ~ok
    cols.update({
        "session_id": cols.pop("id"),
        "app": take([a[0] for a in APPS], app),
        "host": take(HOSTS, host),
        "bytes_dl": bytes_dl.astype(np.int64),
        "bytes_ul": (bytes_dl * 0.08 * rng.lognormal(0, 0.5, n)).astype(np.int64),
        # a probe closes a record after at most 4 h (a stalled transfer at a few kbps would run for days)
        "duration_ms": np.minimum(np.where(ok, transfer_ms + rng.exponential(2000, n), response),
                                  4 * 3_600_000).astype(np.int32),
        "throughput_dl_kbps": null_where(failed, np.round(thp, 1)),
        "tcp_rtt_ran_ms": null_where(failed, np.round(rtt_ran, 1)),
        "tcp_rtt_internet_ms": null_where(failed, np.round(rtt_net, 1)),
        "http_status": status,
        "response_time_ms": null_where(failed, np.round(response, 1)),
        "page_load_ms": null_where(failed | ~web, np.round(page_load, 0)),
    })
    table = _as_table(cols, frame, XDR_DATA)
    poor = failed | (ok & (status >= 500)) | (web & (page_load > 6000)) | (ok & (thp < 500) & (demand > 1000))
    # the policer slows a session; it does not fail one, nor make a server answer 5xx
    frame.hits.update({"wrong_apn": np.where(blocked, plan.subscriber_fault["wrong_apn"][frame.sub], -1),
                       "throttle": np.where(frame.throttled & ok & (status < 500),
                                            plan.subscriber_fault["throttle"][frame.sub], -1),
                       "host": host_fault, "dns": dns_fault})
    return table, Outcome(frame, net_fail, abnormal, bytes_dl, transfer_ms,
                          (transfer_ms + 2000) / 1000, poor)


VIDEO_APPS = ("streamflix", "clipshare", "operator_tv")
VIDEO_APP_SHARE = np.array([0.35, 0.45, 0.20])
VIDEO_PLAY_MEDIAN_S = np.array([1500.0, 40.0, 900.0])
LADDER_HEIGHT = np.array([240, 360, 480, 720, 1080])
LADDER_KBPS = np.array([400.0, 800.0, 1400.0, 2800.0, 5000.0])


def video_sessions(frame: Frame, net: Network, pop: Population, plan: FaultPlan,
                   rng: np.random.Generator, first_id: int) -> tuple[pa.Table, Outcome]:
    n = len(frame)
    app = rng.choice(3, n, p=VIDEO_APP_SHARE)
    source = np.where(app == 0, 4, np.where(app == 1, 5, rng.integers(0, 4, n)))
    province = net.site_province[frame.site]
    # Regional CDN node first, national node as overflow for 15% of sessions.
    regional = np.where(province == 0, rng.integers(0, 2, n), 2)
    cdn = np.where(rng.random(n) < 0.15, 3, regional)
    cdn_fault, cdn_sev = plan.hit("cdn", cdn, frame.t_ms, rng.random(n))
    src_fault, src_sev = plan.hit("source", source, frame.t_ms, rng.random(n))
    dns_fault, dns_sev = plan.hit("province_dns", province, frame.t_ms, rng.random(n))
    blocked = frame.suspended | plan.wrong_apn[frame.sub]
    dns_fail = (rng.random(n) < 0.002 + dns_sev) & ~blocked
    # players fail to start now and then on their own (0.5 %: app, DRM, manifest errors)
    start_fail = blocked | dns_fail | (rng.random(n) < frame.radio_failure_prob() * 0.7 + 0.6 * src_sev ** 2
                                       + 0.1 * cdn_sev + 0.005)
    ok = ~start_fail
    screen = np.array([d.screen_size_inch for d in DEVICES], np.float32)[pop.device[frame.sub]]
    max_rung = np.where(screen < 3, 0, np.where(screen <= 5.5, 3, 4))
    # what the player sees over a session varies around the radio's average (fading, other users)
    cap = frame.capacity_kbps() * (1 - 0.75 * cdn_sev) * (1 - 0.95 * frame.sleep_severity) * rng.lognormal(0, 0.5, n)
    rung = np.minimum((LADDER_KBPS[None, :] <= 0.75 * cap[:, None]).sum(axis=1) - 1, max_rung).clip(0)
    bitrate = LADDER_KBPS[rung] * rng.uniform(0.85, 1.0, n)
    rtt = frame.rtt_ran_ms(rng) + 25
    init_ms = ((1500 + 3 * rtt + 2000 * bitrate / np.maximum(cap, 1)) * rng.lognormal(0, 0.5, n)
               + cdn_sev * rng.uniform(1500, 6000, n) + src_sev * rng.uniform(4000, 12000, n))
    # a player gives up after a minute without a first frame: a failed start, not a buffering time
    gave_up = ok & (init_ms > 60_000)
    ok, start_fail = ok & ~gave_up, start_fail | gave_up
    play_s = np.clip(rng.lognormal(np.log(VIDEO_PLAY_MEDIAN_S[app]), 0.8), 5, 4 * 3600) * ok
    starvation = np.maximum(0, bitrate / np.maximum(cap, 1) - 0.8)
    stalls_per_min = 0.1 + 3 * starvation ** 1.3 + 1.2 * src_sev + 0.6 * cdn_sev
    stall_count = np.minimum(rng.poisson(stalls_per_min * play_s / 60), 500) * ok
    stall_ms = stall_count * rng.lognormal(np.log(2500), 0.5, n)

    cols = _common(frame, net, pop, "M", first_id)
    cols.update({
        "session_id": cols.pop("id"),
        "app": take(list(VIDEO_APPS), app),
        "program_source": take(list(PROGRAM_SOURCES), source),
        "cdn_node": take(list(CDN_NODES), cdn),
        "start_success": ok,
        "initial_buffering_ms": null_where(start_fail, np.round(init_ms)),
        "stall_count": stall_count.astype(np.int16),
        "stall_time_ms": np.round(stall_ms).astype(np.float32),
        "play_duration_s": np.round(play_s, 1).astype(np.float32),
        "bitrate_kbps": null_where(start_fail, np.round(bitrate)),
        "resolution_height_px": np.where(ok, LADDER_HEIGHT[rung], 0).astype(np.int16),
        "frame_rate_fps": np.where(source == 1, 50.0, np.where(app == 1, 30.0, 25.0)).astype(np.float32),
        "video_codec": take(["h264", "h265", "vp9"], np.where(app == 0, 1, np.where(app == 1, 2, 0))),
        "screen_size_inch": screen,
    })
    table = _as_table(cols, frame, XDR_VIDEO)
    bytes_dl = bitrate * play_s * 125  # kbit/s * s -> bytes
    stall_ratio = stall_ms / np.maximum(play_s * 1000 + stall_ms, 1)
    poor = start_fail | (stall_ratio > 0.05) | (init_ms > 5000)
    frame.hits.update({"wrong_apn": np.where(blocked, plan.subscriber_fault["wrong_apn"][frame.sub], -1),
                       "throttle": np.where(frame.throttled & ok, plan.subscriber_fault["throttle"][frame.sub], -1),
                       "cdn": cdn_fault, "source": src_fault, "dns": np.where(dns_fail, dns_fault, -1)})
    net_fail = start_fail & ~blocked & (src_sev == 0) & (cdn_sev == 0)
    return table, Outcome(frame, net_fail, np.zeros(n, bool), bytes_dl,
                          bytes_dl * 8 / np.maximum(cap, 1), play_s, poor)
