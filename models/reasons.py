"""Reason codes: each scored person's top risk-raising features, in plain English.

Attributions come from the model (``UpstreamModel.contributions``: exact additive contributions on the
raw, pre-calibration log-odds: coefficient x standardised value for the logistic model, TreeSHAP for
gradient boosting); the words come from the
feature registry (``features.registry.reason_text``), so a list, the API and the data dictionary all say
the same thing about a feature.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl

from features import registry

#: {"feature": str, "value": float | str | None, "text": str, "contribution": float}
Reason = dict[str, Any]


#: Said when risk is raised only by values no single one of which is remarkable on its own.
COMBINATION_REASON: Reason = {
    "feature": None,
    "value": None,
    "text": "several factors together, none remarkable on its own",
    "contribution": None,
}


def reason_text(feature: str, value: Any) -> str | None:
    """Plain-English text from the feature registry.

    ``None`` means the registry declares this value is not a reason (e.g. zero falls). Features the
    registry does not declare (hand-made frames) get a neutral "name: value" text.
    """
    if feature in registry.FEATURES:
        return registry.reason_text(feature, value)
    return f"{feature.replace('_', ' ')}: {value}"


def _missing_as_none(column: pl.Series) -> pl.Series:
    """NaN reads as missing, as a null does (reason texts treat both as "not recorded")."""
    return column.fill_nan(None) if column.dtype.is_float() else column


def _remarkable(column: pl.Series, texts: dict[Any, str | None]) -> np.ndarray:
    """Per row: does the registry give this value a reason text? One polars join over distinct values."""
    lookup = pl.DataFrame(
        {"value": list(texts), "remarkable": [t is not None for t in texts.values()]},
        schema={"value": column.dtype, "remarkable": pl.Boolean},
    )
    joined = column.to_frame("value").join(lookup, on="value", how="left", nulls_equal=True, maintain_order="left")
    return joined.get_column("remarkable").fill_null(False).to_numpy()


def top_reasons(contributions: np.ndarray, features: pl.DataFrame, names: list[str], top_n: int) -> list[list[Reason]]:
    """The ``top_n`` largest positive contributions per row, as reason dicts, best first.

    Only positive contributions are reasons (a reason explains why risk is *high*); values the registry
    says are unremarkable are skipped in favour of the next candidate. Ranking, skipping and picking are
    vectorised over all rows (numpy), and texts are looked up once per distinct (feature, value); Python
    only assembles the chosen reasons, which keeps 1.9M people to seconds.
    """
    rows, n_features = contributions.shape
    k = min(top_n, n_features)
    if k <= 0 or rows == 0:
        return [[] for _ in range(rows)]
    # Every positive contribution is a candidate: the largest may all be values the registry calls
    # unremarkable (e.g. "no falls" pushing risk up relative to the average), and we want a real reason.
    order = np.argsort(-contributions, axis=1, kind="stable")
    values = np.take_along_axis(contributions, order, axis=1)
    positive = values > 0
    used = np.unique(order[positive]).tolist()
    columns = {j: _missing_as_none(features.get_column(names[j])) for j in used}
    texts = {j: {v: reason_text(names[j], v) for v in columns[j].unique().to_list()} for j in used}
    remarkable = np.zeros((rows, n_features), dtype=bool)
    for j in used:
        remarkable[:, j] = _remarkable(columns[j], texts[j])
    candidate = positive & np.take_along_axis(remarkable, order, axis=1)
    del remarkable
    chosen = candidate & (np.cumsum(candidate, axis=1, dtype=np.int16) <= k)
    chosen_rows, chosen_pos = np.nonzero(chosen)  # row-major: each row's reasons come out best first
    chosen_features = order[chosen_rows, chosen_pos]
    chosen_values = values[chosen_rows, chosen_pos]
    chosen_reasons: list[Reason | None] = [None] * len(chosen_rows)
    for j in np.unique(chosen_features).tolist():
        slots = np.flatnonzero(chosen_features == j)
        feature_values = columns[j].gather(chosen_rows[slots]).to_list()
        for slot, value, c in zip(slots.tolist(), feature_values, chosen_values[slots].tolist(), strict=True):
            chosen_reasons[slot] = {"feature": names[j], "value": value, "text": texts[j][value], "contribution": c}
    ends = np.cumsum(chosen.sum(axis=1)).tolist()
    result: list[list[Reason]] = [chosen_reasons[start:end] for start, end in zip([0, *ends[:-1]], ends, strict=True)]
    for i in np.flatnonzero(positive.any(axis=1) & ~chosen.any(axis=1)).tolist():
        result[i].append(dict(COMBINATION_REASON))  # a copy: callers may annotate their rows
    return result
