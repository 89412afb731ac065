"""The monitoring measures (models.monitoring) against values worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest

from models.monitoring import (
    auroc,
    bin_shares,
    delivery_checks,
    expected_auroc,
    feature_drift,
    observed_expected,
    psi,
    reference_profile,
    score_drift,
)


def test_psi_by_hand():
    # (0.25-0.5) ln(0.25/0.5) + (0.75-0.5) ln(0.75/0.5)
    expected = 0.25 * math.log(2) + 0.25 * math.log(1.5)
    assert psi([0.5, 0.5], [0.25, 0.75]) == pytest.approx(expected)
    assert psi([0.2, 0.3, 0.5], [0.2, 0.3, 0.5]) == 0.0
    with pytest.raises(ValueError):
        psi([1.0], [0.5, 0.5])


def test_bin_shares_categories_edges_and_missing():
    cats = {"type": "categories", "values": [1.0, 2.0]}
    # two 1s, one 2, one unseen 7, one missing, of 5
    assert bin_shares(pl.Series([1, 1, 2, 7, None]), cats) == pytest.approx([0.4, 0.2, 0.2, 0.2])
    # -0.0 is the category 0.0; NaN is a value the reference never saw (not "missing"); True counts as 1.0
    zero_one = {"type": "categories", "values": [0.0, 1.0]}
    assert bin_shares(pl.Series([-0.0, 0.0, float("nan"), 1.0]), zero_one) == pytest.approx([0.5, 0.25, 0.25, 0.0])
    assert bin_shares(pl.Series([True, False, None, True]), zero_one) == pytest.approx([0.25, 0.5, 0.0, 0.25])
    edges = {"type": "edges", "edges": [10.0, 20.0]}
    # 5 -> below 10; 10 and 15 -> [10, 20); 25 -> >= 20; None -> missing
    assert bin_shares(pl.Series([5.0, 10.0, 15.0, 25.0, None]), edges) == pytest.approx([0.2, 0.4, 0.2, 0.2])
    strings = {"type": "categories", "values": ["F", "M"]}
    assert bin_shares(pl.Series(["F", "F", "M", "X"]), strings) == pytest.approx([0.5, 0.25, 0.25, 0.0])


def test_auroc_and_observed_expected_by_hand():
    # events scored 0.35 and 0.8; non-events 0.1 and 0.4: 3 of the 4 pairs are ordered right
    assert auroc(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1])) == pytest.approx(0.75)
    assert auroc(np.array([0.1, 0.2]), np.array([1, 1])) is None
    # 2 events observed, 0.2 + 0.3 + 0.5 = 1.0 expected
    assert observed_expected(np.array([0.2, 0.3, 0.5]), np.array([1, 0, 1])) == pytest.approx(2.0)


def test_expected_auroc_by_hand_and_by_simulation():
    # pair (0.6 event, 0.2 not): weight 0.6 * 0.8 = 0.48 right; (0.2 event, 0.6 not): 0.2 * 0.4 = 0.08 wrong
    assert expected_auroc(np.array([0.2, 0.6])) == pytest.approx(0.48 / 0.56)
    assert expected_auroc(np.array([0.5, 0.5])) == pytest.approx(0.5)
    # If outcomes really are Bernoulli(score), realised AUROC averages to the estimate.
    rng = np.random.default_rng(3)
    p = rng.beta(1.2, 8, size=4000)
    draws = [auroc(p, rng.random(p.size) < p) for _ in range(150)]
    assert np.mean(draws) == pytest.approx(expected_auroc(p), abs=0.005)


def _population(rng: np.random.Generator, n: int, age_shift: float = 0.0) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "age": np.clip(rng.normal(52, 21, n), 0, 105) + age_shift,
            "falls_12m": rng.poisson(0.2, n),
            "lives_alone": rng.random(n) < 0.3,
            "sex": rng.choice(["1", "2"], n),
        }
    )


def test_feature_drift_flags_an_older_population_and_not_a_fresh_sample():
    rng = np.random.default_rng(7)
    reference_frame = _population(rng, 20_000)
    scores = rng.beta(1.2, 8, size=20_000)
    reference = reference_profile(reference_frame, ["age", "falls_12m", "lives_alone", "sex"], scores)

    same = feature_drift(reference, _population(rng, 20_000), 0.1, 0.25)
    assert [c for c in same if c.status != "ok"] == []

    older = feature_drift(reference, _population(rng, 20_000, age_shift=5.0), 0.1, 0.25)
    flagged = {(c.subject, c.metric): c for c in older if c.status == "alert"}
    # 5 years on an SD of 21 is an SMD of about 0.24: a real shift, above the 0.2 alert line
    assert set(flagged) == {("age", "smd")}
    assert flagged[("age", "smd")].value == pytest.approx(5 / 21, abs=0.03)

    missing = feature_drift(reference, reference_frame.drop("falls_12m"), 0.1, 0.25)
    assert [(c.subject, c.status) for c in missing if c.value is None] == [("falls_12m", "alert")]


def test_score_drift_against_reference_and_previous_week():
    rng = np.random.default_rng(1)
    base = rng.beta(1.2, 8, size=10_000)
    reference = reference_profile(pl.DataFrame({"x": base}), ["x"], base)
    steady = score_drift(reference, rng.beta(1.2, 8, size=10_000), base, 0.1, 0.25)
    assert {c.subject: c.status for c in steady if c.metric == "psi"} == {"vs reference": "ok", "vs previous week": "ok"}
    doubled = score_drift(reference, np.clip(base * 2.5, 0, 1), base, 0.1, 0.25)
    assert {c.subject: c.status for c in doubled if c.metric == "psi"} == {
        "vs reference": "alert",
        "vs previous week": "alert",
    }


def test_delivery_checks_volume_and_quarantine():
    previous = {
        "residents": {"rows_in": 1000, "rows_valid": 990, "rows_quarantined": 10},
        "gp_events": {"rows_in": 8000, "rows_valid": 8000, "rows_quarantined": 0},
    }
    current = {
        "residents": {"rows_in": 1010, "rows_valid": 970, "rows_quarantined": 40},  # +1% rows, 1% -> 3.96%
        "gp_events": {"rows_in": 4000, "rows_valid": 4000, "rows_quarantined": 0},  # half missing
        "deaths": {"rows_in": 5, "rows_valid": 5, "rows_quarantined": 0},  # new source: nothing to compare
    }
    checks = {(c.kind, c.subject): c for c in delivery_checks(current, previous, 0.2, 0.02)}
    assert checks[("volume", "residents")].value == pytest.approx(0.01)
    assert checks[("volume", "residents")].status == "ok"
    assert checks[("volume", "gp_events")].value == pytest.approx(0.5)
    assert checks[("volume", "gp_events")].status == "alert"
    assert checks[("quarantine", "residents")].value == pytest.approx(40 / 1010 - 10 / 1000, abs=1e-5)
    assert checks[("quarantine", "residents")].status == "alert"
    assert checks[("quarantine", "gp_events")].status == "ok"
    assert checks[("volume", "deaths")].status == "info"
