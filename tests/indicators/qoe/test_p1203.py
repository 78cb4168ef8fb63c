"""P.1203 video QoE: values from the published equations, the session-summary closed form, SQL."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pytest
from sqlglot import exp

from opencem.indicators.qoe.p1203 import (
    _direction_changes,
    evaluate_session,
    mos_from_r,
    r_from_mos,
    video_mos_session,
    video_mos_sql,
    video_quality_o22,
)

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "qoe" / "video-session.json"


# -- the Recommendations' equations, typed out independently of the module -------------------


def ref_mos_from_r(q: float) -> float:
    """P.1203.1 E.1-E.2, MOS_MIN = 1.05, MOS_MAX = 4.9."""
    if q <= 0:
        return 1.05
    if q >= 100:
        return 4.9
    return min(max(1.05 + (4.9 - 1.05) * q / 100 + q * (q - 60) * (100 - q) * 7e-6, 1.05), 4.9)


def ref_r_from_mos(mos: float) -> float:
    """The inverse of E.1 by bisection on its increasing branch [80 - sqrt(5900), 100]."""
    mos = min(max(mos, 1.05), 4.9)
    lo, hi = 80 - math.sqrt(5900), 100.0
    for _ in range(200):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if ref_mos_from_r(mid) < mos else (lo, mid)
    return (lo + hi) / 2


def clip(x: float, lo: float = 0.0, hi: float = 100.0) -> float:
    return min(max(x, lo), hi)


def ref_o22(bitrate_kbps, width, height, fps, display=(1920, 1080), mobile=False) -> float:
    """P.1203.1 mode 0, H.264 (Table A.1 and clause 8 coefficients), one second."""
    bpp = bitrate_kbps / (width * height * fps)                                        # A.2
    quant = 11.99835 - 2.99992 * math.log(41.24751 + math.log(bitrate_kbps)
                                          + math.log(bitrate_kbps * bpp + 0.13183))   # A.1
    mos_q = clip(4.66 - 0.07 * math.exp(4.06 * quant), 1, 5)                           # (2)
    d_q = clip(100 - ref_r_from_mos(mos_q))                                            # (1)
    scale = max(display[0] * display[1] / (width * height), 1)                         # (4)
    d_u = clip(72.61 * math.log10(0.32 * (scale - 1) + 1))                             # (3)
    d_t = 0.0
    if fps < 24:                                                                       # (5)-(8)
        k = (30.98 - 1.29 * fps) / (64.65 + fps)
        d_t = clip(100 * k - d_q * k - d_u * k)
    mos = ref_mos_from_r(100 - clip(d_q + d_u + d_t))                                  # (9)-(12)
    if mobile:                                                                         # (13)
        mos = clip(-0.60293 + 2.12382 * mos - 0.36936 * mos ** 2 + 0.03409 * mos ** 3, 1, 5)
    return mos


def session(segments, stalling=(), device="pc", display="1920x1080") -> dict:
    return {"I13": {"segments": [dict(s) for s in segments]}, "I23": {"stalling": [list(p) for p in stalling]},
            "IGen": {"device": device, "displaySize": display}}


def constant(seconds, resolution="1920x1080", bitrate=5000.0, fps=30.0, pieces=4) -> list[dict]:
    step = seconds / pieces
    return [{"codec": "h264", "start": i * step, "duration": step, "resolution": resolution,
             "bitrate": bitrate, "fps": fps} for i in range(pieces)]


# -- P.1203.1: short-term video quality O.22 ---------------------------------------------------


def test_mos_from_r_and_r_from_mos_are_inverse_and_monotone():
    mos = np.linspace(1.05, 4.9, 2001)
    r = r_from_mos(mos)
    assert np.all(np.diff(r) > 0)
    assert np.max(np.abs(mos_from_r(r) - mos)) < 1e-12
    assert r[0] == pytest.approx(80 - math.sqrt(5900), abs=1e-9)  # where E.1 climbs back to 1.05
    assert r[-1] == pytest.approx(100, abs=1e-9)
    for m in (1.2, 2.5, 3.7, 4.66):
        assert r_from_mos(m) == pytest.approx(ref_r_from_mos(m), abs=1e-9)
    assert mos_from_r([-5, 0, 100, 130]).tolist() == [1.05, 1.05, 4.9, 4.9]


def test_o22_1080p_5000kbps_by_hand():
    # bpp = 5000 / (1920*1080*30) = 8.0376e-5 kbit/px; quant = 11.99835 - 2.99992 ln(41.24751
    # + ln 5000 + ln(5000 bpp + 0.13183)) = 0.31480; MOS = 4.66 - 0.07 e^(4.06 quant) = 4.4087.
    # No upscaling and 30 fps, so D = D_q and O.22 = MOSfromR(RfromMOS(4.4087)) = 4.4087.
    got = evaluate_session(session(constant(30)))["per_second"]
    assert len(got) == 30
    assert got[0] == pytest.approx(4.4087, abs=2e-4)
    assert got[0] == pytest.approx(ref_o22(5000, 1920, 1080, 30), abs=1e-9)


@pytest.mark.parametrize("bitrate, width, height, fps, mobile", [
    (2000, 1280, 720, 30, False),     # upscaling 2.25x
    (300, 640, 360, 30, False),       # upscaling 9x
    (800, 960, 540, 15, False),       # frame rate under 24 fps
    (450, 640, 360, 12, True),        # everything, handheld mapping
    (12000, 1920, 1080, 60, True),
    (150, 256, 144, 24, False),       # exactly 24 fps: no temporal degradation
])
def test_o22_matches_the_equations(bitrate, width, height, fps, mobile):
    want = ref_o22(bitrate, width, height, fps, mobile=mobile)
    got = video_quality_o22(bitrate, width * height, fps, 1920 * 1080, mobile)
    assert float(got) == pytest.approx(want, abs=1e-9)
    seg = constant(20, f"{width}x{height}", bitrate, fps)
    per_second = evaluate_session(session(seg, device="mobile" if mobile else "pc"))["per_second"]
    assert per_second == pytest.approx([want] * 20, abs=1e-9)


def test_o22_falls_with_lower_bitrate_resolution_and_frame_rate():
    base = ref_o22(3000, 1280, 720, 30)
    assert ref_o22(1000, 1280, 720, 30) < base
    assert ref_o22(3000, 960, 540, 30) < base
    assert ref_o22(3000, 1280, 720, 12) < base
    assert float(video_quality_o22(1000, 1280 * 720, 30, 1920 * 1080, False)) < float(
        video_quality_o22(3000, 1280 * 720, 30, 1920 * 1080, False))


# -- P.1203.3: stalling and integration -----------------------------------------------------------


def test_stalling_features_and_mos_by_hand():
    stalls = [[0, 2.0], [20, 3.0], [40, 1.0]]
    out = evaluate_session(session(constant(60), stalls))

    def weight(distance):  # (1)-(2): c_ref7 = 0.48412879, c_ref8 = 10, distance to the end
        return 0.48412879 + (1 - 0.48412879) * 0.5 ** (distance / 10)

    total = 2.0 * weight(60) + 3.0 * weight(40) + 1.0 * weight(20)
    si = math.exp(-3 / 9.35158684) * math.exp(-total / 60 / 0.91890815) * math.exp(-20 / 60 / 11.0567558)
    assert out["num_stalls"] == 3
    assert out["total_stall_len_weighted_s"] == pytest.approx(total, abs=1e-12)
    assert out["avg_stall_interval_s"] == pytest.approx(20)
    assert out["stalling_impact"] == pytest.approx(si, abs=1e-12)
    assert out["O.23"] == pytest.approx(1 + 4 * si, abs=1e-12)
    # O.34 = clip(-0.00069084 + 0.15374283*5 + (0.97153861 + 0.02461776*5) * 4.4087, 1, 5) = 5
    assert out["O.34"] == pytest.approx([5.0] * 60)
    assert out["O.35"] == pytest.approx(5.0)
    assert out["mos"] == pytest.approx(0.02833052 + 0.98117059 * (1 + 4 * si), abs=1e-12)
    assert out["mos"] == pytest.approx(3.619, abs=1e-3)


def test_more_stalling_lowers_the_mos():
    base = constant(60, "1280x720", 2500)
    clean = evaluate_session(session(base))["mos"]
    one = evaluate_session(session(base, [[30, 2.0]]))["mos"]
    longer = evaluate_session(session(base, [[30, 6.0]]))["mos"]
    two = evaluate_session(session(base, [[20, 2.0], [40, 2.0]]))["mos"]
    assert clean > one > longer
    assert one > two
    counts = video_mos_session(2500, 720, 30, 120, np.arange(6), 3.0 * np.arange(6), 0.0)
    assert np.all(np.diff(counts) < 0)
    times = video_mos_session(2500, 720, 30, 120, 2, np.linspace(0.5, 40, 30), 0.0)
    assert np.all(np.diff(times) < 0)
    initial = video_mos_session(2500, 720, 30, 120, 0, 0.0, np.linspace(0, 20, 30))
    assert np.all(np.diff(initial) < 0)


def test_initial_loading_hurts_less_than_a_mid_session_stall():
    base = constant(60, "1280x720", 2500)
    initial = evaluate_session(session(base, [[0, 4.0]]))
    middle = evaluate_session(session(base, [[30, 4.0]]))
    end = evaluate_session(session(base, [[59, 4.0]]))
    assert initial["mos"] > middle["mos"] > end["mos"]  # the recency weight of (1)
    assert initial["total_stall_len_weighted_s"] < middle["total_stall_len_weighted_s"]
    assert video_mos_session(2500, 720, 30, 60, 0, 0.0, 4.0) > video_mos_session(2500, 720, 30, 60, 1, 4.0, 0.0)


def test_zero_length_stalls_are_not_stalls():
    base = constant(60)
    assert evaluate_session(session(base, [[0, 0.0]]))["mos"] == evaluate_session(session(base))["mos"]


def test_quality_switches_are_counted_and_penalised():
    steady = np.full(30, 3.0)
    assert _direction_changes(steady) == (0, 30.0)
    up_down = np.r_[np.full(10, 1.5), np.full(10, 4.0), np.full(10, 1.5)]
    changes, longest = _direction_changes(up_down)
    assert changes == 2
    assert 0 < longest < 30
    # 1280x720@4000 vs 640x360@250, alternating every 10 s: spread > 2, 5 switches in 60 s
    segs = [{"codec": "h264", "start": 10 * i, "duration": 10, "fps": 30,
             "resolution": "1280x720" if i % 2 else "640x360", "bitrate": 4000 if i % 2 else 250}
            for i in range(6)]
    out = evaluate_session(session(segs))
    assert out["adaptation_compensation"] > 0
    assert out["O.35"] < out["O.35_baseline"]


def test_mos_stays_within_1_and_5():
    rng = np.random.default_rng(7)
    for _ in range(60):
        pieces = int(rng.integers(1, 8))
        length = float(rng.uniform(5, 15))
        segs = [{"codec": "h264", "start": i * length, "duration": length,
                 "resolution": str(rng.choice(["256x144", "640x360", "1280x720", "1920x1080", "3840x2160"])),
                 "bitrate": float(rng.uniform(20, 20000)), "fps": float(rng.choice([5, 12, 24, 30, 60]))}
                for i in range(pieces)]
        end = pieces * length
        stalls = [[float(rng.uniform(0, end)), float(rng.uniform(0, 30))] for _ in range(int(rng.integers(0, 8)))]
        out = evaluate_session(session(segs, stalls, device=str(rng.choice(["pc", "mobile"]))))
        assert 1 <= out["mos"] <= 5
        assert all(1 <= q <= 5 for q in out["per_second"])
        assert all(1 <= q <= 5 for q in out["O.34"])
        assert 1 <= out["O.35"] <= 5 and 1 <= out["O.23"] <= 5
    wide = video_mos_session(rng.uniform(1, 50000, 5000), rng.choice([144, 360, 1080, 2160], 5000),
                             rng.uniform(1, 120, 5000), rng.uniform(1, 900, 5000), rng.integers(1, 50, 5000),
                             rng.uniform(0, 300, 5000), rng.uniform(0, 60, 5000), device="pc")
    assert np.all((wide >= 1) & (wide <= 5))


# -- the session-summary closed form -------------------------------------------------------------


@pytest.mark.parametrize("seconds, count, stall_s, initial_s", [
    (30, 0, 0.0, 0.0), (60, 1, 3.0, 0.0), (60, 0, 0.0, 2.5), (60, 2, 5.0, 1.0),
    (137, 3, 7.5, 0.8), (300, 5, 12.0, 4.0), (45, 1, 0.7, 3.0),
])
@pytest.mark.parametrize("device, height, bitrate, fps", [
    ("pc", 1080, 5000.0, 30.0), ("mobile", 720, 1500.0, 25.0), ("pc", 360, 400.0, 15.0), ("mobile", 540, 900.0, 12.0),
])
def test_session_summary_matches_evaluate_session(seconds, count, stall_s, initial_s, device, height, bitrate, fps):
    width = height * 16 // 9
    stalls = [[k * seconds / (count + 1), stall_s / count] for k in range(1, count + 1)]
    if initial_s:
        stalls.insert(0, [0, initial_s])
    full = evaluate_session(session(constant(seconds, f"{width}x{height}", bitrate, fps), stalls, device))
    summary = video_mos_session(bitrate, height, fps, seconds, count, stall_s, initial_s, device=device)
    assert summary == pytest.approx(full["mos"], abs=1e-9)


def test_session_summary_invalid_rows_and_codecs():
    got = video_mos_session([3000, -1, 3000, 3000, 3000, 3000], [720, 720, 0, 720, 720, 720],
                            30, [60, 60, 60, 0, 60, 60], [0, 0, 0, 0, 0, -1], [0, 0, 0, 0, 5.0, 0], 0,
                            codec=np.array(["h264"] * 6, dtype=object))
    assert np.isfinite(got[0]) and np.isnan(got[1:]).all()
    mixed = video_mos_session(3000, 720, 30, 60, 0, 0, 0, codec=np.array(["H264", "mpeg2", "avc1"]))
    assert np.isfinite(mixed[[0, 2]]).all() and np.isnan(mixed[1])
    assert isinstance(video_mos_session(3000, 720, 30, 60, 0, 0, 0), float)
    with pytest.raises(ValueError, match="codec 'mpeg2'"):
        video_mos_session(3000, 720, 30, 60, 0, 0, 0, codec="mpeg2")
    with pytest.raises(ValueError, match="device"):
        video_mos_session(3000, 720, 30, 60, 0, 0, 0, device="tv")


# -- bad input ------------------------------------------------------------------------------------


def _without(d, *path):
    d = copy.deepcopy(d)
    node = d
    for key in path[:-1]:
        node = node[key]
    del node[path[-1]]
    return d


def _with(d, value, *path):
    d = copy.deepcopy(d)
    node = d
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return d


GOOD = session(constant(20), [[0, 1.0]])


@pytest.mark.parametrize("bad, names", [
    (_without(GOOD, "I13"), ["I13.segments"]),
    (_with(GOOD, [], "I13", "segments"), ["I13.segments", "[]"]),
    (_without(GOOD, "I13", "segments", 1, "bitrate"), ["I13.segments[1]", "bitrate"]),
    (_with(GOOD, -4, "I13", "segments", 0, "duration"), ["I13.segments[0].duration", "-4"]),
    (_with(GOOD, "mpeg2", "I13", "segments", 2, "codec"), ["I13.segments[2].codec", "'mpeg2'"]),
    (_with(GOOD, "1080p", "I13", "segments", 0, "resolution"), ["I13.segments[0].resolution", "'1080p'"]),
    (_with(GOOD, "0", "I13", "segments", 0, "fps"), ["I13.segments[0].fps", "'0'"]),
    (_with(GOOD, "tv", "IGen", "device"), ["IGen.device", "'tv'"]),
    (_with(GOOD, "big", "IGen", "displaySize"), ["IGen.displaySize", "'big'"]),
    (_without(GOOD, "IGen"), ["IGen.device"]),
    (_with(GOOD, [[5, -1]], "I23", "stalling"), ["I23.stalling[0] duration", "-1"]),
    (_with(GOOD, [[-2, 1]], "I23", "stalling"), ["I23.stalling[0] media time", "-2"]),
    (_with(GOOD, [[25, 1]], "I23", "stalling"), ["I23.stalling[0]", "25"]),
    (_with(GOOD, [5, 1], "I23", "stalling"), ["I23.stalling[0]", "5"]),
    (_with(GOOD, 20, "I13", "segments", 1, "start"), ["I13.segments", "uncovered"]),
    ([1, 2], ["list"]),
])
def test_bad_input_raises_one_sentence(bad, names):
    with pytest.raises(ValueError) as info:
        evaluate_session(bad)
    message = str(info.value)
    assert all(name in message for name in names), message
    assert message.endswith(".") and ". " not in message and "\n" not in message


def test_example_file():
    out = evaluate_session(json.loads(EXAMPLE.read_text()))
    assert out["media_length_s"] == 60 and len(out["per_second"]) == 60 and len(out["O.34"]) == 60
    assert out["num_stalls"] == 2
    assert 1 <= out["mos"] < out["O.35"] <= 5


# -- SQL: DuckDB and Spark ------------------------------------------------------------------------

COLUMNS = ("bitrate_kbps", "height_px", "fps", "duration_s", "stall_count", "stall_time_s", "initial_buffering_s")


def _random_rows(n: int, seed: int) -> pa.Table:
    rng = np.random.default_rng(seed)
    data = {
        "bitrate_kbps": rng.uniform(30, 25000, n),
        "height_px": rng.choice([144, 240, 360, 480, 540, 720, 1080, 1440, 2160], n).astype(float),
        "fps": rng.choice([8, 12.5, 15, 23.976, 24, 25, 29.97, 30, 50, 60], n).astype(float),
        "duration_s": rng.uniform(0.5, 900, n),
        "stall_count": rng.integers(0, 12, n).astype(float),
        "stall_time_s": rng.uniform(0, 60, n) * (rng.random(n) < 0.8),
        "initial_buffering_s": rng.uniform(0, 8, n) * (rng.random(n) < 0.7),
    }
    # invalid rows: zero, negative, NULL
    for name in COLUMNS:
        bad = rng.random(n) < 0.02
        data[name][bad] = rng.choice([0.0, -1.0], bad.sum())
    masks = {name: rng.random(n) < 0.01 for name in COLUMNS}
    codec = np.where(rng.random(n) < 0.7, "h264", rng.choice(
        ["hevc", "vp9", " AVC1 ", "H.265", "AV1", "av01.0.08M.08", "hvc1.1.6.L93.B0", "mpeg2"], n))
    arrays = {name: pa.array(data[name], mask=masks[name]) for name in COLUMNS}
    return pa.table({"row_id": pa.array(np.arange(n)), **arrays, "codec": pa.array(codec)})


def _expected(table: pa.Table, device: str, display: int) -> np.ndarray:
    cols = [table[name].to_numpy(zero_copy_only=False).astype(float) for name in COLUMNS]  # NULL -> NaN
    codec = np.array(table["codec"].to_pylist(), dtype=object)
    return video_mos_session(*cols, codec=codec, device=device, display_height_px=display)


def _check(got: list, want: np.ndarray):
    got = np.array([np.nan if v is None else v for v in got], dtype=float)
    assert np.array_equal(np.isnan(got), np.isnan(want))
    assert np.isfinite(want).sum() > 0.6 * want.size
    assert np.nanmax(np.abs(got - want)) < 1e-9


@pytest.mark.parametrize("device, display", [("mobile", 1080), ("pc", 2160), ("pc", 720)])
def test_sql_matches_numpy_in_duckdb(device, display):
    table = _random_rows(4000, seed=display)
    expr = video_mos_sql(*COLUMNS, codec="codec", device=device, display_height_px=display)
    con = duckdb.connect()
    con.register("sessions", table)
    sql = f"SELECT {expr.sql(dialect='duckdb')} FROM sessions ORDER BY row_id"
    got = [row[0] for row in con.execute(sql).fetchall()]
    _check(got, _expected(table, device, display))


def test_sql_without_codec_column_takes_h264():
    expr = video_mos_sql(*(exp.Literal.number(v) for v in (3000, 720, 30, 60, 1, 2.0, 1.0)), device="pc")
    got = duckdb.connect().execute(f"SELECT {expr.sql(dialect='duckdb')}").fetchone()[0]
    assert got == pytest.approx(video_mos_session(3000, 720, 30, 60, 1, 2.0, 1.0, device="pc"), abs=1e-12)


def test_sql_uses_portable_functions_and_safe_division():
    expr = video_mos_sql(*COLUMNS, codec="codec")
    calls = [node for node in expr.find_all(exp.Func) if not isinstance(node, (exp.Connector, exp.If))]
    functions = {type(node).__name__ for node in calls}
    assert functions <= {"Ln", "Exp", "Cos", "Acos", "Greatest", "Least", "Lower", "Trim", "Cast", "Case", "Anonymous"}
    assert {n.name.lower() for n in calls if isinstance(n, exp.Anonymous)} == {"replace"}
    divisions = list(expr.find_all(exp.Div))
    assert divisions
    for div in divisions:
        case = div.parent
        assert isinstance(case, exp.Case) and case.args["default"] is div
        condition = case.args["ifs"][0].this
        assert isinstance(condition, exp.EQ) and condition.this.unnest().sql() == div.expression.unnest().sql()
    for ln in expr.find_all(exp.Ln):
        assert isinstance(ln.this, exp.Greatest) and float(ln.this.expressions[0].name) > 0
    for acos in expr.find_all(exp.Acos):
        assert isinstance(acos.this, exp.Greatest)
    assert len(expr.sql(dialect="duckdb")) < 100_000 and len(expr.sql(dialect="spark")) < 100_000


def _start_spark():
    try:
        from opencem.engines import spark as engine
    except ImportError:  # the engine module is optional here: start a bare local session
        from pyspark.sql import SparkSession
        return (SparkSession.builder.master("local[1]").config("spark.ui.enabled", "false")
                .config("spark.sql.shuffle.partitions", "1").config("spark.sql.ansi.enabled", "true")
                .config("spark.driver.host", "127.0.0.1").getOrCreate())
    try:
        return engine.spark_session(threads=1, shuffle_partitions=1)
    except engine.EngineError as err:
        if "already running" not in str(err):
            raise
        return engine.spark_session()  # another test's session: same engine, other core count


@pytest.fixture(scope="module")
def spark():
    try:
        session = _start_spark()
    except Exception as err:  # no Java, no free port, a broken install: say why and skip
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        pytest.skip(f"Spark could not start: {reason}")
    session.conf.set("spark.sql.ansi.enabled", "true")
    return session


def test_sql_matches_numpy_in_spark(spark):
    table = _random_rows(800, seed=3)
    expr = video_mos_sql(*COLUMNS, codec="codec", device="mobile", display_height_px=1080)
    schema = "row_id BIGINT, " + ", ".join(f"{name} DOUBLE" for name in COLUMNS) + ", codec STRING"
    rows = [tuple(row.values()) for row in table.to_pylist()]  # keeps NULLs (pandas would make NaN)
    spark.createDataFrame(rows, schema=schema).createOrReplaceTempView("p1203_sessions")
    sql = f"SELECT {expr.sql(dialect='spark')} AS mos FROM p1203_sessions ORDER BY row_id"
    _check([row["mos"] for row in spark.sql(sql).collect()], _expected(table, "mobile", 1080))


def test_output_states_what_was_assumed_and_ignored():
    plain = evaluate_session(session(constant(30)))
    with_audio = evaluate_session({**session(constant(30)),
                                   "I11": {"segments": [{"codec": "aaclc", "start": 0, "duration": 30, "bitrate": 128}]}})
    assert any("random forest" in a for a in plain["assumptions"])
    assert any(a.startswith("no audio input") for a in plain["assumptions"])
    assert any(a.startswith("I11 audio segments ignored") for a in with_audio["assumptions"])
    assert with_audio["mos"] == plain["mos"]  # the audio is not modelled, so it cannot move the score


def test_newer_codecs_are_scored_at_their_h264_equivalent_bitrate():
    from opencem.indicators.qoe.p1203 import CODEC_EFFICIENCY, codec_family

    assert CODEC_EFFICIENCY["hevc"] == pytest.approx(1 / (1 - 0.393))
    for written, family in [("H.265", "hevc"), ("hvc1.1.6.L93.B0", "hevc"), ("HEVC", "hevc"), ("vp09.00.10.08", "vp9"),
                            ("AV1", "av1"), ("av01.0.08M.08", "av1"), ("avc1.64001f", "h264"), ("mpeg2", None)]:
        assert codec_family(written) == family, written
    for codec in ("hevc", "av1", "vp9"):
        factor = CODEC_EFFICIENCY[codec]
        got = video_mos_session(1500, 720, 30, 60, 1, 2.0, 1.0, codec=codec)
        assert got == pytest.approx(video_mos_session(1500 * factor, 720, 30, 60, 1, 2.0, 1.0, codec="h264"), abs=1e-12)
        expr = video_mos_sql(*(exp.Literal.number(v) for v in (1500, 720, 30, 60, 1, 2.0, 1.0)), codec=exp.Literal.string(codec.upper()))
        assert duckdb.connect().execute(f"SELECT {expr.sql(dialect='duckdb')}").fetchone()[0] == pytest.approx(got, abs=1e-9)
    # HEVC at the same bitrate scores better than H.264 (it needs fewer bits for one picture).
    assert video_mos_session(300, 720, 30, 60, 0, 0, 0, codec="hevc") > video_mos_session(300, 720, 30, 60, 0, 0, 0) + 0.05


def test_a_session_file_in_hevc_gets_a_mos_and_says_how():
    session = {"I13": {"segments": [{"codec": "hevc", "start": 0, "duration": 10, "resolution": "1280x720",
                                     "bitrate": 1500, "fps": 30}]},
               "IGen": {"device": "mobile", "displaySize": "1920x1080"}}
    out = evaluate_session(session)
    as_h264 = evaluate_session({**session, "I13": {"segments": [{**session["I13"]["segments"][0], "codec": "h264",
                                                                 "bitrate": 1500 / (1 - 0.393)}]}})
    assert out["mos"] == pytest.approx(as_h264["mos"], abs=1e-12)
    assert any(n.startswith("HEVC scored as H.264 at 1.65 times its bitrate (39.3 % bitrate saving, Grois et al., PCS 2013)")
               for n in out["assumptions"])
    assert not any("HEVC" in n for n in as_h264["assumptions"])
    audio = next(n for n in out["assumptions"] if n.startswith("no audio input"))
    capped = sum(v >= 5.0 for v in out["O.34"])
    assert f"reaches 5 wherever O.22 >= 3.87 ({capped} of 10 seconds here)" in audio
