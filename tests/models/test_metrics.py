"""Metrics against independent calculations: sklearn, hand-worked values, known calibration."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

from models.metrics import (
    auprc,
    auroc,
    bootstrap_ci,
    calibration_slope_intercept,
    evaluate,
    net_benefit,
    ppv_sensitivity,
)


def _sample(n: int, seed: int, distort: float = 1.0, shift: float = 0.0):
    """Outcomes drawn from true risks; the reported risk is logit-scaled by ``distort`` and shifted."""
    rng = np.random.default_rng(seed)
    z = rng.normal(-1.5, 1.2, n)
    y = rng.random(n) < 1 / (1 + np.exp(-z))
    reported = 1 / (1 + np.exp(-(distort * z + shift)))
    return y, reported


def test_auroc_and_auprc_match_sklearn_with_ties():
    rng = np.random.default_rng(3)
    score = np.round(rng.normal(size=3000), 1)  # many ties
    y = rng.random(3000) < 1 / (1 + np.exp(-2 * score))
    assert auroc(y, score) == pytest.approx(roc_auc_score(y, score), abs=1e-12)
    assert auprc(y, score) == pytest.approx(average_precision_score(y, score), abs=1e-12)


def test_auroc_by_hand():
    # pairs (pos, neg): (0.8,0.1) win, (0.8,0.4) win, (0.4,0.1) win, (0.4,0.4) tie -> 3.5 / 4
    assert auroc(np.array([1, 0, 1, 0]), np.array([0.8, 0.1, 0.4, 0.4])) == pytest.approx(0.875)


def test_perfectly_calibrated_sample_has_slope_one_intercept_zero():
    y, p = _sample(200_000, 1)
    slope, intercept = calibration_slope_intercept(y, p)
    assert slope == pytest.approx(1.0, abs=0.03)
    assert intercept == pytest.approx(0.0, abs=0.02)


def test_overconfident_and_shifted_predictions_are_detected():
    y, p = _sample(200_000, 2, distort=2.0)  # logits twice too extreme -> slope 1/2
    assert calibration_slope_intercept(y, p)[0] == pytest.approx(0.5, abs=0.02)
    y, p = _sample(200_000, 3, shift=0.7)  # risks systematically too high -> negative intercept
    slope, intercept = calibration_slope_intercept(y, p)
    assert slope == pytest.approx(1.0, abs=0.03)
    assert intercept < -0.5


def test_ppv_and_sensitivity_at_top_fraction_by_hand():
    score = np.arange(10, dtype=float)  # top 20% = the people scored 9 and 8
    y = np.array([1, 0, 0, 0, 0, 0, 1, 0, 1, 0], dtype=bool)
    ppv, sens = ppv_sensitivity(y, score, 0.20)
    assert ppv == pytest.approx(0.5)  # 8 is an event, 9 is not
    assert sens == pytest.approx(1 / 3)


def test_net_benefit_by_hand():
    y = np.array([1, 1, 0, 0, 0], dtype=bool)
    p = np.array([0.9, 0.3, 0.6, 0.1, 0.05])
    curve = net_benefit(y, p, thresholds=np.array([0.2, 0.5]))
    # pt 0.2: act on 0.9, 0.3, 0.6 -> TP 2, FP 1: 2/5 - 1/5 * 0.25 = 0.35; treat all: 0.4 - 0.6*0.25 = 0.25
    # pt 0.5: act on 0.9, 0.6 -> TP 1, FP 1: 1/5 - 1/5 * 1 = 0
    assert curve["model"] == pytest.approx([0.35, 0.0])
    assert curve["treat_all"] == pytest.approx([0.25, 0.4 - 0.6])


def test_bootstrap_ci_brackets_estimate_and_shrinks_with_n():
    y, p = _sample(2_000, 4)
    small = bootstrap_ci(y, p, n_boot=200)
    y2, p2 = _sample(50_000, 5)
    large = bootstrap_ci(y2, p2, n_boot=100)
    assert small["auroc"][0] < auroc(y, p) < small["auroc"][1]
    assert small["auprc"][0] < auprc(y, p) < small["auprc"][1]
    assert (large["auroc"][1] - large["auroc"][0]) < (small["auroc"][1] - small["auroc"][0]) / 3
    # The sampling SD of AUROC at n=2000 is roughly 0.01-0.015: a 95% CI about 0.04-0.06 wide.
    assert 0.02 < small["auroc"][1] - small["auroc"][0] < 0.09


def test_evaluate_names_and_brier():
    y, p = _sample(5_000, 6)
    out = evaluate(y, p, n_boot=50)
    assert out["brier"] == pytest.approx(brier_score_loss(y, p))
    for key in ("auroc", "auroc_ci_low", "auroc_ci_high", "auprc", "calibration_slope", "calibration_intercept",
                "ppv_top5", "sensitivity_top5", "ppv_top20", "sensitivity_top20", "net_benefit_p10"):
        assert np.isfinite(out[key]), key


def _person_level_poisson_bootstrap(y: np.ndarray, p: np.ndarray, n_boot: int, seed: int) -> dict[str, np.ndarray]:
    """The textbook Poisson bootstrap, written out independently: every person gets a Poisson(1) weight per
    replicate and sklearn computes the weighted AUROC and average precision."""
    rng = np.random.default_rng(seed)
    aurocs, auprcs = [], []
    for _ in range(n_boot):
        w = rng.poisson(1.0, len(y))
        aurocs.append(roc_auc_score(y, p, sample_weight=w))
        auprcs.append(average_precision_score(y, p, sample_weight=w))
    return {"auroc": np.array(aurocs), "auprc": np.array(auprcs)}


def test_segment_bootstrap_is_the_person_level_poisson_bootstrap_in_distribution():
    """The bootstrap draws Poisson(count) weights per score segment instead of Poisson(1) per person; the two
    are the same distribution. Scores rounded to 3 decimals give both kinds of segment: 689 tied groups, 325
    of them holding events and non-events, 231 without events (merged into runs). The percentile limits of
    2,000 replicates each agree within Monte Carlo error."""
    y, p = _sample(3_000, 11)
    p = np.round(p, 3)
    ours = bootstrap_ci(y, p, n_boot=2_000, seed=1)
    reference = _person_level_poisson_bootstrap(y, p, 2_000, seed=2)
    for stat in ("auroc", "auprc"):
        low, high = np.quantile(reference[stat], [0.025, 0.975])
        width = high - low
        # Monte Carlo SE of a 2.5% quantile from 2,000 replicates is about 3% of the interval's width.
        assert ours[stat][0] == pytest.approx(low, abs=0.12 * width), stat
        assert ours[stat][1] == pytest.approx(high, abs=0.12 * width), stat


def test_segment_bootstrap_centres_on_the_estimate_and_its_spread_matches_the_person_level_one():
    y, p = _sample(4_000, 12)
    p = np.round(p, 3)
    ours = bootstrap_ci(y, p, n_boot=1_000, seed=3)
    reference = _person_level_poisson_bootstrap(y, p, 1_000, seed=4)
    est = auroc(y, p)
    ref_low, ref_high = np.quantile(reference["auroc"], [0.025, 0.975])
    assert ours["auroc"][0] < est < ours["auroc"][1]
    assert (ours["auroc"][1] - ours["auroc"][0]) == pytest.approx(ref_high - ref_low, rel=0.15)


def test_segments_keep_exactly_what_auroc_and_auprc_need():
    """Collapsing event-free runs loses nothing: with every weight 1 the statistics over segments are
    sklearn's, with ties between events and non-events and event-free runs between event-holding scores."""
    from models.metrics import _auprc_counts, _auroc_counts, _rank, _segments

    y, p = _sample(3_000, 11)
    p = np.round(p, 3)
    seg = _segments(_rank(y, p))
    assert len(seg.events) < len(np.unique(p))  # some runs were merged
    assert seg.events.sum() == y.sum() and seg.non_events.sum() == (~y).sum()
    assert _auroc_counts(seg.events, seg.non_events) == pytest.approx(roc_auc_score(y, p), abs=1e-12)
    assert _auprc_counts(seg.events, seg.non_events) == pytest.approx(average_precision_score(y, p), abs=1e-12)
