"""Model-health measures (issue 16): plain functions, no Prefect, no database.

- A *reference profile* is taken when a model is trained (from the population it was tested on, the
  latest fully observed index date, scored by the chosen model) and kept with the MLflow run, so every
  later week compares against exactly what that model version was validated on.
- Drift is the Population Stability Index (PSI) over the reference's bins: deciles for continuous
  features, one bin per value for features with few values, and always a separate "missing" bin
  (a source half missing shows up as a jump in missing or zero values). PSI is blind to a modest
  shift of a wide distribution (everyone 5 years older moves age's PSI by only ~0.05), so numeric
  features also get the standardised mean difference (SMD, |mean now - mean then| / SD then), with
  the thresholds used for covariate balance (0.1 notable, 0.2 a real shift). SMD is only taken for
  features observed for at least half the reference population: for a mostly-null feature (days since
  the last fall: null for people who never fell) the mean of the few observed values says little about
  the population, and PSI, whose bins include "missing", is the measure. (Found by the drift drill: with
  a history that starts at a fixed date, "days since" of the minority who fell grows every week.)
- Where outcome windows have closed, realised AUROC and observed/expected (O/E) are computed from
  labels; before that, AUROC is *estimated* from the scores alone on the principle of NannyML's CBPE
  (confidence-based performance estimation): if the model is calibrated, a person scored p is an event
  with probability p, so the expected AUROC is a weighted sum over pairs. Computed exactly here in
  O(n log n). We refused the NannyML package itself: it co-installs with the lock, but brings ~30 extra
  packages (cloud-storage SDKs, an AutoML library, plotly) for this one estimator; Evidently does not
  estimate performance without labels. The estimate is only as good as calibration, which the promotion
  gate checks (calibration slope) before a model becomes champion.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import polars as pl

#: Continuous values are binned at these reference quantiles (deciles).
QUANTILES = tuple(i / 10 for i in range(1, 10))
#: A feature with at most this many distinct values gets one bin per value.
MAX_CATEGORIES = 12
#: Floor for an empty bin's share: PSI has ln(a/e), which is infinite for an empty bin.
EMPTY_SHARE = 1e-4
REFERENCE_VERSION = 1
#: SMD is taken only for features observed (non-null) for at least this share of the reference.
SMD_MIN_OBSERVED = 0.5
#: Where the reference profile sits in a training run's MLflow artefacts.
REFERENCE_ARTIFACT = "monitoring/reference.json"


@dataclass(frozen=True)
class Check:
    """One monitoring result; ``status`` is ok | warn | alert | info (info: measured, no threshold)."""

    kind: str
    subject: str
    metric: str
    value: float | None
    threshold: float | None
    status: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# --- bins and PSI ---------------------------------------------------------------------------------


def bin_spec(values: pl.Series) -> dict[str, Any]:
    """How to bin a column, learnt from the reference: categories (few values) or quantile edges."""
    present = values.drop_nulls()
    if values.dtype == pl.String or values.dtype == pl.Categorical:
        cats = sorted(str(v) for v in present.unique().to_list())[:MAX_CATEGORIES]
        return {"type": "categories", "values": cats}
    numeric = present.cast(pl.Float64)
    numeric = numeric.filter(numeric.is_finite())
    distinct = numeric.unique()
    if distinct.len() <= MAX_CATEGORIES:
        return {"type": "categories", "values": sorted(float(v) for v in distinct.to_list())}
    edges = sorted({float(numeric.quantile(q, interpolation="linear")) for q in QUANTILES})
    return {"type": "edges", "edges": edges}


def bin_shares(values: pl.Series, spec: dict[str, Any]) -> list[float]:
    """Share of ``values`` in each bin of ``spec``; the last bin is "missing" (and, for categories, an
    "other" bin precedes it for values the reference never saw)."""
    n = values.len()
    if n == 0:
        return []
    missing = int(values.null_count())
    if spec["type"] == "categories":
        cats = spec["values"]
        # Counted by polars' value_counts in both cases: the float path used to go through a Python list and
        # numpy's sort-based unique, 1.8 s a week at 1.9M residents for the same counts (bench/README, session 5).
        as_float = bool(cats) and isinstance(cats[0], float)
        present = values.drop_nulls().cast(pl.Float64 if as_float else pl.String)
        counts = dict.fromkeys(cats, 0)
        other = 0
        for v, k in present.value_counts().iter_rows():
            if v in counts:
                counts[v] += int(k)
            else:
                other += int(k)
        raw = [*counts.values(), other, missing]
    else:
        present = values.drop_nulls().cast(pl.Float64).to_numpy()
        idx = np.searchsorted(np.asarray(spec["edges"], dtype=float), present, side="right")
        raw = [*np.bincount(idx, minlength=len(spec["edges"]) + 1).tolist(), missing]
    return [c / n for c in raw]


def psi(expected: list[float], actual: list[float]) -> float:
    """Population Stability Index: sum over bins of (a - e) * ln(a / e), empty bins floored."""
    if len(expected) != len(actual):
        raise ValueError("PSI needs the same bins on both sides")
    total = 0.0
    for e, a in zip(expected, actual, strict=True):
        e, a = max(e, EMPTY_SHARE), max(a, EMPTY_SHARE)
        total += (a - e) * math.log(a / e)
    return total


def grade(value: float | None, warn: float | None, alert: float | None) -> str:
    if value is None or (warn is None and alert is None):
        return "info"
    if alert is not None and value >= alert:
        return "alert"
    if warn is not None and value >= warn:
        return "warn"
    return "ok"


# --- the reference profile ------------------------------------------------------------------------


def reference_profile(
    frame: pl.DataFrame, features: list[str], scores: np.ndarray, outcomes: np.ndarray | None = None
) -> dict[str, Any]:
    """Bins and shares of each model feature and of the score, on the population a model was tested on.

    Holds only bin edges and shares (no rows), so it is not personal data."""
    profile: dict[str, Any] = {"version": REFERENCE_VERSION, "n": int(frame.height), "features": {}}
    for name in features:
        if name not in frame.columns:
            continue
        spec = bin_spec(frame[name])
        entry = {**spec, "shares": bin_shares(frame[name], spec)}
        if frame[name].dtype.is_numeric() or frame[name].dtype == pl.Boolean:
            numeric = frame[name].cast(pl.Float64).drop_nulls()
            if numeric.len() > 1 and numeric.len() >= SMD_MIN_OBSERVED * frame.height:
                entry |= {"mean": float(numeric.mean()), "sd": float(numeric.std())}
        profile["features"][name] = entry
    score_series = pl.Series("score", np.asarray(scores, dtype=float))
    spec = bin_spec(score_series)
    profile["score"] = {**spec, "shares": bin_shares(score_series, spec), "mean": float(np.mean(scores))}
    if outcomes is not None:
        profile["event_rate"] = float(np.mean(np.asarray(outcomes, dtype=float)))
    return profile


def standardised_mean_difference(spec: dict[str, Any], values: pl.Series) -> float | None:
    """|mean now - reference mean| / reference SD; None for a constant or non-numeric feature."""
    if not spec.get("sd") or values.dtype == pl.String:
        return None
    now = values.cast(pl.Float64).drop_nulls()
    if now.len() == 0:
        return None
    return abs(float(now.mean()) - spec["mean"]) / spec["sd"]


def feature_drift(
    reference: dict[str, Any],
    frame: pl.DataFrame,
    warn: float,
    alert: float,
    smd_warn: float = 0.1,
    smd_alert: float = 0.2,
) -> list[Check]:
    """PSI (and SMD for numeric features) of each referenced feature against the reference; a feature
    gone from this week's table is an alert."""
    checks = []
    for name, spec in reference.get("features", {}).items():
        if name not in frame.columns:
            checks.append(Check("feature_drift", name, "psi", None, alert, "alert"))
            continue
        value = psi(spec["shares"], bin_shares(frame[name], spec))
        checks.append(Check("feature_drift", name, "psi", round(value, 5), alert, grade(value, warn, alert)))
        smd = standardised_mean_difference(spec, frame[name])
        if smd is not None:
            checks.append(
                Check("feature_drift", name, "smd", round(smd, 5), smd_alert, grade(smd, smd_warn, smd_alert))
            )
    return checks


def score_drift(
    reference: dict[str, Any], current: np.ndarray, previous: np.ndarray | None, warn: float, alert: float
) -> list[Check]:
    """The week's score distribution against the model's reference and against the previous week."""
    spec = reference["score"]
    now = bin_shares(pl.Series(np.asarray(current, dtype=float)), spec)
    value = psi(spec["shares"], now)
    checks = [
        Check("score_drift", "vs reference", "psi", round(value, 5), alert, grade(value, warn, alert)),
        Check("score_drift", "this week", "mean_score", round(float(np.mean(current)), 5), None, "info"),
    ]
    if previous is not None and len(previous):
        before = bin_shares(pl.Series(np.asarray(previous, dtype=float)), spec)
        value = psi(before, now)
        checks.append(Check("score_drift", "vs previous week", "psi", round(value, 5), alert, grade(value, warn, alert)))
    return checks


# --- delivery volume and quarantine -----------------------------------------------------------------


def delivery_checks(
    summary: dict[str, Any], previous: dict[str, Any] | None, volume_alert: float, quarantine_rise_alert: float
) -> list[Check]:
    """Rows delivered and quarantine rate per source against the previous delivery (ingest summaries)."""
    checks = []
    for source, info in sorted(summary.items()):
        if not isinstance(info, dict) or "rows_in" not in info:
            continue
        rows_in = int(info.get("rows_in") or 0)
        rate = (int(info.get("rows_quarantined") or 0) / rows_in) if rows_in else 0.0
        before = (previous or {}).get(source)
        if not isinstance(before, dict) or "rows_in" not in before:
            checks.append(Check("volume", source, "rows_in", float(rows_in), None, "info"))
            checks.append(Check("quarantine", source, "quarantine_rate", round(rate, 5), None, "info"))
            continue
        prev_in = int(before.get("rows_in") or 0)
        change = abs(rows_in - prev_in) / prev_in if prev_in else (1.0 if rows_in else 0.0)
        checks.append(
            Check("volume", source, "relative_change", round(change, 5), volume_alert, grade(change, None, volume_alert))
        )
        prev_rate = (int(before.get("rows_quarantined") or 0) / prev_in) if prev_in else 0.0
        rise = rate - prev_rate
        checks.append(
            Check(
                "quarantine",
                source,
                "rate_rise",
                round(rise, 5),
                quarantine_rise_alert,
                grade(rise, None, quarantine_rise_alert),
            )
        )
    return checks


# --- performance ----------------------------------------------------------------------------------


def auroc(scores: np.ndarray, outcomes: np.ndarray) -> float | None:
    """AUROC by ranks (ties count half); None when only one class is present."""
    from scipy.stats import rankdata

    y = np.asarray(outcomes, dtype=bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    ranks = rankdata(np.asarray(scores, dtype=float))
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def observed_expected(scores: np.ndarray, outcomes: np.ndarray) -> float | None:
    """Observed events / expected events (sum of predicted risks): 1 is perfect calibration-in-the-large."""
    expected = float(np.sum(scores))
    return float(np.sum(np.asarray(outcomes, dtype=float)) / expected) if expected > 0 else None


def expected_auroc(scores: np.ndarray) -> float | None:
    """AUROC expected if the scores are calibrated probabilities (the CBPE principle, exact).

    Each pair (i, j) with s_i > s_j counts as correctly ordered with weight p_i (1 - p_j); ties count
    half. Sorted once, with running sums: O(n log n).
    """
    p = np.clip(np.asarray(scores, dtype=float), 0.0, 1.0)
    if p.size < 2:
        return None
    order = np.argsort(p, kind="mergesort")
    p = p[order]
    q = 1.0 - p
    # Group ties: within a group, pairs count half.
    values, starts, counts = np.unique(p, return_index=True, return_counts=True)
    group_p = np.add.reduceat(p, starts)
    group_q = np.add.reduceat(q, starts)
    below_q = np.concatenate(([0.0], np.cumsum(group_q)[:-1]))
    correct = float(np.sum(group_p * below_q))
    ties = float(np.sum(group_p * group_q - np.add.reduceat(p * q, starts))) / 2
    total = float(p.sum() * q.sum() - np.sum(p * q))
    if total <= 0:
        return None
    del values, counts
    return (correct + ties) / total
