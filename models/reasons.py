"""Reason codes: each scored person's top risk-raising features, in plain English.

Attributions come from the model (``UpstreamModel.contributions``: coefficient x standardised value for
the logistic model, occlusion against a typical person for gradient boosting); the words come from the
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


def top_reasons(contributions: np.ndarray, features: pl.DataFrame, names: list[str], top_n: int) -> list[list[Reason]]:
    """The ``top_n`` largest positive contributions per row, as reason dicts, best first.

    Only positive contributions are reasons (a reason explains why risk is *high*); values the registry
    says are unremarkable are skipped in favour of the next candidate. Vectorised ranking, and texts are
    looked up once per distinct (feature, value), which keeps 280k people to a few seconds.
    """
    rows, n_features = contributions.shape
    k = min(top_n, n_features)
    if k <= 0 or rows == 0:
        return [[] for _ in range(rows)]
    # Every positive contribution is a candidate: the largest may all be values the registry calls
    # unremarkable (e.g. "no falls" pushing risk up relative to the average), and we want a real reason.
    order = np.argsort(-contributions, axis=1, kind="stable")
    top, values = order, np.take_along_axis(contributions, order, axis=1)
    positives = (values > 0).sum(axis=1)
    used = np.unique(top[values > 0])
    raw = {names[j]: features.get_column(names[j]).to_list() for j in used}
    cache: dict[tuple[str, Any], str | None] = {}
    result: list[list[Reason]] = []
    for i in range(rows):
        reasons: list[Reason] = []
        n = int(positives[i])
        for j, c in zip(top[i, :n].tolist(), values[i, :n].tolist(), strict=True):
            if len(reasons) == k:
                break
            name = names[j]
            value = raw[name][i]
            if isinstance(value, float) and np.isnan(value):
                value = None
            key = (name, value)
            if key not in cache:
                cache[key] = reason_text(name, value)
            if cache[key] is None:
                continue
            reasons.append({"feature": name, "value": value, "text": cache[key], "contribution": c})
        if not reasons and n > 0:
            reasons.append(dict(COMBINATION_REASON))  # a copy: callers may annotate their rows
        result.append(reasons)
    return result
