"""Population scoring: turn a feature table and the champion model into a banded score frame.

Plain functions (no Prefect), so scoring can be tested with hand-made frames and run per
locality on a Dask worker. Reasons travel as a JSON string column because their ``value`` mixes
numbers, text and nulls, which a polars struct cannot hold; the DB layer decodes them once.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from typing import Any, Protocol

import numpy as np
import polars as pl

#: Score bands, defined once. A resident's band comes from their percentile rank within their own
#: locality (fraction of the locality's scored residents with a strictly lower score), so every team
#: sees the same shape of band whatever the locality's overall risk. Checked top-down.
BANDS: tuple[tuple[str, float], ...] = (
    ("very high", 0.95),  # top 5%
    ("high", 0.80),  # 80th-95th percentile
    ("moderate", 0.50),  # 50th-80th percentile
    ("low", 0.0),
)
BAND_ORDER: tuple[str, ...] = tuple(name for name, _ in BANDS)

#: One resident's row of score history, declared once: scoring makes it (without ``band``, which
#: ``assign_bands`` adds across partitions), ``pipelines.score_history`` writes and reads it. ``reasons`` is
#: the JSON array made once by ``encode_reasons`` and kept as that text all the way to the database; null for a
#: person the run did not explain (the weekly run explains only the people whose reasons it reads:
#: ``pipelines.explain``).
SCORE_ROW = pl.Schema(
    {
        "person_id": pl.String,
        "locality": pl.String,
        "score": pl.Float64,
        "band": pl.String,
        "in_long_term_care": pl.Boolean,
        "reasons": pl.String,
    }
)
#: What ``score_features`` returns for one partition (a row before banding).
SCORE_COLUMNS = tuple(name for name in SCORE_ROW if name != "band")


class ScoringModel(Protocol):
    """What scoring needs from ``models.registry.LoadedModel``."""

    version: Any
    run_id: str

    def predict_proba(self, features: pl.DataFrame) -> np.ndarray: ...

    def explain(self, features: pl.DataFrame, top_n: int) -> list[list[Any]]: ...


def iso_week(index_date: date) -> str:
    """The list's week key (``2026-W48``): re-running any day of a week replaces that week."""
    year, week, _ = index_date.isocalendar()
    return f"{year}-W{week:02d}"


def _reason_dict(reason: Any) -> dict[str, Any]:
    """Reasons may arrive as dicts, TypedDicts, dataclasses or pydantic models: normalise to a dict."""
    if isinstance(reason, Mapping):
        source: Mapping[str, Any] = reason
    elif hasattr(reason, "model_dump"):
        source = reason.model_dump()
    else:
        source = {key: getattr(reason, key, None) for key in ("feature", "value", "text", "contribution")}
    value = source.get("value")
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        value = None
    if value is not None and not isinstance(value, int | float | str | bool):
        value = str(value)
    contribution = source.get("contribution")
    return {
        "feature": str(source.get("feature")),
        "value": value,
        "text": str(source.get("text")),
        "contribution": None if contribution is None else float(contribution),
    }


#: Compact JSON, made once: ``json.dumps(..., separators=...)`` builds a new encoder on every call (1.9M a week).
_REASONS_JSON = json.JSONEncoder(separators=(",", ":"))


def encode_reason(reason: Any) -> str:
    """One reason as the JSON object ``encode_reasons`` writes inside its arrays."""
    return _REASONS_JSON.encode(_reason_dict(reason))


def encode_reasons(reasons: Sequence[Sequence[Any]]) -> list[str]:
    """One JSON array per resident (the same text as ``json.dumps(..., separators=(",", ":"))``)."""
    encode = _REASONS_JSON.encode
    return [encode([_reason_dict(r) for r in person]) for person in reasons]


def reasons_json(features: pl.DataFrame, model: ScoringModel, top_n: int) -> list[str]:
    """Each row's top ``top_n`` reasons as the JSON array stored with its score (``encode_reasons``' text).

    A row's reasons depend only on that row (its contributions are summed in model and column order, its
    ranking and words are per row), so explaining a list's people, or one person in the API, gives the text
    explaining the whole population would (tests/pipelines/test_reasons_on_demand.py).
    """
    explain_json = getattr(model, "explain_json", None)
    if explain_json is not None:  # the JSON made straight from the ranked arrays: the same text, no dict per reason
        reasons = explain_json(features, top_n, encode_reason)
    else:
        reasons = encode_reasons(model.explain(features, top_n))
    if len(reasons) != features.height:
        raise ValueError(f"model returned {len(reasons)} reason lists for {features.height} residents")
    return reasons


#: Fewer rows than this per thread are predicted in one call: the split costs more than it saves.
MIN_ROWS_PER_THREAD = 20_000


def _predict_one_thread(model: ScoringModel, features: pl.DataFrame) -> np.ndarray:
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="openmp"):  # this thread's OpenMP setting only
        return np.asarray(model.predict_proba(features), dtype=float).reshape(-1)


def predict_in_row_blocks(model: ScoringModel, features: pl.DataFrame, threads: int | None = None) -> np.ndarray:
    """The model's probabilities for every row: one block of rows per core, each predicted on one thread.

    WHY not the model's own threads: scikit-learn's gradient boosting opens one OpenMP parallel region per tree
    (400 for the 280k champion), and on a busy machine its threads spin at every region's barrier. Measured at
    267k rows, load 9: 5.0-6.3 CPU s with OpenMP's two threads, 3.0-3.1 CPU s as two blocks of one thread each,
    in the same wall time (bench/README.md, issue 15 session 5). Each row's probability is its own trees' sum
    in model order, so the blocks give the very same floats (a test compares them bit for bit). Gradient
    boosting only (``bundle.kind == "hgb"``); other models predict as one call, as before.
    """
    if getattr(getattr(model, "bundle", model), "kind", None) != "hgb":
        # A logistic model's matrix product is left whole: BLAS kernels can round a row differently at a
        # block's edge (models.bundle's sum_by_feature says why), and it costs little anyway.
        return np.asarray(model.predict_proba(features), dtype=float).reshape(-1)
    if threads is None:
        threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    blocks = max(1, min(threads, features.height // MIN_ROWS_PER_THREAD))
    if blocks == 1:
        return _predict_one_thread(model, features)
    bounds = [features.height * i // blocks for i in range(blocks + 1)]
    with ThreadPoolExecutor(max_workers=blocks, thread_name_prefix="predict") as pool:
        parts = pool.map(lambda i: _predict_one_thread(model, features.slice(bounds[i], bounds[i + 1] - bounds[i])),
                         range(blocks))
        return np.concatenate(list(parts))


def score_features(features: pl.DataFrame, model: ScoringModel, top_n: int, *, explain: bool = True) -> pl.DataFrame:
    """Score every row of a feature table: person_id, locality, score, in_long_term_care, reasons (JSON).

    The feature table already holds only residents alive and registered at the index date, so this
    is the whole living population (or one locality's share of it when fanned out). ``explain=False`` leaves
    ``reasons`` null: the weekly run explains only the people whose reasons are read (``pipelines.explain``),
    which was most of the score step's CPU when everyone was explained (bench/README.md, issue 15).
    """
    if features.height == 0:
        return empty_scores()
    proba = predict_in_row_blocks(model, features)
    if proba.shape[0] != features.height:
        raise ValueError(f"model returned {proba.shape[0]} scores for {features.height} residents")
    reasons = (reasons_json(features, model, top_n) if explain
               else pl.repeat(None, features.height, dtype=pl.String, eager=True))
    ltc = (
        features["in_long_term_care"].fill_null(False).cast(pl.Boolean)
        if "in_long_term_care" in features.columns
        else pl.Series([False] * features.height)
    )
    return pl.DataFrame(
        {
            "person_id": features["person_id"].cast(pl.String),
            "locality": features["locality"].cast(pl.String).fill_null("Unknown"),
            "score": proba,
            "in_long_term_care": ltc,
            "reasons": reasons,
        }
    )


def empty_scores() -> pl.DataFrame:
    return pl.DataFrame(schema={name: SCORE_ROW[name] for name in SCORE_COLUMNS})


def locality_percentile() -> pl.Expr:
    """Fraction of the same locality's residents with a strictly lower score (0 for the lowest)."""
    return ((pl.col("score").rank("min").over("locality") - 1) / pl.len().over("locality")).alias("percentile")


def assign_bands(scores: pl.DataFrame) -> pl.DataFrame:
    """Add ``percentile`` and ``band`` (see ``BANDS``); sorted by locality then score descending."""
    with_pct = scores.with_columns(locality_percentile())
    band = pl.lit(BANDS[-1][0])
    for name, threshold in reversed(BANDS[:-1]):
        band = pl.when(pl.col("percentile") >= threshold).then(pl.lit(name)).otherwise(band)
    return with_pct.with_columns(band.alias("band")).sort(
        ["locality", "score", "person_id"], descending=[False, True, False]
    )


def combine_partitions(parts: Sequence[pl.DataFrame]) -> pl.DataFrame:
    """Stack per-locality score frames and band them; order-independent, so fan-out = local run."""
    frames = [p.select(SCORE_COLUMNS) for p in parts if p.height]
    combined = pl.concat(frames) if frames else empty_scores()
    duplicated = combined["person_id"].is_duplicated().any()
    if duplicated:
        raise ValueError("a resident was scored in more than one partition")
    return assign_bands(combined)
