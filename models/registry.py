"""Reading the model registry: the champion for scoring, and its summary for the API.

``serving/`` and the scoring flow only ever read through here, so they never need to know how a
version is stored (pyfunc wrapper around :class:`models.bundle.UpstreamModel`).
"""

from __future__ import annotations

import logging
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from mlflow import MlflowClient

from models.bundle import UpstreamModel
from models.metrics import auroc
from models.reasons import Reason
from upstream.errors import UpstreamError
from upstream.settings import Settings

log = logging.getLogger(__name__)

#: where each run keeps its model card (models.tracking writes it, champion_summary reads it)
CARD_DIR = "model_card"


def model_name(target: str) -> str:
    """The registered model name for one outcome target."""
    return f"upstream-{target}"


def client_for(settings: Settings) -> MlflowClient:
    """An MlflowClient bound to the settings' store. It changes no process-wide MLflow state: API requests,
    scoring and tests may use different stores in one process."""
    return MlflowClient(tracking_uri=settings.tracking_uri, registry_uri=settings.tracking_uri)


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

    def explain_json(self, features: pl.DataFrame, top_n: int, encode: Callable[[Reason], str]) -> list[str]:
        return self.bundle.explain_json(features, top_n, encode)


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
    return _load(client, target, str(version.version), version.run_id, alias)


def load_model_version(target: str, settings: Settings, version: str, alias: str = "champion") -> LoadedModel:
    """Load one exact registered version (e.g. the champion a scoring run resolved once, even if the alias
    has moved since); ``alias`` is only recorded on the result."""
    from mlflow.exceptions import MlflowException

    client = client_for(settings)
    try:
        found = client.get_model_version(model_name(target), str(version))
    except MlflowException as exc:
        raise UpstreamError(f"model {model_name(target)} has no version {version}") from exc
    return _load(client, target, str(found.version), found.run_id, alias)


def _load(client: MlflowClient, target: str, version: str, run_id: str, alias: str) -> LoadedModel:
    import mlflow.pyfunc

    # The version's own download location (a file URI in our store), not "models:/name/version", which MLflow
    # would resolve through the process-wide registry URI.
    pyfunc = mlflow.pyfunc.load_model(client.get_model_version_download_uri(model_name(target), version))
    bundle = pyfunc.unwrap_python_model().bundle
    return LoadedModel(target, version, run_id, alias, bundle)


def load_champion(target: str, settings: Settings) -> LoadedModel:
    """The version the promotion gate last accepted; raises UpstreamError if there is none."""
    return load_model(target, settings, "champion")


def champion_summary(target: str, settings: Settings) -> dict[str, Any]:
    """Version, run id, test metrics and the Markdown model card of the champion (for the API)."""
    client = client_for(settings)
    version = _version_by_alias(client, target, "champion")
    run = client.get_run(version.run_id)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            card = Path(client.download_artifacts(version.run_id, f"{CARD_DIR}/model_card.md", tmp)).read_text(
                encoding="utf-8")
    except Exception:  # a run without a card still has metrics worth serving
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


def champion_auroc_on_this_test_set(
    client: MlflowClient, settings: Settings, target: str, test: pl.DataFrame, y_test: np.ndarray
) -> tuple[float | None, str]:
    """The current champion's AUROC on the *new* model's test set, so the gate compares like with like.

    Why: each version's recorded test AUROC comes from its own (older) test year; an easier or harder year
    would decide the promotion. Falls back to the recorded figure, saying so, when the champion cannot score
    this frame (e.g. it used a feature that has since been retired). Returns (AUROC or None, basis); the
    alias is resolved once, so the version scored is the version whose record is the fallback.
    """
    from mlflow.exceptions import MlflowException

    try:
        version = client.get_model_version_by_alias(model_name(target), "champion")
    except MlflowException:
        return None, "no champion"
    try:
        champion = load_model_version(target, settings, str(version.version))
        return auroc(y_test, champion.predict_proba(test)), "champion scored on this test set"
    except Exception as exc:  # any failure to re-score means: use what was recorded
        log.warning(
            "could not score the champion on this test set (%s); comparing with its recorded test AUROC",
            type(exc).__name__,
        )
        recorded = client.get_run(version.run_id).data.metrics.get("test_auroc")
        return recorded, "champion's recorded test AUROC (its own test set)"


# --- the champion for scoring: which version, and one loaded copy per process -------------------------


@dataclass(frozen=True)
class ModelRef:
    """A registered version: which model scored a run, without downloading it."""

    name: str
    version: str
    run_id: str


def champion_ref(settings: Settings) -> ModelRef | None:
    """Which registered version is champion now (a cheap registry lookup, no model download)."""
    from mlflow.exceptions import MlflowException

    name = model_name(settings.target)
    try:
        version = client_for(settings).get_model_version_by_alias(name, "champion")
    except MlflowException:
        return None
    return ModelRef(name, str(version.version), version.run_id)


#: Registered versions loaded in this process, by (store, name, version), most recently used last. Bounded: the
#: API explains residents on demand with the model of the week they were scored in, so without a bound a
#: long-running API would keep every version it was ever asked about, and a 400-tree champion with its TreeSHAP
#: tables (``models.treeshap``, built on first use) holds ~0.3 GB. Two: the latest week's model and the one
#: before it (usually the same version, then one entry).
MODELS_KEPT = 2
_MODELS: OrderedDict[tuple[str, str, str], LoadedModel] = OrderedDict()
_MODELS_LOCK = threading.Lock()


def model_version_kept(settings: Settings, name: str, version: str) -> LoadedModel:
    """One exact registered version of ``name`` (e.g. the model that scored a week), loaded once per process and
    kept among the ``MODELS_KEPT`` most recently used. Raises UpstreamError when the registry has no such version."""
    key = (settings.tracking_uri, name, str(version))
    with _MODELS_LOCK:  # partitions scored on threads, and API requests, share one loaded copy
        model = _MODELS.get(key)
        if model is None:
            prefix = model_name("")
            if not name.startswith(prefix):
                raise UpstreamError(f"{name!r} is not an Upstream model name ({prefix}<target>)")
            model = load_model_version(name.removeprefix(prefix), settings, str(version))
            _MODELS[key] = model
            while len(_MODELS) > MODELS_KEPT:
                _MODELS.popitem(last=False)
        _MODELS.move_to_end(key)
        return model


def champion_or_none(settings: Settings) -> LoadedModel | None:
    """The champion model of ``settings.target`` (loaded once per process and version), or None."""
    ref = champion_ref(settings)
    if ref is None:
        return None
    try:
        # The version just resolved, not "whatever is champion now": the cache key must match it.
        return model_version_kept(settings, ref.name, ref.version)
    except UpstreamError:
        return None
