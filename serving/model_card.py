"""The champion model's card and metrics, read from the registry (serving never trains)."""

from __future__ import annotations

from typing import Any

from mlflow.exceptions import MlflowException

from models import registry
from upstream.errors import UpstreamError
from upstream.settings import Settings

#: Descriptive fields models.registry.champion_summary adds; served when present.
EXTRA_FIELDS = ("alias", "chosen_model", "test_date", "train_dates", "gate_reasons")


class NoChampion(LookupError):
    """No model carries the ``champion`` alias for this target yet."""


def champion_summary(target: str, settings: Settings) -> dict[str, Any]:
    """The models package's summary of the champion, in the API's shape (serving never trains)."""
    try:
        summary = registry.champion_summary(target, settings)
    except (UpstreamError, LookupError, MlflowException) as exc:  # models says "no such alias" as UpstreamError
        raise NoChampion(target) from exc
    if summary is None:
        raise NoChampion(target)
    return _normalise(summary, target)


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
