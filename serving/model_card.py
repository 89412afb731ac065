"""The champion model's card and metrics, read from the registry (serving never trains)."""

from __future__ import annotations

import importlib
from typing import Any

from upstream.errors import UpstreamError
from upstream.settings import Settings

#: Descriptive fields models.registry.champion_summary adds; served when present.
EXTRA_FIELDS = ("alias", "chosen_model", "test_date", "train_dates", "gate_reasons")


class NoChampion(LookupError):
    """No model carries the ``champion`` alias for this target yet."""


def champion_summary(target: str, settings: Settings) -> dict[str, Any]:
    """Prefer the models package's own summary; fall back to reading MLflow directly."""
    try:
        registry = importlib.import_module("models.registry")
    except ModuleNotFoundError:
        registry = None
    if registry is not None and hasattr(registry, "champion_summary"):
        from mlflow.exceptions import MlflowException

        try:
            summary = registry.champion_summary(target, settings)
        except (UpstreamError, LookupError, MlflowException) as exc:  # models says "no such alias" as UpstreamError
            raise NoChampion(target) from exc
        if summary is None:
            raise NoChampion(target)
        return _normalise(summary, target)
    return _from_mlflow(target, settings)


def _normalise(summary: Any, target: str) -> dict[str, Any]:
    data = dict(summary) if isinstance(summary, dict) else dict(vars(summary))
    return {
        "target": data.get("target", target),
        "model_name": data.get("model_name", data.get("name", f"upstream-{target}")),
        "version": str(data.get("version", "")),
        "run_id": data.get("run_id"),
        "metrics": {k: float(v) for k, v in (data.get("metrics") or {}).items()},
        "model_card": data.get("card_markdown", data.get("model_card")),
        **{k: None if data.get(k) is None else str(data[k]) for k in EXTRA_FIELDS},
    }


def _from_mlflow(target: str, settings: Settings) -> dict[str, Any]:
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    name = f"upstream-{target}"
    client = MlflowClient(tracking_uri=settings.tracking_uri, registry_uri=settings.tracking_uri)
    try:
        version = client.get_model_version_by_alias(name, "champion")
    except MlflowException as exc:
        raise NoChampion(target) from exc
    metrics: dict[str, float] = {}
    card = None
    if version.run_id:
        run = client.get_run(version.run_id)
        metrics = {k: float(v) for k, v in run.data.metrics.items()}
        try:
            import mlflow.artifacts

            card = mlflow.artifacts.load_text(f"{run.info.artifact_uri}/model_card/model_card.md")
        except Exception:  # a run without a card still has metrics worth serving
            card = None
    return {
        "target": target,
        "model_name": name,
        "version": str(version.version),
        "run_id": version.run_id,
        "metrics": metrics,
        "model_card": card,
        "alias": "champion",
    }
