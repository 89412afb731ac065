"""The model in a weekly run: whether to train, training, scoring a partition with the champion, and
which model scored the run. The champion itself (lookup, cache) is ``models.registry``'s."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from models.registry import champion_or_none, champion_ref, model_name
from pipelines.scoring import score_features
from upstream.errors import UpstreamError
from upstream.settings import Settings

if TYPE_CHECKING:
    from models.train import TrainResult  # imported when training runs: it loads scikit-learn and MLflow

TRAIN_MODES = ("auto", "always", "never")


def should_train(mode: str, settings: Settings) -> bool:
    """``auto`` trains only when there is no champion yet; ``always``/``never`` do what they say."""
    if mode not in TRAIN_MODES:
        raise UpstreamError(f"--train must be one of {', '.join(TRAIN_MODES)}, not {mode!r}")
    if mode == "always":
        return True
    if mode == "never":
        return False
    return champion_ref(settings) is None


def run_training(clean_dir: Path, index_date: date, settings: Settings, sample: int | None = None) -> TrainResult:
    """Train as of the scoring date: ``models.train`` picks earlier dates whose 12-month outcomes are known."""
    from models.train import train_and_register
    from upstream.console import quiet_prints

    with quiet_prints():  # MLflow prints "Successfully registered model ..." straight to stderr
        return train_and_register(Path(clean_dir), settings.target, index_date, settings, sample=sample)


def score_partition(features_path: Path, settings: Settings) -> pl.DataFrame:
    """Score one partition's features with the champion (loaded on the worker that runs this).

    Each row carries ``model_name``/``model_version`` of the model that scored it, so the run records the
    version actually used even if the champion alias moves while the run is in progress. Nobody is explained
    here (``reasons`` null): publishing explains the listed people with that version, the API anyone else on
    demand (``pipelines.explain``).
    """
    model = champion_or_none(settings)
    if model is None:
        raise UpstreamError(f"no champion model for target {settings.target!r}: run with --train auto/always first")
    features = pl.read_parquet(features_path)
    return score_features(features, model, settings.lists.top_reasons, explain=False).with_columns(
        pl.lit(model_name(settings.target), dtype=pl.String).alias("model_name"),
        pl.lit(str(model.version), dtype=pl.String).alias("model_version"),
    )


def scored_model_identity(parts: list[pl.DataFrame], settings: Settings) -> tuple[str, str]:
    """(model name, version) that scored ``parts`` (``score_partition`` output).

    Refuses partitions scored by different versions (the champion changed mid-run): one run, one model.
    Falls back to the current champion only when nothing was scored at all.
    """
    found = {
        (name, version)
        for part in parts
        if part.height and {"model_name", "model_version"} <= set(part.columns)
        for name, version in part.select("model_name", "model_version").unique().iter_rows()
    }
    if len(found) > 1:
        versions = ", ".join(sorted(v for _, v in found))
        raise UpstreamError(f"partitions were scored by different model versions ({versions}): the champion "
                            "changed during the run; re-run the week")
    if found:
        return found.pop()
    ref = champion_ref(settings)
    if ref is None:
        raise UpstreamError(f"no champion model for target {settings.target!r}")
    return ref.name, ref.version


def model_metrics_rows(settings: Settings, trained: TrainResult | None) -> list[dict[str, Any]]:
    """Model metrics for the run's artifact: this run's training, else the champion's MLflow run."""
    metrics: dict[str, Any] = {}
    identity: dict[str, Any] = {}
    if trained is not None:
        metrics = dict(trained.metrics)
        identity = {"version": trained.version, "alias": trained.alias, "run_id": trained.run_id}
    else:
        ref = champion_ref(settings)
        if ref is not None:
            identity = {"version": ref.version, "alias": "champion", "run_id": ref.run_id}
            try:
                from mlflow.tracking import MlflowClient

                metrics = MlflowClient(settings.tracking_uri).get_run(ref.run_id).data.metrics
            except Exception:  # metrics are informative only; never fail a weekly run for them
                metrics = {}
    rows = [{"metric": key, "value": str(value)} for key, value in identity.items()]
    rows += [
        {"metric": key, "value": f"{float(value):.4f}"}
        for key, value in sorted(metrics.items())
        if isinstance(value, int | float)
    ]
    return rows


class ModelExplainer:
    """The champion's per-feature contributions, for "what changed" (``pipelines.what_changed.Explainer``)."""

    def __init__(self, model: Any) -> None:
        self.bundle = getattr(model, "bundle", model)
        self.feature_names = list(self.bundle.feature_names)

    def contributions_of(self, features: pl.DataFrame) -> Any:
        return self.bundle.contributions(self.bundle.encoder.transform(features))


def no_champion_message(trained: Any, settings: Settings) -> str:
    """Why a first run publishes nothing, and what the analyst can do about it (no silent failure)."""
    reasons = "; ".join(getattr(trained, "gate_reasons", []) or []) or "see the MLflow run"
    version = getattr(trained, "version", "?")
    return (
        f"no list published: the first model (upstream-{settings.target} version {version}, alias challenger) "
        f"failed the promotion gate and there is no champion yet. Why: {reasons}. What to do: read the "
        f"challenger's model card (its MLflow run, gate/gate_decision.json); a calibration or subgroup failure "
        f"usually needs more data (a larger population or more years) or a fix to the data it names. If the "
        f"lead analyst accepts the model as it is, relax the named threshold in the settings "
        f"(UPSTREAM_GATE__..., recorded with the run) and run again with --train always."
    )
