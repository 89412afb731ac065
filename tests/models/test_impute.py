"""The logistic model's median imputer gives scikit-learn's statistics bit for bit (models/impute.py)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from models.impute import MedianImputer


def _awkward(rows: int, seed: int) -> np.ndarray:
    """Columns where the median is a middle value, a mean of two different middle values, a tie, a fraction,
    a huge value, and a column that is all missing; NaN is missing."""
    rng = np.random.default_rng(seed)
    x = np.column_stack([
        rng.integers(0, 5, rows).astype(float),            # many ties
        rng.normal(size=rows) * 1e3,                        # continuous
        rng.random(rows) / 3,                               # fractions (rounding of (a + b) / 2)
        np.where(rng.random(rows) < 0.5, 1e300, 1.0),       # huge values ((low + high) / 2 near the top)
        np.full(rows, np.nan),                              # all missing
        rng.integers(0, 2, rows).astype(float),             # booleans
    ])
    x[rng.random(x.shape) < 0.3] = np.nan
    return x


@pytest.mark.parametrize("rows", [700, 701, 5000, 5001])  # even and odd counts; above numpy's 600-row small path
@pytest.mark.parametrize("keep_empty", [True, False])
# scikit-learn warns, by design, that it drops the all-missing column when keep_empty is False: the case tested
@pytest.mark.filterwarnings("ignore:Skipping features without any observed values:UserWarning")
def test_statistics_indicator_and_output_are_scikit_learns(rows: int, keep_empty: bool) -> None:
    x = _awkward(rows, seed=rows)
    ours = MedianImputer(strategy="median", add_indicator=True, keep_empty_features=keep_empty).fit(x)
    theirs = SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=keep_empty).fit(x)
    assert np.array_equal(ours.statistics_, theirs.statistics_, equal_nan=True)
    assert np.array_equal(ours.indicator_.features_, theirs.indicator_.features_)
    assert np.array_equal(ours.transform(x), theirs.transform(x), equal_nan=True)
    # Hand check of one column: the median of the non-missing values of column 0.
    column = x[:, 0][~np.isnan(x[:, 0])]
    assert ours.statistics_[0] == np.sort(column)[(len(column) - 1) // 2 : len(column) // 2 + 1].mean()
    if keep_empty:  # the all-missing column is imputed with 0, as scikit-learn documents
        assert ours.statistics_[4] == 0
    else:
        assert np.isnan(ours.statistics_[4])


def test_other_strategies_are_scikit_learns_own() -> None:
    x = _awkward(800, seed=1)
    ours = MedianImputer(strategy="mean", keep_empty_features=True).fit(x)
    theirs = SimpleImputer(strategy="mean", keep_empty_features=True).fit(x)
    assert np.array_equal(ours.statistics_, theirs.statistics_, equal_nan=True)


def test_the_logistic_pipeline_predicts_the_same_bit_for_bit() -> None:
    rng = np.random.default_rng(4)
    x = _awkward(3001, seed=4)[:, [0, 1, 2, 5]]
    y = (rng.random(3001) < 0.3).astype(int)

    def pipe(imputer: SimpleImputer) -> Pipeline:
        return Pipeline([("impute", imputer), ("scale", StandardScaler()), ("model", LogisticRegression())]).fit(x, y)

    ours = pipe(MedianImputer(strategy="median", add_indicator=True, keep_empty_features=True))
    theirs = pipe(SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True))
    assert np.array_equal(ours.predict_proba(x), theirs.predict_proba(x))
