"""Promotion gate: a new model version becomes ``champion`` only if it is better *and* safe to use.

Kept as a pure function of metrics, the fairness table and the settings, so the decision is easy to
test and to explain: every failed check becomes a plain sentence in ``reasons``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import polars as pl

from models.fairness import GATE_WITHIN_DIMENSIONS
from upstream.settings import GateSettings


@dataclass(frozen=True)
class GateDecision:
    alias: str  # "champion" or "challenger"
    reasons: list[str] = field(default_factory=list)  # why it is not champion (empty when promoted)
    checks: dict[str, bool] = field(default_factory=dict)

    @property
    def promoted(self) -> bool:
        return self.alias == "champion"


def decide(
    metrics: dict[str, float],
    fairness: pl.DataFrame,
    champion_auroc: float | None,
    gate: GateSettings,
) -> GateDecision:
    """Apply the three gate rules (issue 5 item 6) with thresholds from settings.

    Subgroup rule: a group fails when its AUROC is more than ``max_subgroup_auroc_gap`` below the AUROC
    the model reaches among comparable people (``models.fairness.comparable_auroc``: within-group pairs,
    standardised to the group's age mix); age bands (``GATE_WITHIN_DIMENSIONS``) are compared with the
    pooled within-band AUROC. models.fairness says why neither is the plain overall AUROC. Only groups with
    at least ``MIN_GATE_EVENTS`` events and non-events are gated on; smaller ones are reported in the table.
    """
    reasons: list[str] = []
    auroc = metrics["test_auroc"]
    if champion_auroc is None:
        beats = True
    else:
        beats = auroc > champion_auroc + gate.min_auroc_gain
        if not beats:
            reasons.append(
                f"test AUROC {auroc:.4f} does not beat the current champion's {champion_auroc:.4f}"
                f" by more than {gate.min_auroc_gain:.4f}"
            )
    slope = metrics["test_calibration_slope"]
    calibrated = gate.calibration_slope_min <= slope <= gate.calibration_slope_max
    if not calibrated:
        reasons.append(
            f"calibration slope {slope:.3f} is outside [{gate.calibration_slope_min}, {gate.calibration_slope_max}]"
        )
    audited = fairness.filter((pl.col("dimension") != "overall") & pl.col("gated"))
    worst = audited.filter(pl.col("gate_gap") < -gate.max_subgroup_auroc_gap)
    for row in worst.iter_rows(named=True):
        against = (
            "the comparable-people"
            if row["dimension"] not in GATE_WITHIN_DIMENSIONS
            else f"the {row['dimension']} within-group"
        )
        reasons.append(
            f"{row['dimension']}={row['group']}: AUROC {row['auroc']:.4f} is {-row['gate_gap']:.4f} below {against}"
            f" AUROC {row['gate_reference_auroc']:.4f} (allowed {gate.max_subgroup_auroc_gap})"
        )
    fair = worst.height == 0
    checks = {"beats_champion": beats, "calibration_slope_ok": calibrated, "subgroup_auroc_ok": fair}
    return GateDecision("champion" if all(checks.values()) else "challenger", reasons, checks)
