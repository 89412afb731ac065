"""The scoring week's speed-ups (issue 15, session 5) change how, never what: the same probabilities, the same
contributions and reasons text, the same stored and read-back score rows.

Expected values come from the paths these replace, run here on the same real models and data: the model's own
``predict_proba`` over all rows, ``contributions``/``explain_json`` called per question, and the rows the test
wrote itself.
"""

from __future__ import annotations

import threading
from datetime import date

import numpy as np
import polars as pl
import pytest
import sqlalchemy as sa

from models.train import fit_candidates
from pipelines import scoring
from pipelines.champion import ModelExplainer
from pipelines.score_history import load_scores_for_lists, start_score_run, write_scores
from pipelines.scoring import SCORE_ROW, encode_reason, predict_in_row_blocks
from tests.models.conftest import make_frame
from upstream.store import get_engine

FEATURES = ["age", "efi", "hfrs", "emergency_admissions_12m", "falls_12m", "lives_alone", "imd_decile",
            "ethnic_group"]


@pytest.fixture(scope="module")
def fitted():
    train = make_frame(3000, 51, date(2023, 1, 2))
    return make_frame(2501, 52, date(2024, 1, 1)), fit_candidates(train, FEATURES, "crisis", seed=0)


class Recorded:
    """A real fitted model whose ``predict_proba`` calls are noted (rows, thread): nothing else is changed."""

    def __init__(self, model):
        self.model, self.bundle, self.calls = model, model, []

    def predict_proba(self, features):
        self.calls.append((features.height, threading.current_thread().name))
        return self.model.predict_proba(features)


def test_gradient_boosting_predicted_in_row_blocks_gives_the_models_own_floats(fitted, monkeypatch):
    people, models = fitted
    model = models["hgb"]
    assert model.kind == "hgb"
    whole = np.asarray(model.predict_proba(people), dtype=float).reshape(-1)  # OpenMP's own threads, one call
    monkeypatch.setattr(scoring, "MIN_ROWS_PER_THREAD", 100)
    recorded = Recorded(model)
    blocks = predict_in_row_blocks(recorded, people, threads=3)
    assert sorted(n for n, _ in recorded.calls) == [833, 834, 834]  # 2,501 rows in three blocks, on threads
    assert all(name.startswith("predict") for _, name in recorded.calls)
    assert np.array_equal(blocks, whole)  # bit for bit
    # Too few rows to split: one call, still one thread.
    monkeypatch.setattr(scoring, "MIN_ROWS_PER_THREAD", 20_000)
    recorded.calls.clear()
    assert np.array_equal(predict_in_row_blocks(recorded, people, threads=2), whole)
    assert [n for n, _ in recorded.calls] == [2501]


def test_a_logistic_model_is_predicted_whole_as_before(fitted, monkeypatch):
    people, models = fitted
    monkeypatch.setattr(scoring, "MIN_ROWS_PER_THREAD", 100)
    recorded = Recorded(models["logistic"])
    got = predict_in_row_blocks(recorded, people, threads=3)
    assert [n for n, _ in recorded.calls] == [people.height]
    assert np.array_equal(got, np.asarray(models["logistic"].predict_proba(people), dtype=float).reshape(-1))


@pytest.mark.parametrize("kind", ["logistic", "hgb"])
def test_publishings_explainer_computes_each_row_once_and_gives_the_per_call_values(fitted, kind):
    people, models = fitted
    model = models[kind]
    now, before = people.slice(0, 700), people.slice(400, 900)  # 300 people's rows asked twice
    counted = []
    real = model.contributions

    class Counting:
        """The real bundle, its ``contributions`` calls counted by rows."""

        def __getattr__(self, name):
            return getattr(model, name)

        def contributions(self, x):
            counted.append(x.shape[0])
            return real(x)

    explainer = ModelExplainer(Counting())
    explainer.prime([now, before])
    assert counted == [1300]  # one call for every distinct row (the overlap's rows are the same rows)
    asked_now = explainer.contributions_of(now.slice(100, 250))
    asked_before = explainer.contributions_of(before)
    assert counted == [1300]  # nothing computed again
    assert np.array_equal(asked_now, real(model.encoder.transform(now.slice(100, 250))))
    assert np.array_equal(asked_before, real(model.encoder.transform(before)))
    assert explainer.explain_json(now, 3, encode_reason) == model.explain_json(now, 3, encode_reason)
    unseen = people.slice(2000, 50)
    assert np.array_equal(explainer.contributions_of(unseen), real(model.encoder.transform(unseen)))
    assert counted == [1300, 50]  # a row nobody primed is computed when asked
    assert explainer.contributions_of(people.clear()).shape == (0, len(explainer.feature_names))


def test_scores_are_stored_in_person_order_and_read_back_for_the_lists_unchanged(tmp_path):
    banded = pl.DataFrame(
        {"person_id": ["p3", "p1", "p4", "p2"], "locality": ["North", "North", "South", "South"],
         "score": [0.9, 0.1 + 0.2, 0.5, 1e-300], "band": ["very high", "low", "high", "low"],
         "in_long_term_care": [True, False, False, True], "reasons": [None, "[]", None, None]},
        schema=SCORE_ROW,
    )
    engine = get_engine(f"sqlite:///{tmp_path / 'u.db'}")
    start_score_run(engine, run_id="r1", week="2026-W48", index_date=date(2026, 11, 23), target="crisis",
                    model_name="upstream-crisis", model_version="1")
    assert write_scores(engine, "r1", banded) == 4
    with engine.connect() as conn:
        stored = conn.execute(sa.text("SELECT person_id FROM scores WHERE run_id = 'r1' ORDER BY rowid")).scalars()
        assert list(stored) == ["p1", "p2", "p3", "p4"]  # appended in person order
    read = load_scores_for_lists(engine, "r1")
    assert read.schema == pl.Schema({name: SCORE_ROW[name] for name in read.columns})
    assert read.columns == ["person_id", "locality", "score", "band", "in_long_term_care"]
    assert read.sort("person_id").rows() == [
        ("p1", "North", 0.1 + 0.2, "low", False), ("p2", "South", 1e-300, "low", True),
        ("p3", "North", 0.9, "very high", True), ("p4", "South", 0.5, "high", False),
    ]
    assert load_scores_for_lists(engine, "no-such-run").height == 0
