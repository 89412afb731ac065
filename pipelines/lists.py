"""The weekly rising-risk list per locality (DESIGN §6): cohort, sections, words, offers, export.

Rules (``settings.lists``, ``settings.cohort``), per locality:
- only the list cohort can be listed: every exclusion of ``expectations.cohort`` (children, inpatients,
  care-home residents, people with an open long-term service or reablement, the last year of life,
  opt-outs) is applied first, and counted in the funnel;
- ``rising``: risk up by at least ``risk_rise_threshold`` since the comparison week (``rise_lookback_weeks``
  earlier, or the earliest published week when fewer exist), listed whatever their rank;
- ``top``: the ``capacity_per_locality`` highest risks of the cohort with locality percentile
  >= ``band_percentile``;
- ``new``: listed this week (rising or top) and not on last week's list (no "new" on the very first list:
  there is nothing to compare with).
Each person is in exactly one section (new, then rising, then top), and rows are ordered in that section
order, highest risk first within a section, so the people a team has not seen are at the top.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import uuid
from datetime import date
from pathlib import Path
from typing import Any

import polars as pl

from expectations.cohort import COHORT_RULES, REASON_COLUMN, funnel_counts
from upstream.disclosure import show_count, suppress_count
from upstream.list_row import (
    LIST_ROW,
    OFFER_SEPARATOR,
    SECTION_IDS,
    TEXT_SEPARATOR,
    age_band,
    change_points,
    to_csv_text,
    write_xlsx,
)
from upstream.offers import NO_OFFER_FITS, ServiceCatalogue
from upstream.settings import CohortSettings, ListSettings
from upstream.store import LIST_ROW_COLUMNS

#: Scores are floats: treat a rise within this of the threshold as reaching it (0.35 - 0.30 < 0.05).
_RISE_TOLERANCE = 1e-9

LIST_COLUMNS = LIST_ROW_COLUMNS
#: Said when the model names no risk-raising factor for a listed person (e.g. a riser still near average).
NO_REASON = "no single factor raises the risk above average"


def _weeks_text(index_date: date, comparison_date: date | None) -> str:
    if comparison_date is None:
        return ""
    weeks = max(1, round((index_date - comparison_date).days / 7))
    return f"in {weeks} week{'s' if weeks != 1 else ''}"


def build_lists(
    current: pl.DataFrame,
    rules: ListSettings,
    cohort: pl.DataFrame,
    *,
    index_date: date,
    comparison_scores: pl.DataFrame | None = None,
    comparison_date: date | None = None,
    previous_members: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """Every locality's list from a banded score frame (``scoring.assign_bands`` output).

    ``cohort``: ``expectations.cohort.cohort_at`` output (person_id, age, gp_practice, exclusion_reason).
    ``comparison_scores``: person_id, score at ``comparison_date`` (the rise lookback).
    ``previous_members``: person_id of last week's list (None on the first list: nobody is "new").
    Returns the stored columns with ``what_changed``/offers empty (see :func:`attach_details`).
    """
    frame = current
    if "percentile" not in frame.columns:
        from pipelines.scoring import locality_percentile

        frame = frame.with_columns(locality_percentile())
    frame = frame.join(
        cohort.select("person_id", "age", "gp_practice", REASON_COLUMN), on="person_id", how="inner"
    ).filter(pl.col(REASON_COLUMN).is_null())
    if comparison_scores is not None and comparison_scores.height:
        frame = frame.join(
            comparison_scores.select("person_id", pl.col("score").alias("_comparison")), on="person_id", how="left"
        )
    else:
        frame = frame.with_columns(pl.lit(None, dtype=pl.Float64).alias("_comparison"))
    frame = frame.with_columns((pl.col("score") - pl.col("_comparison")).alias("_change")).sort(
        ["locality", "score", "person_id"], descending=[False, True, False]
    )
    in_band = pl.col("percentile") >= rules.band_percentile
    band_position = pl.int_range(pl.len()).over(["locality", in_band])
    frame = frame.with_columns(
        (in_band & (band_position < rules.capacity_per_locality)).alias("_top"),
        (pl.col("_change").is_not_null() & (pl.col("_change") >= rules.risk_rise_threshold - _RISE_TOLERANCE))
        .alias("_rising"),
    ).filter(pl.col("_top") | pl.col("_rising"))
    if previous_members is None:
        new = pl.lit(False)
    else:
        new = ~pl.col("person_id").is_in(previous_members["person_id"].implode())
    frame = frame.with_columns(
        new.alias("_new"), pl.col("_top").sum().over("locality").alias("_n_top")
    ).with_columns(
        pl.when(pl.col("_new")).then(pl.lit("new")).when(pl.col("_rising")).then(pl.lit("rising"))
        .otherwise(pl.lit("top")).alias("section"),
        pl.col("_change").map_elements(change_points, return_dtype=pl.Float64).alias("change_points"),
    )
    weeks = _weeks_text(index_date, comparison_date)
    why = []
    for row in frame.select("_new", "_rising", "_top", "_n_top", "locality", "change_points").iter_rows(named=True):
        parts = []
        if row["_new"]:
            parts.append("New this week")
        if row["_rising"]:
            parts.append(f"Risk up {row['change_points']:.1f} points {weeks}".rstrip())
        if row["_top"]:
            n = row["_n_top"]
            parts.append(f"The highest risk in {row['locality']}" if n == 1
                         else f"Among the {n} highest risks in {row['locality']}")
        text = TEXT_SEPARATOR.join(parts)
        why.append(text[:1].upper() + text[1:])
    order = {s: i for i, s in enumerate(SECTION_IDS)}
    frame = (
        frame.with_columns(pl.Series("why_listed", why, dtype=pl.String))
        .with_columns(pl.col("section").replace_strict(order, return_dtype=pl.Int32).alias("_order"))
        .sort(["locality", "_order", "score", "person_id"], descending=[False, False, True, False])
    )
    return frame.with_columns(
        pl.int_range(1, pl.len() + 1).over("locality").cast(pl.Int64).alias("rank"),
        pl.lit(None, dtype=pl.String).alias("what_changed"),
        pl.lit("").alias("suggested_offers"),
        pl.lit(NO_OFFER_FITS).alias("offer_evidence"),
        pl.lit("").alias("top_reasons"),
        pl.col("age").map_elements(age_band, return_dtype=pl.String).alias("age_band"),
        # score history is read without reasons (publish fetches them for listed people: attach_details)
        pl.col("reasons").fill_null("[]") if "reasons" in frame.columns else pl.lit(None, dtype=pl.String).alias("reasons"),
    ).select(LIST_COLUMNS)


def _top_reasons(rules: ListSettings) -> list[pl.Expr]:
    trimmed = pl.col("reasons").map_elements(
        lambda text: json.dumps(json.loads(text)[: rules.top_reasons], separators=(",", ":")),
        return_dtype=pl.String,
    )
    return [trimmed.alias("reasons")]


def attach_details(
    lists: pl.DataFrame,
    rules: ListSettings,
    *,
    reasons: pl.DataFrame | None = None,
    offers: pl.DataFrame | None = None,
    changes: dict[str, str] | None = None,
) -> pl.DataFrame:
    """Fill the words: reasons (person_id, JSON), offers (``ServiceCatalogue.match`` output), what changed."""
    out = lists
    if reasons is not None:
        out = out.drop("reasons").join(reasons, on="person_id", how="left", maintain_order="left").with_columns(
            pl.col("reasons").fill_null("[]"))
    out = out.with_columns(*_top_reasons(rules)).with_columns(
        pl.col("reasons").map_elements(
            lambda text: TEXT_SEPARATOR.join(r["text"] for r in json.loads(text)) or NO_REASON, return_dtype=pl.String
        ).alias("top_reasons")
    )
    if offers is not None:
        matched = offers.select(
            "person_id",
            pl.col("suggested_offers").list.join(OFFER_SEPARATOR).alias("_offers"),
            pl.when(pl.col("suggested_offers").list.len() > 0).then(pl.col("offer_evidence"))
            .otherwise(pl.lit(NO_OFFER_FITS)).alias("_evidence"),
        )
        out = out.join(matched, on="person_id", how="left", maintain_order="left").with_columns(
            pl.col("_offers").fill_null("").alias("suggested_offers"),
            pl.col("_evidence").fill_null(NO_OFFER_FITS).alias("offer_evidence"),
        )
    if changes is not None:
        out = out.with_columns(
            pl.when(pl.col("section").is_in(["new", "rising"]))
            .then(pl.col("person_id").replace_strict(changes, default=None, return_dtype=pl.String))
            .otherwise(None)
            .alias("what_changed")
        )
    return out.select(LIST_COLUMNS)


def list_sizes(lists: pl.DataFrame, localities: list[str]) -> list[dict[str, Any]]:
    """Per-locality list sizes by section for artifacts and logs, small-number suppressed ("<8")."""
    counts = {
        row["locality"]: row
        for row in lists.group_by("locality")
        .agg(pl.len().alias("listed"), *[(pl.col("section") == s).sum().alias(s) for s in SECTION_IDS],
             (pl.col("suggested_offers") != "").sum().alias("with_offer"))
        .to_dicts()
    }
    rows = []
    for locality in sorted(set(localities) | set(counts)):
        c = counts.get(locality, {})
        rows.append({"locality": locality, **{k: show_count(int(c.get(k, 0))) for k in
                                               ("listed", *SECTION_IDS, "with_offer")}})
    return rows


def funnel_rows(cohort: pl.DataFrame, settings: CohortSettings, localities: list[str]) -> list[dict[str, Any]]:
    """The cohort funnel per locality, ready to publish: residents, each exclusion in order, in cohort.

    Counts are small-number suppressed here (``people`` None = 1-7, shown "<8"; others rounded to 5): raw
    counts never leave this function.
    """
    counts = {row["locality"]: row for row in funnel_counts(cohort).to_dicts()}
    steps = [("residents", "Residents alive and registered at the index date")]
    steps += [(rule.reason, rule.title(settings)) for rule in COHORT_RULES]
    steps.append(("in_cohort", "In the list cohort"))
    rows = []
    for locality in sorted(set(localities) | set(counts)):
        c = counts.get(locality, {})
        for position, (step, label) in enumerate(steps):
            n = int(c.get(step, 0))
            rows.append({"locality": locality, "position": position, "step": step, "label": label,
                         "people": suppress_count(n), "shown": show_count(n)})
    return rows


def offer_demand(lists: pl.DataFrame, catalogue: ServiceCatalogue, localities: list[str]) -> list[dict[str, Any]]:
    """Listed people each offer fits, against its weekly capacity, per locality (suppressed)."""
    rows = []
    for locality in sorted(set(localities) | set(lists["locality"].unique().to_list())):
        mine = lists.filter(pl.col("locality") == locality)
        ids = mine["suggested_offers"].str.split(OFFER_SEPARATOR)
        for offer in catalogue.offers:
            n = int(ids.list.contains(offer.id).sum()) if mine.height else 0
            rows.append({"locality": locality, "offer": offer.id, "fits": show_count(n),
                         "weekly_capacity": offer.capacity(locality)})
    return rows


def locality_file_stem(locality: str) -> str:
    """A safe file name for a locality ("Medway North" -> "medway-north")."""
    stem = re.sub(r"[^a-z0-9]+", "-", locality.lower()).strip("-")
    return stem or "unknown"


def stage_exports(lists: pl.DataFrame, week_dir: Path, localities: list[str],
                  funnel: list[dict[str, Any]] | None = None) -> Path:
    """Write every locality's ``<locality>.csv`` and ``.xlsx`` (the declared list row, pseudonymised) and
    ``cohort_funnel.csv`` into a staging directory beside ``week_dir``.

    Localities with an empty list still get (header-only) files, so "nobody this week" is explicit.
    """
    week_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = week_dir.parent / f".{week_dir.name}.{uuid.uuid4().hex[:8]}.tmp"
    staging.mkdir()
    try:
        for locality in sorted(set(localities) | set(lists["locality"].unique().to_list())):
            rows = lists.filter(pl.col("locality") == locality).to_dicts()
            stem = locality_file_stem(locality)
            (staging / f"{stem}.csv").write_text(to_csv_text(rows, reidentified=False), encoding="utf-8")
            (staging / f"{stem}.xlsx").write_bytes(write_xlsx(rows, reidentified=False, sheet_title=locality))
        if funnel is not None:
            pl.DataFrame(
                [{k: r[k] for k in ("locality", "position", "step", "label", "shown")} for r in funnel],
                schema={"locality": pl.String, "position": pl.Int64, "step": pl.String, "label": pl.String,
                        "shown": pl.String},
            ).rename({"shown": "people"}).write_csv(staging / "cohort_funnel.csv")
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


__all__ = ["LIST_ROW", "attach_details", "build_lists", "export_lists", "funnel_rows", "list_sizes",
           "offer_demand"]
