"""Calibration-in-the-large of a fitted candidate rests on every training row, not on the Platt hold-out alone."""

from __future__ import annotations

from datetime import date

import numpy as np
import polars as pl
import pytest

from models.train import calibration_holdout, fit_candidates
from tests.models.conftest import make_frame

FEATURES = ["age", "efi", "hfrs", "emergency_admissions_12m", "falls_12m", "lives_alone"]


@pytest.mark.parametrize("kind", ["logistic", "hgb"])
def test_mean_prediction_over_the_training_rows_is_their_event_rate_whatever_the_hold_out_holds(kind):
    """A hold-out whose event rate is far above the other rows' (a third of its non-events turned into events)
    sets a Platt level that over-predicts; the anchored model's mean prediction over all training rows equals
    their event rate, counted from the frame itself, and the shift that did it lowers the log-odds."""
    frame = make_frame(6000, 31, date(2024, 1, 1))
    held = calibration_holdout(frame, 0.2, 0)
    rng = np.random.default_rng(5)
    flip = held & ~frame["crisis"].to_numpy() & (rng.random(frame.height) < 1 / 3)
    frame = frame.with_columns(pl.Series("crisis", frame["crisis"].to_numpy() | flip))
    y = frame["crisis"].to_numpy()
    assert y[held].mean() > 1.5 * y[~held].mean()  # the hold-out really is unrepresentative

    model = fit_candidates(frame, FEATURES, "crisis", seed=0, kinds=(kind,))[kind]

    predicted = model.predict_proba(frame)
    assert predicted.mean() == pytest.approx(y.mean(), abs=1e-9)
    assert model.training["calibration_shift"] < 0  # the hold-out's level was too high, so it came down
    # Ranking is untouched: the shift is the same for every row.
    base = model.estimator.calibrated_classifiers_[0].estimator
    margin = base.decision_function(model.encoder.transform(frame))
    assert np.array_equal(np.argsort(margin, kind="stable"), np.argsort(predicted, kind="stable"))
