"""Temporal split: test and training index dates are picked from the data, never overlapping."""

from __future__ import annotations

from datetime import date

import polars as pl
import pytest

from models.train import choose_dates
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
