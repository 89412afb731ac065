"""Prefect flows: thin wrappers over the plain step modules of ``pipelines`` (the only module in Upstream
that knows Prefect).

Flows take ``home`` (``UPSTREAM_HOME``) rather than a ``Settings`` object: Prefect stores every flow run's
parameters in its database and shows them in its UI, and ``Settings`` can hold a database URL with a
password. Each flow builds its ``Settings`` once from ``home`` (every other setting comes from the
environment/TOML as usual) and hands that one object to its tasks (task arguments are not stored).
The weekly flow resolves the index date once and passes it to every step, ingest included. I/O tasks retry.

Scale-out: ``weekly(dask_address=...)`` (or ``UPSTREAM_DASK_ADDRESS``) runs the subflows with a
``DaskTaskRunner`` attached to an existing cluster: ingest as one task per source chunk
(``pipelines.dask_ingest``), features, scoring and list building as one task per locality, and outcome
follow-up as a task. Tasks exchange paths under ``home`` (which must be on storage every worker shares)
and small results; only the store writes, the publish transaction and run bookkeeping stay in the flow's
process. The result is the week a local run publishes (tests/pipelines/test_weekly_flow.py).
"""

from __future__ import annotations

import logging
import time
from contextlib import AbstractContextManager
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import polars as pl
from prefect import flow, get_run_logger, task
from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.cache_policies import NO_CACHE
from prefect.futures import wait
from prefect.task_runners import ThreadPoolTaskRunner

from models.registry import champion_ref
from pipelines import alerts, dask_ingest, monitor
from pipelines.champion import (
    model_metrics_rows,
    no_champion_message,
    run_training,
    score_partition,
    scored_model_identity,
    should_train,
)
from pipelines.delivery import (
    ingest_target,
    previous_validation_summary,
    read_validation_summary,
    run_ingest,
    validation_rows,
)
from pipelines.drills import InjectedFailure, check_injected
from pipelines.lists import funnel_rows, locality_file_stem
from pipelines.partitions import ALL_PARTITION, build_partition_features, fresh_dir, partition_clean
from pipelines.publish import (
    ListInputs,
    PublishedLists,
    build_week_lists,
    list_inputs,
    publish_lists_built,
    publish_run,
)
from pipelines.score_history import ScoreRun, begin_weekly_run, store_scores
from pipelines.scoring import iso_week
from pipelines.weeks import clean_dir_of, lists_dir, resolve_index_date, week_root
from upstream.errors import UpstreamError
from upstream.settings import Settings


def settings_for(home: str | None) -> Settings:
    """A flow's settings, built once from its ``home`` parameter and passed to its tasks."""
    return Settings(home=Path(home)) if home else Settings()


def task_runner(dask_address: str | None) -> Any:
    """Threads locally; a DaskTaskRunner attached to an existing cluster when an address is given."""
    if not dask_address:
        return ThreadPoolTaskRunner(max_workers=2)
    from prefect_dask import DaskTaskRunner

    return DaskTaskRunner(address=dask_address)


def subflows_without_heartbeats() -> AbstractContextManager[Any]:
    """Prefect settings under which the weekly flow's steps (each one a subflow) send no heartbeats.

    WHY: Prefect 3.8 gives every flow run a heartbeat thread that sleeps in one-second slices and joins it
    when the run ends, so each step finished up to a second late: 0.67 s per subflow measured
    (`bench/README.md`, lead session 6), four to five steps a week: about 3 s of the 280k scoring week's
    20 s goal. The weekly flow's own run keeps its heartbeat (its thread copied the settings when it started),
    so a crashed run is still seen; a step cannot outlive the weekly run it belongs to."""
    from prefect.settings import temporary_settings

    return temporary_settings(updates={"flows.heartbeat_frequency": None})


class _Progress:
    """A Prefect progress artifact that never fails the run (it is a display aid)."""

    def __init__(self, key: str, description: str) -> None:
        self.artifact_id: UUID | None = None
        try:
            self.artifact_id = create_progress_artifact(progress=0.0, key=key, description=description)
        except Exception:  # pragma: no cover - display only
            get_run_logger().warning("could not create the progress artifact %s", key)

    def update(self, fraction: float, description: str | None = None) -> None:
        if self.artifact_id is None:
            return
        try:
            update_progress_artifact(self.artifact_id, progress=round(100 * fraction, 1), description=description)
        except Exception:  # pragma: no cover - display only
            get_run_logger().warning("could not update the progress artifact")


def _retry_transient(_task: Any, _task_run: Any, state: Any) -> bool:
    """Retry I/O failures, but not a bad delivery/setting (UpstreamError) or a failure drill: they would
    only fail again."""
    try:
        state.result()
    except (InjectedFailure, UpstreamError):
        return False
    except Exception:
        return True
    return True


# --- tasks ------------------------------------------------------------------------------------------


@task(retries=2, retry_delay_seconds=5, retry_condition_fn=_retry_transient, cache_policy=NO_CACHE)
def ingest_task(raw_dir: str, index_date: date, settings: Settings) -> tuple[str, dict[str, Any]]:
    out_dir, summary = run_ingest(Path(raw_dir), index_date, settings)
    return str(out_dir), summary


@task(retries=2, retry_delay_seconds=5, retry_condition_fn=_retry_transient, cache_policy=NO_CACHE)
def partition_task(clean_dir: str, out_root: str) -> dict[str, str]:
    return {name: str(path) for name, path in partition_clean(Path(clean_dir), Path(out_root)).items()}


@task(
    retries=2,
    retry_delay_seconds=5,
    retry_condition_fn=_retry_transient,
    cache_policy=NO_CACHE,
    task_run_name="features-{partition}",
)
def features_task(partition: str, clean_dir: str, index_date: date, out_path: str) -> str:
    return str(build_partition_features(Path(clean_dir), index_date, Path(out_path)))


@task(cache_policy=NO_CACHE)
def train_task(clean_dir: str, index_date: date, settings: Settings, sample: int | None = None) -> Any:
    return run_training(Path(clean_dir), index_date, settings, sample)


@task(
    retries=2,
    retry_delay_seconds=5,
    cache_policy=NO_CACHE,
    retry_condition_fn=_retry_transient,
    task_run_name="score-{partition}",
)
def score_task(partition: str, features_path: str, settings: Settings, inject_failure: str | None = None) -> Any:
    check_injected(inject_failure, "score")
    return score_partition(Path(features_path), settings)


@task(retries=2, retry_delay_seconds=5, retry_condition_fn=_retry_transient, cache_policy=NO_CACHE)
def store_scores_task(parts: list[Any], index_date: date, settings: Settings) -> ScoreRun:
    name, version = scored_model_identity(parts, settings)
    return store_scores(parts, index_date, settings, name, version)


@task(retries=2, retry_delay_seconds=5, retry_condition_fn=_retry_transient, cache_policy=NO_CACHE)
def publish_task(run: ScoreRun, settings: Settings, inject_failure: str | None = None) -> PublishedLists:
    def drill() -> None:
        check_injected(inject_failure, "publish")

    return publish_run(run, settings, before_commit=drill)


@task(cache_policy=NO_CACHE)
def monitor_task(
    run: ScoreRun,
    features_paths: dict,
    ingest_dir: str,
    settings: Settings,
    flow_run_id: str | None,
) -> monitor.MonitoringReport:
    """Monitoring of the week just published (drift, volumes, performance): see ``pipelines.monitor``."""
    summary = read_validation_summary(Path(ingest_dir))
    return monitor.monitor_week(
        settings,
        week=run.week,
        index_date=run.index_date,
        score_run_id=run.run_id,
        features_paths=features_paths,
        summary=summary,
        previous_summary=previous_validation_summary(settings, run.week),
        clean_dir=Path(ingest_dir) / "clean",
        flow_run_id=flow_run_id,
    )


#: One line per weekly step on the console (the CLI shows this logger, and quietens the rest).
step_log = logging.getLogger("upstream.steps")
COMPLETED_WITH_WARNINGS = "Completed with warnings"


# --- flows ------------------------------------------------------------------------------------------


@task(retries=2, retry_delay_seconds=5, retry_condition_fn=_retry_transient, cache_policy=NO_CACHE)
def plan_ingest_task(raw_dir: str, out_dir: str, as_of: date, chunk_rows: int) -> dask_ingest.IngestPlan:
    return dask_ingest.plan_ingest(Path(raw_dir), Path(out_dir), as_of, chunk_rows)


@task(
    retries=2,
    retry_delay_seconds=5,
    retry_condition_fn=_retry_transient,
    cache_policy=NO_CACHE,
    task_run_name="ingest-{chunk.source}-{chunk.index}",
)
def ingest_chunk_task(
    plan: dask_ingest.IngestPlan, chunk: dask_ingest.SourceChunk, settings: Settings
) -> dask_ingest.ChunkDone:
    return dask_ingest.ingest_chunk(plan, chunk, settings)


@task(retries=2, retry_delay_seconds=5, retry_condition_fn=_retry_transient, cache_policy=NO_CACHE,
      task_run_name="merge-{source}")
def merge_source_task(plan: dask_ingest.IngestPlan, source: str) -> int:
    return dask_ingest.merge_source(plan, source)


def ingest_on_cluster(raw_dir: str, index_date: date, settings: Settings) -> tuple[str, dict[str, Any]]:
    """Ingest as cluster tasks: plan, residents' chunks, merge residents, every event source's chunks at
    once, merge each source; the summary and the move into place in this process (``dask_ingest``)."""
    out_dir, as_of, previous = ingest_target(Path(raw_dir), index_date, settings)
    plan = plan_ingest_task.submit(raw_dir, str(out_dir), as_of, settings.ingest.cluster_chunk_rows).result()
    def all_done(futures: list[Any]) -> list[Any]:
        wait(futures)  # every task has stopped writing under the work dir before a failure removes it
        return [future.result() for future in futures]

    try:
        done = all_done([ingest_chunk_task.submit(plan, c, settings) for c in plan.residents])
        merge_source_task.submit(plan, "residents").result()
        done += all_done([ingest_chunk_task.submit(plan, c, settings) for c in plan.events])
        all_done([merge_source_task.submit(plan, name) for name in plan.sources if name != "residents"])
    except BaseException:
        dask_ingest.discard_work(plan)
        raise
    summary = dask_ingest.finish_ingest(plan, done, out_dir, settings, previous)
    return str(out_dir), summary


@flow(name="ingest")
def ingest(raw_dir: str, index_date: date | None = None, home: str | None = None, on_cluster: bool = False) -> str:
    """Validate, pseudonymise and quarantine one delivery; publishes the validation summary.

    ``on_cluster``: one task per source chunk on the flow's (Dask) task runner.
    """
    when = resolve_index_date(Path(raw_dir), index_date)  # the weekly flow passes its own, resolved once
    if on_cluster:
        out_dir, summary = ingest_on_cluster(raw_dir, when, settings_for(home))
    else:
        out_dir, summary = ingest_task(raw_dir, when, settings_for(home))
    create_table_artifact(
        table=validation_rows(summary),
        key="validation-summary",
        description=f"Validation of the delivery for {iso_week(when)} (row counts per source)",
    )
    return out_dir


@flow(name="build-features")
def build_features(clean_dir: str, index_date: date, home: str | None = None, per_locality: bool = False) -> dict:
    """Point-in-time features, one task per locality when fanning out; returns partition -> parquet path."""
    root = week_root(settings_for(home), index_date)
    fresh_dir(root / "features")
    if per_locality:  # on a worker too: splitting reads every source
        parts = partition_task.submit(str(clean_dir), str(root / "partitions")).result()
    else:
        parts = {ALL_PARTITION: str(clean_dir)}
    futures = {
        name: features_task.submit(name, part_dir, index_date, str(root / "features" / f"{name}.parquet"))
        for name, part_dir in parts.items()
    }
    wait(list(futures.values()))
    return {name: future.result() for name, future in futures.items()}


@flow(name="train")
def train(clean_dir: str, index_date: date, home: str | None = None, sample: int | None = None) -> Any:
    """Train, evaluate, gate and register a model; publishes its metrics.

    ``sample`` caps people per training date (DESIGN §8: training may use a sample at scale).
    """
    settings = settings_for(home)
    result = train_task(str(clean_dir), index_date, settings, sample)
    create_table_artifact(
        table=model_metrics_rows(settings, result),
        key="model-metrics",
        description="Model trained this run (on earlier index dates with known 12-month outcomes)",
    )
    return result


train_flow = train  # ``weekly`` has a parameter named ``train``


@flow(name="score")
def score(
    features_paths: dict, index_date: date, home: str | None = None, inject_failure: str | None = None
) -> ScoreRun:
    """Score the whole living population with the champion (one task per partition) into score history."""
    settings = settings_for(home)
    progress = _Progress("score-progress", "Scoring partitions")
    futures = [
        score_task.submit(name, path, settings, inject_failure) for name, path in sorted(features_paths.items())
    ]
    parts = []
    for done, future in enumerate(futures, start=1):
        parts.append(future.result())
        progress.update(done / len(futures), f"{done}/{len(futures)} partitions scored")
    return store_scores_task(parts, index_date, settings)


@task(
    retries=2,
    retry_delay_seconds=5,
    retry_condition_fn=_retry_transient,
    cache_policy=NO_CACHE,
    task_run_name="lists-{locality}",
)
def locality_lists_task(
    run: ScoreRun, settings: Settings, locality: str, inputs: ListInputs
) -> tuple[pl.DataFrame, list[dict[str, Any]]]:
    """One locality's list with its words (``inputs``: its share), from its partition of the clean delivery,
    and its cohort funnel (suppressed counts: person-level cohort rows stay on the worker)."""
    part = week_root(settings, run.index_date) / "partitions" / locality_file_stem(locality)
    clean = part if part.is_dir() else clean_dir_of(settings, run.index_date)
    lists, cohort = build_week_lists(run, settings, inputs, clean, one_locality=True)
    return lists, funnel_rows(cohort, settings.cohort, [locality])


@task(retries=2, retry_delay_seconds=5, retry_condition_fn=_retry_transient, cache_policy=NO_CACHE)
def publish_built_task(
    run: ScoreRun, settings: Settings, built: list[tuple[pl.DataFrame, list[dict[str, Any]]]],
    localities: list[str], current: pl.DataFrame, inject_failure: str | None = None,
) -> PublishedLists:
    def drill() -> None:
        check_injected(inject_failure, "publish")

    lists = pl.concat([lists for lists, _ in built], how="vertical_relaxed")
    funnel = [row for _, rows in built for row in rows]
    return publish_lists_built(run, settings, lists, funnel, localities, current, before_commit=drill)


def publish_on_cluster(run: ScoreRun, settings: Settings, inject_failure: str | None) -> PublishedLists:
    """Lists built per locality as cluster tasks; the store reads before and the publish transaction after
    stay in this process."""
    inputs = list_inputs(run, settings)
    shares = inputs.per_locality()  # each task is sent its own share, not the whole week's scores
    futures = [locality_lists_task.submit(run, settings, name, shares[name]) for name in inputs.localities]
    built = [f.result() for f in futures]
    return publish_built_task(run, settings, built, inputs.localities, inputs.current, inject_failure)


@flow(name="publish-lists")
def publish_lists(
    run: ScoreRun, home: str | None = None, inject_failure: str | None = None, on_cluster: bool = False
) -> dict:
    """Build, export and publish the week's rising-risk lists; publishes suppressed list sizes.

    ``on_cluster``: one list-building task per locality on the flow's (Dask) task runner.
    """
    if on_cluster:
        published = publish_on_cluster(run, settings_for(home), inject_failure)
    else:
        published = publish_task(run, settings_for(home), inject_failure)
    create_table_artifact(
        table=published.sizes,
        key="list-sizes",
        description=f"Rising-risk list sizes per locality and section, {published.week} "
        "(1-7 shown as <8, others rounded to 5)",
    )
    create_table_artifact(
        table=published.funnel,
        key="cohort-funnel",
        description=f"List cohort per locality, {published.week}: residents, each exclusion in order, in cohort "
        "(1-7 shown as <8, others rounded to 5)",
    )
    create_table_artifact(
        table=published.offers,
        key="offer-demand",
        description=f"Per offer and locality, {published.week}: weekly places against the listed people it fits, "
        "with a place this week and waiting (upstream.offers.CAPACITY_RULE; people counts suppressed)",
    )
    return {
        "week": published.week,
        "run_id": published.run_id,
        "replaced_run_id": published.replaced_run_id,
        "files": [str(p) for p in published.files],
    }


@task(retries=2, retry_delay_seconds=5, retry_condition_fn=_retry_transient, cache_policy=NO_CACHE)
def follow_up_task(clean_dir: str, settings: Settings) -> dict[str, Any]:
    """Outcomes of everyone ever listed, for windows that have closed; ASCOF 2B (loop/outcomes.py)."""
    from loop.outcomes import follow_up, write_ascof_2b

    result = follow_up(Path(clean_dir), settings)
    ascof = write_ascof_2b(Path(clean_dir), settings)
    return {"listings_followed": result.listings, "outcome_rows_added": result.new_rows,
            "windows_pending": result.pending, "ascof_2b": str(ascof)}


@task(retries=2, retry_delay_seconds=5, retry_condition_fn=_retry_transient, cache_policy=NO_CACHE)
def outcomes_due_task(clean_dir: str, settings: Settings) -> tuple[Any, pl.DataFrame, str]:
    """Outcome follow-up computed on a worker (reads the store and the clean delivery), ASCOF 2B written."""
    from loop.outcomes import outcomes_due, write_ascof_2b

    result, new = outcomes_due(Path(clean_dir), settings)
    return result, new, str(write_ascof_2b(Path(clean_dir), settings))


def follow_up_on_cluster(clean_dir: str, settings: Settings) -> dict[str, Any]:
    """``follow_up_task`` with the computing on the cluster and the store write here."""
    from loop.outcomes import store_outcomes

    result, new, ascof = outcomes_due_task.submit(clean_dir, settings).result()
    store_outcomes(settings, new)
    return {"listings_followed": result.listings, "outcome_rows_added": result.new_rows,
            "windows_pending": result.pending, "ascof_2b": ascof}


@flow(name="weekly")
def weekly(
    raw_dir: str,
    index_date: date | None = None,
    train: str = "auto",
    dask_address: str | None = None,
    home: str | None = None,
    inject_failure: str | None = None,
    train_sample: int | None = None,
) -> dict:
    """Ingest -> features -> (train) -> score -> lists -> monitoring for one week; re-running a week replaces it.

    Each run is recorded in ``weekly_runs`` (the analysts' run page). A crossed monitoring threshold or a
    model kept as challenger ends the run in a COMPLETED state named "Completed with warnings" and sends an
    alert; a failure records the step that failed and sends an alert before the flow fails.
    ``train``: ``auto`` trains only when there is no champion yet. ``inject_failure`` ("score" or
    "publish") is a failure drill: the run fails on purpose and the published week must not change.
    """
    from prefect.runtime import flow_run as current_flow_run
    from prefect.states import Completed

    logger = get_run_logger()
    settings = settings_for(home)
    dask_address = dask_address or settings.dask_address
    on_cluster = bool(dask_address)
    # One weekly run per home; runs a dead process left "running" are marked failed, their rows removed.
    reaped = begin_weekly_run(settings)
    if reaped:
        logger.warning("marked %d abandoned score run(s) failed and removed their rows: %s", len(reaped), reaped)
    timings: dict[str, float] = {}
    warnings: list[str] = []
    clock = time.perf_counter()
    when = resolve_index_date(Path(raw_dir), index_date)  # the ONE place a weekly run's date is worked out
    week = iso_week(when)
    flow_run_id = str(current_flow_run.id or uuid4().hex)  # uuid4 when called outside a Prefect flow run
    monitor.record_run_start(settings, flow_run_id, week, when)
    step_log.info("%s  weekly run started", week, extra={"week": week, "starting": True})
    step = "ingest"

    def lap(done: str, following: str) -> None:
        nonlocal clock, step
        now = time.perf_counter()
        timings[done] = round(now - clock, 2)
        clock = now
        step_log.info(
            "%s  %-8s done in %6.1f s", week, done, timings[done], extra={"week": week, "step": done}
        )
        monitor.record_run_update(settings, flow_run_id, timings=dict(timings))
        step = following

    with subflows_without_heartbeats():
        try:
            progress = _Progress("weekly-progress", f"Weekly run for {week}")
            runner = task_runner(dask_address)

            ingest_dir = Path(ingest.with_options(task_runner=runner)(raw_dir, when, home, on_cluster=on_cluster))
            clean_dir = str(ingest_dir / "clean")
            summary = read_validation_summary(ingest_dir)
            monitor.record_run_update(
                settings,
                flow_run_id,
                delivery=monitor.delivery_counts(summary),
                data_docs=str(ingest_dir / "data_docs" / "index.html"),
            )
            lap("ingest", "features")
            progress.update(0.2, "ingested")

            features_paths = build_features.with_options(task_runner=runner)(
                clean_dir, when, home, per_locality=on_cluster
            )
            lap("features", "train")
            progress.update(0.4, "features built")

            if should_train(train, settings):
                trained = train_flow(clean_dir, when, home, train_sample)
                monitor.record_run_update(settings, flow_run_id, training_run_id=getattr(trained, "run_id", None))
                if champion_ref(settings) is None:
                    raise UpstreamError(no_champion_message(trained, settings))
                if getattr(trained, "alias", None) == "challenger":
                    kept = alerts.challenger_kept(
                        week, trained.model_name, trained.version, list(getattr(trained, "gate_reasons", []) or [])
                    )
                    warnings.append(kept.summary)
                    alerts.send_alert(kept, settings)
            else:
                create_table_artifact(
                    table=model_metrics_rows(settings, None),
                    key="model-metrics",
                    description="Champion model used for scoring (not retrained this run)",
                )
            lap("train", "score")
            progress.update(0.6, "model ready")

            run = score.with_options(task_runner=runner)(features_paths, when, home, inject_failure)
            monitor.record_run_update(
                settings,
                flow_run_id,
                score_run_id=run.run_id,
                model_name=run.model_name,
                model_version=run.model_version,
            )
            lap("score", "publish")
            progress.update(0.75, "scored")

            published = publish_lists.with_options(task_runner=runner)(run, home, inject_failure, on_cluster=on_cluster)
            lap("publish", "outcomes")
            progress.update(0.85, "published")
            logger.info("published %s: %s residents scored (run %s)", run.week, run.n_scored, run.run_id)

            follow_up = follow_up_on_cluster(clean_dir, settings) if on_cluster else follow_up_task(clean_dir, settings)
            lap("outcomes", "monitor")
            progress.update(0.9, "outcomes followed up")

            try:
                report = monitor_task(run, features_paths, str(ingest_dir), settings, flow_run_id)
            except Exception as exc:  # the lists are published: a monitoring fault is a warning, not a failed run
                warnings.append(f"monitoring could not run ({type(exc).__name__})")
                report = None
            if report is not None:
                monitor.record_run_update(settings, flow_run_id, monitoring_run_id=report.mlflow_run_id)
                if report.alerts:
                    texts = report.alert_texts()
                    warnings += texts
                    alerts.send_alert(alerts.monitoring_threshold(week, texts), settings)
            lap("monitor", "done")
            progress.update(1.0, "monitored")
        except BaseException as exc:
            try:
                monitor.record_run_update(
                    settings,
                    flow_run_id,
                    state="failed",
                    finished_at=datetime.now(UTC),
                    timings=dict(timings),
                    error=f"step {step}: {type(exc).__name__}",
                )
            except Exception:  # the run's own failure is what matters: never mask it with a bookkeeping one
                logger.warning("could not record the failed run %s in the run history", flow_run_id)
            if not isinstance(exc, KeyboardInterrupt):
                alerts.send_alert(alerts.run_failed(week, step, type(exc).__name__), settings)
            raise

    create_markdown_artifact(
        markdown=(
            f"# Weekly run {run.week}\n\n- index date: {when}\n- residents scored: {run.n_scored}\n"
            f"- score run: `{run.run_id}`\n- lists: `{lists_dir(settings, run.week)}`\n"
            + "".join(f"- warning: {w}\n" for w in warnings)
        ),
        key="weekly-summary",
        description="What this weekly run published",
    )
    state_name = COMPLETED_WITH_WARNINGS if warnings else "Completed"
    monitor.record_run_update(
        settings, flow_run_id, state=state_name.lower(), finished_at=datetime.now(UTC), warnings=warnings
    )
    result = {
        **published,
        "n_scored": run.n_scored,
        "index_date": when.isoformat(),
        "timings": timings,
        "warnings": warnings,
        "flow_run_id": flow_run_id,
        "outcomes": follow_up,
    }
    if warnings:
        # A distinguishable final state (Prefect shows the name; the type stays COMPLETED so nothing retries).
        return Completed(name=COMPLETED_WITH_WARNINGS, data=result, message=f"{len(warnings)} warning(s)")
    return result
