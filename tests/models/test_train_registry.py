"""Training, MLflow logging, registration and the promotion gate against a real sqlite MLflow store."""

from __future__ import annotations

import json
import os
from datetime import date
from pathlib import Path
from urllib.parse import urlparse

import mlflow
import numpy as np
import polars as pl
import pytest
from mlflow import MlflowClient

from models.metrics import auroc
from models.registry import champion_summary, load_champion, load_model
from models.train import train_on_frames
from tests.models.conftest import make_frame
from upstream.errors import UpstreamError
from upstream.settings import GateSettings, Settings

TRAIN = make_frame(3000, 11, date(2023, 1, 2))
TEST = make_frame(6000, 12, date(2024, 1, 1))


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    return tmp_path_factory.mktemp("mlflow_home")


@pytest.fixture(scope="module")
def first(home):
    """The first model ever trained: no champion exists, so it must be promoted if it passes the checks."""
    settings = Settings(home=home)
    return settings, train_on_frames(TRAIN.drop("_true_p"), TEST, "crisis", settings, n_boot=50)


def test_no_champion_is_a_clear_error(tmp_path):
    with pytest.raises(UpstreamError, match="no 'champion' model"):
        load_champion("crisis", Settings(home=tmp_path))


def test_first_model_becomes_champion_and_is_close_to_oracle(first):
    _, result = first
    assert result.alias == "champion", result.gate_reasons
    assert result.model_name == "upstream-crisis" and result.version == "1"
    oracle = auroc(TEST["crisis"].to_numpy(), TEST["_true_p"].to_numpy())
    assert result.metrics["test_auroc"] > oracle - 0.03
    assert result.metrics["test_auroc"] > result.baselines["age_only"]["auroc"] + 0.02
    assert 0.8 <= result.metrics["test_calibration_slope"] <= 1.2


def test_run_has_metrics_artifacts_and_alias(first):
    settings, result = first
    client = MlflowClient(tracking_uri=settings.tracking_uri)
    run = client.get_run(result.run_id)
    for name in ("test_auroc", "test_auroc_ci_low", "test_auroc_ci_high", "test_auprc", "test_brier",
                 "test_calibration_slope", "test_calibration_intercept", "test_ppv_top5", "test_sensitivity_top5",
                 "test_ppv_top20", "test_sensitivity_top20", "logistic_test_auroc", "hgb_test_auroc",
                 "baseline_age_only_test_auroc", "baseline_prior_emergency_admissions_test_auroc"):
        assert name in run.data.metrics, name
    assert run.data.metrics["test_auroc"] == pytest.approx(
        max(run.data.metrics["logistic_test_auroc"], run.data.metrics["hgb_test_auroc"]))
    assert any(k.startswith("codelist.efi_") for k in run.data.params)
    artifacts = {a.path for d in ("model_card", "fairness", "plots", "data", "gate")
                 for a in client.list_artifacts(result.run_id, d)}
    assert {"model_card/model_card.md", "model_card/model_card.html", "fairness/fairness.csv",
            "fairness/fairness.png", "plots/calibration.png", "plots/decision_curve.png",
            "data/data_fingerprint.json", "data/codelist_versions.json", "gate/gate_decision.json"} <= artifacts
    version = client.get_model_version_by_alias("upstream-crisis", "champion")
    assert str(version.version) == "1" and version.run_id == result.run_id
    # The registry artifact lives under <home>/mlartifacts, not the working directory.
    assert client.get_experiment(run.info.experiment_id).artifact_location.startswith(
        settings.artifact_root.as_uri())
    # Read from the registered version's files, through this store's client: training set no process-wide store.
    files = urlparse(client.get_model_version_download_uri("upstream-crisis", version.version)).path
    model = mlflow.models.get_model_info(files)
    assert model.signature is not None and "age" in model.signature.inputs.input_names()


def test_loaded_champion_scores_and_explains(first):
    settings, result = first
    loaded = load_champion("crisis", settings)
    assert (loaded.version, loaded.run_id) == ("1", result.run_id)
    p = loaded.predict_proba(TEST)
    assert p.shape == (TEST.height,) and np.all((p > 0) & (p < 1))
    assert auroc(TEST["crisis"].to_numpy(), p) == pytest.approx(result.metrics["test_auroc"], abs=1e-9)
    oldest = TEST.sort("age", descending=True).head(50)
    reasons = loaded.explain(oldest, top_n=3)
    assert len(reasons) == 50 and all(len(r) <= 3 for r in reasons)
    flat = [x for r in reasons for x in r]
    assert all(set(x) == {"feature", "value", "text", "contribution"} for x in flat)
    assert all(x["contribution"] > 0 and x["feature"] in loaded.feature_names for x in flat)
    # Everyone here is 97-99 and the world's risk rises with age: age is among their reasons, in
    # the registry's words ("aged 98").
    age_reasons = [x for r in reasons for x in r if x["feature"] == "age"]
    assert len(age_reasons) >= 40 and all(x["text"] == f"aged {x['value']}" for x in age_reasons)


def test_champion_summary_for_the_api(first):
    settings, result = first
    summary = champion_summary("crisis", settings)
    assert summary["version"] == "1" and summary["run_id"] == result.run_id
    assert summary["metrics"]["test_auroc"] == pytest.approx(result.metrics["test_auroc"])
    assert summary["card_markdown"].startswith("# Model card: upstream-crisis, version 1")
    assert "## Fairness" in summary["card_markdown"] and "## Limitations" in summary["card_markdown"]


def test_worse_model_is_challenger_then_threshold_change_flips_it(first):
    settings, champion = first
    weak_features = ["female", "imd_decile"]  # unrelated to the outcome in this world
    weak = train_on_frames(TRAIN.drop("_true_p"), TEST, "crisis", settings, features=weak_features, n_boot=50)
    assert weak.alias == "challenger"
    assert weak.metrics["test_auroc"] < champion.metrics["test_auroc"]
    assert any("does not beat the current champion" in r for r in weak.gate_reasons)
    client = MlflowClient(tracking_uri=settings.tracking_uri)
    assert str(client.get_model_version_by_alias("upstream-crisis", "champion").version) == "1"
    assert str(client.get_model_version_by_alias("upstream-crisis", "challenger").version) == weak.version
    run = client.get_run(weak.run_id)
    assert run.data.tags["gate_decision"] == "challenger"
    assert "does not beat" in run.data.tags["gate_reasons"]
    gate_file = mlflow.artifacts.download_artifacts(
        run_id=weak.run_id, artifact_path="gate/gate_decision.json", tracking_uri=settings.tracking_uri
    )
    with open(gate_file) as fh:
        gate = json.load(fh)
    assert gate["alias"] == "challenger" and gate["checks"]["beats_champion"] is False
    assert load_model("crisis", settings, "challenger").version == weak.version

    # Same data, but settings that accept any AUROC change and any calibration: now it is promoted.
    lenient = Settings(home=settings.home, gate=GateSettings(
        min_auroc_gain=-1.0, calibration_slope_min=-100, calibration_slope_max=100, max_subgroup_auroc_gap=1.0,
        observed_expected_min=0.0, observed_expected_max=100.0, age_band_observed_expected_min=0.0,
        age_band_observed_expected_max=100.0))
    flipped = train_on_frames(TRAIN.drop("_true_p"), TEST, "crisis", lenient, features=weak_features, n_boot=50)
    assert flipped.alias == "champion" and flipped.gate_reasons == []
    assert load_champion("crisis", settings).version == flipped.version


def test_unknown_target_is_rejected(tmp_path):
    with pytest.raises(UpstreamError, match="unknown target"):
        train_on_frames(TRAIN, TEST, "falls", Settings(home=tmp_path))


def test_fairness_table_covers_audit_dimensions(first):
    _, result = first
    dims = set(result.fairness["dimension"].to_list())
    assert dims == {"overall", "imd_quintile", "sex", "age_band", "ethnic_group"}
    assert result.fairness.filter(pl.col("dimension") == "imd_quintile").height == 5


def test_gate_compares_with_the_champion_on_the_same_test_set(tmp_path):
    """A champion recorded on an easy test year must not block a better model tested on a harder year."""
    # Only the "beats the champion" rule is under test: the test years' different noise levels throw
    # calibration off on purpose, so the other rules are opened wide.
    settings = Settings(home=tmp_path / "home", gate=GateSettings(
        calibration_slope_min=-100, calibration_slope_max=100, max_subgroup_auroc_gap=1.0,
        observed_expected_min=0.0, observed_expected_max=100.0, age_band_observed_expected_min=0.0,
        age_band_observed_expected_max=100.0))
    train = TRAIN.drop("_true_p")
    easy = make_frame(6000, 21, date(2024, 1, 1), strength=2.0)  # outcomes follow the risk factors closely
    hard = make_frame(6000, 22, date(2025, 1, 1), strength=0.5)  # much noisier outcomes
    age_only = train_on_frames(train, easy, "crisis", settings, features=["age"], n_boot=50)
    assert age_only.alias == "champion"
    full = train_on_frames(train, hard, "crisis", settings, n_boot=50)
    # On its own (harder) test year the full model scores below the champion's recorded figure...
    assert full.metrics["test_auroc"] < age_only.metrics["test_auroc"]
    # ...but on that same year it beats the champion, which is what the gate must judge.
    from models.registry import load_model_version

    previous = load_model_version("crisis", settings, age_only.version)
    champion_on_hard = auroc(hard["crisis"].to_numpy(), previous.predict_proba(hard))
    assert full.metrics["test_auroc"] > champion_on_hard
    assert full.alias == "champion", full.gate_reasons


def test_model_card_counts_are_suppressed(first):
    """Every API key can read the card: its group counts follow the 1-7 suppressed / round-to-5 rule."""
    settings, result = first
    raw = result.fairness.filter(pl.col("dimension") != "overall")
    assert any(n % 5 for n in raw["n"].to_list() + raw["events"].to_list())  # rounding has work to do
    card = champion_summary("crisis", settings)["card_markdown"]
    section = card.split("## Fairness")[1].split("## Promotion gate")[0]
    rows = [line.split("|")[1:-1] for line in section.splitlines() if line.startswith("| ") and "dimension" not in line]
    counts = [cell.strip() for row in rows for cell in row[2:4]]
    assert counts and all(c == "<8" or int(c) % 5 == 0 for c in counts), counts


def test_the_losing_candidate_is_tested_on_a_fixed_sample_and_mlflow_says_so(tmp_path):
    """The losing candidate's test metrics are for the record only, so a large test date scores it on a fixed
    random sample (``train.candidate_test_rows``); the chosen model is still tested on every row, with the
    same figures as when every row is used for both."""
    from models.train import candidate_test_rows

    rows = candidate_test_rows(6000, 2000, seed=0)
    assert len(rows) == 2000 and len(np.unique(rows)) == 2000 and rows.min() >= 0 and rows.max() < 6000
    assert (np.diff(rows) > 0).all() and rows.max() > 4000  # sorted, spread over the whole date, not its head
    assert np.array_equal(rows, candidate_test_rows(6000, 2000, seed=0))
    assert candidate_test_rows(6000, 6000, seed=0) is None and candidate_test_rows(6000, None, seed=0) is None

    train = TRAIN.drop("_true_p")
    every = Settings(home=tmp_path / "every", train={"candidate_test_rows": None})
    sampled = Settings(home=tmp_path / "sampled", train={"candidate_test_rows": 2000})
    full = train_on_frames(train, TEST, "crisis", every, n_boot=50)
    part = train_on_frames(train, TEST, "crisis", sampled, n_boot=50)
    loser = next(kind for kind in part.candidates if kind != part.chosen)
    assert part.chosen == full.chosen
    assert part.candidates[part.chosen]["n"] == full.candidates[full.chosen]["n"] == TEST.height
    assert part.metrics == full.metrics
    assert full.candidates[loser]["n"] == TEST.height and part.candidates[loser]["n"] == 2000
    # 2,000 of the same 6,000 people: the same model's AUROC on them is near its AUROC on all of them.
    assert part.candidates[loser]["auroc"] == pytest.approx(full.candidates[loser]["auroc"], abs=0.04)
    assert part.candidates[loser]["auroc"] != full.candidates[loser]["auroc"]
    tag = MlflowClient(tracking_uri=sampled.tracking_uri).get_run(part.run_id).data.tags["candidates.test_rows"]
    assert f"{loser}: a fixed random sample of 2000 of 6000 test rows" in tag
    assert f"{part.chosen}: all 6000 test rows" in tag
    # The model card's comparison table says it too (a reader of the card never sees MLflow's tags).
    cards = {name: Path(MlflowClient(tracking_uri=s.tracking_uri).download_artifacts(
        run.run_id, "model_card/model_card.md", str(tmp_path / f"card-{name}"))).read_text()
        for name, s, run in (("every", every, full), ("sampled", sampled, part))}
    assert f"| {loser} (not chosen; a fixed random sample of 2000 of 6000 test rows) |" in cards["sampled"]
    assert "a fixed random sample" not in cards["every"] and f"| {loser} |" in cards["every"]


def test_the_number_of_gradient_boosting_threads_does_not_change_the_models(tmp_path):
    """``train.fit_threads`` only decides how many OpenMP threads fit and score the gradient-boosting
    candidate (one on a busy machine, where two cost 7-20x the CPU): every figure of the run must be the
    same bit for bit with one thread and with two, and the run records the number it used."""
    from models.train import fit_threads

    assert fit_threads(3) == 3
    assert 1 <= fit_threads(None) <= (os.cpu_count() or 1)
    train = TRAIN.drop("_true_p")
    runs = {}
    for threads in (1, 2):
        settings = Settings(home=tmp_path / f"t{threads}", train={"fit_threads": threads})
        runs[threads] = train_on_frames(train, TEST, "crisis", settings, n_boot=50)
        recorded = MlflowClient(tracking_uri=settings.tracking_uri).get_run(runs[threads].run_id).data.metrics
        assert recorded["hgb_threads"] == threads
    assert runs[1].candidates["hgb"]["n"] == TEST.height
    assert runs[1].candidates == runs[2].candidates
    assert runs[1].metrics == runs[2].metrics and runs[1].chosen == runs[2].chosen


def test_the_evaluation_on_two_threads_gives_every_figure_of_one_thread(tmp_path, monkeypatch):
    """After the fits, the chosen model's test figures and fairness audit run beside the losing candidate's and
    the baselines' (``models.train.side_by_side``). Every figure, the audit and the registered model must be the
    ones a run doing them one after the other gives, bit for bit; the loser is scored on a sample here too."""
    import threading

    import models.train as train_module

    main = threading.get_ident()
    # Each piece waits for the other before it answers: without the barrier a quick first piece can finish before
    # the second is handed out, and the pool reuses its thread (the same ident: a flaky failure under load).
    both_running = threading.Barrier(2, timeout=10) if (os.cpu_count() or 1) >= 2 else None

    def ident_once_both_run() -> int:
        if both_running is not None:
            both_running.wait()
        return threading.get_ident()

    first, second = train_module.side_by_side(ident_once_both_run, ident_once_both_run)
    if (os.cpu_count() or 1) >= 2:
        assert first != second and main not in (first, second)  # really two threads
    train = TRAIN.drop("_true_p")
    runs, models = {}, {}
    for mode in ("side_by_side", "one_after_the_other"):
        if mode == "one_after_the_other":
            monkeypatch.setattr(train_module, "side_by_side", lambda a, b: (a(), b()))
        settings = Settings(home=tmp_path / mode, train={"candidate_test_rows": 2000, "fit_threads": 1})
        runs[mode] = train_on_frames(train, TEST, "crisis", settings, n_boot=50)
        models[mode] = load_model("crisis", settings, runs[mode].alias).predict_proba(TEST)
    a, b = runs["side_by_side"], runs["one_after_the_other"]
    loser = next(kind for kind in a.candidates if kind != a.chosen)
    assert a.candidates[loser]["n"] == 2000 and a.candidates[a.chosen]["n"] == TEST.height
    assert a.chosen == b.chosen and a.candidates == b.candidates and a.metrics == b.metrics
    assert a.baselines == b.baselines and set(a.baselines) == {"age_only", "efi_only", "hfrs_only",
                                                                "prior_emergency_admissions"}
    assert a.fairness.equals(b.fairness)
    assert np.array_equal(models["side_by_side"], models["one_after_the_other"])
