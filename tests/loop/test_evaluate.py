"""The evaluation: the IPW estimator on frames with a known answer, then ``upstream evaluate`` end to end."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import polars as pl
import pytest

from loop.evaluate import COVARIATES, att_ipw


def _frame(dementia: list[bool], treated: list[bool], crisis: list[bool]) -> pl.DataFrame:
    n = len(treated)
    base = {c: [1.0] * n for c in COVARIATES}
    base["age"] = [80.0] * n
    base["dementia"] = dementia
    return pl.DataFrame({**base, "accepted": treated, "crisis": crisis})


def test_balanced_design_gives_the_plain_risks():
    # Every covariate pattern appears equally among treated and comparison, so the propensity is flat and the
    # weighted comparison risk is the plain one: treated 20/100, comparison 40/100 -> RD -0.2, RR 0.5.
    dem = [True] * 50 + [False] * 50
    frame = pl.concat([_frame(dem, [True] * 100, [i % 5 == 0 for i in range(100)]),
                       _frame(dem, [False] * 100, [i % 5 in (0, 1) for i in range(100)])])
    e = att_ipw(frame, "accepted", "crisis", np.random.default_rng(0), n_boot=200)
    assert e.rd[0] == pytest.approx(-0.2, abs=1e-9)
    assert e.rr[0] == pytest.approx(0.5, abs=1e-9)
    assert e.rd[1] < -0.2 < e.rd[2] and e.rr[1] < 0.5 < e.rr[2]
    assert (e.n_treated, e.n_comparison) == (100, 100)


def test_confounding_by_an_observed_feature_is_removed():
    # Dementia: 800 of 1000 with dementia accept, 200 of 1000 without. Crisis depends on dementia only
    # (50% with, 10% without), and acceptance has no effect. Naive: treated (800*.5 + 200*.1)/1000 = 0.42,
    # comparison (200*.5 + 800*.1)/1000 = 0.18, RR 2.33. Reweighted on dementia the RR must be 1.
    rows = []
    for dem, n_accept in ((True, 800), (False, 200)):
        risk = 0.5 if dem else 0.1
        for accepted, n in ((True, n_accept), (False, 1000 - n_accept)):
            k = round(risk * n)
            rows += [(dem, accepted, i < k) for i in range(n)]
    d, t, y = zip(*rows, strict=True)
    frame = _frame(list(d), list(t), list(y))
    naive = frame.filter("accepted")["crisis"].mean() / frame.filter(~pl.col("accepted"))["crisis"].mean()
    assert naive == pytest.approx(0.42 / 0.18)
    e = att_ipw(frame, "accepted", "crisis", np.random.default_rng(1), n_boot=100)
    assert e.rr[0] == pytest.approx(1.0, abs=0.01)  # the propensity model is mildly penalised: not exact
    assert e.rr[1] < 1 < e.rr[2]
    assert abs(e.smd_after["dementia"]) < 0.02 < abs(e.smd_before["dementia"])


def test_cli_writes_the_report_logs_to_mlflow_and_suppresses_counts(programme_delivery, fresh_home):
    from loop.actions import import_actions

    import_actions(programme_delivery / "programme_actions.csv", fresh_home)
    env = {"UPSTREAM_HOME": str(fresh_home.home), "UPSTREAM_PSEUDO_KEY": "test-key-not-secret", "PATH": "/usr/bin:/bin",
           "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"}
    proc = subprocess.run([sys.executable, "-m", "upstream.cli", "evaluate", "--bootstrap", "50"], env=env,
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (report_path,) = fresh_home.home.glob("evaluation/*/evaluation.json")
    report = json.loads(report_path.read_text())
    crisis = report["crisis_12m"]
    for key in ("risk_difference", "risk_ratio"):
        assert set(crisis[key]) == {"estimate", "ci_low", "ci_high"}
        assert crisis[key]["ci_low"] <= crisis[key]["estimate"] <= crisis[key]["ci_high"]
    for key in ("n_treated", "n_comparison"):
        assert crisis[key] == "<8" or crisis[key] % 5 == 0
    assert crisis["method"] == report["method"]["name"] == "ipw_att_logistic_propensity"
    assert report["method"]["assumptions"]
    accepted = pl.read_csv(programme_delivery / "programme_actions.csv", infer_schema=False).filter(
        pl.col("action") == "accepted")
    assert abs(crisis["n_treated"] - len(accepted)) <= 2.5  # everyone who accepted, rounded to 5
    assert "prism_check" in report and "emergency_admission_12m" in report["prism_check"]
    assert (report_path.parent / "evaluation.md").read_text().startswith("# Upstream evaluation")

    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=fresh_home.tracking_uri)
    exp = client.get_experiment_by_name("upstream-evaluation")
    (run,) = client.search_runs([exp.experiment_id])
    assert run.data.metrics["crisis_rr"] == pytest.approx(crisis["risk_ratio"]["estimate"])


def test_evaluate_without_actions_is_a_clear_error(fresh_home):
    from loop.evaluate import evaluate
    from upstream.errors import UpstreamError

    with pytest.raises(UpstreamError, match="no offers recorded"):
        evaluate(fresh_home)
