"""The E-model against numbers that follow from G.107 / G.107.1 themselves."""

from __future__ import annotations

import math

import numpy as np
import pytest

from opencem.indicators.qoe.emodel import (CODECS, RO_WB, canonical_codec, emodel, mos_from_r,
                                           parameters, r_factor, r_narrowband_equivalent)


def annex_b(r: float) -> float:
    """G.107 Annex B exactly as printed."""
    if r < 0:
        return 1.0
    if r > 100:
        return 4.5
    return 1 + 0.035 * r + r * (r - 60) * (100 - r) * 7e-6


def test_default_parameters_give_r_93_2_and_its_textbook_decomposition():
    # Ie = 0, Ppl = 0, no delay: the G.107 reference connection. 93.206208 is also what an
    # independent Go implementation of G.107 (06/2015) prints for Table 3's defaults.
    out = emodel(0.0, 0.0, "G.711")
    assert out["r"] == pytest.approx(93.2, abs=0.1)
    assert out["r"] == pytest.approx(93.206208, abs=1e-5)
    assert out["Ro"] == pytest.approx(94.77, abs=0.01)
    assert out["Is"] == pytest.approx(1.41, abs=0.01)
    assert out["Id"] == pytest.approx(0.15, abs=0.01)
    assert out["Idte"] == 0.0 and out["Idd"] == 0.0  # (1 - e^-T) = 0 at T = 0; Ta <= mT
    assert out["Ie_eff"] == 0.0
    assert out["mos"] == pytest.approx(4.41, abs=0.005)
    assert out["band"] == "nb" and out["r_nb"] == out["r"]


def test_mos_from_r_is_annex_b_including_its_clamps():
    assert mos_from_r(93.2) == pytest.approx(4.41, abs=0.005)
    for r in np.linspace(-20, 130, 301):
        # Annex B's MOS is 1 wherever its cubic would dip below 1 (0 < R < 6.5).
        assert mos_from_r(r) == pytest.approx(max(annex_b(r), 1.0), abs=1e-12)
    assert annex_b(3.0) < 0.99 and mos_from_r(3.0) == 1.0
    assert min(mos_from_r(np.linspace(-50, 150, 20001))) == 1.0
    assert mos_from_r(-3.0) == 1.0 and mos_from_r(0.0) == pytest.approx(1.0)
    assert mos_from_r(100.0) == pytest.approx(4.5) and mos_from_r(140.0) == pytest.approx(4.5)


def test_wideband_mos_divides_r_by_1_29_first():
    for r in (0.0, 60.0, 100.0, 116.0, 129.0):
        assert mos_from_r(r, "wb") == pytest.approx(annex_b(r / 1.29), abs=1e-12)
    assert r_narrowband_equivalent(129.0, "wb") == pytest.approx(100.0)
    assert r_narrowband_equivalent(90.0, "nb") == 90.0
    r = np.array([90.0, 116.0])
    assert np.allclose(mos_from_r(r, np.array(["nb", "wb"])), [annex_b(90.0), annex_b(116 / 1.29)])
    with pytest.raises(ValueError, match="band must be 'nb' or 'wb'"):
        mos_from_r(90.0, "fb")


def test_absolute_delay_impairment_is_zero_up_to_100_ms():
    for ta in (0.0, 20.0, 80.0, 100.0):
        assert emodel(ta, 0.0, "G.711")["Idd"] == 0.0
    assert emodel(101.0, 0.0, "G.711")["Idd"] > 0.0
    # Ta = 200 ms: X = log2(2) = 1, Idd = 25 {2^(1/6) - 3 (1 + 1/729)^(1/6) + 2}.
    expected = 25 * (2 ** (1 / 6) - 3 * (1 + (1 / 3) ** 6) ** (1 / 6) + 2)
    assert emodel(200.0, 0.0, "G.711")["Idd"] == pytest.approx(expected, abs=1e-12)
    assert expected == pytest.approx(3.04, abs=0.01)


def test_talker_echo_follows_g107_with_t_equal_to_ta():
    p = parameters()
    out = emodel(150.0, 0.0, "G.711")
    no = -61.18  # G.107 default noise floor No, dBm0p
    roe = -1.5 * (no - p.RLR)
    terv = (p.TELR - 40 * math.log10((1 + 150 / 10) / (1 + 150 / 150))
            + 6 * math.exp(-0.3 * 150 ** 2))
    re = 80 + 2.5 * (terv - 14)
    idte = ((roe - re) / 2 + math.sqrt((roe - re) ** 2 / 4 + 100) - 1) * (1 - math.exp(-150))
    assert out["Idte"] == pytest.approx(idte, abs=0.02)
    # Listener echo with Tr = 2 Ta = 300 ms.
    rle = 10.5 * (p.WEPL + 7) * (300 + 1) ** -0.25
    idle = (out["Ro"] - rle) / 2 + math.sqrt((out["Ro"] - rle) ** 2 / 4 + 169)
    assert out["Idle"] == pytest.approx(idle, abs=1e-9)
    # An explicit T overrides the convention.
    assert emodel(150.0, 0.0, "G.711", T=0.0)["Idte"] == 0.0


def test_g711_with_plc_and_2_percent_random_loss():
    # Ie,eff = 0 + 95 * 2 / (2 + 25.1) = 7.01 (Bpl 25.1, G.711 with Appendix I PLC).
    out = emodel(0.0, 2.0, "G.711")
    assert out["Ie_eff"] == pytest.approx(95 * 2 / 27.1, abs=1e-12)
    assert out["r"] == pytest.approx(93.206 - 7.011, abs=0.005)
    assert emodel(0.0, 2.0, "G.711-noPLC")["Ie_eff"] == pytest.approx(95 * 2 / 6.3, abs=1e-12)
    # Bursty loss (BurstR = 2) weighs more: Ppl / (Ppl/BurstR + Bpl).
    assert emodel(0.0, 2.0, "G.711", burst_ratio=2.0)["Ie_eff"] == \
        pytest.approx(95 * 2 / (2 / 2 + 25.1), abs=1e-12)
    # G.729A: Ie 11, Bpl 19 -> Ie,eff = 11 + 84 * 1 / 20 at 1 %.
    assert emodel(0.0, 1.0, "G.729A")["Ie_eff"] == pytest.approx(11 + 84 / 20, abs=1e-12)


def test_wideband_codec_is_rated_on_the_129_scale():
    out = emodel(0.0, 0.0, "AMR-WB")
    nb = emodel(0.0, 0.0, "G.711")
    assert out["band"] == "wb" and out["Ro"] == RO_WB and out["Is"] == 0.0
    assert out["Id"] == pytest.approx(1.29 * nb["Id"], abs=1e-12)
    assert out["r"] == pytest.approx(129 - 1.29 * nb["Id"] - 13.0, abs=1e-12)  # Ie,WB 13
    assert out["r_nb"] == pytest.approx(out["r"] / 1.29, abs=1e-12)
    assert out["mos"] == pytest.approx(annex_b(out["r"] / 1.29), abs=1e-12)
    assert out["mos"] > emodel(0.0, 0.0, "AMR-NB")["mos"]  # wideband beats narrowband AMR
    assert emodel(0.0, 1.0, "AMR-WB-23.85")["Ie_eff"] == pytest.approx(8 + 87 * 1 / 5.9)


@pytest.mark.parametrize("codec", list(CODECS))
def test_mos_falls_as_loss_or_delay_grows(codec):
    loss = np.linspace(0, 30, 61)
    mos = emodel(100.0, loss, codec)["mos"]
    assert np.all(np.diff(mos) < 0)
    delay = np.linspace(0, 800, 161)
    mos = emodel(delay, 0.5, codec)["mos"]
    assert np.all(np.diff(mos) <= 1e-12) and mos[-1] < mos[0] - 1
    bursts = emodel(100.0, 3.0, codec, burst_ratio=np.array([1.0, 1.5, 2.0, 4.0]))["mos"]
    assert np.all(np.diff(bursts) < 0)


def test_numpy_arrays_agree_with_scalar_calls():
    rng = np.random.default_rng(3)
    n = 200
    delay = rng.uniform(0, 600, n)
    loss = rng.uniform(0, 20, n)
    burst = rng.uniform(1, 3, n)
    codec = rng.choice(list(CODECS), n)
    vector = emodel(delay, loss, codec, burst)
    assert vector["r"].shape == (n,)
    for i in range(0, n, 7):
        one = emodel(float(delay[i]), float(loss[i]), str(codec[i]), float(burst[i]))
        for key in ("r", "mos", "Id", "Ie_eff", "r_nb"):
            assert vector[key][i] == pytest.approx(one[key], abs=1e-12)
        assert vector["band"][i] == one["band"]
    assert np.allclose(r_factor(delay, loss, codec, burst), vector["r"])
    # Broadcasting: a delay column against a loss row.
    grid = emodel(np.array([[50.0], [300.0]]), np.array([0.0, 1.0, 5.0]), "EVS")
    assert grid["mos"].shape == (2, 3)


def test_inputs_are_clamped_to_their_meaning():
    assert emodel(-20.0, 0.0, "G.711")["r"] == emodel(0.0, 0.0, "G.711")["r"]
    assert emodel(0.0, -1.0, "G.711")["r"] == emodel(0.0, 0.0, "G.711")["r"]
    assert emodel(0.0, 250.0, "G.711")["r"] == emodel(0.0, 100.0, "G.711")["r"]
    assert emodel(0.0, 2.0, "G.711", burst_ratio=0.2)["r"] == emodel(0.0, 2.0, "G.711")["r"]
    assert emodel(0.0, 2.0, "G.711", burst_ratio=math.nan)["r"] == emodel(0.0, 2.0, "G.711")["r"]


def test_missing_values_give_nan_and_unknown_codecs_an_error():
    out = emodel(np.array([100.0, np.nan, 100.0]), np.array([0.0, 0.0, 1.0]),
                 np.array(["AMR-WB", "AMR-NB", None], dtype=object))
    assert np.isfinite(out["mos"][0]) and np.isnan(out["mos"][1]) and np.isnan(out["mos"][2])
    with pytest.raises(ValueError, match=r"unknown codec 'opus'; known codecs: G\.711"):
        emodel(100.0, 0.0, np.array(["AMR-WB", "opus"]))
    assert canonical_codec("amr-wb") == "AMR-WB"
    with pytest.raises(ValueError, match="known codecs: .*EVS"):
        canonical_codec("silk")


def test_parameter_overrides():
    louder = emodel(0.0, 0.0, "G.711", Nc=-60.0)  # more circuit noise, lower Ro
    assert louder["Ro"] < emodel(0.0, 0.0, "G.711")["Ro"]
    assert emodel(0.0, 0.0, "G.711", A=5.0)["r"] == pytest.approx(93.206208 + 5, abs=1e-5)
    # sT/mT (G.107 2015): a less delay-sensitive use case perceives delay later.
    relaxed = emodel(300.0, 0.0, "G.711", mT=200.0)["Idd"]
    assert 0 < relaxed < emodel(300.0, 0.0, "G.711")["Idd"]
    with pytest.raises(ValueError, match="unknown E-model parameter SLRR"):
        emodel(0.0, 0.0, "G.711", SLRR=3)


def test_codec_table_is_well_formed():
    for name, codec in CODECS.items():
        assert codec.band in ("nb", "wb"), name
        assert 0 <= codec.ie < 95 and codec.bpl > 0, name
    assert {"AMR-NB", "AMR-WB", "EVS"} <= set(CODECS)  # the simulator's xdr_voice.codec values
