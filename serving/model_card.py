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


def served_metrics(raw: dict[str, Any]) -> dict[str, float]:
    """The MLflow test metrics as any key may see them (upstream.disclosure via models.card.reader_metrics).

    The raw figures stay in MLflow, for data scientists with access to the tracking store, never here."""
    from models.card import reader_metrics

    return reader_metrics({k: float(v) for k, v in raw.items()})


OLD_CARD_NOTICE = (
    "This version's model card was written before small-number suppression covered model cards, so it is "
    "not served. Its figures are in MLflow for data scientists; retrain (or re-register) to publish a card."
)


def served_card(card: str | None) -> str | None:
    """The card only if it was rendered under the disclosure rule (older cards show exact small counts)."""
    from models.card import DISCLOSURE_MARKER

    if card is None or DISCLOSURE_MARKER in card:
        return card
    return OLD_CARD_NOTICE


def _normalise(summary: Any, target: str) -> dict[str, Any]:
    data = dict(summary) if isinstance(summary, dict) else dict(vars(summary))
    return {
        "target": data.get("target", target),
        "model_name": data.get("model_name", data.get("name", f"upstream-{target}")),
        "version": str(data.get("version", "")),
        "run_id": data.get("run_id"),
        "metrics": served_metrics(data.get("metrics") or {}),
        "model_card": served_card(data.get("card_markdown", data.get("model_card"))),
        **{k: None if data.get(k) is None else str(data[k]) for k in EXTRA_FIELDS},
    }
