"""Reasons only where they are read (issue 15): scoring explains nobody, publishing explains the listed people,
the API anyone else on demand, and every one of those is the text explaining the whole population gives.

The reference ("the full path") is ``score_features(..., explain=True)`` over the whole week's features with the
model version that scored the run: what scoring stored for everyone before this change.
"""

from __future__ import annotations

import json
import os
import shutil
from datetime import date

import numpy as np
import polars as pl
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from models.train import fit_candidates
from pipelines.scoring import reasons_json, score_features
from tests.models.conftest import make_frame
from upstream.errors import UpstreamError

FEATURES = ["age", "efi", "hfrs", "emergency_admissions_12m", "falls_12m", "lives_alone", "imd_decile",
            "ethnic_group"]  # one-hot levels and the age terms: several encoded columns summed into one feature


@pytest.fixture(scope="module")
def fitted():
    train = make_frame(3000, 31, date(2023, 1, 2)).with_columns(  # missing values: the logistic's indicators too
        pl.when(pl.int_range(pl.len()) % 9 == 0).then(None).otherwise(pl.col("imd_decile")).alias("imd_decile"))
    return make_frame(2500, 32, date(2024, 1, 1)), fit_candidates(train, FEATURES, "crisis", seed=0)


@pytest.mark.parametrize("kind", ["logistic", "hgb"])
def test_a_persons_reasons_do_not_depend_on_who_else_is_explained(fitted, kind, monkeypatch):
    """Explaining one person, a list's few, or a shuffled odd-sized block gives each person bit-for-bit the
    contributions and the very JSON text explaining everyone at once gives. (Summing encoded columns with a
    BLAS matrix product did not: one row goes through gemv, and odd row counts through edge kernels.)"""
    from models import treeshap

    people, models = fitted
    model = models[kind]
    monkeypatch.setattr(treeshap, "CHUNK_ROWS", 700)  # the whole population in several blocks, on threads
    everyone = model.contributions(model.encoder.transform(people))
    texts = reasons_json(people, model, 3)
    assert sum(t != "[]" for t in texts) > 1000  # most people have reasons: the comparison means something

    rng = np.random.default_rng(5)
    alone = rng.choice(people.height, 60, replace=False).tolist()
    for i in alone:
        one = people.slice(i, 1)
        assert np.array_equal(model.contributions(model.encoder.transform(one))[0], everyone[i]), i
        assert reasons_json(one, model, 3) == [texts[i]], i
    for size in (3, 7, 101, 777):
        rows = rng.permutation(people.height)[:size].tolist()
        block = people[rows]
        assert np.array_equal(model.contributions(model.encoder.transform(block)), everyone[rows]), size
        assert reasons_json(block, model, 3) == [texts[i] for i in rows], size


def test_scoring_can_leave_reasons_null_and_the_scores_are_the_same(fitted):
    people, models = fitted
    people = people.with_columns(pl.lit("North").alias("locality"))
    model = models["hgb"]
    full = score_features(people, model, 3)
    bare = score_features(people, model, 3, explain=False)
    assert bare["reasons"].null_count() == people.height and full["reasons"].null_count() == 0
    assert bare.drop("reasons").equals(full.drop("reasons"))


def test_treeshap_tables_are_built_once_per_model_and_read_back_bit_for_bit(fitted, tmp_path, monkeypatch):
    """The tables file: a later process (a fresh copy of the fitted model) reads what the first wrote, gets the
    same contributions bit for bit and builds nothing; a different model, or a damaged file, is rebuilt."""
    import pickle

    from models import treeshap

    people, models = fitted
    estimator = models["hgb"].base_estimator
    x = models["hgb"].encoder.transform(people)
    path = tmp_path / "treeshap-upstream-crisis-1.pkl"
    first = pickle.loads(pickle.dumps(estimator))  # as a new process would load it: no tables yet
    treeshap.tables_from_file(first, path)
    assert path.is_file()
    expected = treeshap.tree_shap_values(first, x)

    built, flattened = [], []
    monkeypatch.setattr(treeshap, "_compile", lambda model: built.append(model) or [])
    later = pickle.loads(pickle.dumps(estimator))
    with monkeypatch.context() as patch:
        patch.setattr(treeshap, "_flatten", lambda trees: flattened.append(trees) or None)
        treeshap.tables_from_file(later, path)
        assert built == [] and np.array_equal(treeshap.tree_shap_values(later, x), expected)
        # One person (the API's lookup) reads the flattened model from the file too, with the same values;
        assert np.array_equal(treeshap.tree_shap_values(later, x[:1]), expected[:1]) and flattened == []
    # and every table is held once, in the flat's one array, which the trees' leaves point into.
    flat = treeshap._FLAT[later]
    tabled = [leaf.table for tree in treeshap._COMPILED[later] for leaf in tree.leaves
              if leaf.table is not None and len(leaf.features)]
    assert tabled and all(np.shares_memory(table, flat.tables) for table in tabled)
    assert sum(table.size for table in tabled) == flat.tables.size

    other = fit_candidates(make_frame(1500, 41, date(2023, 1, 2)), FEATURES, "crisis", seed=1)["hgb"].base_estimator
    treeshap.tables_from_file(other, path)  # same file name, other trees: its fingerprint refuses the file
    assert built == [other]
    path.write_bytes(b"not a pickle")
    damaged = pickle.loads(pickle.dumps(estimator))
    treeshap.tables_from_file(damaged, path)
    assert built == [other, damaged]


def test_listed_people_without_features_are_refused_by_name():
    from pipelines.explain import reasons_for

    stored = pl.DataFrame({"person_id": ["a", "b"], "reasons": ["[]", None]})
    # Everyone stored: nothing to work out, no features or model needed.
    assert reasons_for(["a"], stored, None, None, 3, "2026-W47")["reasons"].to_list() == ["[]"]
    with pytest.raises(UpstreamError, match=r"cannot explain the 1 listed people of 2026-W47: the week's feature"):
        reasons_for(["a", "b"], stored, None, None, 3, "2026-W47")


def test_a_database_with_required_reasons_is_migrated_keeping_its_rows(tmp_path):
    """Databases made before this change have ``scores.reasons NOT NULL``: opening one makes it optional (SQLite
    rebuilds the table once) and keeps every row, the primary key and the indexes."""
    from sqlalchemy.schema import CreateTable

    from upstream.store import get_engine, score_runs, scores

    url = f"sqlite:///{tmp_path / 'old.db'}"
    old = sa.create_engine(url)
    ddl = str(CreateTable(scores).compile(dialect=old.dialect))
    assert "reasons JSON," in ddl
    with old.begin() as conn:
        score_runs.create(conn)
        conn.exec_driver_sql(ddl.replace("reasons JSON,", "reasons JSON NOT NULL,"))
        conn.execute(score_runs.insert().values(run_id="r1", week="2026-W47", index_date=date(2026, 11, 23),
                                                target="crisis", model_name="upstream-crisis", model_version="1",
                                                status="complete", started_at=sa.func.now()))
        conn.exec_driver_sql("INSERT INTO scores (run_id, person_id, locality, score, band, reasons, in_long_term_care)"
                             " VALUES ('r1', 'p1', 'North', 0.5, 'high', '[{\"text\": \"1 fall\"}]', 0)")
        with pytest.raises(sa.exc.IntegrityError):
            conn.exec_driver_sql("INSERT INTO scores (run_id, person_id, locality, score, band, reasons, "
                                 "in_long_term_care) VALUES ('r1', 'p2', 'North', 0.4, 'low', NULL, 0)")
    old.dispose()

    engine = get_engine(url)
    inspector = sa.inspect(engine)
    assert {c["name"]: c["nullable"] for c in inspector.get_columns("scores")}["reasons"] is True
    assert {i["name"] for i in inspector.get_indexes("scores")} == {"ix_scores_person", "ix_scores_run_locality"}
    with engine.begin() as conn:
        conn.execute(scores.insert().values(run_id="r1", person_id="p2", locality="North", score=0.4, band="low",
                                            reasons=None, in_long_term_care=False))
        rows = conn.execute(sa.select(scores.c.person_id, scores.c.reasons).order_by(scores.c.person_id)).all()
        with pytest.raises(sa.exc.IntegrityError):  # the primary key came through the rebuild
            conn.execute(scores.insert().values(run_id="r1", person_id="p1", locality="North", score=0.1,
                                                band="low", reasons=None, in_long_term_care=False))
    assert [tuple(r) for r in rows] == [("p1", [{"text": "1 fall"}]), ("p2", None)]  # SQL NULL, not JSON null
    get_engine.cache_clear()
    assert sa.inspect(get_engine(url)).get_columns("scores")  # opening it again is a no-op


# --- the real weekly flow, the real API -------------------------------------------------------------------


@pytest.fixture(scope="module")
def week(tmp_path_factory, prefect_harness, small_delivery_gate):
    """One real weekly run (train, score, publish) on a small synthetic county, and the full path's reasons."""
    from models.registry import model_version_kept
    from pipelines.flows import weekly
    from pipelines.weeks import delivery_extract_date, week_features
    from synthetic import generate
    from upstream.settings import Settings
    from upstream.store import get_engine, published_weeks, score_runs, scores

    root = tmp_path_factory.mktemp("reasons_on_demand")
    raw, home = root / "raw", root / "home"
    generate.generate_delivery(raw, residents=2500, seed=11)
    result = weekly(str(raw), delivery_extract_date(raw), train="always", home=str(home))
    settings = Settings(home=home)
    engine = get_engine(settings.db_url)
    with engine.connect() as conn:
        run = conn.execute(sa.select(score_runs).join(published_weeks, published_weeks.c.run_id == score_runs.c.run_id)
                           ).one()
        stored = pl.DataFrame(
            [(r.person_id, r.locality, r.score, r.reasons) for r in conn.execute(
                sa.select(scores.c.person_id, scores.c.locality, scores.c.score, sa.cast(scores.c.reasons, sa.Text))
                .where(scores.c.run_id == run.run_id))],
            schema={"person_id": pl.String, "locality": pl.String, "score": pl.Float64, "reasons": pl.String},
            orient="row")
    model = model_version_kept(settings, run.model_name, run.model_version)
    features = week_features(settings, date.fromisoformat(result["index_date"]))
    full = score_features(features, model, settings.lists.top_reasons).select("person_id", "reasons")
    return settings, engine, run, stored, dict(full.iter_rows())


def _listed(engine, run_id: str) -> dict[str, str]:
    from upstream.store import risk_lists

    with engine.connect() as conn:
        return dict(conn.execute(sa.select(risk_lists.c.person_id, sa.cast(risk_lists.c.reasons, sa.Text))
                                 .where(risk_lists.c.run_id == run_id)).all())


def test_the_run_explains_exactly_its_listed_people_as_the_full_path_would(week):
    _, engine, run, stored, full = week
    listed = _listed(engine, run.run_id)
    explained = dict(stored.filter(pl.col("reasons").is_not_null()).select("person_id", "reasons").iter_rows())
    assert len(listed) > 20 and stored.height > 3 * len(listed)  # most people are not listed
    assert explained.keys() == listed.keys()  # stored with the score for the listed, null for everyone else
    for person, text in listed.items():
        assert text == explained[person] == full[person], person  # character for character
    assert any(json.loads(text) for text in listed.values())


def test_the_api_explains_anyone_else_on_demand_as_the_full_path_would(week):
    from serving.app import create_app
    from serving.keys import create_key
    from upstream.store import audit_log

    settings, engine, run, stored, full = week
    unlisted = stored.filter(pl.col("reasons").is_null())
    sample = unlisted.sample(40, seed=3)
    analyst = create_key(engine, "analyst", [])
    with TestClient(create_app(settings)) as client:
        for person in sample["person_id"]:
            body = client.get(f"/residents/{person}/score", headers={"X-API-Key": analyst}).json()
            assert body["week"] == run.week and body.get("reasons_note") is None, body
            assert body["reasons"] == json.loads(full[person]), person  # values and contributions exact
        # A locality key sees only its own residents: another locality's gets the usual 404, unexplained.
        here, there = sorted(stored["locality"].unique())[:2]
        outsider = unlisted.filter(pl.col("locality") == there)["person_id"][0]
        local = create_key(engine, "locality", [here])
        assert client.get(f"/residents/{outsider}/score", headers={"X-API-Key": local}).status_code == 404
        assert client.get("/residents/" + "f" * 64 + "/score", headers={"X-API-Key": analyst}).status_code == 404
    with engine.connect() as conn:
        looked_at = set(conn.execute(sa.select(audit_log.c.person_id).where(
            audit_log.c.route == "/residents/{person_id}/score", audit_log.c.status_code == 200)).scalars())
    assert set(sample["person_id"]) <= looked_at  # who looked at whom: on-demand reasons are audited like any


def test_reasons_are_not_guessed_when_the_weeks_features_are_gone_or_changed(week):
    from pipelines.explain import explain_on_demand, features_file

    settings, _, run, stored, full = week
    person = stored.filter(pl.col("reasons").is_null()).row(0, named=True)
    asked = dict(person_id=person["person_id"], locality=person["locality"], index_date=run.index_date,
                 score=person["score"], model_name=run.model_name, model_version=run.model_version)
    assert explain_on_demand(settings, **asked).reasons == json.loads(full[person["person_id"]])
    path = features_file(settings, run.index_date, person["locality"])
    kept = path.with_suffix(".kept")
    shutil.copy2(path, kept)
    try:
        # The week was run again without publishing: its feature file no longer gives the published score.
        changed = pl.read_parquet(kept).with_columns(
            pl.when(pl.col("person_id") == person["person_id"]).then(pl.col("age") + 30).otherwise(pl.col("age"))
            .alias("age"))
        changed.write_parquet(path)
        found = explain_on_demand(settings, **asked)
        assert found.reasons is None and "no longer gives the published score" in found.note
        os.remove(path)  # retention, or an operator, removed the week's features
        found = explain_on_demand(settings, **asked)
        assert found.reasons is None and f"Reasons for {run.week} are not available" in found.note
        assert "features are no longer kept" in found.note
    finally:
        os.replace(kept, path)


def test_the_api_says_why_when_reasons_cannot_be_given(week):
    from serving.app import create_app
    from serving.keys import create_key

    settings, engine, run, stored, _ = week
    person = stored.filter(pl.col("reasons").is_null())["person_id"][1]
    folder = settings.home / "weeks" / run.week / "features"
    aside = folder.with_name("features-aside")
    os.replace(folder, aside)
    try:
        with TestClient(create_app(settings)) as client:
            body = client.get(f"/residents/{person}/score",
                              headers={"X-API-Key": create_key(engine, "analyst", [])}).json()
    finally:
        os.replace(aside, folder)
    assert body["reasons"] == [] and "features are no longer kept" in body["reasons_note"]
    assert body["score"] == stored.filter(pl.col("person_id") == person)["score"][0]  # the score is still served


def test_an_opted_out_resident_is_never_explained(week):
    """Publishing removes an opted-out person from every stored week, so the API has nobody to explain: 404."""
    from pipelines.score_history import publish_week
    from serving.app import create_app
    from serving.keys import create_key
    from upstream.store import risk_lists

    settings, engine, run, stored, _ = week
    person = stored.filter(pl.col("reasons").is_null())["person_id"][2]
    columns = [sa.cast(c, sa.Text).label(c.name) if c.name == "reasons" else c for c in risk_lists.columns]
    with engine.connect() as conn:
        lists = pl.DataFrame([dict(r._mapping) for r in conn.execute(
            sa.select(*columns).where(risk_lists.c.run_id == run.run_id))], infer_schema_length=None)
    publish_week(engine, week=run.week, run_id=run.run_id, index_date=run.index_date, lists=lists,
                 opted_out=[person])  # the same run again, as a later delivery's opt-out file does
    with TestClient(create_app(settings)) as client:
        response = client.get(f"/residents/{person}/score", headers={"X-API-Key": create_key(engine, "analyst", [])})
    assert response.status_code == 404
