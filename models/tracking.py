"""MLflow logging, registration and the promotion gate for one training run.

One absolute sqlite tracking URI (settings.tracking_uri) and an experiment whose artifacts live under
settings.artifact_root: the registry and the files travel together with UPSTREAM_HOME. Clients are
made per call, never at import.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from models import card, plots
from models.bundle import UpstreamModel
from models.gate import decide
from models.monitoring import REFERENCE_ARTIFACT, reference_profile
from models.params import CALIBRATION, HGB_PARAMS, LR_PARAMS
from models.pyfunc import UpstreamPyfunc, example_frame
from models.registry import CARD_DIR, champion_auroc_on_this_test_set, client_for, model_name
from upstream.settings import Settings

GATE_ARTIFACT = "gate/gate_decision.json"


@contextmanager
def fluent_store(settings: Settings) -> Iterator[None]:
    """Point MLflow's fluent API (start_run, log_model) at the settings' store for one block, then put back
    whatever was there: the process-wide URIs are never left changed (the API and tests share a process)."""
    import mlflow

    # MLflow mirrors both URIs into these environment variables whenever they are set, so they are the state.
    previous = {name: os.environ.get(name) for name in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}
    mlflow.set_tracking_uri(settings.tracking_uri)
    mlflow.set_registry_uri(settings.tracking_uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(previous["MLFLOW_TRACKING_URI"])  # None unsets it
        mlflow.set_registry_uri(previous["MLFLOW_REGISTRY_URI"])
        if previous["MLFLOW_REGISTRY_URI"] is None:
            os.environ.pop("MLFLOW_REGISTRY_URI", None)


def ensure_experiment(client, settings: Settings, target: str) -> str:
    name = model_name(target)
    existing = client.get_experiment_by_name(name)
    if existing is not None:
        return existing.experiment_id
    location = (settings.artifact_root / name).resolve()
    location.mkdir(parents=True, exist_ok=True)
    return client.create_experiment(name, artifact_location=location.as_uri())


def codelist_versions() -> dict[str, str]:
    from features import codelists

    lists = [*codelists.ALL_SNOMED_LISTS, codelists.FALLS_ICD10, codelists.HFRS_ICD10]
    return {c.name: c.version for c in lists}


def _finite(metrics: dict[str, float]) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items() if v is not None and np.isfinite(v)}


def _log_params(mlflow, params: dict[str, Any]) -> None:
    items = [(k, str(v)[:6000]) for k, v in params.items()]
    for i in range(0, len(items), 90):
        mlflow.log_params(dict(items[i : i + 90]))


@dataclass(frozen=True)
class TrainingData:
    """What a model was trained and tested on: logged as parameters, fingerprints and the card's data section."""

    features: list[str]
    n_train: int
    n_test: int
    train_event_rate: float
    test_event_rate: float
    train_fingerprint: str
    test_fingerprint: str
    seed: int
    train_dates: list[date] = field(default_factory=list)
    test_date: date | None = None
    index_date: date | None = None
    sample: int | None = None
    clean_dir: str | None = None  # absent for models trained on hand-made frames
    data_files: dict[str, Any] = field(default_factory=dict)
    fit_dates: list[date] = field(default_factory=list)  # the candidates were fitted on these (train_dates less validation)
    validation_date: date | None = None  # the candidates were compared here, never on test_date
    history_days: int | None = None  # history every training date has (the registry's longest window)
    population: str | None = None  # who was trained and tested on (the list cohort)


@dataclass(frozen=True)
class TrainingRecord:
    """Everything one training run hands to MLflow: the chosen model, its evaluation and its data."""

    target: str
    chosen: str  # "hgb" | "logistic": the candidate registered
    bundle: UpstreamModel
    example_source: pl.DataFrame  # the test frame: input example, reference profile, champion re-scoring
    metrics: dict[str, float]  # the chosen model's, as test_<metric>
    candidate_metrics: dict[str, dict[str, float]]
    baseline_metrics: dict[str, dict[str, float]]
    fairness: pl.DataFrame
    y_test: np.ndarray
    predictions: dict[str, np.ndarray]  # candidate (and plotted baseline) -> test-set probabilities
    data: TrainingData
    timings: dict[str, float]


@dataclass(frozen=True)
class Registered:
    """The registered version and what the gate decided."""

    run_id: str
    model_name: str
    version: str
    alias: str  # champion | challenger
    reasons: list[str]


def log_and_register(settings: Settings, record: TrainingRecord) -> Registered:
    """Log the run, register the chosen model, apply the gate, attach the model card.

    In that order inside ONE MLflow run: what it was trained on, how it did, the registered version and
    the gate's decision, then the card that shows all of them."""
    import mlflow

    client = client_for(settings)
    experiment_id = ensure_experiment(client, settings, record.target)
    previous_auroc, previous_basis = champion_auroc_on_this_test_set(
        client, settings, record.target, record.example_source, record.y_test
    )
    decision = decide(record.metrics, record.fairness, previous_auroc, settings.gate)
    versions = codelist_versions()

    with fluent_store(settings), \
            mlflow.start_run(experiment_id=experiment_id, run_name=f"{record.target}-{record.chosen}") as run, \
            tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        _log_training_data(mlflow, record, versions, tmp)
        _log_evaluation(mlflow, record, tmp)
        version = _register(mlflow, record)
        gate = {
            "alias": decision.alias,
            "reasons": decision.reasons,
            "checks": decision.checks,
            "previous_champion_test_auroc": previous_auroc,
            "previous_champion_auroc_basis": previous_basis,
            "thresholds": settings.gate.model_dump(),
        }
        _log_gate(mlflow, client, record, version, gate, tmp)
        _log_card(mlflow, record, version, run.info.run_id, gate, versions, tmp)
        run_id = run.info.run_id
    return Registered(run_id, model_name(record.target), version, decision.alias, list(decision.reasons))


def _log_training_data(mlflow: Any, record: TrainingRecord, versions: dict[str, str], tmp: Path) -> None:
    """Parameters, metrics, data fingerprints, code-list versions and the monitoring reference profile."""
    data = record.data
    _log_params(mlflow, {
        "target": record.target,
        "chosen_model": record.chosen,
        "n_features": len(data.features),
        "n_train": data.n_train,
        "n_test": data.n_test,
        "train_dates": ",".join(str(d) for d in data.train_dates),
        "test_date": str(data.test_date),
        "index_date": str(data.index_date),
        "sample": data.sample,
        "seed": data.seed,
        "calibration": json.dumps(CALIBRATION),
        "data_fingerprint_train": data.train_fingerprint,
        "data_fingerprint_test": data.test_fingerprint,
        **{f"hgb_{k}": v for k, v in HGB_PARAMS.items()},
        **{f"lr_{k}": v for k, v in LR_PARAMS.items()},
        **{f"codelist.{k}": v for k, v in versions.items()},
    })
    all_metrics = dict(record.metrics)
    for kind, m in record.candidate_metrics.items():
        all_metrics |= {f"{kind}_test_{k}": v for k, v in m.items()}
    for base, m in record.baseline_metrics.items():
        all_metrics |= {f"baseline_{base}_test_{k}": v for k, v in m.items()}
    all_metrics |= {k: v for k, v in record.timings.items()}
    all_metrics |= {"train_event_rate": data.train_event_rate, "test_event_rate": data.test_event_rate}
    mlflow.log_metrics(_finite(all_metrics))

    data_fp = {
        "train": data.train_fingerprint,
        "test": data.test_fingerprint,
        "files": data.data_files,
        "clean_dir": data.clean_dir,
    }
    (tmp / "data_fingerprint.json").write_text(json.dumps(data_fp, indent=2))
    (tmp / "codelist_versions.json").write_text(json.dumps(versions, indent=2))
    (tmp / "features.json").write_text(json.dumps(data.features, indent=2))
    for f in ("data_fingerprint.json", "codelist_versions.json", "features.json"):
        mlflow.log_artifact(str(tmp / f), "data")
    mlflow.set_tag("data_fingerprint", data.train_fingerprint + "/" + data.test_fingerprint)
    # Issue 16: what weekly monitoring compares against (bins and shares only, no rows).
    reference = reference_profile(record.example_source, data.features, record.predictions[record.chosen],
                                  record.y_test)
    (tmp / "reference.json").write_text(json.dumps(reference))
    mlflow.log_artifact(str(tmp / "reference.json"), REFERENCE_ARTIFACT.rpartition("/")[0])


def _log_evaluation(mlflow: Any, record: TrainingRecord, tmp: Path) -> None:
    """Fairness table, metrics table and plots: raw figures, for data scientists only."""
    # Raw figures (exact small counts) for data scientists with access to the tracking store only; the
    # API never serves them (serving.model_card serves the suppressed card and reader_metrics).
    mlflow.set_tag("disclosure.raw_for_data_scientists_only", "fairness/, metrics/, plots/, run metrics")
    mlflow.set_tag("disclosure.for_readers", "model_card/ (small-number suppression applied)")
    record.fairness.write_csv(tmp / "fairness.csv")
    plots.fairness_plot(record.fairness, tmp / "fairness.png")
    mlflow.log_artifact(str(tmp / "fairness.csv"), "fairness")
    mlflow.log_artifact(str(tmp / "fairness.png"), "fairness")
    table = pl.DataFrame([{"model": k, **v} for k, v in {**record.candidate_metrics, **{
        f"baseline: {b}": m for b, m in record.baseline_metrics.items()}}.items()], infer_schema_length=None)
    table.write_csv(tmp / "metrics_table.csv")
    mlflow.log_artifact(str(tmp / "metrics_table.csv"), "metrics")
    plots.calibration_plot(record.y_test, record.predictions, tmp / "calibration.png")
    plots.decision_curve_plot(record.y_test, record.predictions, tmp / "decision_curve.png")
    mlflow.log_artifact(str(tmp / "calibration.png"), "plots")
    mlflow.log_artifact(str(tmp / "decision_curve.png"), "plots")


def _register(mlflow: Any, record: TrainingRecord) -> str:
    """Log the chosen model as a pyfunc and register it; returns the new version."""
    from mlflow.models import infer_signature

    bundle = record.bundle
    example = example_frame(record.example_source, bundle.feature_names)
    signature = infer_signature(example, bundle.predict_proba(pl.from_pandas(example)))
    info = mlflow.pyfunc.log_model(
        name="model",
        python_model=UpstreamPyfunc(bundle),
        signature=signature,
        input_example=example,
        registered_model_name=model_name(record.target),
        pip_requirements=["scikit-learn", "polars", "numpy", "pandas", "mlflow"],
    )
    return str(info.registered_model_version)


def _log_gate(mlflow: Any, client: Any, record: TrainingRecord, version: str, gate: dict[str, Any], tmp: Path) -> None:
    """Point the gate's alias (champion or challenger) at the version and record why, on the run and the version."""
    name = model_name(record.target)
    client.set_registered_model_alias(name, gate["alias"], version)
    reasons_text = "; ".join(gate["reasons"]) if gate["reasons"] else "passed all gate checks"
    for key, value in (("gate_decision", gate["alias"]), ("gate_reasons", reasons_text[:4900])):
        mlflow.set_tag(key, value)
        client.set_model_version_tag(name, version, key, value)
    client.set_model_version_tag(name, version, "chosen_model", record.chosen)
    (tmp / "gate_decision.json").write_text(json.dumps(gate, indent=2))
    mlflow.log_artifact(str(tmp / "gate_decision.json"), "gate")


def _log_card(
    mlflow: Any, record: TrainingRecord, version: str, run_id: str, gate: dict[str, Any], versions: dict[str, str],
    tmp: Path,
) -> None:
    """The model card (Markdown and HTML, small-number suppressed): what readers of the API see."""
    card_context = card.card_context(
        target=record.target, version=version, run_id=run_id, alias=gate["alias"], chosen=record.chosen,
        metrics=record.metrics, candidate_metrics=record.candidate_metrics,
        baseline_metrics=record.baseline_metrics, fairness=record.fairness, context=asdict(record.data),
        gate=gate, codelists=versions,
    )
    (tmp / "model_card.md").write_text(card.render_markdown(card_context))
    (tmp / "model_card.html").write_text(card.render_html(card_context))
    mlflow.log_artifact(str(tmp / "model_card.md"), CARD_DIR)
    mlflow.log_artifact(str(tmp / "model_card.html"), CARD_DIR)
