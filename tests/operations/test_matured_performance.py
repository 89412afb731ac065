"""Realised performance of weeks whose 12-month outcome window has closed (hand-made scores and labels)."""

from __future__ import annotations

from datetime import UTC, date, datetime

import polars as pl
import pytest
import sqlalchemy as sa

from pipelines.monitor import matured_weeks, realised_performance
from upstream.settings import Settings
from upstream.store import get_engine, published_weeks, score_runs


def test_realised_auroc_and_oe_by_hand(tmp_path):
    settings = Settings(home=tmp_path)
    week_scores = pl.DataFrame({"person_id": ["a", "b", "c", "d", "e"], "score": [0.1, 0.4, 0.35, 0.8, 0.5]})
    # "e" left (died/moved before any outcome could be followed): not in the labels, not counted
    labels = pl.DataFrame({"person_id": ["a", "b", "c", "d"], "crisis": [False, False, True, True]})
    checks = {c.metric: c for c in realised_performance(week_scores, labels, "crisis", settings, reference_auroc=0.9)}
    # events 0.35, 0.8 vs non-events 0.1, 0.4: 3 of 4 pairs right
    assert checks["auroc"].value == pytest.approx(0.75)
    assert checks["auroc"].status == "alert"  # 0.15 below the champion's test AUROC of 0.9 (> 0.05)
    # 2 observed / (0.1 + 0.4 + 0.35 + 0.8) = 1.65 expected
    assert checks["o_e"].value == pytest.approx(2 / 1.65, abs=1e-5)
    assert checks["o_e"].status == "alert"  # 1.21 is outside 1 +/- 0.2
    good = realised_performance(week_scores, labels, "crisis", settings, reference_auroc=0.78)
    assert {c.metric: c.status for c in good}["auroc"] == "ok"


def test_only_weeks_with_a_closed_outcome_window_inside_the_delivery(tmp_path):
    settings = Settings(home=tmp_path)
    engine = get_engine(settings.db_url)
    days = {"2024-W48": date(2024, 11, 25), "2025-W47": date(2025, 11, 17), "2025-W48": date(2025, 11, 24)}
    with engine.begin() as conn:
        for week, day in days.items():
            conn.execute(sa.insert(score_runs).values(
                run_id=week, week=week, index_date=day, target="crisis", model_name="m", model_version="1",
                status="complete", started_at=datetime.now(UTC)))
            conn.execute(sa.insert(published_weeks).values(
                week=week, run_id=week, index_date=day, published_at=datetime.now(UTC)))
    # scoring 2025-11-24: the earliest window, [2024-11-25, 2025-11-25), is still open, so nothing has matured
    assert matured_weeks(settings, date(2025, 11, 24), data_end=date(2025, 11, 23)) == []
    # a week later, with data to 2025-11-30: 2024-W48's window [2024-11-25, 2025-11-25) is complete
    assert [w for w, _, _ in matured_weeks(settings, date(2025, 12, 1), data_end=date(2025, 11, 30))] == ["2024-W48"]
    # but not if the delivery stops before the window closes
    assert matured_weeks(settings, date(2025, 12, 1), data_end=date(2025, 11, 20)) == []
