"""Reasons: exact additive contributions (logistic terms, TreeSHAP) on the raw log-odds, and registry texts."""

from __future__ import annotations

from datetime import date

import numpy as np
import polars as pl
import pytest

from models.train import fit_candidates
from tests.models.conftest import make_frame

FEATURES = ["age", "efi", "hfrs", "emergency_admissions_12m", "falls_12m", "lives_alone", "imd_decile"]


@pytest.fixture(scope="module")
def models():
    train = make_frame(4000, 21, date(2023, 1, 2))
    # One missing IMD decile per 10 people, so the logistic model learns a missing-value indicator too.
    train = train.with_columns(
        pl.when(pl.int_range(pl.len()) % 10 == 0).then(None).otherwise(pl.col("imd_decile")).alias("imd_decile")
    )
    return train, fit_candidates(train, FEATURES, "crisis", seed=0)


def test_logistic_contributions_are_coef_times_standardised_value(models):
    train, fitted = models
    lr = fitted["logistic"]
    pipe = lr.base_estimator
    people = train.head(200)
    x = lr.encoder.transform(people)
    contrib = lr.contributions(x)
    coef = pipe.named_steps["model"].coef_[0]
    imputer, scaler = pipe.named_steps["impute"], pipe.named_steps["scale"]
    # Age is column 0 and its piecewise-linear terms max(age - k, 0) follow it (models.bundle.AGE_KNOTS);
    # none is ever missing. By hand: the terms from the frame's age, then sum of coef * (x - mean) / sd.
    age = people["age"].to_numpy().astype(float)
    cols = [j for j, source in enumerate(lr.encoder.source_of) if source == "age"]
    assert cols == [0, 1, 2, 3]
    for j, knot in zip(cols[1:], (50, 65, 80), strict=True):
        assert x[:, j] == pytest.approx(np.maximum(age - knot, 0))
    expected_age = sum(coef[j] * (x[:, j] - scaler.mean_[j]) / scaler.scale_[j] for j in cols)
    assert contrib[:, 0] == pytest.approx(expected_age)
    # Contributions over all features plus the intercept are exactly the model's log-odds.
    logit = pipe.named_steps["model"].intercept_[0] + contrib.sum(axis=1)
    assert logit == pytest.approx(pipe.decision_function(x))
    assert imputer.indicator_ is not None  # the imd_decile missing indicator is folded into imd_decile


def test_reason_dicts_use_registry_texts(models):
    train, fitted = models
    frail = train.filter((pl.col("falls_12m") >= 2) & pl.col("lives_alone")).head(30)
    for kind in ("logistic", "hgb"):
        reasons = fitted[kind].explain(frail, top_n=5)
        texts = {r["text"] for rs in reasons for r in rs}
        assert any(t.endswith("falls in the last 12 months") for t in texts), kind
        assert "lives alone" in texts, kind
        for rs in reasons:
            contributions = [r["contribution"] for r in rs]
            assert contributions == sorted(contributions, reverse=True) and all(c > 0 for c in contributions)


@pytest.mark.parametrize("kind", ["logistic", "hgb"])
def test_contributions_add_up_to_the_raw_margin_for_every_person(models, kind):
    """Exact additivity on the raw (pre-calibration) log-odds, including people with a missing IMD decile."""
    train, fitted = models
    model = fitted[kind]
    people = train.head(500)
    x = model.encoder.transform(people)
    assert np.isnan(x).any()  # the missing-value path is exercised
    contrib = model.contributions(x)
    assert contrib.shape == (500, len(FEATURES))
    raw = model.base_estimator.decision_function(x)
    np.testing.assert_allclose(model.raw_base() + contrib.sum(axis=1), raw, rtol=0, atol=1e-9)
    # Calibration is a monotone map of that margin: ranking people by raw margin ranks them by score.
    calibrated = model.predict_proba(people)
    assert np.all(np.diff(calibrated[np.argsort(raw)]) >= -1e-12)


def _brute_force_shapley(model, row: np.ndarray) -> np.ndarray:
    """Shapley values from their definition, independent of shap: every subset S of features, with the
    path-dependent value v(S) = the trees' expected raw output when only the features in S are known
    (a split on a known feature follows the person; on an unknown one it averages both children,
    weighted by the training counts stored in each node)."""
    from itertools import combinations
    from math import factorial

    trees = [predictors[0].nodes for predictors in model._predictors]

    def expected(nodes, i: int, known: frozenset) -> float:
        node = nodes[i]
        if node["is_leaf"]:
            return float(node["value"])
        left, right = int(node["left"]), int(node["right"])
        j = int(node["feature_idx"])
        if j in known:
            value = row[j]
            goes_left = bool(node["missing_go_to_left"]) if np.isnan(value) else value <= node["num_threshold"]
            return expected(nodes, left if goes_left else right, known)
        n_left, n_right = float(nodes[left]["count"]), float(nodes[right]["count"])
        return (n_left * expected(nodes, left, known) + n_right * expected(nodes, right, known)) / (n_left + n_right)

    def v(known: frozenset) -> float:
        return float(np.ravel(model._baseline_prediction)[0]) + sum(expected(t, 0, known) for t in trees)

    n = len(row)
    phi = np.zeros(n)
    for j in range(n):
        others = [k for k in range(n) if k != j]
        for size in range(n):
            weight = factorial(size) * factorial(n - size - 1) / factorial(n)
            for subset in combinations(others, size):
                s = frozenset(subset)
                phi[j] += weight * (v(s | {j}) - v(s))
    full = v(frozenset(range(n)))
    return phi, full


def test_hgb_contributions_are_the_exact_shapley_values(models):
    """TreeSHAP through our wrapper equals Shapley values computed from the definition on a small forest."""
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.frozen import FrozenEstimator

    from models.bundle import UpstreamModel

    train, fitted = models
    encoder = fitted["hgb"].encoder
    x = encoder.transform(train)
    y = train.get_column("crisis").cast(pl.Int8).to_numpy()
    small = HistGradientBoostingClassifier(max_iter=6, max_leaf_nodes=6, random_state=0).fit(x, y)
    model = UpstreamModel(
        kind="hgb", target="crisis", encoder=encoder, reference=np.zeros(x.shape[1]),
        estimator=CalibratedClassifierCV(FrozenEstimator(small), method="sigmoid").fit(x, y),
    )
    rows = x[[0, 1, 2, np.flatnonzero(np.isnan(x).any(axis=1))[0]]]
    contrib = model.contributions(rows)
    for i, row in enumerate(rows):
        phi, full = _brute_force_shapley(small, row)
        assert full == pytest.approx(small.decision_function(row[None, :])[0])  # the brute force is sound
        # Shapley values are per encoded column; a feature's contribution is the sum over its columns (age and
        # its piecewise-linear terms, one-hot dummies), the same grouping the wrapper applies.
        np.testing.assert_allclose(contrib[i], phi @ encoder.group_matrix(), rtol=0, atol=1e-9)


def test_a_faller_gets_falls_as_the_top_hgb_reason(models):
    """Reason texts keep their meaning: a typical person (training medians) who has fallen 3 times has
    falls as the strongest reason, and nothing else far from typical to compete with it."""
    _, fitted = models
    hgb = fitted["hgb"]
    person = pl.DataFrame([dict(zip(hgb.encoder.columns, hgb.reference, strict=True))]).cast(
        {"lives_alone": pl.Boolean, "age": pl.Int32, "imd_decile": pl.Int32, "falls_12m": pl.Int32,
         "emergency_admissions_12m": pl.Int32})
    assert person["falls_12m"][0] == 0
    faller = person.with_columns(pl.lit(3, dtype=pl.Int32).alias("falls_12m"))
    before = hgb.contributions(hgb.encoder.transform(person))[0]
    after = hgb.contributions(hgb.encoder.transform(faller))[0]
    falls = FEATURES.index("falls_12m")
    assert after[falls] > 0 and after[falls] > before[falls]
    reasons = hgb.explain(faller, 3)[0]
    assert reasons[0]["feature"] == "falls_12m" and reasons[0]["text"] == "3 falls in the last 12 months"


def test_unremarkable_top_contributions_are_skipped_and_a_reason_is_always_given():
    from models.reasons import COMBINATION_REASON, top_reasons

    names = ["falls_12m", "lives_alone", "age", "bereaved_12m"]
    people = pl.DataFrame(
        {"falls_12m": [0, 0, 0], "lives_alone": [False, False, True], "age": [30, 30, 30], "bereaved_12m": [False] * 3}
    )
    # Person 0: the three largest positive contributions are unremarkable values (no falls, not alone,
    # not bereaved); only the 4th and smallest, "lives alone" for person 2, is a real reason.
    contributions = np.array(
        [
            [0.9, 0.8, -0.1, 0.7],  # nothing remarkable raises this person's risk
            [-0.9, -0.8, -0.1, -0.7],  # nothing raises it at all
            [0.9, 0.05, -0.1, 0.7],  # lives alone, a small contribution ranked last among positives
        ]
    )
    reasons = top_reasons(contributions, people, names, top_n=3)
    assert reasons[0] == [COMBINATION_REASON]
    assert reasons[1] == []
    assert [r["text"] for r in reasons[2]] == ["lives alone"]
    assert reasons[2][0]["contribution"] == pytest.approx(0.05)


def _random_people(rng: np.random.Generator, n: int) -> pl.DataFrame:
    """Feature values of every kind reasons meet: counts, flags, ages and a float with missing values."""
    return pl.DataFrame({
        "falls_12m": rng.integers(0, 4, n).astype(np.int32),
        "lives_alone": rng.random(n) < 0.3,
        "age": rng.integers(20, 100, n).astype(np.int32),
        "efi": np.where(rng.random(n) < 0.1, np.nan, rng.random(n).round(2)),
        "bereaved_12m": rng.random(n) < 0.1,
    })


def test_vectorised_top_reasons_equal_the_row_by_row_definition():
    """The vectorised ranking picks exactly what a plain per-person loop over the definition picks."""
    from models.reasons import COMBINATION_REASON, reason_text, top_reasons

    rng = np.random.default_rng(5)
    n = 2000
    people = _random_people(rng, n)
    names = people.columns
    contributions = rng.normal(size=(n, len(names)))
    contributions[rng.random(contributions.shape) < 0.05] = 0.0
    got = top_reasons(contributions, people, names, top_n=3)

    expected = []
    for i in range(n):
        row = people.row(i, named=True)
        ranked = sorted(range(len(names)), key=lambda j: (-contributions[i, j], j))
        reasons = []
        for j in ranked:
            value = row[names[j]]
            value = None if isinstance(value, float) and np.isnan(value) else value
            text = reason_text(names[j], value)
            if contributions[i, j] > 0 and text is not None and len(reasons) < 3:
                reasons.append({"feature": names[j], "value": value, "text": text, "contribution": contributions[i, j]})
        if not reasons and (contributions[i] > 0).any():
            reasons = [COMBINATION_REASON]
        expected.append(reasons)
    assert got == expected
    assert sum(r == [COMBINATION_REASON] for r in got) > 0 and sum(len(r) == 3 for r in got) > 0
    # A few rows (one resident in the API) take the Python lookups instead of polars joins: the same choice.
    from models.reasons import FEW_ROWS

    for start in range(0, 300, 3):
        size = 1 + start % FEW_ROWS
        rows = slice(start, start + size)
        assert top_reasons(contributions[rows], people[rows], names, top_n=3) == expected[rows], start


def test_hgb_contributions_equal_shap_tree_explainer(models):
    """The vectorised TreeSHAP gives the maintained shap package's values for the trained champion-style
    model (400-iteration settings, missing values), person by person, and the same base value."""
    import shap

    train, fitted = models
    hgb = fitted["hgb"]
    x = hgb.encoder.transform(train.head(1500))
    explainer = shap.TreeExplainer(hgb.base_estimator, feature_perturbation="tree_path_dependent")
    theirs = np.asarray(explainer.shap_values(x, check_additivity=True)) @ hgb.encoder.group_matrix()
    np.testing.assert_allclose(hgb.contributions(x), theirs, rtol=0, atol=1e-9)
    assert hgb.raw_base() == pytest.approx(float(np.ravel(explainer.expected_value)[0]), abs=1e-9)


def test_deep_leaves_use_the_same_formula_as_full_tables(models, monkeypatch):
    """Leaves too deep for a full pattern table compute only the patterns present: same values."""
    import models.treeshap as treeshap

    train, fitted = models
    hgb = fitted["hgb"]
    x = hgb.encoder.transform(train.head(800))
    full = treeshap.tree_shap_values(hgb.base_estimator, x, threads=1)
    monkeypatch.setattr(treeshap, "FULL_TABLE_MAX_FEATURES", 0)
    monkeypatch.setattr(treeshap, "CHUNK_ROWS", 300)  # several blocks, on two threads
    fresh = treeshap._compile(hgb.base_estimator)
    assert all(leaf.table is None for tree in fresh for leaf in tree.leaves)
    monkeypatch.setattr(treeshap, "_compiled", lambda model: fresh)
    np.testing.assert_allclose(treeshap.tree_shap_values(hgb.base_estimator, x, threads=2), full, rtol=0, atol=1e-12)


def test_leaf_tables_built_in_batches_are_the_one_leaf_tables_bit_for_bit():
    """Compiling a model builds its leaf tables in batches of equal depth (``leaf_tables``): each leaf's table
    must be exactly the one computed for that leaf alone, whichever batch it lands in."""
    from models.treeshap import _full_tables, leaf_table

    rng = np.random.default_rng(3)
    leaves = []
    for d in (1, 3, 3, 5, 5, 5, 13):
        leaves.append((np.arange(d), rng.uniform(0.05, 1.0, d), float(rng.normal())))
    tables = _full_tables(leaves)
    assert tables[-1] is None  # 13 path features: deeper than FULL_TABLE_MAX_FEATURES, built on demand
    for (features, fractions, value), table in zip(leaves[:-1], tables[:-1], strict=True):
        d = len(features)
        patterns = ((np.arange(2**d)[:, None] >> np.arange(d)) & 1).astype(bool)
        assert np.array_equal(table, leaf_table(patterns, fractions, value))
    # One feature: Shapley value of a single-feature game is v * (a - r), worked out by hand.
    (_, (r,), v), table = leaves[0], tables[0]
    assert table[:, 0] == pytest.approx([v * (0 - r), v * (1 - r)], abs=1e-15)


def test_reasons_json_made_from_the_arrays_is_the_text_of_the_encoded_dicts():
    """Scoring writes reasons straight from the ranked arrays (``top_reasons_json``): character for character
    what encoding ``top_reasons``' dicts gives, for missing values, booleans, text values, "several factors"
    rows, rows without reasons and contributions whose shortest form needs an exponent."""
    from models.reasons import top_reasons, top_reasons_json
    from pipelines.scoring import encode_reason, encode_reasons

    rng = np.random.default_rng(11)
    n = 3000
    people = _random_people(rng, n).with_columns(pl.Series("sex", rng.choice(["F", "M", None], n)))
    names = people.columns
    contributions = rng.normal(size=(n, len(names))) * rng.choice([1.0, 1e-7, 3e5], size=(n, 1))
    contributions[rng.random(contributions.shape) < 0.05] = 0.0
    contributions[:5] = -1.0  # no risk-raising contribution at all: an empty array
    got = top_reasons_json(contributions, people, names, 3, encode_reason)
    assert got == encode_reasons(top_reasons(contributions, people, names, 3))
    assert got[0] == "[]"
    assert any('"text":"several factors together' in text for text in got)
    assert any("e-0" in text for text in got)  # 1e-07-sized contributions, written as json writes floats
    assert top_reasons_json(contributions[:, :0], people, [], 3, encode_reason) == ["[]"] * n


@pytest.fixture(scope="module")
def deep_model():
    """A small gradient-boosting model whose leaves have more than ``FULL_TABLE_MAX_FEATURES`` distinct path
    features (13-16 here): the target needs 16 features all above a cut, so the trees keep splitting one branch
    on new features. Missing values too, so the missing-value side of the splits is exercised."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    rng = np.random.default_rng(7)
    x = rng.normal(size=(3000, 18))
    x[rng.random(x.shape) < 0.03] = np.nan
    y = (np.nan_to_num(x[:, :16], nan=0.0) > -1.2).all(axis=1) | (rng.random(len(x)) < 0.03)
    model = HistGradientBoostingClassifier(max_iter=4, max_leaf_nodes=30, min_samples_leaf=2, learning_rate=0.5,
                                           early_stopping=False, random_state=0).fit(x, y)
    return model, x


def test_one_person_with_deep_leaves_is_explained_exactly_as_in_a_block(deep_model):
    """The one-person path (the API's on-demand lookup) covers leaves too deep for a table by working out their
    rows for the person's own pattern. It must give bit-for-bit the block path's values (the same arithmetic,
    added in the same order), add up to the model's raw output, and equal shap's TreeExplainer.

    Tolerances: additivity and shap sum hundreds of float64 terms of size ~1 in another order, so they agree
    to ~1e-14; 1e-9 leaves room for that and is far below any contribution a reason shows (2 decimals)."""
    import shap

    import models.treeshap as treeshap

    model, x = deep_model
    trees = treeshap._compiled(model)
    deepest = max(len(leaf.features) for tree in trees for leaf in tree.leaves)
    assert deepest > treeshap.FULL_TABLE_MAX_FEATURES  # the old one-person path gave up on this model
    assert treeshap._flat(model, trees).deep  # ... and this one works those leaves out per person

    people = x[np.r_[0:60, np.flatnonzero(np.isnan(x).any(axis=1))[:20]]]
    assert len(people) > treeshap.FEW_ROWS  # explained together, they take the block path
    block = treeshap.tree_shap_values(model, people, threads=1)
    alone = np.array([treeshap.tree_shap_values(model, row[None, :], threads=1)[0] for row in people])
    assert np.array_equal(alone, block)
    assert np.abs(block).sum(axis=1).min() > 0  # nobody's contributions are trivially zero

    raw = model.decision_function(people)
    np.testing.assert_allclose(treeshap.expected_value(model) + alone.sum(axis=1), raw, rtol=0, atol=1e-9)
    theirs = shap.TreeExplainer(model, feature_perturbation="tree_path_dependent").shap_values(people)
    np.testing.assert_allclose(alone, np.asarray(theirs), rtol=0, atol=1e-9)


def test_a_deep_leafs_row_for_one_pattern_is_its_table_row_and_the_shapley_value():
    """``leaf_tables`` with one pattern per leaf (the one-person path for deep leaves) gives bit-for-bit the row
    of that pattern in the leaf's own table, and for two features the Shapley values worked out by hand."""
    from models.treeshap import leaf_table, leaf_tables

    rng = np.random.default_rng(11)
    for d in (2, 6, 13):
        fractions = rng.uniform(0.05, 1.0, (4, d))
        values = rng.normal(size=4)
        chosen = rng.integers(0, 2**d, 4)
        patterns = ((chosen[:, None] >> np.arange(d)) & 1).astype(bool)
        rows = leaf_tables(patterns[:, None, :], fractions, values)[:, 0, :]
        for i in range(4):
            assert np.array_equal(rows[i], leaf_table(patterns[i][None, :], fractions[i], values[i])[0]), (d, i)
    # Two path features, the person satisfies feature 0's splits only (A = {0}). The leaf's game is
    # v(S) = value * prod_{k in S} a_k * prod_{k not in S} r_k: v({}) = v r0 r1, v({0}) = v r1, v({1}) = v({0,1}) = 0,
    # so phi_0 = ((v r1 - v r0 r1) + 0) / 2 and phi_1 = ((0 - v r0 r1) + (0 - v r1)) / 2.
    r0, r1, v = 0.3, 0.6, 2.0
    (row,) = leaf_tables(np.array([[[True, False]]]), np.array([[r0, r1]]), np.array([v]))[:, 0, :]
    assert row == pytest.approx([v * r1 * (1 - r0) / 2, -v * r1 * (1 + r0) / 2], abs=1e-15)
