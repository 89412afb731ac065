"""A weekly run's date and where its files live.

The index date is resolved ONCE, by the flow that starts the run, and passed to every step (ingest
validates against it, features and scores are as of it); nothing downstream reads ``_delivery.json`` or
"today" again.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import polars as pl

from expectations.ingest import delivery_extract_date
from pipelines.scoring import iso_week
from upstream.settings import Settings

__all__ = ["clean_dir_of", "delivery_extract_date", "lists_dir", "resolve_index_date", "week_features", "week_root"]


def resolve_index_date(raw_dir: Path, index_date: date | None) -> date:
    """The scoring date: given, else the delivery's extract date, else today."""
    if index_date is not None:
        return index_date
    return delivery_extract_date(raw_dir) or date.today()


def week_root(settings: Settings, index_date: date) -> Path:
    """Per-week working files (ingest output, feature partitions); replaced when the week is re-run."""
    return settings.home / "weeks" / iso_week(index_date)


def clean_dir_of(settings: Settings, index_date: date) -> Path:
    """The week's validated, pseudonymised delivery (ingest's output)."""
    return week_root(settings, index_date) / "ingest" / "clean"


def lists_dir(settings: Settings, week: str) -> Path:
    """The week's exported list files (CSV, Excel), one per locality."""
    return settings.home / "lists" / week


def week_features(settings: Settings, index_date: date) -> pl.DataFrame | None:
    """The feature table a week's run built (all partitions), or None when it is no longer on disk."""
    paths = sorted((week_root(settings, index_date) / "features").glob("*.parquet"))
    if not paths:
        return None
    return pl.concat([pl.read_parquet(p) for p in paths], how="vertical_relaxed")
