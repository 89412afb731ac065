"""The weekly rising-risk list per locality (DESIGN §6): cohort, sections, words, offers, export.

Rules (``settings.lists``, ``settings.cohort``), per locality:
- only the list cohort can be listed: every exclusion of ``expectations.cohort`` (children, inpatients,
  care-home residents, people with an open long-term service or reablement, the last year of life,
  opt-outs) is applied first, and counted in the funnel;
- the sections ``new``, ``rising`` and ``top`` follow ``upstream.list_row.section_rules`` (THE declaration
  of what each means, which the docs quote): in short, ``rising`` = risk up by ``risk_rise_threshold`` over
  ``rise_lookback_weeks``, listed whatever their rank; ``top`` = the ``capacity_per_locality`` highest risks
  with locality percentile >= ``band_percentile``; ``new`` = not on last week's list AND their own risk put
  them on it (rising, or at/above last week's entry level). Someone who only drifted in because others left
  is ``top``, and ``why_listed`` says so;
- each offer's weekly places go down the list in rank order (``upstream.offers.CAPACITY_RULE``).
Each person is in exactly one section (new, then rising, then top), and rows are ordered in that section
order, highest risk first within a section, so the people a team has not seen are at the top.
"""

from __future__ import annotations

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
    OFFER_SUMMARY,
    SECTION_IDS,
    TEXT_SEPARATOR,
    age_band,
    change_points,
    to_csv_text,
    write_xlsx,
)
from upstream.offers import NO_OFFER_FITS, ServiceCatalogue, offer_summary
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


def entry_levels(previous_list: pl.DataFrame) -> pl.DataFrame:
    """locality, entry_level: the lowest risk among last week's highest-risk people per locality (the risk a
    person needed last week to be listed by rank). Lists published before ``among_highest`` was stored fall
    back to their ``top`` section (a slightly higher, so stricter, level)."""
    highest = pl.col("among_highest")
    if "section" in previous_list.columns:
        highest = highest.fill_null(pl.col("section") == "top")
    return (previous_list.filter(highest.fill_null(False)).group_by("locality")
            .agg(pl.col("score").min().alias("entry_level")))


def build_lists(
    current: pl.DataFrame,
    rules: ListSettings,
    cohort: pl.DataFrame,
    *,
    index_date: date,
    comparison_scores: pl.DataFrame | None = None,
    comparison_date: date | None = None,
    previous_list: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """Every locality's list from a banded score frame (``scoring.assign_bands`` output).

    ``cohort``: ``expectations.cohort.cohort_at`` output (person_id, age, gp_practice, exclusion_reason).
    ``comparison_scores``: person_id, score at ``comparison_date`` (the rise lookback).
    ``previous_list``: last week's published rows (person_id, locality, score, among_highest, section; None
    on the first list: nobody is "new"). The sections follow ``upstream.list_row.section_rules``.
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
    if previous_list is None:
        frame = frame.with_columns(pl.lit(False).alias("_not_last_week"), pl.lit(None, pl.Float64).alias("_entry"))
    else:
        frame = frame.with_columns(
            (~pl.col("person_id").is_in(previous_list["person_id"].implode())).alias("_not_last_week")
        ).join(entry_levels(previous_list).rename({"entry_level": "_entry"}), on="locality", how="left")
    # New = their own risk put them on the list (section_rules["new"]). A locality with no list last week has
    # no entry level: like the very first list, nobody there is new (nor entered because others left).
    own_risk = (pl.col("_rising") | (pl.col("score") >= pl.col("_entry"))).fill_null(False)
    frame = frame.with_columns(
        (pl.col("_not_last_week") & own_risk).alias("_new"),
        (pl.col("_not_last_week") & ~own_risk & pl.col("_entry").is_not_null()).alias("_others_left"),
        pl.col("_top").sum().over("locality").alias("_n_top"),
    ).with_columns(
        pl.when(pl.col("_new")).then(pl.lit("new")).when(pl.col("_rising")).then(pl.lit("rising"))
        .otherwise(pl.lit("top")).alias("section"),
        pl.col("_change").map_elements(change_points, return_dtype=pl.Float64).alias("change_points"),
    )
    weeks = _weeks_text(index_date, comparison_date)
    why = []
    for row in frame.select("_new", "_others_left", "_rising", "_top", "_n_top", "locality", "change_points")\
            .iter_rows(named=True):
        parts = []
        if row["_new"]:
            parts.append("New this week")
        elif row["_others_left"]:
            parts.append("Not on last week's list")
        if row["_rising"]:
            parts.append(f"Risk up {row['change_points']:.1f} points {weeks}".rstrip())
        if row["_top"]:
            n = row["_n_top"]
            top = (f"the highest risk in {row['locality']}" if n == 1
                   else f"among the {n} highest risks in {row['locality']}")
            parts.append(top + (" (others left the list)" if row["_others_left"] else ""))
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
        pl.lit("").alias("offers_this_week"),
        pl.lit("").alias("offers_waiting"),
        pl.lit(NO_OFFER_FITS).alias("offer_evidence"),
        pl.lit("").alias("top_reasons"),
        pl.col("age").map_elements(age_band, return_dtype=pl.String).alias("age_band"),
        # score history is read without reasons (publish fetches them for listed people: attach_details)
        pl.col("reasons") if "reasons" in frame.columns else pl.lit(None, dtype=pl.String).alias("reasons"),
        pl.col("_top").alias("among_highest"),
    ).select(LIST_COLUMNS)


#: What a list row reads of a resident's reasons: their words. The reasons are the JSON array scoring wrote
#: (``pipelines.scoring.encode_reasons``), already cut to ``lists.top_reasons`` by scoring (the one place that
#: chooses how many), so the row stores that text as it is and decodes only ``text`` to say them in words.
REASON_WORDS = pl.List(pl.Struct({"text": pl.String}))


def reasons_in_words(reasons: pl.Expr) -> pl.Expr:
    """``top_reasons``: the reasons' texts joined, or :data:`NO_REASON` for an empty array (null stays null)."""
    words = reasons.str.json_decode(REASON_WORDS).list.eval(pl.element().struct.field("text")).list.join(TEXT_SEPARATOR)
    return pl.when(words == "").then(pl.lit(NO_REASON)).otherwise(words)


def attach_details(
    lists: pl.DataFrame,
    *,
    reasons: pl.DataFrame | None = None,
    offers: pl.DataFrame | None = None,
    changes: dict[str, str] | None = None,
    catalogue: ServiceCatalogue | None = None,
) -> pl.DataFrame:
    """Fill the words: reasons (person_id, JSON), offers (``ServiceCatalogue.match`` output), what changed.

    Reasons are taken as scoring stored them (see :data:`REASON_WORDS`): never decoded and encoded again.
    With ``catalogue``, the offers' weekly places are given out (:func:`ration_offers`)."""
    out = lists
    if reasons is not None:
        # every listed person has reasons (explained at publishing, pipelines.explain; "[]" when none raise the
        # risk): a listed person without them is a broken run, which risk_lists' NOT NULL refuses loudly
        out = out.drop("reasons").join(reasons, on="person_id", how="left", maintain_order="left")
    out = out.with_columns(reasons_in_words(pl.col("reasons")).alias("top_reasons"))
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
        if catalogue is not None:
            out = ration_offers(out, catalogue)
    if changes is not None:
        out = out.with_columns(
            pl.when(pl.col("section").is_in(["new", "rising"]))
            .then(pl.col("person_id").replace_strict(changes, default=None, return_dtype=pl.String))
            .otherwise(None)
            .alias("what_changed")
        )
    return out.select(LIST_COLUMNS)


def ration_offers(lists: pl.DataFrame, catalogue: ServiceCatalogue) -> pl.DataFrame:
    """``offers_this_week`` / ``offers_waiting`` by ``upstream.offers.CAPACITY_RULE``: per locality and offer,
    the first ``capacity`` rows in rank order (new, rising, top) that the offer fits get a place."""
    capacity = pl.DataFrame(
        [(loc, o.id, o.capacity(loc)) for loc in lists["locality"].unique().to_list() for o in catalogue.offers],
        schema={"locality": pl.String, "_offer": pl.String, "_capacity": pl.Int64}, orient="row",
    )
    suggested = (
        lists.select("locality", "rank", "person_id",
                     pl.col("suggested_offers").str.split(OFFER_SEPARATOR).alias("_offer"))
        .explode("_offer").filter(pl.col("_offer").is_not_null() & (pl.col("_offer") != ""))
        .sort(["locality", "rank"], maintain_order=True)  # keeps each row's offers in catalogue order
        .with_columns(pl.int_range(1, pl.len() + 1).over(["locality", "_offer"]).alias("_place"))
        .join(capacity, on=["locality", "_offer"], how="left", maintain_order="left")
        .with_columns((pl.col("_place") <= pl.col("_capacity").fill_null(0)).alias("_has_place"))
    )
    marked = suggested.group_by("locality", "person_id", maintain_order=True).agg(
        pl.col("_offer").filter(pl.col("_has_place")).str.join(OFFER_SEPARATOR).alias("_this_week"),
        pl.col("_offer").filter(~pl.col("_has_place")).str.join(OFFER_SEPARATOR).alias("_waiting"),
    )
    return (
        lists.join(marked, on=["locality", "person_id"], how="left", maintain_order="left")
        .with_columns(pl.col("_this_week").fill_null("").alias("offers_this_week"),
                      pl.col("_waiting").fill_null("").alias("offers_waiting"))
        .drop("_this_week", "_waiting")
    )


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
    """Per locality and offer: weekly places against the people suggested, with a place, waiting (suppressed;
    ``upstream.offers.offer_summary``)."""
    rows = []
    for locality in sorted(set(localities) | set(lists["locality"].unique().to_list())):
        mine = lists.filter(pl.col("locality") == locality).to_dicts()
        rows += [{"locality": locality, **summary} for summary in offer_summary(mine, catalogue, locality)]
    return rows


def locality_file_stem(locality: str) -> str:
    """A safe file name for a locality ("Medway North" -> "medway-north")."""
    stem = re.sub(r"[^a-z0-9]+", "-", locality.lower()).strip("-")
    return stem or "unknown"


def stage_exports(lists: pl.DataFrame, week_dir: Path, localities: list[str],
                  funnel: list[dict[str, Any]] | None = None,
                  offers: list[dict[str, Any]] | None = None) -> Path:
    """Write every locality's ``<locality>.csv`` and ``.xlsx`` (the declared list row, pseudonymised; with
    ``offers``, an "Offers" sheet of weekly places against people suggested), ``cohort_funnel.csv`` and
    ``offer_capacity.csv`` (:func:`offer_demand` rows) into a staging directory beside ``week_dir``.

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
            summary = None if offers is None else [o for o in offers if o["locality"] == locality]
            (staging / f"{stem}.xlsx").write_bytes(write_xlsx(rows, reidentified=False, sheet_title=locality,
                                                              offer_summary=summary))
        if funnel is not None:
            pl.DataFrame(
                [{k: r[k] for k in ("locality", "position", "step", "label", "shown")} for r in funnel],
                schema={"locality": pl.String, "position": pl.Int64, "step": pl.String, "label": pl.String,
                        "shown": pl.String},
            ).rename({"shown": "people"}).write_csv(staging / "cohort_funnel.csv")
        if offers is not None:
            keys = ("locality", *(key for key, _ in OFFER_SUMMARY))
            pl.DataFrame([{k: o[k] for k in keys} for o in offers],
                         schema={k: pl.Int64 if k == "weekly_capacity" else pl.String for k in keys},
                         ).write_csv(staging / "offer_capacity.csv")
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


__all__ = ["LIST_ROW", "attach_details", "build_lists", "entry_levels", "export_lists", "funnel_rows", "list_sizes",
           "offer_demand", "ration_offers"]
