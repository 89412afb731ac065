"""MLflow logging, registration and the promotion gate for one training run.

One absolute sqlite tracking URI (settings.tracking_uri) and an experiment whose artifacts live under
settings.artifact_root: the registry and the files travel together with UPSTREAM_HOME. Clients are
made per call, never at import.
"""

from __future__ import annotations

import json
import tempfile
import time
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


class RunLog:
    """One MLflow run, written through a client bound to the settings' store.

    Why not MLflow's fluent API (``mlflow.start_run``, ``mlflow.log_*``, ``mlflow.pyfunc.log_model``): it
    writes to the process-wide tracking URI, which would have to be switched for the run, while the API
    and the tests share the process. A client names its store, so nothing process-wide changes."""

    def __init__(self, client: Any, run_id: str) -> None:
        self.client = client
        self.run_id = run_id

    def log_params(self, params: dict[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(k, str(v)[:6000]) for k, v in params.items()]
        for i in range(0, len(items), 90):  # MLflow takes at most 100 params per batch
            self.client.log_batch(self.run_id, params=items[i : i + 90])

    def log_metrics(self, metrics: dict[str, float]) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(k, float(v), now, 0) for k, v in metrics.items()]
        for i in range(0, len(items), 900):  # and at most 1000 metrics
            self.client.log_batch(self.run_id, metrics=items[i : i + 900])

    def log_artifact(self, path: str, artifact_path: str | None = None) -> None:
        self.client.log_artifact(self.run_id, path, artifact_path)

    def log_artifacts(self, directory: str, artifact_path: str | None = None) -> None:
        self.client.log_artifacts(self.run_id, directory, artifact_path)

    def set_tag(self, key: str, value: str) -> None:
        self.client.set_tag(self.run_id, key, value)


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
    #: Candidates scored on a sample of the test rows only (``models.train.candidate_test_rows``): name -> the
    #: row positions their ``predictions`` are for. Every other prediction covers every test row.
    prediction_rows: dict[str, np.ndarray] = field(default_factory=dict)


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
    client = client_for(settings)
    experiment_id = ensure_experiment(client, settings, record.target)
    previous_auroc, previous_basis = champion_auroc_on_this_test_set(
        client, settings, record.target, record.example_source, record.y_test
    )
    decision = decide(record.metrics, record.fairness, previous_auroc, settings.gate)
    versions = codelist_versions()

    run_id = client.create_run(experiment_id, run_name=f"{record.target}-{record.chosen}").info.run_id
    run_log = RunLog(client, run_id)
    try:
        with tempfile.TemporaryDirectory() as tmp_name:
            tmp = Path(tmp_name)
            _log_training_data(run_log, record, versions, tmp)
            _log_evaluation(run_log, record, tmp)
            version = _register(run_log, record, tmp)
            gate = {
                "alias": decision.alias,
                "reasons": decision.reasons,
                "checks": decision.checks,
                "previous_champion_test_auroc": previous_auroc,
                "previous_champion_auroc_basis": previous_basis,
                "thresholds": settings.gate.model_dump(),
            }
            _log_gate(run_log, record, version, gate, tmp)
            _log_card(run_log, record, version, run_id, gate, versions, tmp)
    except BaseException:
        client.set_terminated(run_id, "FAILED")
        raise
    client.set_terminated(run_id, "FINISHED")
    return Registered(run_id, model_name(record.target), version, decision.alias, list(decision.reasons))


def _log_training_data(run_log: RunLog, record: TrainingRecord, versions: dict[str, str], tmp: Path) -> None:
    """Parameters, metrics, data fingerprints, code-list versions and the monitoring reference profile."""
    data = record.data
    run_log.log_params({
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
    run_log.log_metrics(_finite(all_metrics))

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
        run_log.log_artifact(str(tmp / f), "data")
    run_log.set_tag("data_fingerprint", data.train_fingerprint + "/" + data.test_fingerprint)
    # Issue 16: what weekly monitoring compares against (bins and shares only, no rows).
    reference = reference_profile(record.example_source, data.features, record.predictions[record.chosen],
                                  record.y_test)
    (tmp / "reference.json").write_text(json.dumps(reference))
    run_log.log_artifact(str(tmp / "reference.json"), REFERENCE_ARTIFACT.rpartition("/")[0])


def _log_evaluation(run_log: RunLog, record: TrainingRecord, tmp: Path) -> None:
    """Fairness table, metrics table and plots: raw figures, for data scientists only."""
    # Raw figures (exact small counts) for data scientists with access to the tracking store only; the
    # API never serves them (serving.model_card serves the suppressed card and reader_metrics).
    run_log.set_tag("disclosure.raw_for_data_scientists_only", "fairness/, metrics/, plots/, run metrics")
    run_log.set_tag("disclosure.for_readers", "model_card/ (small-number suppression applied)")
    record.fairness.write_csv(tmp / "fairness.csv")
    plots.fairness_plot(record.fairness, tmp / "fairness.png")
    run_log.log_artifact(str(tmp / "fairness.csv"), "fairness")
    run_log.log_artifact(str(tmp / "fairness.png"), "fairness")
    table = pl.DataFrame([{"model": k, **v} for k, v in {**record.candidate_metrics, **{
        f"baseline: {b}": m for b, m in record.baseline_metrics.items()}}.items()], infer_schema_length=None)
    table.write_csv(tmp / "metrics_table.csv")
    run_log.log_artifact(str(tmp / "metrics_table.csv"), "metrics")
    n_test = len(record.y_test)
    run_log.set_tag("candidates.test_rows", "; ".join(
        f"{kind}: a fixed random sample of {len(rows)} of {n_test} test rows (for the record: it was not chosen)"
        if (rows := record.prediction_rows.get(kind)) is not None else f"{kind}: all {n_test} test rows"
        for kind in record.candidate_metrics))
    plots.calibration_plot(record.y_test, record.predictions, tmp / "calibration.png", record.prediction_rows)
    plots.decision_curve_plot(record.y_test, record.predictions, tmp / "decision_curve.png", record.prediction_rows)
    run_log.log_artifact(str(tmp / "calibration.png"), "plots")
    run_log.log_artifact(str(tmp / "decision_curve.png"), "plots")


def _register(run_log: RunLog, record: TrainingRecord, tmp: Path) -> str:
    """Save the chosen model as a pyfunc, log it under the run's ``model/`` and register it; returns the version."""
    import mlflow.pyfunc
    from mlflow.exceptions import MlflowException
    from mlflow.models import infer_signature

    bundle = record.bundle
    example = example_frame(record.example_source, bundle.feature_names)
    signature = infer_signature(example, bundle.predict_proba(pl.from_pandas(example)))
    saved = tmp / "model"
    mlflow.pyfunc.save_model(
        saved,
        python_model=UpstreamPyfunc(bundle),
        signature=signature,
        input_example=example,
        pip_requirements=["scikit-learn", "polars", "numpy", "pandas", "mlflow"],
    )
    run_log.log_artifacts(str(saved), "model")
    client, name = run_log.client, model_name(record.target)
    try:
        client.get_registered_model(name)
    except MlflowException:
        client.create_registered_model(name)
    source = f"{client.get_run(run_log.run_id).info.artifact_uri}/model"
    return str(client.create_model_version(name, source, run_id=run_log.run_id).version)


def _log_gate(run_log: RunLog, record: TrainingRecord, version: str, gate: dict[str, Any], tmp: Path) -> None:
    """Point the gate's alias (champion or challenger) at the version and record why, on the run and the version."""
    name = model_name(record.target)
    client = run_log.client
    client.set_registered_model_alias(name, gate["alias"], version)
    reasons_text = "; ".join(gate["reasons"]) if gate["reasons"] else "passed all gate checks"
    for key, value in (("gate_decision", gate["alias"]), ("gate_reasons", reasons_text[:4900])):
        run_log.set_tag(key, value)
        client.set_model_version_tag(name, version, key, value)
    client.set_model_version_tag(name, version, "chosen_model", record.chosen)
    (tmp / "gate_decision.json").write_text(json.dumps(gate, indent=2))
    run_log.log_artifact(str(tmp / "gate_decision.json"), "gate")


def _log_card(
    run_log: RunLog, record: TrainingRecord, version: str, run_id: str, gate: dict[str, Any], versions: dict[str, str],
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
    run_log.log_artifact(str(tmp / "model_card.md"), CARD_DIR)
    run_log.log_artifact(str(tmp / "model_card.html"), CARD_DIR)
