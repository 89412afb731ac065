"""Temporal split: test and training index dates are picked from the data, never overlapping."""

from __future__ import annotations

from datetime import date, timedelta

import polars as pl
import pytest

from models.train import choose_dates, choose_method_dates
from upstream.errors import UpstreamError


@pytest.fixture
def clean(tmp_path):
    # Activity from 2020-03-01 to 2024-06-30 (the only dated source here: hospital spells).
    pl.DataFrame({"person_id": ["a", "b"], "admission_date": [date(2020, 3, 1), date(2024, 6, 30)]}).write_parquet(
        tmp_path / "hospital_spells.parquet")
    return tmp_path


def test_dates_from_data_end(clean):
    train, test = choose_dates(clean, date(2030, 1, 1))
    # Window [T, T+365) must end by 2024-07-01: T <= 2023-07-02 (a Sunday) -> Monday 2023-06-26.
    assert test == date(2023, 6, 26)
    # Outcome windows of training dates end by the test date; quarterly steps back while a year of
    # history precedes them (2021-09-26 - 365 days = 2020-09-26 >= 2020-03-01), at most four.
    assert train == [date(2021, 9, 26), date(2021, 12, 26), date(2022, 3, 27), date(2022, 6, 26)]


def test_index_date_limits_what_is_observed(clean):
    _, test = choose_dates(clean, date(2024, 1, 1))
    # T + 365 days <= 2024-01-01 (the index date, before the data end): T <= 2023-01-01, a Sunday.
    assert test == date(2022, 12, 26)


def test_overlapping_or_unobserved_dates_are_refused(clean):
    with pytest.raises(UpstreamError, match="overlapping"):
        choose_dates(clean, date(2030, 1, 1), train_dates=[date(2023, 1, 1)])
    with pytest.raises(UpstreamError, match="no complete 12-month outcome window"):
        choose_dates(clean, date(2030, 1, 1), test_date=date(2024, 1, 1))


def test_not_enough_history(tmp_path):
    # One year of data: a test year, but nothing before it to train on.
    pl.DataFrame({"person_id": ["a", "a"], "admission_date": [date(2022, 6, 1), date(2023, 6, 1)]}).write_parquet(
        tmp_path / "hospital_spells.parquet")
    with pytest.raises(UpstreamError, match="not enough history"):
        choose_dates(tmp_path, date(2030, 1, 1))


@pytest.fixture
def long_clean(tmp_path):
    # Activity from 2019-01-01 to 2025-12-31 (7 years).
    pl.DataFrame({"person_id": ["a", "b"], "admission_date": [date(2019, 1, 1), date(2025, 12, 31)]}).write_parquet(
        tmp_path / "hospital_spells.parquet")
    return tmp_path


def test_method_dates_validation_is_not_the_test_date_and_history_is_full(long_clean):
    dates = choose_method_dates(long_clean, date(2030, 1, 1), history_days=730)
    # Test: window must end by 2026-01-01 -> T <= 2025-01-01 (a Wednesday) -> Monday 2024-12-30.
    assert dates.test == date(2024, 12, 30)
    # Validation a year earlier: its outcome window [V, V+365) ends exactly at the test date.
    assert dates.validation == date(2023, 12, 31)
    # Fitting dates: outcome windows end by V (<= 2022-12-31), quarterly back while 730 days of history
    # precede them: 2022-12-31 - 730 days = 2020-12-31 >= 2019-01-01,
    # and three more quarters back (2022-04-02 - 730 = 2020-04-02 still >= 2019-01-01), at most four.
    assert dates.fit == [date(2022, 4, 2), date(2022, 7, 2), date(2022, 10, 1), date(2022, 12, 31)]
    assert dates.train == [*dates.fit, dates.validation]
    assert all(d + timedelta(days=365) <= dates.validation for d in dates.fit)


def test_method_dates_stop_where_history_runs_out(long_clean):
    # 1,400 days of history: 2022-12-31 - 1400 = 2019-03-03 >= 2019-01-01, 2022-10-01 - 1400 = 2018-12-02 < start.
    assert choose_method_dates(long_clean, date(2030, 1, 1), history_days=1400).fit == [date(2022, 12, 31)]


def test_method_dates_refuse_a_short_delivery_and_say_what_is_needed(clean):
    # 2020-03-01 .. 2024-06-30: test 2023-06-26, validation 2022-06-26, fitting <= 2021-06-26, which needs
    # data from 2019-06-27 with 730 days of history.
    with pytest.raises(UpstreamError, match=r"data from 2019-06-27 or earlier.*--years 6"):
        choose_method_dates(clean, date(2030, 1, 1), history_days=730)
    # Made explicit, a shorter history is accepted (both sides see the same 365 days).
    assert choose_method_dates(clean, date(2030, 1, 1), history_days=365).fit[-1] == date(2021, 6, 26)


def test_required_history_comes_from_the_feature_registry():
    from features.registry import FEATURES, MODEL_FEATURES, required_history_days

    longest = max(FEATURES[n].window_days or 0 for n in MODEL_FEATURES)
    assert required_history_days() == longest == 730  # HFRS and 24-month counts
    assert required_history_days(["falls_gp_12m"]) == 365


def test_the_candidate_is_chosen_on_validation_auroc_among_those_calibrated_there():
    from models.train import choose_candidate

    # logistic ranks better but its O/E misses a band on the validation date: the gate would refuse it
    metrics = {"logistic": {"auroc": 0.757, "calibration_misfits": 1.0},
               "hgb": {"auroc": 0.753, "calibration_misfits": 0.0}}
    assert choose_candidate(metrics) == "hgb"
    metrics["hgb"]["calibration_misfits"] = 2.0  # both miss: the better ranking one, and the gate says why
    assert choose_candidate(metrics) == "logistic"
    metrics["logistic"]["calibration_misfits"] = 0.0
    metrics["hgb"]["calibration_misfits"] = 0.0
    assert choose_candidate(metrics) == "logistic"
