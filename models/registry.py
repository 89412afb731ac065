"""Reading the model registry: the champion for scoring, and its summary for the API.

``serving/`` and the scoring flow only ever read through here, so they never need to know how a
version is stored (pyfunc wrapper around :class:`models.bundle.UpstreamModel`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from models.bundle import UpstreamModel
from models.reasons import Reason
from models.tracking import CARD_DIR, client_for, model_name
from upstream.errors import UpstreamError
from upstream.settings import Settings


@dataclass
class LoadedModel:
    """A registered version ready to score: ``predict_proba`` and ``explain`` on feature frames."""

    target: str
    version: str
    run_id: str
    alias: str
    bundle: UpstreamModel

    @property
    def feature_names(self) -> list[str]:
        return self.bundle.feature_names

    def predict_proba(self, features: pl.DataFrame) -> np.ndarray:
        return self.bundle.predict_proba(features)

    def explain(self, features: pl.DataFrame, top_n: int = 3) -> list[list[Reason]]:
        return self.bundle.explain(features, top_n)


def _version_by_alias(client, target: str, alias: str):
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(model_name(target), alias)
    except MlflowException as exc:
        raise UpstreamError(
            f"no '{alias}' model registered for target '{target}': run `upstream train --target {target}` first"
        ) from exc


def load_model(target: str, settings: Settings, alias: str = "champion") -> LoadedModel:
    """Load the version behind ``alias`` (``champion`` or ``challenger``)."""
    client = client_for(settings)
    version = _version_by_alias(client, target, alias)
    return _load(target, str(version.version), version.run_id, alias)


def load_model_version(target: str, settings: Settings, version: str, alias: str = "champion") -> LoadedModel:
    """Load one exact registered version (e.g. the champion a scoring run resolved once, even if the alias
    has moved since); ``alias`` is only recorded on the result."""
    from mlflow.exceptions import MlflowException

    client = client_for(settings)
    try:
        found = client.get_model_version(model_name(target), str(version))
    except MlflowException as exc:
        raise UpstreamError(f"model {model_name(target)} has no version {version}") from exc
    return _load(target, str(found.version), found.run_id, alias)


def _load(target: str, version: str, run_id: str, alias: str) -> LoadedModel:
    import mlflow.pyfunc

    pyfunc = mlflow.pyfunc.load_model(f"models:/{model_name(target)}/{version}")
    bundle = pyfunc.unwrap_python_model().bundle
    return LoadedModel(target, version, run_id, alias, bundle)


def load_champion(target: str, settings: Settings) -> LoadedModel:
    """The version the promotion gate last accepted; raises UpstreamError if there is none."""
    return load_model(target, settings, "champion")


def champion_summary(target: str, settings: Settings) -> dict[str, Any]:
    """Version, run id, test metrics and the Markdown model card of the champion (for the API)."""
    import mlflow.artifacts

    client = client_for(settings)
    version = _version_by_alias(client, target, "champion")
    run = client.get_run(version.run_id)
    try:
        card = mlflow.artifacts.load_text(f"runs:/{version.run_id}/{CARD_DIR}/model_card.md")
    except Exception:
        card = None
    return {
        "target": target,
        "model_name": model_name(target),
        "version": str(version.version),
        "run_id": version.run_id,
        "alias": "champion",
        "chosen_model": run.data.params.get("chosen_model"),
        "test_date": run.data.params.get("test_date"),
        "train_dates": run.data.params.get("train_dates"),
        "metrics": {k: v for k, v in sorted(run.data.metrics.items()) if k.startswith("test_")},
        "gate_reasons": run.data.tags.get("gate_reasons"),
        "card_markdown": card,
    }
