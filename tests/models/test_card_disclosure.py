"""The model card's numbers go through upstream.disclosure: purpose-built tiny groups, no count derivable."""

from __future__ import annotations

import numpy as np
import polars as pl

from models.card import DISCLOSURE_MARKER, card_context, reader_metrics, render_markdown
from models.fairness import fairness_audit


def _tiny_world() -> tuple[pl.DataFrame, np.ndarray, np.ndarray]:
    """600 people: sex group "F" 300 (60 events), "M" 294 (50 events), "X" 6 (1 event, the issue's n<8 group)."""
    rng = np.random.default_rng(3)
    sex = ["F"] * 300 + ["M"] * 294 + ["X"] * 6
    y = np.zeros(600, dtype=bool)
    y[:60] = True
    y[300:350] = True
    y[594] = True
    p = np.clip(0.1 + 0.4 * y + rng.normal(0, 0.15, 600), 0.01, 0.99)
    return pl.DataFrame({"sex": sex}), y, p


def _context(fairness: pl.DataFrame) -> dict:
    return card_context(
        target="crisis", version="1", run_id="r", alias="champion", chosen="logistic",
        metrics={"test_n": 600.0, "test_event_rate": 111 / 600, "test_auroc": 0.8123},
        candidate_metrics={}, baseline_metrics={}, fairness=fairness,
        context={"n_train": 5538, "n_test": 600, "train_event_rate": 809 / 5538, "test_event_rate": 111 / 600,
                 "features": ["age"]},
        gate={"checks": {}, "reasons": []}, codelists={},
    )


def test_tiny_group_shows_no_rate_and_training_rows_are_rounded():
    frame, y, p = _tiny_world()
    fairness = fairness_audit(frame, y, p)
    c = _context(fairness)
    rows = {r[1]: r for r in c["fairness"]}
    # Group X: 6 people, 1 event -> both "<8"; event rate, O/E, AUROC, FPR and FNR all withheld.
    assert rows["X"][2:4] == ("<8", "<8")
    assert set(rows["X"][4:]) == {"–"}
    # Group F: 300 people, 60 events -> rounded counts and the rate from them (60/300 = 0.200).
    assert rows["F"][2:5] == ("300", "60", "0.2")
    # Group M: 294 -> 295 people, 50 events; rate 50/295 = 0.1695 -> 0.169 (not 50/294 = 0.170).
    assert rows["M"][2:5] == ("295", "50", "0.169")
    data = dict(c["data"])
    assert data["training rows"] == "5540" and data["test rows (people)"] == "600"
    assert data["event rate, train / test"] == "0.1462 / 0.183"  # 810/5540 and 110/600
    # Every FNR/FPR shown times its rounded denominator is a whole number: only rounded counts come back.
    for r in c["fairness"]:
        if r[9] != "–" and r[3] != "<8":
            assert abs(float(r[9]) * int(r[3]) - round(float(r[9]) * int(r[3]))) < 0.5 + 1e-9
    # Headline: 111 events in 600 -> AUROC to 2 decimals; the sensitivity is not in the metrics, so "–".
    headline = dict(c["headline"])
    assert headline["AUROC"] == "0.81" and headline["sensitivity, top 20%"] == "–"
    markdown = render_markdown(c)
    assert DISCLOSURE_MARKER in markdown and "5538" not in markdown


def test_reader_metrics_withheld_without_group_size_or_for_tiny_test_sets():
    assert reader_metrics({"test_auroc": 0.8}) == {}  # no n, no way to judge: nothing shown
    tiny = reader_metrics({"test_n": 30.0, "test_event_rate": 5 / 30, "test_auroc": 0.8, "test_sensitivity_top20": 0.6})
    assert tiny == {"test_n": 30.0}  # 5 events: rate, AUROC and sensitivity withheld


def test_a_candidate_scored_on_a_sample_of_the_test_date_says_so_on_the_card():
    """The losing candidate's test metrics may come from a fixed sample (train.candidate_test_rows): its row in
    the comparison table names the sample's size against the test date's, both as disclosed counts (rounded to
    5), while the chosen model's row, scored on every test row, carries no such note."""
    fairness = fairness_audit(*_tiny_world())
    c = card_context(
        target="crisis", version="1", run_id="r", alias="champion", chosen="logistic",
        metrics={"test_n": 1_320_003.0, "test_auroc": 0.75},
        candidate_metrics={"logistic": {"n": 1_320_003.0, "auroc": 0.75},
                           "hgb": {"n": 200_000.0, "auroc": 0.74}},
        baseline_metrics={"age only": {"n": 1_320_003.0, "auroc": 0.62}}, fairness=fairness,
        context={"n_train": 600_000, "n_test": 1_320_003, "features": ["age"]},
        gate={"checks": {}, "reasons": []}, codelists={},
    )
    names = [row[0] for row in c["comparison"]]
    assert names == ["logistic",
                     "hgb (not chosen; a fixed random sample of 200000 of 1320005 test rows)",
                     "baseline: age only"]
