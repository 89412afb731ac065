"""Fairness audit figures by hand, and the promotion gate's rules and thresholds."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from models.fairness import fairness_audit
from models.gate import decide
from upstream.settings import GateSettings


def test_fpr_fnr_event_rate_at_list_threshold_by_hand():
    # 10 people; the top 20% (2 people) by risk are flagged: scores 0.9 (F, event) and 0.8 (M, no event).
    frame = pl.DataFrame({"sex": ["2", "1", "2", "1", "2", "1", "2", "1", "2", "1"]})
    p = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.05])
    y = np.array([1, 0, 1, 1, 0, 0, 0, 1, 0, 0], dtype=bool)
    table = fairness_audit(frame, y, p)
    female = table.filter((pl.col("dimension") == "sex") & (pl.col("group") == "2")).row(0, named=True)
    male = table.filter((pl.col("dimension") == "sex") & (pl.col("group") == "1")).row(0, named=True)
    # Women: p 0.9(y) 0.7(y) 0.5 0.3 0.1 -> events 2/5; flagged 0.9 only: FPR 0/3, FNR 1/2.
    assert (female["n"], female["events"], female["event_rate"]) == (5, 2, pytest.approx(0.4))
    assert female["fpr"] == pytest.approx(0.0) and female["fnr"] == pytest.approx(0.5)
    # Men: p 0.8 0.6(y) 0.4 0.2(y) 0.05 -> flagged 0.8 (no event): FPR 1/3, FNR 2/2.
    assert male["fpr"] == pytest.approx(1 / 3) and male["fnr"] == pytest.approx(1.0)
    # Too few events to audit AUROC in groups this small.
    assert female["auroc"] is None and not female["auditable"]
    overall = table.filter(pl.col("dimension") == "overall").row(0, named=True)
    assert overall["observed_expected"] == pytest.approx(4 / p.sum())


def test_within_group_reference_for_age_bands():
    # Risk rises with age and nothing else: across ages the model ranks well, within a band it cannot.
    rng = np.random.default_rng(0)
    age = rng.integers(20, 95, 20_000)
    p = 1 / (1 + np.exp(-(-6 + 0.06 * age)))
    y = rng.random(len(age)) < p
    table = fairness_audit(pl.DataFrame({"age": age}), y, p)
    bands = table.filter(pl.col("dimension") == "age_band")
    overall = table.filter(pl.col("dimension") == "overall")["auroc"][0]
    assert (bands["auroc"] < overall - 0.05).all()  # the literal overall comparison fails every band
    assert (bands["gate_gap"] > -0.05).all()  # within-band comparison: no band is singled out
    decision = decide({"test_auroc": overall, "test_calibration_slope": 1.0}, table, None, GateSettings())
    assert decision.alias == "champion", decision.reasons


def _fair_table(gap: float) -> pl.DataFrame:
    rows = [("overall", "all", 0.80, True), ("sex", "1", 0.80, True), ("sex", "2", 0.80 - gap, True),
            ("ethnic_group", "Black", 0.60, False)]  # too small to gate on: reported, never gated
    return pl.DataFrame(
        [{"dimension": d, "group": g, "auroc": a, "auditable": True, "gated": ok, "auroc_gap": a - 0.80,
          "gate_reference_auroc": 0.80, "gate_gap": a - 0.80} for d, g, a, ok in rows]
    )


def test_gate_rules_and_thresholds():
    good = {"test_auroc": 0.80, "test_calibration_slope": 1.05}
    assert decide(good, _fair_table(0.0), None, GateSettings()).alias == "champion"
    worse = decide(good, _fair_table(0.0), 0.81, GateSettings())
    assert worse.alias == "challenger" and "does not beat" in worse.reasons[0]
    steep = decide({**good, "test_calibration_slope": 1.3}, _fair_table(0.0), None, GateSettings())
    assert steep.alias == "challenger" and "calibration slope 1.300" in steep.reasons[0]
    unfair = decide(good, _fair_table(0.06), None, GateSettings())
    assert unfair.alias == "challenger" and unfair.reasons[0].startswith("sex=2")
    # The same figures pass once the thresholds in settings allow them.
    assert decide(good, _fair_table(0.06), None, GateSettings(max_subgroup_auroc_gap=0.07)).promoted
    assert decide({**good, "test_calibration_slope": 1.3}, _fair_table(0.0), None,
                  GateSettings(calibration_slope_max=1.4)).promoted
    assert not decide(good, _fair_table(0.0), 0.79, GateSettings(min_auroc_gain=0.02)).promoted
