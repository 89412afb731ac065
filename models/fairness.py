"""SPARRA-style fairness audit: does the model work as well for every group it will be used on?

For each audited dimension (IMD quintile, sex, age band, ethnicity group) and each group: size, event
rate, mean predicted risk, observed/expected ratio and calibration-in-the-large, AUROC, and the false
positive and false negative rates at the list threshold (the top 20% of the whole population is
flagged, as on the weekly list). Each group's AUROC gap is reported against the overall AUROC, against
the dimension's pooled within-group AUROC (what the gate uses for age bands, see ``GATE_WITHIN_DIMENSIONS``)
and against the AUROC among comparable people (``comparable_auroc``: within-group pairs, standardised to
the group's age mix), which is what the gate uses for every other dimension. The dimensions are derived from the audit columns of the feature table, which are
demographics, not model-specific choices.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl

from models.metrics import auroc, calibration_slope_intercept, rank_scores, ranked_auroc, top_flags

LIST_FRACTION = 0.20
#: Dimensions whose groups are gated against the dimension's pooled within-group AUROC instead of the
#: overall AUROC. Age is the strongest risk driver, so *any* useful model ranks people within one age
#: band less well than across all ages: against the overall AUROC every age band would fail the gate
#: by construction, whatever the model's fairness. Both gaps are reported in the table.
GATE_WITHIN_DIMENSIONS: tuple[str, ...] = ("age_band",)
#: Below this many events (or non-events) a group's AUROC is too noisy to report.
MIN_GROUP_EVENTS = 20
#: Below this many events (or non-events) a group is reported but not gated on: with 100 events the
#: AUROC's standard error is still ~0.03, so smaller groups would flip the gate on noise alone.
MIN_GATE_EVENTS = 100
#: Width of the age bins used to standardise the reference AUROC to a group's age mix.
STANDARDISATION_AGE_BIN_YEARS = 5
AGE_BANDS: tuple[tuple[int, int, str], ...] = (
    (0, 18, "0-17"), (18, 45, "18-44"), (45, 65, "45-64"), (65, 75, "65-74"), (75, 85, "75-84"), (85, 200, "85+"),
)


def audit_groups(frame: pl.DataFrame) -> dict[str, pl.Series]:
    """Audit dimension -> group label per row, for whichever audit columns the frame has."""
    out: dict[str, pl.Series] = {}
    if "imd_decile" in frame.columns:
        q = ((frame["imd_decile"].cast(pl.Float64) + 1) // 2).cast(pl.Int64)
        out["imd_quintile"] = q.cast(pl.String).fill_null("unknown")
    if "sex" in frame.columns:
        out["sex"] = frame["sex"].cast(pl.String).fill_null("unknown")
    if "age" in frame.columns:
        age = frame["age"].cast(pl.Float64)
        expr = pl.lit("unknown")
        for lo, hi, label in reversed(AGE_BANDS):
            expr = pl.when((pl.col("a") >= lo) & (pl.col("a") < hi)).then(pl.lit(label)).otherwise(expr)
        out["age_band"] = age.to_frame("a").select(expr.alias("age_band"))["age_band"]
    if "ethnic_group" in frame.columns:
        out["ethnic_group"] = frame["ethnic_group"].cast(pl.String).fill_null("unknown")
    return out


def fairness_audit(frame: pl.DataFrame, y: np.ndarray, p: np.ndarray) -> pl.DataFrame:
    """One row per (dimension, group), plus an ``overall`` row; see the module docstring."""
    y = np.asarray(y, dtype=bool)
    p = np.asarray(p, dtype=np.float64)
    flagged = top_flags(p, LIST_FRACTION)
    rows = [_group_row("overall", "all", y, p, flagged) | {"comparable_auroc": None}]
    age_bins = _age_bins(frame)
    for dimension, labels in audit_groups(frame).items():
        values = labels.to_numpy()
        ranks: dict[str, Any] = {}  # each group's scores sorted once per dimension, not once per group
        for group in sorted(set(values.tolist())):
            mask = values == group
            row = _group_row(dimension, group, y[mask], p[mask], flagged[mask])
            gated_on_comparable = row["auditable"] and dimension not in GATE_WITHIN_DIMENSIONS
            row["comparable_auroc"] = (comparable_auroc(values, group, age_bins, y, p, ranks)
                                       if gated_on_comparable else None)
            rows.append(row)
    table = pl.DataFrame(rows, infer_schema_length=None)
    overall = rows[0]["auroc"]
    # Pooled within-group AUROC of a dimension: the share of (event, non-event) pairs *in the same group*
    # that the model orders correctly, i.e. the pair-weighted mean of the group AUROCs.
    pairs = pl.col("events") * (pl.col("n") - pl.col("events"))
    within = (
        table.filter((pl.col("dimension") != "overall") & pl.col("auditable"))
        .group_by("dimension")
        .agg(((pl.col("auroc") * pairs).sum() / pairs.sum()).alias("within_auroc"))
    )
    table = table.join(within, on="dimension", how="left", maintain_order="left").with_columns(
        pl.when(pl.col("dimension") == "overall").then(pl.col("auroc")).otherwise(pl.col("within_auroc"))
        .alias("within_auroc")
    )
    reference = (
        pl.when(pl.col("dimension").is_in(GATE_WITHIN_DIMENSIONS))
        .then(pl.col("within_auroc"))
        .otherwise(pl.coalesce(pl.col("comparable_auroc"), pl.lit(overall, dtype=pl.Float64)))
    )
    return table.with_columns(
        (pl.col("auroc") - overall).alias("auroc_gap"),
        (pl.col("auroc") - pl.col("within_auroc")).alias("auroc_gap_within"),
        (pl.col("auroc") - pl.col("comparable_auroc")).alias("auroc_gap_comparable"),
        reference.alias("gate_reference_auroc"),
    ).with_columns((pl.col("auroc") - pl.col("gate_reference_auroc")).alias("gate_gap"))


def _age_bins(frame: pl.DataFrame) -> np.ndarray | None:
    """5-year age bin per row, or None when the frame has no ages."""
    if "age" not in frame.columns or frame["age"].null_count() == len(frame):
        return None
    age = frame["age"].cast(pl.Float64).fill_null(strategy="mean").to_numpy()
    return np.clip(age // STANDARDISATION_AGE_BIN_YEARS, 0, 200 // STANDARDISATION_AGE_BIN_YEARS).astype(np.int64)


def comparable_auroc(values: np.ndarray, group: str, age_bins: np.ndarray | None, y: np.ndarray, p: np.ndarray,
                     ranks: dict[str, Any] | None = None) -> float:
    """How well the model ranks *comparable* people: the dimension's pooled within-group AUROC, with every
    group standardised to ``group``'s age mix.

    Why not the overall AUROC: two case-mix effects lower a group's AUROC whatever the model's fairness.
    (1) When group membership itself carries risk (deprivation), the overall AUROC includes the easy
    between-group pairs, which no within-group AUROC can. (2) A group that is younger than average (most
    minority ethnic groups in England) has less spread in age, the strongest risk driver. Pooling only
    within-group (event, non-event) pairs removes (1); reweighting each group's rows to this group's share
    of every 5-year age bin (direct standardisation) removes (2). What is left is the question the gate
    asks: does the model rank this group's members worse than it ranks people of the same ages elsewhere?

    ``ranks`` (group -> its rows' ranked scores) is filled and reused across the groups of one dimension:
    only the weights depend on ``group``, and sorting every group again for every group was the audit's cost
    on a county's test date.
    """
    ranks = {} if ranks is None else ranks
    mask = values == group
    target = None if age_bins is None else np.bincount(age_bins[mask], minlength=age_bins.max() + 1) / mask.sum()
    numerator = denominator = 0.0
    for other in set(values.tolist()):
        rows = values == other
        if age_bins is None:
            weights = np.ones(int(rows.sum()))
        else:
            own = np.bincount(age_bins[rows], minlength=len(target)) / rows.sum()
            ratio = np.divide(target, own, out=np.zeros_like(target), where=own > 0)
            weights = ratio[age_bins[rows]]
        events = y[rows].astype(np.float64)
        pairs = float((weights * events).sum() * (weights * (1.0 - events)).sum())
        if pairs > 0:
            if other not in ranks:
                ranks[other] = rank_scores(events, p[rows])
            numerator += ranked_auroc(ranks[other], weights) * pairs
            denominator += pairs
    return numerator / denominator if denominator else float("nan")


def _group_row(dimension: str, group: str, y: np.ndarray, p: np.ndarray, flagged: np.ndarray) -> dict:
    n, events = len(y), int(y.sum())
    enough = events >= MIN_GROUP_EVENTS and (n - events) >= MIN_GROUP_EVENTS
    expected = float(p.sum())
    if enough:
        slope, intercept = calibration_slope_intercept(y, p)
    else:
        slope = intercept = None
    negatives, positives = ~y, y
    return {
        "dimension": dimension,
        "group": str(group),
        "n": n,
        "events": events,
        "event_rate": events / n if n else None,
        "mean_predicted": float(p.mean()) if n else None,
        "observed_expected": events / expected if expected > 0 else None,
        "calibration_intercept": intercept,
        "calibration_slope": slope,
        "auroc": auroc(y, p) if enough else None,
        "flagged_rate": float(flagged.mean()) if n else None,
        "fpr": float((flagged & negatives).sum() / negatives.sum()) if negatives.sum() else None,
        "fnr": float((~flagged & positives).sum() / positives.sum()) if positives.sum() else None,
        "auditable": enough,
        "gated": events >= MIN_GATE_EVENTS and (n - events) >= MIN_GATE_EVENTS,
    }
