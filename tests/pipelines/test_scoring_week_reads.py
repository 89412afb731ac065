"""The scoring week's session-6 speed-ups change how, never what.

- The week's scores are read from the history store's staged copy (written by the score step) only when it
  holds exactly the database's rows; otherwise from the database as before. Expected rows are the ones the
  test stored itself, in the order the database returns them.
- The logistic model's probabilities are built in one array instead of the pipeline's copies: expected values
  are scikit-learn's own ``predict_proba`` on the same real fitted models, compared bit for bit.
"""

from __future__ import annotations

from datetime import date

import numpy as np
import polars as pl
import pytest
import sqlalchemy as sa

from models.bundle import _logistic_proba, _standardised_inputs
from models.train import fit_candidates
from pipelines.score_history import (
    PublishedWeek,
    history_store,
    load_run_scores,
    load_scores_for_lists,
    stage_history,
    store_scores,
)
from tests.models.conftest import make_frame
from upstream.settings import Settings
from upstream.store import get_engine

FEATURES = ["age", "efi", "hfrs", "emergency_admissions_12m", "falls_12m", "lives_alone", "imd_decile",
            "ethnic_group"]
WHEN = date(2026, 11, 23)


def _scored(person_ids: list[str], localities: list[str], scores: list[float], ltc: list[bool]) -> pl.DataFrame:
    """One partition as the score step returns it (before banding)."""
    n = len(person_ids)
    return pl.DataFrame({"person_id": person_ids, "locality": localities, "score": scores,
                         "in_long_term_care": ltc, "reasons": [None] * n},
                        schema={"person_id": pl.String, "locality": pl.String, "score": pl.Float64,
                                "in_long_term_care": pl.Boolean, "reasons": pl.String})


@pytest.fixture
def stored(tmp_path):
    """A run stored by the real score step's store (``store_scores``): five people, two localities."""
    settings = Settings(home=tmp_path / "home", pseudo_key="test-key-not-secret")
    parts = [_scored(["p5", "p2"], ["South", "North"], [0.5, 0.1 + 0.2], [False, True]),
             _scored(["p4", "p1", "p3"], ["North", "South", "North"], [1e-300, 0.9, 0.7], [False, False, True])]
    run = store_scores(parts, WHEN, settings, "upstream-crisis", "1")
    return settings, run


# The database returns a run's rows by its (run, locality) index: locality by locality, each in insertion
# order, which is person order. Bands by hand: North has p2 0.3, p3 0.7, p4 ~0 -> percentiles 1/3, 2/3, 0.
EXPECTED_ROWS = [
    ("p2", "North", 0.1 + 0.2, "low", True),
    ("p3", "North", 0.7, "moderate", True),
    ("p4", "North", 1e-300, "low", False),
    ("p1", "South", 0.9, "moderate", False),
    ("p5", "South", 0.5, "low", False),
]


def test_the_week_s_scores_come_from_the_staged_copy_equal_to_the_database_s(stored):
    settings, run = stored
    engine, history = get_engine(settings.db_url), history_store(settings)
    assert history.staged_rows(run.run_id) == 5  # staged by the score step's store
    from_database = load_scores_for_lists(engine, run.run_id)  # no history store: the database alone
    staged = load_scores_for_lists(engine, run.run_id, history)
    assert from_database.rows() == EXPECTED_ROWS
    assert staged.rows() == EXPECTED_ROWS
    assert staged.schema == from_database.schema
    assert load_run_scores(engine, run.run_id, history).rows() == [(p, s) for p, _, s, _, _ in EXPECTED_ROWS]
    assert load_run_scores(engine, run.run_id).rows() == [(p, s) for p, _, s, _, _ in EXPECTED_ROWS]


def test_a_staged_copy_holding_people_the_database_lost_is_not_used(stored):
    """An opt-out applied to this run by a later publish deletes its rows from the database only: the counts
    differ, so the readers go back to the database and never show the removed person."""
    settings, run = stored
    engine, history = get_engine(settings.db_url), history_store(settings)
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM scores WHERE person_id = 'p3'"))
    assert history.staged_rows(run.run_id) == 5
    expected = [row for row in EXPECTED_ROWS if row[0] != "p3"]
    assert load_scores_for_lists(engine, run.run_id, history).rows() == expected
    assert load_run_scores(engine, run.run_id, history)["person_id"].to_list() == ["p2", "p4", "p1", "p5"]


def test_publishing_restages_without_opted_out_people_and_keeps_an_unchanged_copy(stored):
    settings, run = stored
    engine, history = get_engine(settings.db_url), history_store(settings)
    current = load_scores_for_lists(engine, run.run_id, history)
    week = PublishedWeek(run.week, run.run_id, run.index_date)
    path = settings.history_dir / "staged" / f"{run.run_id}.parquet"
    written = path.stat().st_mtime_ns
    stage_history(history, week, current, ["nobody-here"])  # nobody of this run opted out: the copy stands
    assert path.stat().st_mtime_ns == written
    # p1 opts out: publishing deletes p1 from the database and restages the run without p1.
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM scores WHERE person_id = 'p1'"))
    stage_history(history, week, current, ["p1"])
    assert history.staged_rows(run.run_id) == 4
    after = load_run_scores(engine, run.run_id, history)
    assert after.rows() == [(p, s) for p, _, s, _, _ in EXPECTED_ROWS if p != "p1"]


# --- the logistic model's probabilities in one array ------------------------------------------------


def _with_gaps(frame: pl.DataFrame, seed: int) -> pl.DataFrame:
    """Missing values in three features (so the imputer's medians and missing indicators both matter)."""
    rng = np.random.default_rng(seed)
    n = frame.height
    return frame.with_columns(
        pl.when(pl.Series(rng.random(n) < 0.15)).then(None).otherwise(pl.col("efi")).alias("efi"),
        pl.when(pl.Series(rng.random(n) < 0.10)).then(None).otherwise(pl.col("imd_decile")).alias("imd_decile"),
        pl.when(pl.Series(rng.random(n) < 0.05)).then(None).otherwise(pl.col("hfrs")).alias("hfrs"),
    )


@pytest.fixture(scope="module")
def logistic():
    train = _with_gaps(make_frame(3000, 61, date(2023, 1, 2)), 1)
    model = fit_candidates(train, FEATURES, "crisis", seed=0, kinds=("logistic",))["logistic"]
    assert model.kind == "logistic"
    imputer = model.base_estimator.named_steps["impute"]
    assert len(imputer.indicator_.features_) == 3  # the three gappy features have indicators
    return model


@pytest.mark.parametrize("rows", [1, 2, 7, 33, 2501])
def test_logistic_probabilities_are_scikit_learns_own_bit_for_bit(logistic, rows):
    people = _with_gaps(make_frame(2501, 62, date(2024, 1, 1)), 2).head(rows)
    x = logistic.encoder.transform(people)
    expected = logistic.estimator.predict_proba(x)[:, 1]  # the pipeline's own path
    got = logistic.predict_proba(people)
    assert got.dtype == np.float64 and got.shape == (rows,)
    assert np.array_equal(got.view(np.int64), expected.view(np.int64))
    # The matrix the logistic step sees is the pipeline's, values and layout.
    pipe = logistic.base_estimator
    built = _standardised_inputs(pipe.named_steps["impute"], pipe.named_steps["scale"], x)
    theirs = pipe[:-1].transform(x)
    assert np.array_equal(built, theirs, equal_nan=False)
    assert built.flags.f_contiguous == theirs.flags.f_contiguous


def test_logistic_probabilities_from_a_row_ordered_matrix_too(logistic):
    people = _with_gaps(make_frame(500, 63, date(2024, 1, 1)), 3)
    x = np.ascontiguousarray(logistic.encoder.transform(people))
    assert x.flags.c_contiguous
    assert np.array_equal(_logistic_proba(logistic.estimator, x), logistic.estimator.predict_proba(x)[:, 1])


def test_a_pipeline_of_another_shape_is_left_to_scikit_learn(logistic):
    """An imputer that drops empty features (not what training builds) is not reproduced: None, and the
    bundle then predicts through scikit-learn."""
    import copy

    other = copy.deepcopy(logistic)
    other.base_estimator.named_steps["impute"].keep_empty_features = False
    people = _with_gaps(make_frame(200, 64, date(2024, 1, 1)), 4)
    x = other.encoder.transform(people)
    assert _logistic_proba(other.estimator, x) is None
    assert np.array_equal(other.predict_proba(people), other.estimator.predict_proba(x)[:, 1])
