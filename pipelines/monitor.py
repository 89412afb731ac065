"""Weekly monitoring and the run history (issue 16): plain functions the weekly flow calls through a thin task.

What one week's monitoring does, in order:
1. reads the champion's reference profile (an MLflow artefact written at training, ``models.monitoring``);
2. PSI of every model feature this week against it, and of the score distribution against it and against
   the previous published week;
3. delivery volume and quarantine rate per source against the previous delivery (ingest summaries);
4. for earlier published weeks whose 12-month outcome window has closed within this delivery, realised
   AUROC and observed/expected from labels built from this delivery; and this week's AUROC estimated from
   the scores alone (``models.monitoring.expected_auroc``);
5. stores every result in ``monitoring_results`` (a re-run replaces the week) and logs them to MLflow as
   one monitoring run per week, tagged with the champion's model name and version, step = week number.

No personal data leaves here: results are feature/source names and numbers about whole populations.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import sqlalchemy as sa

from models.monitoring import (
    REFERENCE_ARTIFACT,
    Check,
    delivery_checks,
    expected_auroc,
    feature_drift,
    grade,
    observed_expected,
    score_drift,
)
from models.monitoring import auroc as rank_auroc
from pipelines.score_history import history_store, load_run_scores, matured_published_weeks, previous_published
from upstream.settings import Settings
from upstream.store import get_engine, monitoring_results, weekly_runs

log = logging.getLogger(__name__)

OUTCOME_WINDOW = timedelta(days=365)
MONITORING_EXPERIMENT = "upstream-{target}-monitoring"


@dataclass
class MonitoringReport:
    week: str
    index_date: date
    model_name: str | None
    model_version: str | None
    checks: list[Check] = field(default_factory=list)
    mlflow_run_id: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def alerts(self) -> list[Check]:
        return [c for c in self.checks if c.status == "alert"]

    def alert_texts(self) -> list[str]:
        """Short, person-free descriptions of each crossed threshold (for alerts and the run page)."""
        return [
            f"{c.kind.replace('_', ' ')}: {c.subject} {c.metric} {c.value if c.value is not None else 'missing'}"
            + (f" (threshold {c.threshold})" if c.threshold is not None else "")
            for c in self.alerts
        ]


def week_step(index_date: date) -> int:
    """MLflow step for a week: weeks since 0001-01-01 (monotonic across years, unlike the ISO week number)."""
    return index_date.toordinal() // 7


# --- inputs ----------------------------------------------------------------------------------------


def load_reference(settings: Settings, run_id: str) -> dict[str, Any] | None:
    """The reference profile logged with a training run; None for models trained before it existed."""
    from mlflow.exceptions import MlflowException

    from models.tracking import client_for

    try:
        with tempfile.TemporaryDirectory() as tmp:
            path = client_for(settings).download_artifacts(run_id, REFERENCE_ARTIFACT, tmp)
            return json.loads(Path(path).read_text())
    except (MlflowException, OSError, ValueError):
        return None


def matured_weeks(settings: Settings, index_date: date, data_end: date) -> list[tuple[str, str, date]]:
    """Published weeks whose whole outcome window lies before this week and inside this delivery."""
    scored_by = min(index_date, data_end + timedelta(days=1)) - OUTCOME_WINDOW
    weeks = matured_published_weeks(get_engine(settings.db_url), scored_by, settings.monitoring.history_weeks)
    return [(w.week, w.run_id, w.index_date) for w in weeks]


# --- checks ----------------------------------------------------------------------------------------


def realised_performance(
    week_scores: pl.DataFrame, labels: pl.DataFrame, target: str, settings: Settings, reference_auroc: float | None
) -> list[Check]:
    """AUROC and O/E of a matured week's scores against the outcomes that followed (people still followed)."""
    joined = week_scores.join(labels.select("person_id", target), on="person_id", how="inner")
    if joined.height == 0:
        return []
    s = joined["score"].to_numpy()
    y = joined[target].cast(pl.Boolean).to_numpy()
    area = rank_auroc(s, y)
    oe = observed_expected(s, y)
    tol = settings.monitoring.oe_tolerance
    checks = []
    if area is not None:
        drop = None if reference_auroc is None else reference_auroc - area
        status = grade(drop, None, settings.monitoring.auroc_drop_alert) if drop is not None else "info"
        checks.append(Check("performance", "realised", "auroc", round(area, 5), reference_auroc, status))
    if oe is not None:
        status = "ok" if abs(oe - 1) <= tol else "alert"
        checks.append(Check("performance", "realised", "o_e", round(oe, 5), tol, status))
    return checks


def monitor_week(
    settings: Settings,
    *,
    week: str,
    index_date: date,
    score_run_id: str,
    features_paths: dict[str, str],
    summary: dict[str, Any],
    previous_summary: dict[str, Any] | None,
    clean_dir: Path | None,
    flow_run_id: str | None = None,
) -> MonitoringReport:
    """Every check of one week; stores the results and logs them to MLflow. Never raises for a missing input:
    an input that is not there yet (no reference, no previous week) is a note, not a failure."""
    from models.registry import champion_ref

    m = settings.monitoring
    ref = champion_ref(settings)
    report = MonitoringReport(week, index_date, ref.name if ref else None, ref.version if ref else None)

    report.checks += delivery_checks(summary, previous_summary, m.volume_change_alert, m.quarantine_rate_rise_alert)
    if previous_summary is None:
        report.notes.append("no previous delivery to compare volumes with")

    reference = load_reference(settings, ref.run_id) if ref else None
    engine = get_engine(settings.db_url)
    current = load_run_scores(engine, score_run_id, history_store(settings))
    if reference is None:
        report.notes.append("the champion has no reference profile (trained before monitoring): no drift checks")
    else:
        frames = [pl.read_parquet(p) for p in features_paths.values()]
        features = pl.concat(frames, how="vertical_relaxed") if frames else pl.DataFrame()
        previous = previous_published(engine, index_date, week)
        prev = load_run_scores(engine, previous.run_id, history_store(settings)) if previous else None
        # The reference was taken on the list cohort (the model's training and test population, issue 12):
        # compare the same population this week, or adding children and care-home residents reads as drift.
        population = _cohort_ids(settings, Path(clean_dir), index_date) if clean_dir is not None else None
        if population is not None:
            features = features.join(population, on="person_id", how="semi") if features.height else features
            current_pop = current.join(population, on="person_id", how="semi")
            prev = prev.join(population, on="person_id", how="semi") if prev is not None else None
        else:
            current_pop = current
        report.checks += feature_drift(reference, features, m.psi_warn, m.psi_alert, m.smd_warn, m.smd_alert)
        prev_scores = prev["score"].to_numpy() if prev is not None else None
        if current_pop.height:
            report.checks += score_drift(reference, current_pop["score"].to_numpy(), prev_scores, m.psi_warn,
                                         m.psi_alert)

    if current.height:
        estimate = expected_auroc(current["score"].to_numpy())
        report.checks.append(Check("performance", "this week (estimated)", "expected_auroc", _round(estimate), None, "info"))
    reference_auroc = _champion_test_auroc(settings, ref.run_id) if ref else None
    if clean_dir is not None:
        report.checks += _matured_checks(settings, index_date, Path(clean_dir), reference_auroc, report)

    store_results(settings, report, flow_run_id)
    report.mlflow_run_id = log_to_mlflow(settings, report)
    return report


def _cohort_ids(settings: Settings, clean_dir: Path, index_date: date) -> pl.DataFrame | None:
    """People in the list cohort at T (``expectations.cohort``), or None for a clean directory without residents."""
    from expectations.cohort import cohort_at, in_cohort

    if not (clean_dir / "residents.parquet").exists():
        return None
    return in_cohort(cohort_at(clean_dir, index_date, settings.cohort)).select("person_id")


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 5)


def _champion_test_auroc(settings: Settings, run_id: str) -> float | None:
    try:
        from models.tracking import client_for

        value = client_for(settings).get_run(run_id).data.metrics.get("test_auroc")
        return None if value is None else float(value)
    except Exception:  # informative only
        return None


def _matured_checks(
    settings: Settings, index_date: date, clean_dir: Path, reference_auroc: float | None, report: MonitoringReport
) -> list[Check]:
    from models.labels import build_labels, data_end

    checks: list[Check] = []
    weeks = matured_weeks(settings, index_date, data_end(clean_dir))
    if not weeks:
        report.notes.append("no published week has a closed 12-month outcome window yet")
    for week, run_id, past_date in weeks:
        labels = build_labels(clean_dir, past_date)
        week_scores = load_run_scores(get_engine(settings.db_url), run_id, history_store(settings))
        for check in realised_performance(week_scores, labels, settings.target, settings, reference_auroc):
            checks.append(Check(check.kind, f"realised {week}", check.metric, check.value, check.threshold, check.status))
    return checks


# --- storage and MLflow ----------------------------------------------------------------------------


def store_results(settings: Settings, report: MonitoringReport, flow_run_id: str | None) -> None:
    """Replace the week's results (a re-run of a week replaces its monitoring, as it replaces its lists)."""
    now = datetime.now(UTC)
    rows = [
        {
            "week": report.week,
            "index_date": report.index_date,
            "flow_run_id": flow_run_id,
            **{k: v for k, v in c.as_dict().items()},
            "model_version": report.model_version,
            "created_at": now,
        }
        for c in report.checks
    ]
    with get_engine(settings.db_url).begin() as conn:
        conn.execute(sa.delete(monitoring_results).where(monitoring_results.c.week == report.week))
        if rows:
            conn.execute(sa.insert(monitoring_results), rows)


def _metric_key(check: Check) -> str:
    subject = "".join(ch if ch.isalnum() or ch in "_-." else "_" for ch in check.subject)
    return f"{check.kind}.{subject}.{check.metric}"


def log_to_mlflow(settings: Settings, report: MonitoringReport) -> str | None:
    """One MLflow run per monitored week, tagged with the champion's name and version; step = week."""
    from mlflow.entities import Metric, RunTag

    from models.tracking import client_for

    client = client_for(settings)
    name = MONITORING_EXPERIMENT.format(target=settings.target)
    experiment = client.get_experiment_by_name(name)
    experiment_id = experiment.experiment_id if experiment else client.create_experiment(
        name, artifact_location=(settings.artifact_root / name).as_uri()
    )
    tags = {"week": report.week, "index_date": report.index_date.isoformat(), "kind": "weekly-monitoring"}
    if report.model_name:
        tags |= {"model_name": report.model_name, "model_version": str(report.model_version)}
    run = client.create_run(experiment_id, run_name=f"monitoring {report.week}", tags=tags)
    stamp = int(time.time() * 1000)
    step = week_step(report.index_date)
    metrics = [
        Metric(_metric_key(c), float(c.value), stamp, step) for c in report.checks if c.value is not None and np.isfinite(c.value)
    ]
    metrics.append(Metric("alerts", float(len(report.alerts)), stamp, step))
    for start in range(0, len(metrics), 500):
        client.log_batch(run.info.run_id, metrics=metrics[start : start + 500], tags=[RunTag("alerts", str(len(report.alerts)))])
    client.set_terminated(run.info.run_id)
    if report.model_name and report.model_version:
        # From the registered model to its weekly health: the registry page shows where to look.
        try:
            client.set_model_version_tag(report.model_name, str(report.model_version), "monitoring_experiment", name)
            client.set_model_version_tag(report.model_name, str(report.model_version), "last_monitored_week", report.week)
            client.set_model_version_tag(
                report.model_name, str(report.model_version), "last_monitoring_alerts", str(len(report.alerts))
            )
        except Exception:  # a tag is a convenience; the metrics are already logged
            log.warning("could not tag %s v%s with its monitoring run", report.model_name, report.model_version)
    return run.info.run_id


# --- run history -----------------------------------------------------------------------------------


def record_run_start(settings: Settings, flow_run_id: str, week: str, index_date: date) -> None:
    with get_engine(settings.db_url).begin() as conn:
        conn.execute(sa.delete(weekly_runs).where(weekly_runs.c.flow_run_id == flow_run_id))
        conn.execute(
            sa.insert(weekly_runs).values(
                flow_run_id=flow_run_id,
                week=week,
                index_date=index_date,
                state="running",
                started_at=datetime.now(UTC),
                timings={},
                delivery={},
                warnings=[],
            )
        )


def record_run_update(settings: Settings, flow_run_id: str, **values: Any) -> None:
    """Fill in what the run knows so far (a failure later keeps what was already recorded)."""
    with get_engine(settings.db_url).begin() as conn:
        conn.execute(sa.update(weekly_runs).where(weekly_runs.c.flow_run_id == flow_run_id).values(**values))


def delivery_counts(summary: dict[str, Any]) -> dict[str, dict[str, int]]:
    return {
        source: {k: int(info.get(k) or 0) for k in ("rows_in", "rows_valid", "rows_quarantined")}
        for source, info in summary.items()
        if isinstance(info, dict) and "rows_in" in info
    }


def run_history(settings: Settings, limit: int = 52) -> list[dict[str, Any]]:
    with get_engine(settings.db_url).connect() as conn:
        rows = conn.execute(sa.select(weekly_runs).order_by(weekly_runs.c.started_at.desc()).limit(limit)).mappings().all()
    return [dict(r) for r in rows]
