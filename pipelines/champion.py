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
    """A model's per-feature contributions for "what changed" (``pipelines.what_changed.Explainer``) and the
    listed people's reasons (``explain_json``, as ``models.bundle``'s), each distinct row computed once.

    WHY: publishing asks for contributions five times (the "new" and "rising" people at T and at their
    comparison date, then every listed person's reasons at T), and each call of the block TreeSHAP costs about
    0.4 CPU s whatever its size (its per-leaf passes; bench/README.md, issue 15 session 5). ``prime`` computes
    every row publishing will ask about in ONE call; later calls look rows up by their encoded values. A row's
    contributions depend on that row alone (summed in model and column order:
    tests/pipelines/test_reasons_on_demand.py), so the values are the ones a call per question gave.
    """

    def __init__(self, model: Any) -> None:
        self.bundle = getattr(model, "bundle", model)
        self.feature_names = list(self.bundle.feature_names)
        self._known: dict[bytes, Any] = {}  # encoded row (its bytes) -> that row's contributions

    def prime(self, frames: list[pl.DataFrame]) -> None:
        """Compute, in one call, the contributions of every row of ``frames`` not yet known."""
        import numpy as np

        encoded = [self.bundle.encoder.transform(f) for f in frames if f.height]
        if encoded:
            self._learn(np.vstack(encoded))

    def _learn(self, x: Any) -> None:
        keys = [row.tobytes() for row in x]
        new = {key: i for i, key in enumerate(keys) if key not in self._known}
        if new:
            values = self.bundle.contributions(x[list(new.values())])
            self._known.update(zip(new, values, strict=True))

    def contributions_of(self, features: pl.DataFrame) -> Any:
        import numpy as np

        x = self.bundle.encoder.transform(features)
        if x.shape[0] == 0:
            return np.zeros((0, len(self.feature_names)))
        self._learn(x)  # only the rows ``prime`` was not given
        return np.stack([self._known[row.tobytes()] for row in x])

    def explain_json(self, features: pl.DataFrame, top_n: int, encode: Any) -> list[str]:
        """The model's ``explain_json`` (reasons as stored with a score), from the contributions known here."""
        from models.reasons import top_reasons_json

        return top_reasons_json(self.contributions_of(features), features, self.bundle.encoder.features, top_n, encode)


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
