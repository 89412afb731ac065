"""Model hyper-parameters and calibration, declared once.

Why a module of their own: training fits with them and tracking logs them as run parameters; with them in
``models.train`` the two imported each other (train -> tracking -> train), hidden by function-level imports.
"""

from __future__ import annotations

from typing import Any

HGB_PARAMS: dict[str, Any] = {
    "learning_rate": 0.06,
    "max_iter": 400,
    "max_leaf_nodes": 31,
    "min_samples_leaf": 40,
    "l2_regularization": 1.0,
    "early_stopping": True,
    "validation_fraction": 0.1,
    "n_iter_no_change": 20,
}
LR_PARAMS: dict[str, Any] = {"C": 1.0, "max_iter": 3000}
CALIBRATION: dict[str, Any] = {"method": "sigmoid", "holdout_fraction": 0.2}
