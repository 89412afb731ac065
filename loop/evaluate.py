"""``upstream evaluate``: did accepting an offer change crisis within 12 months? (DESIGN §9)

Method (declared in every report as ``METHOD``): inverse-probability weighting for the average effect on the
treated (ATT). Treated = people who accepted an offer in a week of the period; comparison = people offered in
the same period who did not accept (declined or no answer). A logistic regression (scikit-learn) of
acceptance on the person's point-in-time features at the offer week gives the propensity e(x); the comparison
people are weighted by e/(1-e) (normalised), which reweights them to look like the acceptors. Outcome: crisis
(emergency admission, care escalation or death) in the 365 days from the Monday of the offer week, with the
label definitions of models/labels.py. 95% CIs: stratified non-parametric bootstrap over people (the
propensity model is refitted in every replicate), percentile intervals; the risk ratio's on the log scale.

Why IPW among the offered rather than a regression discontinuity at the list's capacity cut-off: the offer
is not a sharp function of the score (teams choose within the list, people choose to accept), and the
comparison "offered but declined" shares everything the targeting used. Why not an off-the-shelf causal
package: the estimator is a dozen lines on scikit-learn; its assumptions are spelt out below instead.

PRISM check: emergency admission within 12 months among listed people (offered, or on a published weekly list)
against comparable unlisted people (a random sample of unlisted residents of the same weeks, ATT-weighted on
the same features), because in the PRISM trial risk stratification raised emergency admissions.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from upstream.disclosure import suppress_count
from upstream.errors import UpstreamError
from upstream.settings import Settings

METHOD = "ipw_att_logistic_propensity"
ASSUMPTIONS = (
    "No unmeasured confounding: given the features below at the offer week, whether a person accepted is "
    "unrelated to what would have happened to them (the check on synthetic data with a known effect is in "
    "bench/README.md; on real data this cannot be tested, only argued).",
    "Overlap: every acceptor has comparable non-acceptors; propensities are clipped to [0.01, 0.99] and the "
    "effective comparison sample size is reported.",
    "The logistic propensity model is adequate: check the standardised mean differences after weighting "
    "(below 0.1 is the usual rule).",
    "No interference: one person's offer does not change another's outcome.",
    "Outcomes are complete: only offer weeks whose 12-month window has closed in the data are used; people who "
    "leave the area are followed as far as the delivery records them.",
)
#: Point-in-time features (features/registry.py) the propensity model adjusts for. The model score is a
#: function of these, so adjusting for them adjusts for the score.
COVARIATES: tuple[str, ...] = (
    "age", "emergency_admissions_12m", "ae_attendances_12m", "bed_days_12m", "falls_12m", "efi", "hfrs",
    "lives_alone", "dementia", "imd_decile", "multimorbidity_count", "in_long_term_care",
)
OUTCOME_WINDOW_DAYS = 365
OFFER_ACTIONS = ("offered", "accepted", "declined")
N_BOOTSTRAP = 400
PRISM_CONTROLS_PER_LISTED = 10
CLIP = 0.01


@dataclass
class Effect:
    """ATT as risk difference and risk ratio with bootstrap 95% CIs."""

    risk_treated: float
    risk_comparison: float  # weighted: what the treated would have had without the offer
    rd: tuple[float, float, float]
    rr: tuple[float, float, float]
    n_treated: int
    n_comparison: int
    effective_n_comparison: float
    smd_before: dict[str, float]
    smd_after: dict[str, float]


def _design(frame: pl.DataFrame) -> tuple[np.ndarray, list[str]]:
    """Covariates as a numeric matrix: booleans 0/1, counts capped at 5 (a few extreme counts must not
    dominate a linear logit), missing values imputed by the median with a missing flag; age also squared."""
    cols, names = [], []
    for c in COVARIATES:
        s = frame[c].cast(pl.Float64)
        if c.endswith("_12m"):
            s = s.clip(upper_bound=5.0)
        miss = s.is_null()
        cols.append(s.fill_null(s.median() if s.drop_nulls().len() else 0.0).to_numpy())
        names.append(c)
        if miss.any():
            cols.append(miss.cast(pl.Float64).to_numpy())
            names.append(f"{c}_missing")
    age = frame["age"].cast(pl.Float64).fill_null(75).to_numpy()
    cols.append(((age - 75) / 10) ** 2)  # acceptance and risk both bend with age
    names.append("age_squared")
    return np.column_stack(cols), names


def _propensity(x: np.ndarray, t: np.ndarray) -> np.ndarray:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, solver="newton-cholesky", max_iter=200))
    model.fit(x, t)
    return np.clip(model.predict_proba(x)[:, 1], CLIP, 1 - CLIP)


def _point(x: np.ndarray, t: np.ndarray, y: np.ndarray) -> tuple[float, float, np.ndarray]:
    e = _propensity(x, t)
    w = np.where(t, 1.0, e / (1 - e))
    r1 = float(y[t].mean())
    r0 = float(np.average(y[~t], weights=w[~t]))
    return r1, r0, w


def _smd(x: np.ndarray, t: np.ndarray, w: np.ndarray | None) -> np.ndarray:
    w = np.ones(len(t)) if w is None else w
    m1 = np.average(x[t], axis=0)
    m0 = np.average(x[~t], axis=0, weights=w[~t])
    sd = np.sqrt((x[t].var(axis=0) + x[~t].var(axis=0)) / 2)
    return np.where(sd > 0, (m1 - m0) / np.where(sd > 0, sd, 1), 0.0)


def att_ipw(frame: pl.DataFrame, treated: str, outcome: str, rng: np.random.Generator,
            n_boot: int = N_BOOTSTRAP) -> Effect:
    """ATT of ``treated`` on ``outcome`` (both boolean columns of ``frame``, with the COVARIATES)."""
    t = frame[treated].to_numpy().astype(bool)
    y = frame[outcome].to_numpy().astype(float)
    n1, n0 = int(t.sum()), int((~t).sum())
    if n1 < 2 or n0 < 2:
        raise UpstreamError(f"too few people to compare ({n1} treated, {n0} comparison)")
    x, names = _design(frame)
    r1, r0, w = _point(x, t, y)
    idx1, idx0 = np.flatnonzero(t), np.flatnonzero(~t)
    rds, log_rrs = [], []
    for _ in range(n_boot):
        b = np.concatenate([rng.choice(idx1, n1), rng.choice(idx0, n0)])
        b1, b0, _w = _point(x[b], t[b], y[b])
        rds.append(b1 - b0)
        if b1 > 0 and b0 > 0:
            log_rrs.append(math.log(b1 / b0))
    rd_lo, rd_hi = np.percentile(rds, [2.5, 97.5])
    lrr_lo, lrr_hi = np.percentile(log_rrs, [2.5, 97.5]) if log_rrs else (math.nan, math.nan)
    wc = w[~t]
    return Effect(
        risk_treated=r1, risk_comparison=r0, rd=(r1 - r0, float(rd_lo), float(rd_hi)),
        rr=(r1 / r0 if r0 > 0 else math.nan, math.exp(lrr_lo), math.exp(lrr_hi)), n_treated=n1, n_comparison=n0,
        effective_n_comparison=float(wc.sum() ** 2 / (wc**2).sum()),
        smd_before=dict(zip(names, _smd(x, t, None).round(3).tolist(), strict=True)),
        smd_after=dict(zip(names, _smd(x, t, w).round(3).tolist(), strict=True)),
    )


# --- assembling the people ------------------------------------------------------------------------


def latest_clean_dir(settings: Settings) -> Path:
    weeks = settings.home / "weeks"
    cleans = sorted(p.parent for p in weeks.glob("*/ingest/clean/residents.parquet")) if weeks.exists() else []
    if not cleans:
        raise UpstreamError(f"no ingested delivery under {weeks}: run `upstream run` first")
    return cleans[-1]


def offered_people(acts: pl.DataFrame) -> pl.DataFrame:
    """One row per person offered in the period: ``person_id, week, accepted``.

    An acceptor counts at their (first) acceptance week; everyone else at their first offer week.
    """
    offers = acts.filter(pl.col("action").is_in(OFFER_ACTIONS))
    accepted = (offers.filter(pl.col("action") == "accepted").group_by("person_id")
                .agg(pl.col("week").min()).with_columns(pl.lit(True).alias("accepted")))
    others = (offers.join(accepted.select("person_id"), on="person_id", how="anti").group_by("person_id")
              .agg(pl.col("week").min()).with_columns(pl.lit(False).alias("accepted")))
    return pl.concat([accepted, others]).sort("week", "person_id")


def frames_at_weeks(clean_dir: Path, offered: pl.DataFrame, listed: pl.DataFrame,
                    rng: np.random.Generator) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Features at each week's Monday (point in time) and outcomes in the following 365 days.

    Returns (offered people with ``accepted``; listed people plus a random sample of comparable unlisted
    people of the same week, with ``listed``). Features are built once per week for both.
    """
    from features.build import build_features
    from loop.actions import week_monday
    from models.labels import build_labels

    offered_parts, prism_parts = [], []
    weeks = sorted(set(offered["week"].to_list()) | set(listed["week"].to_list()))
    for week in weeks:
        t = week_monday(week)
        table = build_features(clean_dir, t).join(
            build_labels(clean_dir, t, timedelta(days=OUTCOME_WINDOW_DAYS)), on="person_id", how="inner")
        offered_parts.append(table.join(offered.filter(pl.col("week") == week), on="person_id", how="inner"))
        here = listed.filter(pl.col("week") == week)
        on_list = table.join(here, on="person_id", how="inner")
        if on_list.is_empty():
            continue
        pool = table.join(here, on="person_id", how="anti").filter(pl.col("age") >= on_list["age"].min())
        pool = pool.sample(n=min(len(pool), PRISM_CONTROLS_PER_LISTED * len(on_list)), seed=int(rng.integers(2**31)))
        prism_parts.append(pl.concat([on_list, pool.with_columns(pl.lit(week).alias("week"),
                                                                 pl.lit(False).alias("listed"))
                                      .select(on_list.columns)]))
    return pl.concat(offered_parts), (pl.concat(prism_parts) if prism_parts else pl.DataFrame())


def _listed_weeks(settings: Settings, week_from: str, week_to: str) -> pl.DataFrame:
    """Listed people per week from the published weekly lists (risk_lists): ``person_id, week``."""
    from pipelines.score_history import published_listings  # the one path to score history
    from upstream.store import get_engine

    return published_listings(get_engine(settings.db_url), week_from, week_to).select("person_id", "week")


# --- the report -----------------------------------------------------------------------------------


def _shown(n: int) -> int | str:
    v = suppress_count(n)
    return "<8" if v is None else v


def _effect_json(e: Effect) -> dict[str, Any]:
    return {
        "risk_difference": {"estimate": e.rd[0], "ci_low": e.rd[1], "ci_high": e.rd[2]},
        "risk_ratio": {"estimate": e.rr[0], "ci_low": e.rr[1], "ci_high": e.rr[2]},
        "risk_treated": e.risk_treated, "risk_comparison_weighted": e.risk_comparison,
        "n_treated": _shown(e.n_treated), "n_comparison": _shown(e.n_comparison),
        "effective_n_comparison": _shown(round(e.effective_n_comparison)),
        "balance_smd_before": e.smd_before, "balance_smd_after": e.smd_after,
        "method": METHOD,
    }


def _offered_with_closed_windows(settings: Settings, week_from: str, week_to: str,
                                 clean_dir: Path) -> tuple[pl.DataFrame, date, int]:
    """Offered people whose 12-month window has closed; the data end; how many were left out for that."""
    from loop.actions import read_actions, week_monday
    from models.labels import data_end

    end = data_end(clean_dir)
    people = offered_people(read_actions(settings, (week_from, week_to)))
    if people.is_empty():
        raise UpstreamError(f"no offers recorded between {week_from} and {week_to}: import actions first "
                            "(`upstream actions import --file F.csv`)")
    closed = people["week"].map_elements(
        lambda w: week_monday(w) + timedelta(days=OUTCOME_WINDOW_DAYS) <= end, return_dtype=pl.Boolean)
    if not closed.any():
        raise UpstreamError(f"no offer week between {week_from} and {week_to} has a closed 12-month window "
                            f"(data end {end})")
    return people.filter(closed), end, int((~closed).sum())


def crisis_only(settings: Settings, week_from: str = "0000-W01", week_to: str = "9999-W53", seed: int = 0,
                n_boot: int = N_BOOTSTRAP, clean_dir: Path | None = None) -> Effect:
    """The crisis effect alone (no PRISM check): what the repeated-seeds study needs."""
    clean_dir = clean_dir or latest_clean_dir(settings)
    people, _end, _ = _offered_with_closed_windows(settings, week_from, week_to, clean_dir)
    rng = np.random.default_rng(seed)
    frame, _ = frames_at_weeks(clean_dir, people, pl.DataFrame(schema={"person_id": pl.String, "week": pl.String,
                                                                       "listed": pl.Boolean}), rng)
    return att_ipw(frame, "accepted", "crisis", rng, n_boot)


def evaluate(settings: Settings, week_from: str | None = None, week_to: str | None = None, seed: int = 0,
             n_boot: int = N_BOOTSTRAP, clean_dir: Path | None = None) -> dict[str, Any]:
    """Compute the evaluation report (not written; see ``write_report``)."""
    from loop.actions import week_monday

    clean_dir = clean_dir or latest_clean_dir(settings)
    week_from = week_from or "0000-W01"
    week_to = week_to or "9999-W53"
    people, end, not_closed = _offered_with_closed_windows(settings, week_from, week_to, clean_dir)
    rng = np.random.default_rng(seed)
    listed = pl.concat([people.select("person_id", "week"), _listed_weeks(settings, week_from, week_to)]).unique()
    listed = listed.filter(listed["week"].map_elements(
        lambda w: week_monday(w) + timedelta(days=OUTCOME_WINDOW_DAYS) <= end, return_dtype=pl.Boolean))
    listed = listed.group_by("person_id").agg(pl.col("week").min()).with_columns(pl.lit(True).alias("listed"))
    frame, prism_frame = frames_at_weeks(clean_dir, people, listed, rng)
    crisis = att_ipw(frame, "accepted", "crisis", rng, n_boot)
    prism = att_ipw(prism_frame, "listed", "emergency_admission", rng, max(100, n_boot // 4))
    weeks = people["week"].unique().sort().to_list()
    return {
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "period": {"from": weeks[0], "to": weeks[-1], "data_end": end.isoformat(),
                   "offer_weeks_used": len(weeks), "people_offered_window_not_closed": _shown(not_closed)},
        "method": {"name": METHOD, "estimand": "average effect on the treated (people who accepted an offer)",
                   "outcome": "crisis within 365 days of the Monday of the offer week (models/labels.py)",
                   "comparison": "people offered in the same period who did not accept",
                   "covariates": list(COVARIATES), "propensity_model": "logistic regression (scikit-learn)",
                   "confidence_intervals": f"stratified bootstrap, {n_boot} replicates, percentile",
                   "assumptions": list(ASSUMPTIONS)},
        "crisis_12m": _effect_json(crisis),
        "prism_check": {
            "question": "did emergency admissions within 12 months rise among listed people compared with "
                        "comparable unlisted people?",
            "emergency_admission_12m": _effect_json(prism),
            "rose": bool(prism.rr[1] > 1),
            "comparison": f"a random sample of up to {PRISM_CONTROLS_PER_LISTED} unlisted residents per listed "
                          "person, same weeks, at least as old as the youngest listed person, ATT-weighted",
        },
    }


def write_report(report: dict[str, Any], settings: Settings, on: date | None = None) -> Path:
    """``<home>/evaluation/<date>/evaluation.json`` + ``evaluation.md``, logged to MLflow. Returns the folder."""
    out = settings.home / "evaluation" / (on or date.today()).isoformat()
    out.mkdir(parents=True, exist_ok=True)
    (out / "evaluation.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    (out / "evaluation.md").write_text(render_markdown(report))
    _log_to_mlflow(report, out, settings)
    return out


def _fmt(e: dict[str, Any], key: str, pct: bool) -> str:
    v = e[key]
    f = (lambda x: f"{100 * x:+.1f} points") if pct else (lambda x: f"{x:.3f}")
    return f"{f(v['estimate'])} (95% CI {f(v['ci_low'])} to {f(v['ci_high'])})"


def render_markdown(report: dict[str, Any]) -> str:
    c = report["crisis_12m"]
    p = report["prism_check"]["emergency_admission_12m"]
    m = report["method"]
    lines = [
        "# Upstream evaluation: did accepting an offer change crisis within 12 months?", "",
        f"Offer weeks {report['period']['from']} to {report['period']['to']} (data to {report['period']['data_end']}).",
        "", "## Crisis within 12 months: people who accepted vs comparable people who did not", "",
        f"- Risk difference: {_fmt(c, 'risk_difference', True)}",
        f"- Risk ratio: {_fmt(c, 'risk_ratio', False)}",
        f"- Accepted: {c['n_treated']}; comparison: {c['n_comparison']} "
        f"(effective after weighting: {c['effective_n_comparison']})",
        f"- Crisis risk among those who accepted {c['risk_treated']:.1%}; "
        f"weighted comparison {c['risk_comparison_weighted']:.1%}", "",
        "## PRISM check: emergency admissions among listed vs comparable unlisted people", "",
        f"- Risk ratio: {_fmt(p, 'risk_ratio', False)}; risk difference {_fmt(p, 'risk_difference', True)}",
        f"- Emergency admissions rose among listed people: **{'yes' if report['prism_check']['rose'] else 'no evidence'}**",
        "", f"## Method: {m['name']}", "", f"Estimand: {m['estimand']}. Outcome: {m['outcome']}. "
        f"Comparison: {m['comparison']}. Propensity model: {m['propensity_model']} on "
        f"{', '.join(m['covariates'])}. CIs: {m['confidence_intervals']}.", "", "Assumptions:", "",
        *[f"- {a}" for a in m["assumptions"]], "",
        "## Balance (standardised mean differences, accepted vs comparison)", "",
        "| covariate | before weighting | after weighting |", "|---|---:|---:|",
        *[f"| {k} | {v:+.3f} | {c['balance_smd_after'][k]:+.3f} |" for k, v in c["balance_smd_before"].items()],
        "", "Counts: 1-7 shown as <8, others rounded to 5.", "",
    ]
    return "\n".join(lines)


def _log_to_mlflow(report: dict[str, Any], out: Path, settings: Settings) -> None:
    """One MLflow run per evaluation in the ``upstream-evaluation`` experiment (report files as artifacts).

    Through an explicit client: the process-wide tracking URI is never changed (models.registry.client_for)."""
    from models.registry import client_for

    client = client_for(settings)
    name = "upstream-evaluation"
    exp = client.get_experiment_by_name(name)
    if exp is None:
        location = (settings.artifact_root / name).resolve()
        location.mkdir(parents=True, exist_ok=True)
        exp_id = client.create_experiment(name, artifact_location=location.as_uri())
    else:
        exp_id = exp.experiment_id
    c = report["crisis_12m"]
    run = client.create_run(exp_id, run_name=f"evaluation-{report['period']['from']}-{report['period']['to']}")
    run_id = run.info.run_id
    try:
        for key, value in {"method": METHOD, "from": report["period"]["from"], "to": report["period"]["to"]}.items():
            client.log_param(run_id, key, value)
        for key, value in {
            "crisis_rd": c["risk_difference"]["estimate"], "crisis_rd_ci_low": c["risk_difference"]["ci_low"],
            "crisis_rd_ci_high": c["risk_difference"]["ci_high"], "crisis_rr": c["risk_ratio"]["estimate"],
            "crisis_rr_ci_low": c["risk_ratio"]["ci_low"], "crisis_rr_ci_high": c["risk_ratio"]["ci_high"],
        }.items():
            if value is not None and math.isfinite(value):
                client.log_metric(run_id, key, value)
        client.log_artifact(run_id, str(out / "evaluation.json"))
        client.log_artifact(run_id, str(out / "evaluation.md"))
    except BaseException:
        client.set_terminated(run_id, status="FAILED")
        raise
    client.set_terminated(run_id)
