"""The weekly rising-risk list per locality (DESIGN §6), its suppressed sizes and its CSV/Excel export.

Rules (``settings.lists``), per locality:
- residents in long-term care are excluded (services already know them);
- ``top_band``: locality percentile >= ``band_percentile`` (default: top 20%), highest scores first,
  capped at ``capacity_per_locality`` people;
- ``risk_rise``: score risen by >= ``risk_rise_threshold`` since the previous published week (not capped:
  a sudden rise is exactly what the team must not miss);
- ``both`` when a resident qualifies both ways.
Rows are ranked by score (descending) within the locality. ``change_since_last_week`` is null for someone
not scored last week; ``new_this_week`` means "not on last week's list" (everyone, for the first week).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import uuid
from pathlib import Path
from typing import Any

import polars as pl

from upstream.disclosure import suppress_count
from upstream.settings import ListSettings
from upstream.store import LIST_ROW_COLUMNS

#: Scores are floats: treat a rise within this of the threshold as reaching it (0.35 - 0.30 < 0.05).
_RISE_TOLERANCE = 1e-9

LIST_COLUMNS = LIST_ROW_COLUMNS


def build_lists(
    current: pl.DataFrame,
    rules: ListSettings,
    previous_scores: pl.DataFrame | None = None,
    previous_members: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """Build every locality's list from a banded score frame (``scoring.assign_bands`` output)."""
    frame = current
    if "percentile" not in frame.columns:
        from pipelines.scoring import locality_percentile

        frame = frame.with_columns(locality_percentile())
    if previous_scores is not None and previous_scores.height:
        frame = frame.join(
            previous_scores.select("person_id", pl.col("score").alias("_previous_score")),
            on="person_id",
            how="left",
        )
    else:
        frame = frame.with_columns(pl.lit(None, dtype=pl.Float64).alias("_previous_score"))
    frame = frame.filter(~pl.col("in_long_term_care").fill_null(False)).with_columns(
        (pl.col("score") - pl.col("_previous_score")).alias("change_since_last_week")
    )
    order = ["locality", "score", "person_id"]
    descending = [False, True, False]
    frame = frame.sort(order, descending=descending)
    in_band = pl.col("percentile") >= rules.band_percentile
    band_position = pl.int_range(pl.len()).over(["locality", in_band])
    frame = frame.with_columns(
        (in_band & (band_position < rules.capacity_per_locality)).alias("_top_band"),
        (
            pl.col("change_since_last_week").is_not_null()
            & (pl.col("change_since_last_week") >= rules.risk_rise_threshold - _RISE_TOLERANCE)
        ).alias("_risk_rise"),
    ).filter(pl.col("_top_band") | pl.col("_risk_rise"))
    if previous_members is None:
        new = pl.lit(True)
    else:
        new = ~pl.col("person_id").is_in(previous_members["person_id"].implode())
    reason = (
        pl.when(pl.col("_top_band") & pl.col("_risk_rise"))
        .then(pl.lit("both"))
        .when(pl.col("_top_band"))
        .then(pl.lit("top_band"))
        .otherwise(pl.lit("risk_rise"))
    )
    return frame.with_columns(
        (pl.int_range(1, pl.len() + 1).over("locality")).cast(pl.Int64).alias("rank"),
        new.alias("new_this_week"),
        reason.alias("reason_for_listing"),
        _trim_reasons(rules),
    ).select(LIST_COLUMNS)


def _trim_reasons(rules: ListSettings) -> pl.Expr:
    return pl.col("reasons").map_elements(
        lambda text: json.dumps(json.loads(text)[: rules.top_reasons], separators=(",", ":")),
        return_dtype=pl.String,
    )


def attach_reasons(lists: pl.DataFrame, reasons: pl.DataFrame, rules: ListSettings) -> pl.DataFrame:
    """Replace the lists' reasons with ``reasons`` (person_id, JSON text), keeping the top ones."""
    return (
        lists.drop("reasons")
        .join(reasons, on="person_id", how="left", maintain_order="left")
        .with_columns(pl.col("reasons").fill_null("[]"))
        .with_columns(_trim_reasons(rules))
        .select(LIST_COLUMNS)
    )


def list_sizes(lists: pl.DataFrame, localities: list[str]) -> list[dict[str, Any]]:
    """Per-locality list sizes for artifacts and logs, with small-number suppression ("<8")."""

    def shown(n: int) -> str:
        value = suppress_count(n)
        return "<8" if value is None else str(value)

    counts = {
        row["locality"]: row
        for row in lists.group_by("locality")
        .agg(
            pl.len().alias("listed"),
            pl.col("reason_for_listing").is_in(["top_band", "both"]).sum().alias("top_band"),
            pl.col("reason_for_listing").is_in(["risk_rise", "both"]).sum().alias("risk_rise"),
            pl.col("new_this_week").sum().alias("new_this_week"),
        )
        .to_dicts()
    }
    rows = []
    for locality in sorted(set(localities) | set(counts)):
        c = counts.get(locality, {})
        rows.append(
            {
                "locality": locality,
                "listed": shown(int(c.get("listed", 0))),
                "top_band": shown(int(c.get("top_band", 0))),
                "risk_rise": shown(int(c.get("risk_rise", 0))),
                "new_this_week": shown(int(c.get("new_this_week", 0))),
            }
        )
    return rows


def locality_file_stem(locality: str) -> str:
    """A safe file name for a locality ("Medway North" -> "medway-north")."""
    stem = re.sub(r"[^a-z0-9]+", "-", locality.lower()).strip("-")
    return stem or "unknown"


def export_table(lists: pl.DataFrame) -> pl.DataFrame:
    """The analyst-facing columns: top reasons as plain English text, rounded numbers."""
    return lists.select(
        "rank",
        "person_id",
        pl.col("score").round(4),
        "band",
        pl.col("change_since_last_week").round(4),
        "new_this_week",
        "reason_for_listing",
        pl.col("reasons")
        .map_elements(lambda text: "; ".join(r["text"] for r in json.loads(text)), return_dtype=pl.String)
        .alias("top_reasons"),
    )


def stage_exports(lists: pl.DataFrame, week_dir: Path, localities: list[str]) -> Path:
    """Write every locality's ``<locality>.csv`` and ``.xlsx`` into a staging directory beside ``week_dir``.

    Localities with an empty list still get (header-only) files, so "nobody this week" is explicit.
    """
    week_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = week_dir.parent / f".{week_dir.name}.{uuid.uuid4().hex[:8]}.tmp"
    staging.mkdir()
    try:
        for locality in sorted(set(localities) | set(lists["locality"].unique().to_list())):
            table = export_table(lists.filter(pl.col("locality") == locality))
            stem = locality_file_stem(locality)
            table.write_csv(staging / f"{stem}.csv")
            table.write_excel(staging / f"{stem}.xlsx", worksheet=stem[:31], autofit=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return staging


def commit_exports(staging: Path, week_dir: Path) -> list[Path]:
    """Put a staged week in place with renames, so a reader never sees half a week."""
    old = None
    if week_dir.exists():
        old = week_dir.parent / f".{week_dir.name}.{uuid.uuid4().hex[:8]}.old"
        os.replace(week_dir, old)
    os.replace(staging, week_dir)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return sorted(week_dir.iterdir())


def export_lists(lists: pl.DataFrame, week_dir: Path, localities: list[str]) -> list[Path]:
    """Stage then commit: ``<week_dir>/<locality>.{csv,xlsx}``, replacing the week atomically."""
    return commit_exports(stage_exports(lists, week_dir, localities), week_dir)
