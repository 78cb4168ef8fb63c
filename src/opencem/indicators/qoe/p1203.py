"""Video streaming QoE after ITU-T P.1203: P.1203.1 mode 0 video quality, P.1203.3 integration.

Pipeline (equation numbers of the 10/2017 editions; coefficients and their sources are in
:mod:`.p1203_coefficients`):

1. P.1203.1 mode 0, per media second (O.22): the quantisation parameter from bitrate (kbit/s),
   coded pixels and frame rate (A.1, A.2), the coding MOS (2), its degradation
   D_q = 100 - RfromMOS (1), upscaling to the display D_u (3, 4), frame rates under 24 fps
   D_t (5-8), D = clip(D_q + D_u + D_t) (9), O.22 = MOSfromR(100 - D) (10-12) and, for
   ``mobile`` devices, the handheld mapping (13).
2. P.1203.3: O.34 per second (17); O.35 = weighted baseline (19-21) minus the negative bias
   (4-7), oscillation (22-24, 27) and adaptation (25-26) compensations (18); the stalling
   impact SI from the number of stalls, their total length weighted by distance to the end of
   the media (1-3) and their average interval (29); O.46 (28, 30); O.23 = 1 + 4 SI (31).

Substitutions and assumptions, each deliberate:

* Random forest (P.1203.3 8.4.1, 25 % of O.46): its 20 trees ship as an electronic attachment
  that is not available from an allowed source (the public copies come from research-only
  software). ``RFPrediction`` is replaced by the parametric branch ``1 + (O.35 - 1) SI``, so
  eq. (28) becomes ``O.46' = 1 + (O.35 - 1) SI`` before the eq. (30) mapping. O.35 is limited
  to [1, 5] first, as all P.1203 scores are on the 1-5 ACR scale.
* RfromMOS (P.1203.1 Annex E) is a lookup table interpolated linearly and required to invert
  MOSfromR to within 0.01 MOS; here it is the exact inverse of the E.1 cubic (closed form in
  :mod:`.p1203_coefficients`), the table's zero-error limit.
* Audio: there is no audio input, so O.21 is fixed at 5.0 (transparent audio), giving
  O.34 = clip(0.76802 + 1.09463 O.22, 1, 5).
* Codecs: P.1203.1 mode 0 is fitted on H.264 only. HEVC, VP9 and AV1 segments are scored
  as H.264 at an equivalent bitrate, their bitrate times ``CODEC_EFFICIENCY`` (below, with
  the published comparisons each factor comes from); every such score lists it among its
  assumptions. Other codecs are an error (NULL in SQL).
* A stalling event of zero duration is not a stall and is dropped; a stall at media time 0 is
  the initial loading and counts like any other stall (its weight is the smallest, its
  distance to the end being the whole media).
* Media length T is the number of output seconds, ceil(last segment end); second i takes the
  segment playing at its middle (the last second: at the end of the media).
* Transcriptions disagree on some P.1203.3 details; chosen here: qDiff = max(0, 1 +
  log10(spread + 0.001)) and both compensations limited as in the 10/2017 numbering (T1);
  oscComp's exponent uses qDirChangesTot (T2); the moving average pads each end with
  ``order - 1`` copies. With constant per-second quality all three compensations are zero.

Session summaries (``video_mos_session``, ``video_mos_sql``), for xDR rows that carry only
totals: bitrate, height and frame rate are constant over the session (so O.22 and O.34 are
constant, O.35 = O.34 exactly: the weighted mean of a constant is that constant, the spread and
direction changes are zero); the picture is 16:9 (coded pixels = 16/9 height^2, likewise the
display); the initial buffering is one stall at media time 0; the ``stall_count`` stalls share
``stall_time_s`` equally and sit at media times k T / (n + 1), k = 1..n. Then, with
w(d) = c7 + (1 - c7) 2^(-d / c8) and r = 2^(-T / ((n + 1) c8)):

    totalStallLen = ib w(T) + sum_k (s / n) w(T - k T / (n + 1))
                  = ib w(T) + s c7 + s (1 - c7) r (1 - r^n) / (n (1 - r))     (geometric sum)
    avgStallInterval / T = 1 / (n + 1) when there are two stalls or more, else 0

so the whole model is closed-form per row and renders to SQL. A stall count with zero stall
time means no stalls; rows with a non-positive bitrate, height, frame rate or duration,
negative stall inputs, or stall time without a stall count give NaN (NULL in SQL). It agrees
with ``evaluate_session`` on the equivalent session whenever ``duration_s`` is whole seconds.
The SQL folds eq. (5)-(9) into Q = (1 - k) max(R - D_u, 0), k = (t1 - t2 fps) / (t3 + fps)
below 24 fps else 0 (exact, because 0 <= k < 0.48). RfromMOS needs COS and ACOS (both engines
have them): the cubic's root has no expression in real radicals, so LN/EXP/POWER/SQRT alone
cannot give it exactly.
"""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np
from sqlglot import exp

from . import p1203_coefficients as C

H264_NAMES = frozenset({"h264", "h.264", "avc", "avc1"})
# H.264-equivalent bitrate per kbit/s of each codec: 1 / (1 - the bitrate saving at equal
# quality over H.264). Published comparisons spread widely with encoder, content, resolution
# and metric; these factors are conservative picks, so a newer codec is never flattered:
# - HEVC: 39.3 % saving over x264 at equal PSNR, Grois, Mulayoff, Itzhaky, Hadar and Marpe,
#   "Performance comparison of H.265/MPEG-HEVC, VP9, and H.264/MPEG-AVC encoders", Picture
#   Coding Symposium 2013 (later studies find 40-60 %, e.g. Uhrina et al., Electronics 13(5)
#   953, 2024: 53 % at 8K).
# - AV1: scored as HEVC. Zhang, Katsenou, Afonso, Dimitrov and Bull, "Comparing VVC, HEVC and
#   AV1 using objective and subjective assessments" (arXiv 2003.10282, 2020) found no
#   significant subjective difference between AV1 and the HEVC reference encoder.
# - VP9: scored as H.264 (no saving). The same Grois et al. study measured an 8.4 % overhead
#   of the 2013 libvpx over x264 and later ones report savings; with no agreed figure, none.
CODEC_EFFICIENCY = {"h264": 1.0, "hevc": 1 / (1 - 0.393), "av1": 1 / (1 - 0.393), "vp9": 1.0}
CODEC_NAMES = {"h264": "h264", "avc": "h264", "avc1": "h264", "avc3": "h264", "hevc": "hevc", "h265": "hevc",
               "hvc1": "hevc", "hev1": "hevc", "vp9": "vp9", "vp09": "vp9", "av1": "av1", "av01": "av1"}
FOURCC = ("avc1", "avc3", "hvc1", "hev1", "vp09", "av01")  # RFC 6381 codec strings: avc1.64001f
CODEC_SOURCES = {
    "hevc": "39.3 % bitrate saving, Grois et al., PCS 2013",
    "av1": "as HEVC: no significant subjective difference, Zhang et al. 2020",
    "vp9": "no saving assumed: published comparisons disagree (Grois et al. 2013 measured an 8.4 % overhead)",
}


def codec_family(value: Any) -> str | None:
    """h264, hevc, vp9 or av1 for a codec name in any case or punctuation (H.265, hvc1.1.6.L93),
    None for anything else."""
    if not isinstance(value, str):
        return None
    key = value.strip().lower()
    prefix = key.split(".", 1)[0]
    if prefix in FOURCC and "." in key:
        key = prefix
    for ch in "-_. /":
        key = key.replace(ch, "")
    return CODEC_NAMES.get(key)


def codec_assumption(family: str) -> str:
    """The sentence saying how a non-H.264 codec was scored."""
    return (f"{family.upper()} scored as H.264 at {CODEC_EFFICIENCY[family]:.2f} times its bitrate "
            f"({CODEC_SOURCES[family]}); P.1203.1 mode 0 is fitted on H.264 only")
DEVICES = ("pc", "mobile")
EXP_ARG_MAX = 700.0  # keeps EXP finite in every engine; only reached for absurd inputs
LN_FLOOR = 1e-300    # LN's argument floor in SQL; only reached on rows the validity test NULLs
_RESOLUTION = re.compile(r"^\s*(\d+)\s*[xX]\s*(\d+)\s*$")

# -- P.1203.1: MOS <-> R (Annex E) and the mode 0 short-term video quality O.22 ---------------


def _ln(x: Any) -> np.ndarray:
    """Natural log, NaN where the argument is not positive (the SQL gives NULL there)."""
    x = np.asarray(x, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.log(np.where(x > 0, x, np.nan))


def mos_from_r(q: Any) -> np.ndarray:
    """P.1203.1 E.1-E.2: MOS (1.05..4.9) of a quality rating ``q`` on the 0..100 R scale."""
    q = np.asarray(q, dtype=float)
    mos = C.MOS_MIN + (C.MOS_MAX - C.MOS_MIN) * q / 100.0 + q * (q - 60.0) * (100.0 - q) * C.MOS_FROM_R_CUBIC
    mos = np.where(q >= 100.0, C.MOS_MAX, np.where(q <= 0.0, C.MOS_MIN, mos))
    return np.clip(mos, C.MOS_MIN, C.MOS_MAX)


def r_from_mos(mos: Any) -> np.ndarray:
    """P.1203.1 E.3-E.5: the R rating (3.19..100) whose MOSfromR is ``mos`` (clipped to 1.05..4.9)."""
    m = np.clip(np.asarray(mos, dtype=float), C.MOS_MIN, C.MOS_MAX)
    angle = np.arccos(np.clip(C.R_ARG0 + C.R_ARG1 * m, -1.0, 1.0))
    return C.R_SHIFT + C.R_AMP * np.cos(angle / 3.0 - C.R_PHASE)


def video_quality_o22(bitrate_kbps: Any, coded_pixels: Any, fps: Any, display_pixels: Any,
                      mobile: Any) -> np.ndarray:
    """P.1203.1 mode 0 (H.264): the per-second video MOS O.22 (1..5), element-wise.

    ``coded_pixels``/``display_pixels`` are pixel counts (width x height); ``mobile`` selects
    the handheld mapping (13). NaN where bitrate, pixels or frame rate are not positive."""
    br, px, fr, disp = (np.asarray(v, dtype=float) for v in (bitrate_kbps, coded_pixels, fps, display_pixels))
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        bpp = br / (px * fr)                                           # A.2, kbit per pixel
        quant = C.A1 + C.A2 * _ln(C.A3 + _ln(br) + _ln(br * bpp + C.A4))  # A.1
        mos_cod = np.clip(C.Q1 + C.Q2 * np.exp(np.minimum(C.Q3 * quant, EXP_ARG_MAX)), 1.0, 5.0)  # (2)
        d_q = np.clip(100.0 - r_from_mos(mos_cod), 0.0, 100.0)        # (1)
        scale = np.maximum(disp / px, 1.0)                             # (4)
        d_u = np.clip(C.U1 * np.log10(C.U2 * (scale - 1.0) + 1.0), 0.0, 100.0)  # (3)
        low_fps = fr < C.FPS_THRESHOLD
        k = np.where(low_fps, (C.T1 - C.T2 * fr) / (C.T3 + fr), 0.0)
        d_t1, d_t2, d_t3 = 100.0 * k, d_q * k, d_u * k                 # (6)-(8)
        d_t = np.where(low_fps, np.clip(d_t1 - d_t2 - d_t3, 0.0, 100.0), 0.0)  # (5)
        d = np.clip(d_q + d_u + d_t, 0.0, 100.0)                       # (9)
        mos = mos_from_r(100.0 - d)                                    # (10)-(12)
        handheld = np.clip(C.HTV1 + C.HTV2 * mos + C.HTV3 * mos ** 2 + C.HTV4 * mos ** 3, 1.0, 5.0)
    o22 = np.where(np.asarray(mobile, dtype=bool), handheld, mos)      # (13)
    valid = (br > 0) & (px > 0) & (fr > 0) & (disp > 0) & np.isfinite(quant)
    return np.where(valid, o22, np.nan)


# -- P.1203.3: integration of per-second quality and stalling into O.35, O.23 and O.46 --------


def stall_weight(distance_to_end_s: Any) -> np.ndarray:
    """P.1203.3 (1)-(2): weight of a stall by its media-time distance to the end (1 at the end)."""
    return C.C_REF7 + (1.0 - C.C_REF7) * np.exp2(-np.asarray(distance_to_end_s, dtype=float) / C.C_REF8)


def _direction_changes(o22: np.ndarray) -> tuple[int, float]:
    """P.1203.3 8.1.2.4-8.1.2.5: qDirChangesTot and qDirChangesLongest (s) of the O.22 series."""
    k, step = C.QC_MA_ORDER, C.QC_STEP
    padded = np.concatenate([np.full(k - 1, o22[0]), o22, np.full(k - 1, o22[-1])])
    moving = np.convolve(padded, np.full(k, 1.0 / k), mode="valid")
    later = moving[step::step]
    diff = later - moving[::step][: later.size]
    qc = np.where(diff > C.QC_THRESHOLD, 1, np.where(diff < -C.QC_THRESHOLD, -1, 0))
    nonzero = np.flatnonzero(qc)
    if nonzero.size == 0:
        return 0, float(o22.size)
    signs = qc[nonzero]
    change_at = nonzero[np.r_[True, signs[1:] != signs[:-1]]]
    bounds = np.concatenate([[0], change_at, [qc.size]])
    return int(change_at.size), float(np.diff(bounds).max() * step)


def stalling_impact(num_stalls: Any, total_stall_len_s: Any, avg_stall_interval_s: Any,
                    media_length_s: Any) -> np.ndarray:
    """P.1203.3 (29): the stalling impact SI in (0, 1] (1 means no stalling)."""
    t = np.asarray(media_length_s, dtype=float)
    return np.exp(-np.asarray(num_stalls, dtype=float) / C.S1
                  - np.asarray(total_stall_len_s, dtype=float) / t / C.S2
                  - np.asarray(avg_stall_interval_s, dtype=float) / t / C.S3)


def final_mos_o46(o35: Any, si: Any) -> np.ndarray:
    """P.1203.3 (28), (30) with the random forest replaced by the parametric branch (see above)."""
    parametric = 1.0 + (np.clip(np.asarray(o35, dtype=float), 1.0, 5.0) - 1.0) * np.asarray(si, dtype=float)
    return C.O46_OFFSET + C.O46_SCALE * (C.PARAMETRIC_WEIGHT * parametric + C.RF_WEIGHT * parametric)


def integrate(o22: np.ndarray, stalls: np.ndarray) -> dict[str, Any]:
    """P.1203.3 for one session: per-second O.22 (1..5) and stalls as rows [media time s, duration s]."""
    o22 = np.asarray(o22, dtype=float)
    media_s = o22.size
    t = np.arange(1, media_s + 1, dtype=float)
    o21 = C.ASSUMED_AUDIO_MOS_O21
    o34 = np.clip(C.AV1 + C.AV2 * o21 + C.AV3 * o22 + C.AV4 * o21 * o22, 1.0, 5.0)      # (17)
    w1 = C.W_T1 + C.W_T2 * np.exp(t / media_s / C.W_T3)                                  # (20)
    w2 = C.W_T4 - C.W_T5 * o34                                                            # (21)
    baseline = float(np.sum(w1 * w2 * o34) / np.sum(w1 * w2))                             # (19)
    w_diff = C.NB_C1 + (1.0 - C.NB_C1) * np.exp2(-(media_s - t) / C.NB_C2)               # (5)
    neg_perc = float(np.percentile((o34 - baseline) * w_diff, 10))                       # (4), (6)
    negative_bias = max(0.0, -neg_perc) * C.NB_C23                                       # (7)
    spread = float(o22.max() - o22.min())
    change_rate = np.count_nonzero(np.abs(np.diff(o22)) > C.QC_THRESHOLD) / media_s
    changes, longest_s = _direction_changes(o22)
    osc_comp = adapt_comp = 0.0
    if changes / media_s < 0.25:                                                          # (24), (26)
        if longest_s < 30:
            q_diff = max(0.0, 1.0 + math.log10(spread + 0.001))                          # (27)
            osc_comp = max(0.0, min(q_diff * math.exp(C.COMP1 * changes + C.COMP2), C.OSC_COMP_MAX))
        adapt_comp = max(0.0, min(C.COMP3 * spread * change_rate + C.COMP4, C.ADAPT_COMP_MAX))
    o35 = min(max(baseline - negative_bias - osc_comp - adapt_comp, 1.0), 5.0)         # (18)

    stalls = np.asarray(stalls, dtype=float).reshape(-1, 2)
    stalls = stalls[stalls[:, 1] > 0]
    stalls = stalls[np.argsort(stalls[:, 0], kind="stable")]
    total_stall_len = float(np.sum(stalls[:, 1] * stall_weight(media_s - stalls[:, 0])))  # (3)
    avg_interval = float(np.mean(np.diff(stalls[:, 0]))) if len(stalls) > 1 else 0.0
    si = float(stalling_impact(len(stalls), total_stall_len, avg_interval, media_s))
    o46 = float(final_mos_o46(o35, si))
    return {
        "per_second": o22.tolist(),
        "mos": o46,
        "O.46": o46,
        "O.35": o35,
        "O.35_baseline": baseline,
        "negative_bias": negative_bias,
        "oscillation_compensation": osc_comp,
        "adaptation_compensation": adapt_comp,
        "O.34": o34.tolist(),
        "O.23": 1.0 + 4.0 * si,                                                           # (31)
        "media_length_s": media_s,
        "num_stalls": len(stalls),
        "total_stall_len_weighted_s": total_stall_len,
        "avg_stall_interval_s": avg_interval,
        "stalling_impact": si,
    }


# -- evaluate_session: the P.1203 JSON input convention ---------------------------------------


def evaluate_session(session: dict) -> dict[str, Any]:
    """O.22 per second, O.34, O.35, O.23 and the session MOS O.46 of one P.1203 input.

    ``session``: ``I13.segments`` (``codec``, ``start`` s, ``duration`` s, ``resolution``
    "WxH", ``bitrate`` kbit/s, ``fps``), optional ``I23.stalling`` ([media time s, duration s]
    pairs, a stall at 0 being the initial loading), ``IGen.device`` ("pc" | "mobile") and
    ``IGen.displaySize`` ("WxH"). Raises ValueError naming the first bad field."""
    if not isinstance(session, dict):
        raise ValueError(f"The P.1203 input must be a JSON object, got {type(session).__name__}.")
    segments = _field(session, "I13", "segments")
    if not isinstance(segments, list) or not segments:
        raise ValueError(f"I13.segments must be a non-empty list, got {segments!r}.")
    rows = np.array([_segment(i, seg) for i, seg in enumerate(segments)], dtype=float)
    families = sorted({codec_family(seg["codec"]) for seg in segments} - {"h264"})
    device = _device(_field(session, "IGen", "device"), "IGen.device")
    width, height = _resolution(_field(session, "IGen", "displaySize"), "IGen.displaySize")

    start, duration, pixels, bitrate, fps = rows.T
    order = np.argsort(start, kind="stable")
    start, end = start[order], (start + duration)[order]
    media_end = float(end.max())
    seconds = max(1, math.ceil(media_end - 1e-9))
    probe = np.minimum(np.arange(seconds) + 0.5, media_end - 1e-9)
    index = np.searchsorted(start, probe, side="right") - 1
    uncovered = (index < 0) | (probe >= end[np.maximum(index, 0)])
    if uncovered.any():
        raise ValueError(f"I13.segments leave media time {probe[uncovered][0]:g} s uncovered.")
    seg = order[index]
    o22 = video_quality_o22(bitrate[seg], pixels[seg], fps[seg], width * height, device == "mobile")

    block = session.get("I23", {})
    if not isinstance(block, dict):
        raise ValueError(f"I23 must be an object with a stalling list, got {block!r}.")
    stalls = _stalls(block.get("stalling", []), media_end)
    out = integrate(o22, stalls)
    return {**out, "assumptions": _assumptions(session, families, out)}


def _assumptions(session: dict, families: list[str], out: dict) -> list[str]:
    """What this implementation did differently from the full Recommendation for this input,
    in the output, so a score is never read as more than it is."""
    notes = ["P.1203.3 random forest (25 % of O.46) replaced by the parametric branch: its trees "
             "are not available to opencem"]
    audio = session.get("I11")
    ceiling = np.asarray(out.get("O.34", []), dtype=float)
    capped = int((ceiling >= 5.0).sum()) if ceiling.size else 0
    tail = (f"; O.34 = 0.768 + 1.095 O.22 then reaches 5 wherever O.22 >= 3.87 ({capped} of "
            f"{ceiling.size} seconds here)") if ceiling.size else ""
    if isinstance(audio, dict) and audio.get("segments"):
        notes.append("I11 audio segments ignored: no P.1203.2 audio model, audio taken as transparent (O.21 = 5)" + tail)
    else:
        notes.append("no audio input: audio taken as transparent (O.21 = 5)" + tail)
    notes += [codec_assumption(f) for f in families]
    return notes


def _field(session: dict, group: str, key: str) -> Any:
    block = session.get(group)
    if not isinstance(block, dict) or key not in block:
        raise ValueError(f"The P.1203 input has no {group}.{key}.")
    return block[key]


def _number(value: Any, name: str, strict: bool = True) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or (value <= 0 if strict else value < 0):
        need = "a positive number" if strict else "a number >= 0"
        raise ValueError(f"{name} must be {need}, got {value!r}.")
    return float(value)


def _resolution(value: Any, name: str) -> tuple[int, int]:
    match = _RESOLUTION.match(value) if isinstance(value, str) else None
    if not match or int(match[1]) == 0 or int(match[2]) == 0:
        raise ValueError(f"{name} must look like '1920x1080', got {value!r}.")
    return int(match[1]), int(match[2])


def _device(value: Any, name: str) -> str:
    if value not in DEVICES:
        raise ValueError(f"{name} must be 'pc' or 'mobile', got {value!r}.")
    return value


def _codec_supported(value: Any) -> bool:
    return codec_family(value) is not None


def _efficiency(value: Any) -> float:
    family = codec_family(value)
    return CODEC_EFFICIENCY[family] if family else math.nan


def _segment(i: int, seg: Any) -> tuple[float, float, float, float, float]:
    name = f"I13.segments[{i}]"
    if not isinstance(seg, dict):
        raise ValueError(f"{name} must be an object, got {seg!r}.")
    for key in ("codec", "start", "duration", "resolution", "bitrate", "fps"):
        if key not in seg:
            raise ValueError(f"{name} has no {key}.")
    if not _codec_supported(seg["codec"]):
        raise ValueError(f"{name}.codec {seg['codec']!r} is not supported: opencem scores H.264, HEVC, VP9 and AV1.")
    width, height = _resolution(seg["resolution"], f"{name}.resolution")
    bitrate = _number(seg["bitrate"], f"{name}.bitrate") * _efficiency(seg["codec"])
    return (_number(seg["start"], f"{name}.start", strict=False), _number(seg["duration"], f"{name}.duration"),
            float(width * height), bitrate, _number(seg["fps"], f"{name}.fps"))


def _stalls(stalling: Any, media_end: float) -> np.ndarray:
    if not isinstance(stalling, list):
        raise ValueError(f"I23.stalling must be a list of [media time, duration] pairs, got {stalling!r}.")
    out = []
    for i, pair in enumerate(stalling):
        if not isinstance(pair, (list, tuple)) or len(pair) != 2:
            raise ValueError(f"I23.stalling[{i}] must be a [media time, duration] pair, got {pair!r}.")
        at = _number(pair[0], f"I23.stalling[{i}] media time", strict=False)
        if at > media_end + 1e-9:
            raise ValueError(f"I23.stalling[{i}] media time {at:g} s is after the end of the media ({media_end:g} s).")
        out.append((at, _number(pair[1], f"I23.stalling[{i}] duration", strict=False)))
    return np.array(out, dtype=float).reshape(-1, 2)


# -- Session summaries: NumPy and SQL, the same closed form -----------------------------------


def video_mos_session(bitrate_kbps: Any, height_px: Any, fps: Any, duration_s: Any, stall_count: Any,
                      stall_time_s: Any, initial_buffering_s: Any, codec: Any = "h264",
                      device: str = "mobile", display_height_px: Any = 1080) -> Any:
    """P.1203 O.46 (1..5) of xDR session summaries, element-wise over NumPy arrays.

    Per-second inputs constant over ``duration_s`` media seconds, 16:9 pictures, the
    ``stall_count`` stalls sharing ``stall_time_s`` spread evenly, the initial buffering a
    stall at media time 0 (module docstring). ``codec`` is one name or an array of names (rows
    with another codec give NaN). NaN for invalid rows; a float for scalar inputs."""
    mobile = _device(device, "device") == "mobile"
    if isinstance(codec, str) and not _codec_supported(codec):
        raise ValueError(f"codec {codec!r} is not supported: opencem scores H.264, HEVC, VP9 and AV1.")
    factor = _efficiency(codec) if isinstance(codec, str) else \
        np.vectorize(_efficiency, otypes=[float])(np.asarray(codec, dtype=object))
    br, h, fr, t, n, s, ib, dh = np.broadcast_arrays(*(np.asarray(v, dtype=float) for v in (
        bitrate_kbps, height_px, fps, duration_s, stall_count, stall_time_s, initial_buffering_s,
        display_height_px)))
    br = br * factor
    o22 = video_quality_o22(br, C.ASPECT_16_9 * h * h, fr, C.ASPECT_16_9 * dh * dh, mobile)
    o34 = np.clip(C.AV_ALPHA + C.AV_BETA * o22, 1.0, 5.0)       # (17) with O.21 fixed; O.35 = O.34
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        n_eff = np.where(s > 0, n, 0.0)
        num = n_eff + (ib > 0)
        r = np.exp2(-t / ((n_eff + 1.0) * C.C_REF8))
        r_n = np.exp2(-t * n_eff / ((n_eff + 1.0) * C.C_REF8))
        evenly = s * C.C_REF7 + s * (1.0 - C.C_REF7) * r * (1.0 - r_n) / (n_eff * (1.0 - r))
        mid = np.where(n_eff > 0, np.where(r < 1.0, evenly, s), 0.0)
        total = ib * stall_weight(t) + mid
        interval = np.where(num >= 2, t / (n_eff + 1.0), 0.0)
        mos = final_mos_o46(o34, stalling_impact(num, total, interval, t))
    valid = (h > 0) & (t > 0) & (n >= 0) & (s >= 0) & (ib >= 0) & ~((n == 0) & (s > 0)) & (dh > 0)
    valid &= ~np.isnan(br)  # an unsupported codec
    out = np.where(valid, mos, np.nan)
    return float(out) if out.ndim == 0 else out


SqlInput = str | exp.Expression | float


def video_mos_sql(bitrate_kbps: SqlInput, height_px: SqlInput, fps: SqlInput, duration_s: SqlInput,
                  stall_count: SqlInput, stall_time_s: SqlInput, initial_buffering_s: SqlInput,
                  codec: SqlInput | None = None, device: str = "mobile",
                  display_height_px: float = 1080) -> exp.Expression:
    """:func:`video_mos_session` as one SQLGlot expression (columns by name or expression).

    ``codec=None`` takes every row as H.264; otherwise HEVC, VP9 and AV1 rows are scored at
    their H.264-equivalent bitrate (``CODEC_EFFICIENCY``) and other codecs give NULL, as do
    invalid rows; ``device`` and ``display_height_px`` are constants. Functions:
    LN, EXP, COS, ACOS, LEAST, GREATEST, LOWER, TRIM, CASE, CAST (all in DuckDB and Spark);
    every division is ``CASE WHEN d = 0 THEN NULL ELSE n / d``, every LN argument is floored
    at 1e-300 and every ACOS argument clipped to [-1, 1]."""
    mobile = _device(device, "device") == "mobile"
    if not (isinstance(display_height_px, (int, float)) and display_height_px > 0):
        raise ValueError(f"display_height_px must be a positive number, got {display_height_px!r}.")
    br, h, fr, t, n, s, ib = (_sql_double(v) for v in (
        bitrate_kbps, height_px, fps, duration_s, stall_count, stall_time_s, initial_buffering_s))
    if codec is not None:
        br = br * _sql_efficiency(_sql_input(codec))
    display_px = C.ASPECT_16_9 * float(display_height_px) ** 2

    coded_px = h * h * _lit(C.ASPECT_16_9)
    bpp = _div(br, coded_px * fr)
    quant_arg = _lit(C.A3) + _sql_ln(br) + _sql_ln(br * bpp + _lit(C.A4))
    quant = _lit(C.A1) + _lit(C.A2) * _sql_ln(quant_arg)
    mos_cod = _clip(_lit(C.Q1) + _lit(C.Q2) * _sql_exp(_lit(C.Q3) * quant), C.MOS_MIN, C.MOS_MAX)
    angle = exp.Acos(this=_clip(_lit(C.R_ARG0) + _lit(C.R_ARG1) * mos_cod, -1.0, 1.0))
    r_rating = _lit(C.R_SHIFT) + _lit(C.R_AMP) * exp.Cos(this=angle * _lit(1.0 / 3.0) - _lit(C.R_PHASE))
    scale = _greatest(_div(_lit(display_px), coded_px), _lit(1.0))
    d_u = _clip(_lit(C.U1 / C.LN10) * _sql_ln(_lit(C.U2) * (scale - _lit(1.0)) + _lit(1.0)), 0.0, 100.0)
    k = _case(fr < _lit(C.FPS_THRESHOLD), _div(_lit(C.T1) - _lit(C.T2) * fr, _lit(C.T3) + fr), _lit(0.0))
    q = (_lit(1.0) - k) * _greatest(_least(r_rating, _lit(100.0)) - d_u, _lit(0.0))
    c3, c0 = -C.MOS_FROM_R_CUBIC, C.MOS_MIN                     # E.1 as a polynomial in q
    c2, c1 = 160.0 * C.MOS_FROM_R_CUBIC, (C.MOS_MAX - C.MOS_MIN) / 100.0 - 6000.0 * C.MOS_FROM_R_CUBIC
    o22 = _clip(_horner(q, (c0, c1, c2, c3)), C.MOS_MIN, C.MOS_MAX)
    if mobile:
        o22 = _clip(_horner(o22, (C.HTV1, C.HTV2, C.HTV3, C.HTV4)), 1.0, 5.0)
    o34 = _clip(_lit(C.AV_ALPHA) + _lit(C.AV_BETA) * o22, 1.0, 5.0)

    n_eff = _case(s > _lit(0.0), n, _lit(0.0))
    num = n_eff + _case(ib > _lit(0.0), _lit(1.0), _lit(0.0))
    per_slot = _div(t, (n_eff + _lit(1.0)) * _lit(C.C_REF8))
    r = _sql_exp(_lit(-C.LN2) * per_slot)
    r_n = _sql_exp(_lit(-C.LN2) * per_slot * n_eff)
    geometric = _div(r * (_lit(1.0) - r_n), n_eff * (_lit(1.0) - r))
    evenly = s * _lit(C.C_REF7) + s * _lit(1.0 - C.C_REF7) * geometric
    mid = _case(n_eff > _lit(0.0), _case(r < _lit(1.0), evenly, s), _lit(0.0))
    w_end = _lit(C.C_REF7) + _lit(1.0 - C.C_REF7) * _sql_exp(_lit(-C.LN2 / C.C_REF8) * t)
    interval_per_t = _case(num >= _lit(2.0), _div(_lit(1.0), n_eff + _lit(1.0)), _lit(0.0))
    si = _sql_exp(num * _lit(-1.0 / C.S1) - _div(ib * w_end + mid, t) * _lit(1.0 / C.S2)
                  - interval_per_t * _lit(1.0 / C.S3))
    o46 = _lit(C.O46_OFFSET) + _lit(C.O46_SCALE) * (_lit(1.0) + (o34 - _lit(1.0)) * si)

    checks = [br > _lit(0.0), h > _lit(0.0), fr > _lit(0.0), t > _lit(0.0), n >= _lit(0.0),
              s >= _lit(0.0), ib >= _lit(0.0), exp.not_(exp.and_(n.eq(_lit(0.0)), s > _lit(0.0))),
              quant_arg > _lit(0.0)]
    return _parenthesize(_case(exp.and_(*checks), o46, exp.null()))


def _sql_efficiency(codec: exp.Expression) -> exp.Expression:
    """``CODEC_EFFICIENCY`` of the row's codec as :func:`codec_family` reads it; NULL (so the
    bitrate and the score are NULL) for any other codec."""
    raw = exp.Lower(this=exp.Trim(this=codec))
    key = raw.copy()
    for ch in "-_. /":
        key = exp.Anonymous(this="replace", expressions=[key, exp.Literal.string(ch), exp.Literal.string("")])
    by_factor: dict[float, list[str]] = {}
    for name, family in CODEC_NAMES.items():
        by_factor.setdefault(CODEC_EFFICIENCY[family], []).append(name)
    ifs = []
    for factor, names in by_factor.items():
        fourcc = [exp.Like(this=raw.copy(), expression=exp.Literal.string(f"{n}.%")) for n in names if n in FOURCC]
        cond = exp.or_(key.copy().isin(*sorted(names)), *fourcc)
        ifs.append(exp.If(this=cond, true=_lit(factor)))
    return exp.Case(ifs=ifs, default=exp.null())


# -- small SQLGlot builders -----------------------------------------------------------------


def _sql_input(value: Any) -> exp.Expression:
    if isinstance(value, exp.Expression):
        return value.copy()
    if isinstance(value, str):
        return exp.to_column(value)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return _lit(value)
    raise ValueError(f"A SQL input must be a column name, an expression or a number, got {value!r}.")


def _sql_double(value: Any) -> exp.Expression:
    return exp.Cast(this=_sql_input(value), to=exp.DataType.build("double"))


def _lit(value: float) -> exp.Expression:
    # An exponent makes Spark read a DOUBLE (a bare 0.5 would be a DECIMAL).
    text = repr(abs(float(value))).upper()
    node = exp.Literal.number(text if "E" in text else text + "E0")
    return exp.Paren(this=exp.Neg(this=node)) if value < 0 else node


def _case(cond: exp.Expression, then: exp.Expression, default: exp.Expression) -> exp.Expression:
    return exp.Case().when(cond, then).else_(default)


def _div(numerator: exp.Expression, denominator: exp.Expression) -> exp.Expression:
    # Spark's ANSI mode raises on x / 0; DuckDB would return inf: both get NULL instead.
    return _case(denominator.eq(_lit(0.0)), exp.null(), exp.Div(this=numerator.copy(), expression=denominator.copy()))


def _sql_ln(x: exp.Expression) -> exp.Expression:
    # LN never sees x <= 0 (DuckDB raises there); every row where the floor bites is NULLed by
    # the validity test, and the floor does not repeat x the way a CASE would.
    return exp.Ln(this=_greatest(x, _lit(LN_FLOOR)))


def _sql_exp(x: exp.Expression) -> exp.Expression:
    return exp.Exp(this=_least(x, _lit(EXP_ARG_MAX)))


def _clip(x: exp.Expression, low: float, high: float) -> exp.Expression:
    return _greatest(_least(x, _lit(high)), _lit(low))


def _greatest(a: exp.Expression, b: exp.Expression) -> exp.Expression:
    # ignore_nulls: DuckDB's and Spark's own semantics; without it SQLGlot expands each call
    # for DuckDB into a CASE that repeats its arguments (exponential in the nesting depth).
    return exp.Greatest(this=a.copy(), expressions=[b.copy()], ignore_nulls=True)


def _least(a: exp.Expression, b: exp.Expression) -> exp.Expression:
    return exp.Least(this=a.copy(), expressions=[b.copy()], ignore_nulls=True)


_PRECEDENCE = {exp.Or: 0, exp.And: 1, exp.EQ: 3, exp.NEQ: 3, exp.GT: 3, exp.GTE: 3, exp.LT: 3, exp.LTE: 3,
               exp.Add: 4, exp.Sub: 4, exp.Mul: 5, exp.Div: 5}


def _parenthesize(tree: exp.Expression) -> exp.Expression:
    """Parenthesise operands by precedence, keeping the tree's evaluation order.

    SQLGlot's operators only parenthesise an operand of another class, so a - (b - c) would
    render as a - b - c. Parentheses go only where needed: Spark's parser slows down sharply
    with every redundant level (tens of seconds for this expression)."""
    for node in list(tree.find_all(exp.Binary)):
        for key in ("this", "expression"):
            child = node.args.get(key)
            while isinstance(child, exp.Paren) and isinstance(child.this, exp.Binary):
                child = child.this
            if not isinstance(child, exp.Binary):
                continue
            outer, inner = _PRECEDENCE.get(type(node), 9), _PRECEDENCE.get(type(child), 9)
            wrap = inner < outer or (inner == outer and key == "expression")
            node.set(key, exp.Paren(this=child) if wrap else child)
    return tree


def _horner(x: exp.Expression, coefficients: tuple[float, ...]) -> exp.Expression:
    """c0 + c1 x + c2 x^2 + ... as c0 + x (c1 + x (c2 + ...))."""
    out = _lit(coefficients[-1])
    for c in reversed(coefficients[:-1]):
        out = _lit(c) + x * out
    return out
