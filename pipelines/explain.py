"""Reasons only where they are read: the listed people at publish, anyone else on demand (the API).

WHY: explaining every resident every week was most of the scoring week's CPU (exact TreeSHAP with a 400-tree
champion: ~30 of the score step's 47 CPU s at 280k, bench/README.md issue 15), yet the week's run reads the
reasons of the listed people only (list rows, exports, "what changed"), and the API reads one resident's at a
time. So scoring stores ``reasons`` null (``score_features(explain=False)``); publishing explains the listed
people with the model version that scored the run and stores their reasons with their score; the API explains
anyone else when asked, from the week's feature file and that same model version.

The text is the one the whole-population path gives: a person's contributions depend only on their own
features (TreeSHAP sums each leaf in model order, encoded columns are summed into features in column order:
``FeatureEncoder.sum_by_feature``), and ranking and words are per person (tests/pipelines/test_reasons_on_demand.py).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date
from functools import cache
from pathlib import Path
from typing import Any

import polars as pl

from pipelines.lists import locality_file_stem
from pipelines.partitions import ALL_PARTITION
from pipelines.scoring import iso_week, reasons_json
from pipelines.weeks import week_root
from upstream.errors import UpstreamError
from upstream.settings import Settings

#: How far a score worked out again from the week's feature file may be from the published one and still be
#: the same person's same features (one row through BLAS may differ from a county block in the last digits).
SAME_SCORE = 1e-9


def run_model(settings: Settings, model_name: str, model_version: str) -> Any:
    """The exact model version that scored a run (not whatever is champion now), loaded once per process and
    kept with its TreeSHAP tables among the most recently used (``models.registry.model_version_kept``)."""
    from models.registry import model_version_kept
    from models.treeshap import tables_from_file

    model = model_version_kept(settings, model_name, model_version)
    bundle = getattr(model, "bundle", model)
    if getattr(bundle, "kind", None) == "hgb":  # its TreeSHAP tables: built once per version, not per process
        tables_from_file(bundle.base_estimator, settings.model_cache_dir / f"treeshap-{model_name}-{model_version}.pkl")
    return model


def explain_rows(features: pl.DataFrame, model: Any, top_n: int) -> pl.DataFrame:
    """person_id, reasons (JSON text, as stored with a score) of every row of ``features``."""
    if features.height == 0:
        return pl.DataFrame(schema={"person_id": pl.String, "reasons": pl.String})
    return pl.DataFrame({"person_id": features["person_id"].cast(pl.String),
                         "reasons": reasons_json(features, model, top_n)})


def reasons_for(
    people: list[str], stored: pl.DataFrame, features: pl.DataFrame | None, model: Any | None, top_n: int, week: str
) -> pl.DataFrame:
    """person_id, reasons of ``people``: as stored when the run stored them (``stored``: person_id, reasons or
    null), else worked out from the week's ``features`` with the run's ``model``.

    Raises UpstreamError naming the week when someone must be explained and the features or the model are
    missing: a list row is never published without its reasons."""
    have = stored.filter(pl.col("reasons").is_not_null()).select("person_id", "reasons")
    missing = pl.DataFrame({"person_id": people}, schema={"person_id": pl.String}).join(have, on="person_id",
                                                                                         how="anti")
    if missing.height == 0:
        return have
    if features is None:
        raise UpstreamError(f"cannot explain the {missing.height} listed people of {week}: the week's feature "
                            "files are not on disk (run the week again)")
    if model is None:
        raise UpstreamError(f"cannot explain the {missing.height} listed people of {week}: the model version that "
                            "scored the week is not in the registry")
    rows = features.join(missing, on="person_id", how="semi")
    if rows.height != missing.height:
        raise UpstreamError(f"{missing.height - rows.height} listed people of {week} are not in the week's "
                            "features: the feature files were rebuilt after scoring (run the week again)")
    return pl.concat([have, explain_rows(rows, model, top_n)])


# --- on demand (the API) ------------------------------------------------------------------------------


@cache
def _thread_pools() -> Any:
    """The process's OpenMP/BLAS pools, found once: ``threadpool_limits`` scans every loaded library on each
    call (~7 ms of a ~40 ms lookup, measured), and the libraries do not change while the API runs."""
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


@dataclass(frozen=True)
class OnDemand:
    """One resident's reasons for one scored week, or why they cannot be given (``note``; reasons then None)."""

    reasons: list[dict[str, Any]] | None
    note: str | None = None


def features_file(settings: Settings, index_date: date, locality: str) -> Path | None:
    """The feature file a week's scoring read for ``locality``'s residents: the locality's own partition when
    the week fanned out, else the whole population's; None when the week's features are no longer on disk."""
    folder = week_root(settings, index_date) / "features"
    for stem in (locality_file_stem(locality), ALL_PARTITION):
        path = folder / f"{stem}.parquet"
        if path.is_file():
            return path
    return None


def explain_on_demand(
    settings: Settings,
    *,
    person_id: str,
    locality: str,
    index_date: date,
    score: float,
    model_name: str | None,
    model_version: str | None,
) -> OnDemand:
    """A published resident's reasons for the week scored at ``index_date``, worked out now.

    Only for a person the caller has already found in that published week (so never an opted-out person:
    publishing removes them from every stored week) and may see. Never invents reasons: when the week's
    features are gone, do not hold the person, no longer give the published score, or the model version is
    gone, it says which, and gives none."""
    week = iso_week(index_date)
    path = features_file(settings, index_date, locality)
    if path is None:
        return OnDemand(None, f"Reasons for {week} are not available: that week's features are no longer kept, "
                              "so its reasons cannot be worked out again.")
    try:
        row = pl.scan_parquet(path).filter(pl.col("person_id") == person_id).collect()
    except (OSError, pl.exceptions.PolarsError):  # being replaced by a re-run of the week right now
        row = None
    if row is None or row.height != 1:
        return OnDemand(None, f"Reasons for {week} are not available: the week's feature file no longer holds "
                              "this resident as scored (the week has been run again since it was published).")
    if not model_name or not model_version:
        return OnDemand(None, f"Reasons for {week} are not available: the week's run does not record its model.")
    try:
        model = run_model(settings, model_name, model_version)
    except UpstreamError:
        return OnDemand(None, f"Reasons for {week} are not available: {model_name} version {model_version}, "
                              "which scored that week, is no longer in the model registry.")
    # One row on one thread: scikit-learn's gradient boosting opens an OpenMP region per tree, and on a busy
    # machine each region's start-up cost ~10 ms, i.e. seconds for one person with 400 trees (measured: 4.7 s).
    with _thread_pools().limit(limits=1):
        again = float(model.predict_proba(row)[0])
        if abs(again - score) > SAME_SCORE:
            return OnDemand(None, f"Reasons for {week} are not available: the week's feature file no longer gives "
                                  "the published score (the week has been run again since it was published).")
        return OnDemand(json.loads(reasons_json(row, model, settings.lists.top_reasons)[0]))
