"""Reason codes: each scored person's top risk-raising features, in plain English.

Attributions come from the model (``UpstreamModel.contributions``: exact additive contributions on the
raw, pre-calibration log-odds: coefficient x standardised value for the logistic model, TreeSHAP for
gradient boosting); the words come from the
feature registry (``features.registry.reason_text``), so a list, the API and the data dictionary all say
the same thing about a feature.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
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


#: Up to this many rows, the registry's texts are looked up in Python rather than through polars joins: the joins
#: cost ~1 ms per feature whatever the row count, most of an on-demand lookup in the API.
FEW_ROWS = 8


@dataclass(frozen=True)
class _Chosen:
    """Each row's reasons as arrays, best first: row, feature index, value and contribution per reason."""

    rows: int
    names: list[str]
    chosen_rows: np.ndarray
    chosen_features: np.ndarray
    chosen_values: np.ndarray
    columns: dict[int, pl.Series]
    texts: dict[int, dict[Any, str | None]]
    ends: list[int]  # cumulative reason count per row
    combination_rows: list[int]  # rows with risk-raising contributions but no remarkable one


def _choose(contributions: np.ndarray, features: pl.DataFrame, names: list[str], top_n: int) -> _Chosen | None:
    """Ranking, skipping and picking, vectorised over all rows (numpy); None when nothing can be chosen."""
    rows, n_features = contributions.shape
    k = min(top_n, n_features)
    if k <= 0 or rows == 0:
        return None
    # Every positive contribution is a candidate: the largest may all be values the registry calls
    # unremarkable (e.g. "no falls" pushing risk up relative to the average), and we want a real reason.
    order = np.argsort(-contributions, axis=1, kind="stable")
    values = np.take_along_axis(contributions, order, axis=1)
    positive = values > 0
    used = np.unique(order[positive]).tolist()
    remarkable = np.zeros((rows, n_features), dtype=bool)
    columns: dict[int, pl.Series] = {}
    texts: dict[int, dict[Any, str | None]] = {}
    for j in used:
        if rows <= FEW_ROWS:  # one resident in the API: the same lookups in Python (polars: ~1 ms per feature)
            column = features.get_column(names[j])
            own = [None if v != v else v for v in column.to_list()]  # NaN as missing
            columns[j] = pl.Series(names[j], own, dtype=column.dtype)
            texts[j] = {v: reason_text(names[j], v) for v in own}
            remarkable[:, j] = [texts[j][v] is not None for v in own]
        else:
            columns[j] = _missing_as_none(features.get_column(names[j]))
            texts[j] = {v: reason_text(names[j], v) for v in columns[j].unique().to_list()}
            remarkable[:, j] = _remarkable(columns[j], texts[j])
    candidate = positive & np.take_along_axis(remarkable, order, axis=1)
    del remarkable
    chosen = candidate & (np.cumsum(candidate, axis=1, dtype=np.int16) <= k)
    chosen_rows, chosen_pos = np.nonzero(chosen)  # row-major: each row's reasons come out best first
    ends = np.cumsum(chosen.sum(axis=1)).tolist()
    combination = np.flatnonzero(positive.any(axis=1) & ~chosen.any(axis=1)).tolist()
    return _Chosen(rows, names, chosen_rows, order[chosen_rows, chosen_pos], values[chosen_rows, chosen_pos],
                   columns, texts, ends, combination)


def top_reasons(contributions: np.ndarray, features: pl.DataFrame, names: list[str], top_n: int) -> list[list[Reason]]:
    """The ``top_n`` largest positive contributions per row, as reason dicts, best first.

    Only positive contributions are reasons (a reason explains why risk is *high*); values the registry
    says are unremarkable are skipped in favour of the next candidate. Ranking, skipping and picking are
    vectorised over all rows (numpy), and texts are looked up once per distinct (feature, value); Python
    only assembles the chosen reasons, which keeps 1.9M people to seconds.
    """
    picked = _choose(contributions, features, names, top_n)
    if picked is None:
        return [[] for _ in range(contributions.shape[0])]
    chosen_reasons: list[Reason | None] = [None] * len(picked.chosen_rows)
    for j in np.unique(picked.chosen_features).tolist():
        slots = np.flatnonzero(picked.chosen_features == j)
        feature_values = picked.columns[j].gather(picked.chosen_rows[slots]).to_list()
        for slot, value, c in zip(slots.tolist(), feature_values, picked.chosen_values[slots].tolist(), strict=True):
            chosen_reasons[slot] = {"feature": names[j], "value": value, "text": picked.texts[j][value],
                                    "contribution": c}
    ends = picked.ends
    result: list[list[Reason]] = [chosen_reasons[start:end] for start, end in zip([0, *ends[:-1]], ends, strict=True)]
    for i in picked.combination_rows:
        result[i].append(dict(COMBINATION_REASON))  # a copy: callers may annotate their rows
    return result


def top_reasons_json(
    contributions: np.ndarray, features: pl.DataFrame, names: list[str], top_n: int, encode: Callable[[Reason], str]
) -> list[str]:
    """``top_reasons`` as one JSON array per row, the text ``encode`` gives each reason dict, without the dicts.

    WHY: scoring stores reasons as JSON text, and making a dict per reason only to encode it was about a third
    of the score step's Python time at county scale. Each distinct (feature, value) is encoded once with
    ``encode`` (everything but the contribution), and each contribution is appended as ``encode`` writes a
    float, so the text is exactly what ``encode`` makes of ``top_reasons``' dicts (a test compares them).
    """
    rows = contributions.shape[0]
    picked = _choose(contributions, features, names, top_n)
    if picked is None:
        return ["[]"] * rows
    marker = 0.5  # any float: it shows where encode() writes the contribution
    tail = encode({"feature": "", "value": None, "text": "", "contribution": marker})
    cut = len(tail) - tail.rindex(float.__repr__(marker))  # characters from the number to the end
    closing = tail[len(tail) - cut + len(float.__repr__(marker)):]
    parts: list[str | None] = [None] * len(picked.chosen_rows)
    for j in np.unique(picked.chosen_features).tolist():
        slots = np.flatnonzero(picked.chosen_features == j)
        feature_values = picked.columns[j].gather(picked.chosen_rows[slots]).to_list()
        prefixes: dict[Any, str] = {}
        for slot, value, c in zip(slots.tolist(), feature_values, picked.chosen_values[slots].tolist(), strict=True):
            prefix = prefixes.get(value)
            if prefix is None:
                text = encode({"feature": names[j], "value": value, "text": picked.texts[j][value],
                               "contribution": marker})
                prefix = prefixes[value] = text[: len(text) - cut]
            parts[slot] = prefix + float.__repr__(c) + closing
    combination = encode(dict(COMBINATION_REASON))
    out = []
    start = 0
    combination_rows = set(picked.combination_rows)
    for i, end in enumerate(picked.ends):
        row = parts[start:end]
        if i in combination_rows:
            row = [*row, combination]
        out.append("[" + ",".join(row) + "]")  # type: ignore[arg-type]
        start = end
    return out
