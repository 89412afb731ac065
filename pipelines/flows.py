"""Prefect flows: thin wrappers over ``pipelines.steps`` (the only module in Upstream that knows Prefect).

Flows take ``home`` (``UPSTREAM_HOME``) rather than a ``Settings`` object so their parameters are plain,
serialisable values in the Prefect UI; every other setting comes from the environment/TOML as usual.
I/O tasks retry. Scale-out: ``weekly(dask_address=...)`` runs the feature and scoring subflows with a
``DaskTaskRunner`` connected to an existing cluster, one task per locality.
"""

from __future__ import annotations

import time
from datetime import date
from pathlib import Path
from typing import Any
from uuid import UUID

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

from pipelines import steps
from pipelines.scoring import iso_week
from upstream.errors import UpstreamError
from upstream.settings import Settings


def _settings(home: str | None) -> Settings:
    return Settings(home=Path(home)) if home else Settings()


def task_runner(dask_address: str | None) -> Any:
    """Threads locally; a DaskTaskRunner attached to an existing cluster when an address is given."""
    if not dask_address:
        return ThreadPoolTaskRunner(max_workers=2)
    from prefect_dask import DaskTaskRunner

    return DaskTaskRunner(address=dask_address)


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
    except (steps.InjectedFailure, UpstreamError):
        return False
    except Exception:
        return True
    return True


# --- tasks ------------------------------------------------------------------------------------------


@task(retries=2, retry_delay_seconds=5, retry_condition_fn=_retry_transient, cache_policy=NO_CACHE)
def ingest_task(raw_dir: str, index_date: date, home: str | None) -> tuple[str, dict[str, Any]]:
    out_dir, summary = steps.run_ingest(Path(raw_dir), index_date, _settings(home))
    return str(out_dir), summary


@task(retries=2, retry_delay_seconds=5, retry_condition_fn=_retry_transient, cache_policy=NO_CACHE)
def partition_task(clean_dir: str, out_root: str) -> dict[str, str]:
    return {name: str(path) for name, path in steps.partition_clean(Path(clean_dir), Path(out_root)).items()}


@task(
    retries=2,
    retry_delay_seconds=5,
    retry_condition_fn=_retry_transient,
    cache_policy=NO_CACHE,
    task_run_name="features-{partition}",
)
def features_task(partition: str, clean_dir: str, index_date: date, out_path: str) -> str:
    return str(steps.build_partition_features(Path(clean_dir), index_date, Path(out_path)))


@task(cache_policy=NO_CACHE)
def train_task(clean_dir: str, index_date: date, home: str | None, sample: int | None = None) -> Any:
    return steps.run_training(Path(clean_dir), index_date, _settings(home), sample)


@task(
    retries=2,
    retry_delay_seconds=5,
    cache_policy=NO_CACHE,
    retry_condition_fn=_retry_transient,
    task_run_name="score-{partition}",
)
def score_task(partition: str, features_path: str, home: str | None, inject_failure: str | None = None) -> Any:
    steps.check_injected(inject_failure, "score")
    return steps.score_partition(Path(features_path), _settings(home))


@task(retries=2, retry_delay_seconds=5, retry_condition_fn=_retry_transient, cache_policy=NO_CACHE)
def store_scores_task(parts: list[Any], index_date: date, home: str | None) -> steps.ScoreRun:
    settings = _settings(home)
    name, version = steps.scored_model_identity(parts, settings)
    return steps.store_scores(parts, index_date, settings, name, version)


@task(retries=2, retry_delay_seconds=5, retry_condition_fn=_retry_transient, cache_policy=NO_CACHE)
def publish_task(run: steps.ScoreRun, home: str | None, inject_failure: str | None = None) -> steps.PublishedLists:
    def drill() -> None:
        steps.check_injected(inject_failure, "publish")

    return steps.publish_run(run, _settings(home), before_commit=drill)


# --- flows ------------------------------------------------------------------------------------------


@flow(name="ingest")
def ingest(raw_dir: str, index_date: date | None = None, home: str | None = None) -> str:
    """Validate, pseudonymise and quarantine one delivery; publishes the validation summary."""
    when = steps.resolve_index_date(Path(raw_dir), index_date)
    out_dir, summary = ingest_task(raw_dir, when, home)
    create_table_artifact(
        table=steps.validation_rows(summary),
        key="validation-summary",
        description=f"Validation of the delivery for {iso_week(when)} (row counts per source)",
    )
    return out_dir


@flow(name="build-features")
def build_features(clean_dir: str, index_date: date, home: str | None = None, per_locality: bool = False) -> dict:
    """Point-in-time features, one task per locality when fanning out; returns partition -> parquet path."""
    settings = _settings(home)
    root = steps.week_root(settings, index_date)
    steps.fresh_dir(root / "features")
    if per_locality:
        parts = partition_task(str(clean_dir), str(root / "partitions"))
    else:
        parts = {steps.ALL_PARTITION: str(clean_dir)}
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
    result = train_task(str(clean_dir), index_date, home, sample)
    create_table_artifact(
        table=steps.model_metrics_rows(_settings(home), result),
        key="model-metrics",
        description="Model trained this run (on earlier index dates with known 12-month outcomes)",
    )
    return result


train_flow = train  # ``weekly`` has a parameter named ``train``


@flow(name="score")
def score(
    features_paths: dict, index_date: date, home: str | None = None, inject_failure: str | None = None
) -> steps.ScoreRun:
    """Score the whole living population with the champion (one task per partition) into score history."""
    progress = _Progress("score-progress", "Scoring partitions")
    futures = [score_task.submit(name, path, home, inject_failure) for name, path in sorted(features_paths.items())]
    parts = []
    for done, future in enumerate(futures, start=1):
        parts.append(future.result())
        progress.update(done / len(futures), f"{done}/{len(futures)} partitions scored")
    return store_scores_task(parts, index_date, home)


@flow(name="publish-lists")
def publish_lists(run: steps.ScoreRun, home: str | None = None, inject_failure: str | None = None) -> dict:
    """Build, export and publish the week's rising-risk lists; publishes suppressed list sizes."""
    published = publish_task(run, home, inject_failure)
    create_table_artifact(
        table=published.sizes,
        key="list-sizes",
        description=f"Rising-risk list sizes per locality, {published.week} (1-7 shown as <8, others rounded to 5)",
    )
    return {
        "week": published.week,
        "run_id": published.run_id,
        "replaced_run_id": published.replaced_run_id,
        "files": [str(p) for p in published.files],
    }


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
    """Ingest -> features -> (train) -> score -> lists for one week; re-running a week replaces it.

    ``train``: ``auto`` trains only when there is no champion yet. ``inject_failure`` ("score" or
    "publish") is a failure drill: the run fails on purpose and the published week must not change.
    """
    logger = get_run_logger()
    settings = _settings(home)
    timings: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(step: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings[step] = round(now - clock, 2)
        clock = now

    when = steps.resolve_index_date(Path(raw_dir), index_date)
    progress = _Progress("weekly-progress", f"Weekly run for {iso_week(when)}")
    runner = task_runner(dask_address)

    clean_dir = str(Path(ingest(raw_dir, when, home)) / "clean")
    lap("ingest")
    progress.update(0.25, "ingested")

    features_paths = build_features.with_options(task_runner=runner)(
        clean_dir, when, home, per_locality=bool(dask_address)
    )
    lap("features")
    progress.update(0.45, "features built")

    if steps.should_train(train, settings):
        trained = train_flow(clean_dir, when, home, train_sample)
        if steps.champion_ref(settings) is None:
            raise UpstreamError(steps.no_champion_message(trained, settings))
    else:
        create_table_artifact(
            table=steps.model_metrics_rows(settings, None),
            key="model-metrics",
            description="Champion model used for scoring (not retrained this run)",
        )
    lap("train")
    progress.update(0.65, "model ready")

    run = score.with_options(task_runner=runner)(features_paths, when, home, inject_failure)
    lap("score")
    progress.update(0.85, "scored")

    published = publish_lists(run, home, inject_failure)
    lap("publish")
    progress.update(1.0, "published")
    logger.info("published %s: %s residents scored (run %s)", run.week, run.n_scored, run.run_id)
    create_markdown_artifact(
        markdown=(
            f"# Weekly run {run.week}\n\n- index date: {when}\n- residents scored: {run.n_scored}\n"
            f"- score run: `{run.run_id}`\n- lists: `{steps.lists_dir(settings, run.week)}`\n"
        ),
        key="weekly-summary",
        description="What this weekly run published",
    )
    return {**published, "n_scored": run.n_scored, "index_date": when.isoformat(), "timings": timings}
