"""benchmarks/leakage.py finds the best one-column rule: checked on columns whose answer is
known, so the leakage table can be trusted."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

SPEC = importlib.util.spec_from_file_location("leakage", Path(__file__).resolve().parents[2] / "benchmarks" / "leakage.py")
leakage = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(leakage)

RNG = np.random.default_rng(5)


def test_a_threshold_that_labels_exactly_is_found_in_both_directions():
    x = RNG.uniform(0, 100, 5000)
    y = (x >= 80).astype(float)
    f1, rule, p, r = leakage.best_rule(pa.chunked_array([x]), y)
    assert (p, r) == (1.0, 1.0) and rule.startswith(">= 80")
    f1, rule, p, r = leakage.best_rule(pa.chunked_array([x]), (x <= 12.5).astype(float))
    assert (p, r) == (1.0, 1.0) and rule.startswith("<= 12.")


def test_an_exact_value_and_a_category_are_found():
    x = np.where(RNG.random(4000) < 0.1, 256.0, RNG.uniform(300, 5000, 4000))
    f1, rule, p, r = leakage.best_rule(pa.chunked_array([x]), (x == 256.0).astype(float))
    assert (p, r) == (1.0, 1.0) and rule in ("= 256", "<= 256")
    text = np.where(RNG.random(4000) < 0.2, "CSFB", "VoLTE")
    y = (text == "CSFB").astype(float)
    y[:40] = 1 - y[:40]  # some noise: no longer perfect
    f1, rule, p, r = leakage.best_rule(pa.chunked_array([pa.array(text)]), y)
    assert rule == "= CSFB" and 0.9 < p < 1 and 0.9 < r <= 1


def test_noise_finds_no_good_rule_and_nulls_are_not_values():
    x = RNG.normal(0, 1, 6000)
    y = (RNG.random(6000) < 0.05).astype(float)
    f1, *_ = leakage.best_rule(pa.chunked_array([x]), y)
    assert f1 < 0.2
    values = pa.array([None] * 100 + [1.0] * 100, pa.float64())
    y = np.r_[np.ones(100), np.zeros(100)]
    f1, rule, p, r = leakage.best_rule(pa.chunked_array([values]), y)
    assert f1 == 0.0  # the affected rows are exactly the nulls: no x <= t or x = v selects them
