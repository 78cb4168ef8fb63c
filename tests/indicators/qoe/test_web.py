"""Web-browsing MOS: logarithmic in page load time between its two anchors (G.1030 form)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from opencem.indicators.qoe.web import FASTEST_S, SLOWEST_S, coefficients, web_mos


def test_anchors_and_clamps():
    assert web_mos(FASTEST_S * 1000) == pytest.approx(5.0)
    assert web_mos(SLOWEST_S * 1000) == pytest.approx(1.0)
    assert web_mos(100.0) == 5.0 and web_mos(0.0) == 5.0 and web_mos(-5.0) == 5.0
    assert web_mos(60_000.0) == pytest.approx(1.0)
    # The geometric mean of the anchors is the middle of the scale.
    assert web_mos(math.sqrt(FASTEST_S * SLOWEST_S) * 1000) == pytest.approx(3.0)


def test_mos_is_linear_in_log_time():
    a, b = coefficients()
    assert b == pytest.approx(4 / math.log(SLOWEST_S / FASTEST_S))
    for t_ms in (600.0, 1000.0, 2500.0, 7000.0):
        assert web_mos(t_ms) == pytest.approx(a - b * math.log(t_ms), abs=1e-12)
        # Doubling the load time always costs the same b ln 2.
        assert web_mos(t_ms) - web_mos(2 * t_ms) == pytest.approx(b * math.log(2), abs=1e-12)
    assert web_mos(2500.0) == pytest.approx(5 - 4 * math.log(5) / math.log(30), abs=1e-12)


def test_monotonic_and_vectorised():
    t = np.linspace(0, 20_000, 401)
    mos = web_mos(t)
    assert mos.shape == t.shape and np.all(np.diff(mos) <= 0)
    assert np.all((mos >= 1.0 - 1e-12) & (mos <= 5.0))
    for i in range(0, 401, 37):
        assert mos[i] == pytest.approx(web_mos(float(t[i])), abs=1e-12)
    assert np.isnan(web_mos(np.array([np.nan]))[0])


def test_other_context():
    slow = web_mos(5000.0, fastest_s=1.0, slowest_s=60.0)
    assert slow > web_mos(5000.0)
    with pytest.raises(ValueError, match="fastest_s < slowest_s"):
        web_mos(1000.0, fastest_s=5.0, slowest_s=2.0)
