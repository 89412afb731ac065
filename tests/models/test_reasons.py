"""Reasons: logistic attributions add up to the model's log-odds; HGB occlusion behaves as documented."""

from __future__ import annotations

from datetime import date

import numpy as np
import polars as pl
import pytest

from models.train import fit_candidates
from tests.models.conftest import make_frame

FEATURES = ["age", "efi", "hfrs", "emergency_admissions_12m", "falls_12m", "lives_alone", "imd_decile"]


@pytest.fixture(scope="module")
def models():
    train = make_frame(4000, 21, date(2023, 1, 2))
    # One missing IMD decile per 10 people, so the logistic model learns a missing-value indicator too.
    train = train.with_columns(
        pl.when(pl.int_range(pl.len()) % 10 == 0).then(None).otherwise(pl.col("imd_decile")).alias("imd_decile")
    )
    return train, fit_candidates(train, FEATURES, "crisis", seed=0)


def test_logistic_contributions_are_coef_times_standardised_value(models):
    train, fitted = models
    lr = fitted["logistic"]
    pipe = lr.base_estimator
    people = train.head(200)
    x = lr.encoder.transform(people)
    contrib = lr.contributions(x)
    coef = pipe.named_steps["model"].coef_[0]
    imputer, scaler = pipe.named_steps["impute"], pipe.named_steps["scale"]
    # By hand for age (column 0, never missing): coef * (x - mean) / sd.
    expected_age = coef[0] * (x[:, 0] - scaler.mean_[0]) / scaler.scale_[0]
    assert contrib[:, 0] == pytest.approx(expected_age)
    # Contributions over all features plus the intercept are exactly the model's log-odds.
    logit = pipe.named_steps["model"].intercept_[0] + contrib.sum(axis=1)
    assert logit == pytest.approx(pipe.decision_function(x))
    assert imputer.indicator_ is not None  # the imd_decile missing indicator is folded into imd_decile


def test_reason_dicts_use_registry_texts(models):
    train, fitted = models
    frail = train.filter((pl.col("falls_12m") >= 2) & pl.col("lives_alone")).head(30)
    for kind in ("logistic", "hgb"):
        reasons = fitted[kind].explain(frail, top_n=5)
        texts = {r["text"] for rs in reasons for r in rs}
        assert any(t.endswith("falls in the last 12 months") for t in texts), kind
        assert "lives alone" in texts, kind
        for rs in reasons:
            contributions = [r["contribution"] for r in rs]
            assert contributions == sorted(contributions, reverse=True) and all(c > 0 for c in contributions)


def test_hgb_occlusion_against_the_typical_person(models):
    _, fitted = models
    hgb = fitted["hgb"]
    typical = pl.DataFrame([dict(zip(hgb.encoder.columns, hgb.reference, strict=True))]).cast(
        {"lives_alone": pl.Boolean, "age": pl.Int32, "imd_decile": pl.Int32, "falls_12m": pl.Int32,
         "emergency_admissions_12m": pl.Int32})
    assert hgb.explain(typical, 3) == [[]]  # identical to the reference: nothing to explain
    # Change only falls: the falls contribution is exactly the model's log-odds change.
    faller = typical.with_columns(pl.lit(3, dtype=pl.Int32).alias("falls_12m"))
    contrib = hgb.contributions(hgb.encoder.transform(faller))[0]
    base = hgb.base_estimator
    change = base.decision_function(hgb.encoder.transform(faller)) - base.decision_function(
        hgb.encoder.transform(typical))
    assert contrib[FEATURES.index("falls_12m")] == pytest.approx(change[0])
    assert np.count_nonzero(contrib) == 1
    reasons = hgb.explain(faller, 3)[0]
    assert reasons[0]["feature"] == "falls_12m" and reasons[0]["text"] == "3 falls in the last 12 months"


def test_unremarkable_top_contributions_are_skipped_and_a_reason_is_always_given():
    from models.reasons import COMBINATION_REASON, top_reasons

    names = ["falls_12m", "lives_alone", "age", "bereaved_12m"]
    people = pl.DataFrame(
        {"falls_12m": [0, 0, 0], "lives_alone": [False, False, True], "age": [30, 30, 30], "bereaved_12m": [False] * 3}
    )
    # Person 0: the three largest positive contributions are unremarkable values (no falls, not alone,
    # not bereaved); only the 4th and smallest, "lives alone" for person 2, is a real reason.
    contributions = np.array(
        [
            [0.9, 0.8, -0.1, 0.7],  # nothing remarkable raises this person's risk
            [-0.9, -0.8, -0.1, -0.7],  # nothing raises it at all
            [0.9, 0.05, -0.1, 0.7],  # lives alone, a small contribution ranked last among positives
        ]
    )
    reasons = top_reasons(contributions, people, names, top_n=3)
    assert reasons[0] == [COMBINATION_REASON]
    assert reasons[1] == []
    assert [r["text"] for r in reasons[2]] == ["lives alone"]
    assert reasons[2][0]["contribution"] == pytest.approx(0.05)
