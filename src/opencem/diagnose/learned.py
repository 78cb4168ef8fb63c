"""The learned layer: gradient boosting (LightGBM) over the evidence features and the rule
each case matched, trained on labelled cases (the twin's, later resolved work orders), with a
calibrated confidence.

Calibration is top-label: an isotonic regression (scikit-learn) from the model's highest
class probability to how often that class was right, fitted on a fifth of the labelled cases
held out from the boosting (by subscriber, so one customer's hours do not sit on both sides).
A model is saved as LightGBM's own text format plus a JSON file (classes, features, the
isotonic steps): no pickles, so a model file cannot run code when it is loaded.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..errors import OpencemError
from .evidence import NOT_FEATURES, OBJECT_COLUMNS, SESSION_TABLES

SERVICES = tuple(SESSION_TABLES)
MODEL_FILE, META_FILE = "model.lgb.txt", "model.json"
PARAMS = {"objective": "multiclass", "learning_rate": 0.15, "num_leaves": 15, "min_data_in_leaf": 20, "max_bin": 63,
          "feature_fraction": 0.8, "bagging_fraction": 0.8, "bagging_freq": 1, "lambda_l2": 1.0,
          "verbose": -1, "seed": 13}
ROUNDS = 60
MAX_PER_CAUSE = 4000  # cases kept per cause for training: the common ones teach little more past that


class ModelError(OpencemError):
    """A learned-layer model that cannot be trained or read."""


def feature_names(evidence: pa.Table) -> list[str]:
    """The numeric and true/false evidence columns, the service and the matched rule."""
    names = [f.name for f in evidence.schema if f.name not in NOT_FEATURES and f.name not in OBJECT_COLUMNS
             and (pa.types.is_integer(f.type) or pa.types.is_floating(f.type) or pa.types.is_boolean(f.type))]
    return ["service_code", "rule_index", *names]


def matrix(evidence: pa.Table, rule_index: np.ndarray, names: list[str]) -> np.ndarray:
    """The feature matrix (cases x ``names``), NaN where a feature is empty."""
    n = evidence.num_rows
    out = np.full((n, len(names)), np.nan, dtype=np.float32)
    service = np.asarray(evidence.column("service").to_numpy(zero_copy_only=False), dtype=object)
    for i, name in enumerate(names):
        if name == "service_code":
            out[:, i] = np.select([service == s for s in SERVICES], np.arange(len(SERVICES)), -1)
        elif name == "rule_index":
            out[:, i] = rule_index
        elif name in evidence.column_names:
            out[:, i] = pc.cast(evidence.column(name), pa.float32()).to_numpy(zero_copy_only=False)
    return out


@dataclass
class Model:
    booster: object  # lightgbm.Booster
    classes: list[str]
    features: list[str]
    calibration_x: list[float]
    calibration_y: list[float]
    trained_on: str = ""

    @property
    def name(self) -> str:
        digest = hashlib.sha256(self.booster.model_to_string().encode()).hexdigest()[:8]
        return f"lightgbm-{digest}"

    def probabilities(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self.booster.predict(x, num_threads=1)).reshape(len(x), len(self.classes))

    def confidence(self, top: np.ndarray) -> np.ndarray:
        """Calibrated chance that the top class is right, from its raw probability."""
        if not self.calibration_x:
            return top
        return np.interp(top, self.calibration_x, self.calibration_y)

    def save(self, folder: Path) -> None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / MODEL_FILE).write_text(self.booster.model_to_string())
        (folder / META_FILE).write_text(json.dumps(
            {"classes": self.classes, "features": self.features, "calibration_x": self.calibration_x,
             "calibration_y": self.calibration_y, "trained_on": self.trained_on}, indent=1))


def load_model(folder: Path) -> Model | None:
    """The model saved in ``folder``; None when none was trained there."""
    import lightgbm as lgb

    folder = Path(folder)
    if not (folder / MODEL_FILE).is_file():
        return None
    try:
        meta = json.loads((folder / META_FILE).read_text())
        booster = lgb.Booster(model_str=(folder / MODEL_FILE).read_text())
        return Model(booster, list(meta["classes"]), list(meta["features"]), list(meta["calibration_x"]),
                     list(meta["calibration_y"]), meta.get("trained_on", ""))
    except (OSError, ValueError, KeyError, lgb.basic.LightGBMError) as err:
        raise ModelError(f"{folder}: the diagnosis model cannot be read ({str(err).splitlines()[0]}); "
                         "train it again with `opencem diagnose train`") from None


def train(evidence: pa.Table, rule_index: np.ndarray, causes: np.ndarray, trained_on: str = "",
          rounds: int = ROUNDS, threads: int = 1) -> Model:
    """Fit the layer on labelled cases: ``causes`` holds each case's true cause code."""
    import lightgbm as lgb
    from sklearn.isotonic import IsotonicRegression

    causes = np.asarray(causes, dtype=object)
    if len(causes) < 50:
        raise ModelError(f"{len(causes)} labelled cases are too few to train the diagnosis model; give at least 50")
    classes, y = np.unique(causes.astype(str), return_inverse=True)
    classes = [str(c) for c in classes]
    names = feature_names(evidence)
    x = matrix(evidence, rule_index, names)
    # hold a fifth of the customers out for calibration (every hour of one customer on one side)
    _, customer = np.unique(evidence.column("subscriber_id").to_numpy(zero_copy_only=False).astype(str),
                            return_inverse=True)
    calib = (customer.astype(np.int64) * 2654435761 % 1000003) % 5 == 0
    # at most MAX_PER_CAUSE cases of each cause (a random draw, the same each run)
    draw = np.random.default_rng(7).random(len(y))
    rank = np.empty(len(y))
    order = np.lexsort((draw, y))
    starts = np.searchsorted(y[order], np.arange(len(classes)))
    rank[order] = np.arange(len(y)) - np.repeat(starts, np.bincount(y, minlength=len(classes)))
    keep = rank < MAX_PER_CAUSE
    x, y, calib = x[keep], y[keep], calib[keep]
    counts = np.bincount(y, minlength=len(classes)).astype(float)
    weight = (counts.max() / np.maximum(counts, 1)) ** 0.35  # lifts rare causes without drowning common ones
    params = {**PARAMS, "num_class": len(classes), "num_threads": threads}
    fit = lgb.Dataset(x[~calib], y[~calib], weight=weight[y[~calib]], feature_name=names,
                      categorical_feature=["service_code", "rule_index"], free_raw_data=True)
    booster = lgb.train(params, fit, num_boost_round=rounds)
    model = Model(booster, classes, names, [], [], trained_on)
    if calib.sum() >= 20:
        p = model.probabilities(x[calib])
        top, right = p.max(axis=1), (p.argmax(axis=1) == y[calib]).astype(float)
        iso = IsotonicRegression(y_min=0, y_max=1, out_of_bounds="clip").fit(top, right)
        model.calibration_x = [float(v) for v in iso.X_thresholds_]
        model.calibration_y = [float(v) for v in iso.y_thresholds_]
    return model
