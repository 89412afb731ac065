"""Plain, typed step functions the Prefect flows wrap (no Prefect here).

Each step takes ``Settings`` and paths, so it can be run and tested without an orchestrator, and so a
Dask worker can run one locality's share given only picklable arguments.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import polars as pl

from models.registry import champion_or_none, champion_ref, model_name
from pipelines.lists import attach_details, build_lists, funnel_rows, list_sizes, locality_file_stem, offer_demand
from pipelines.publish import (
    comparison_published,
    discard_run,
    load_run_list_members,
    load_run_scores,
    new_run_id,
    previous_published,
    publish_week,
    start_score_run,
    write_scores,
)
from pipelines.scoring import combine_partitions, iso_week, score_features
from upstream.errors import UpstreamError
from upstream.settings import Settings
from upstream.store import get_engine

#: The clean sources written by ingest (expectations.contract.SOURCES), partitioned per locality.
ALL_PARTITION = "all"
TRAIN_MODES = ("auto", "always", "never")


class InjectedFailure(RuntimeError):
    """Raised on purpose by a failure drill (``inject_failure=...``) to prove a failed run changes nothing."""


def check_injected(inject_failure: str | None, step: str) -> None:
    if inject_failure == step:
        raise InjectedFailure(f"failure injected at step {step!r} (drill)")


# --- dates and locations --------------------------------------------------------------------------


def delivery_extract_date(raw_dir: Path) -> date | None:
    """``extract_date`` from the delivery's ``_delivery.json``, when the delivery has one."""
    meta = Path(raw_dir) / "_delivery.json"
    if not meta.exists():
        return None
    try:
        return date.fromisoformat(json.loads(meta.read_text())["extract_date"])
    except (KeyError, ValueError, TypeError) as exc:
        raise UpstreamError(f"{meta}: extract_date is missing or not a YYYY-MM-DD date ({exc})") from exc


def resolve_index_date(raw_dir: Path, index_date: date | None) -> date:
    """The scoring date: given, else the delivery's extract date, else today."""
    if index_date is not None:
        return index_date
    return delivery_extract_date(raw_dir) or date.today()


def week_root(settings: Settings, index_date: date) -> Path:
    """Per-week working files (ingest output, feature partitions); replaced when the week is re-run."""
    return settings.home / "weeks" / iso_week(index_date)


def lists_dir(settings: Settings, week: str) -> Path:
    return settings.home / "lists" / week


# --- ingest ---------------------------------------------------------------------------------------


def previous_validation_summary(settings: Settings, week: str) -> dict[str, Any] | None:
    """The latest earlier week's validation summary, for ingest's row-count-change checks."""
    weeks = settings.home / "weeks"
    if not weeks.exists():
        return None
    earlier = sorted(
        p for p in weeks.iterdir() if p.name < week and (p / "ingest" / "validation_summary.json").exists()
    )
    if not earlier:
        return None
    return json.loads((earlier[-1] / "ingest" / "validation_summary.json").read_text())


def read_validation_summary(ingest_dir: Path) -> dict[str, Any]:
    path = Path(ingest_dir) / "validation_summary.json"
    return json.loads(path.read_text()) if path.exists() else {}


def new_local_run_id() -> str:
    """An id for a weekly run started outside a Prefect flow run (tests calling the function directly)."""
    from uuid import uuid4

    return uuid4().hex


def run_ingest(raw_dir: Path, index_date: date, settings: Settings) -> tuple[Path, dict[str, Any]]:
    """Validate, pseudonymise and quarantine the delivery into ``weeks/<week>/ingest``."""
    from expectations.ingest import ingest_delivery

    week = iso_week(index_date)
    out_dir = week_root(settings, index_date) / "ingest"
    summary = ingest_delivery(
        Path(raw_dir), out_dir, settings, previous_summary=previous_validation_summary(settings, week)
    )
    return out_dir, summary


def validation_rows(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per source for the validation artifact (row counts are not person-level)."""
    rows = []
    for source, info in summary.items():
        if not isinstance(info, dict) or "rows_in" not in info:
            continue
        checks = info.get("checks") or []
        failed = [c for c in checks if isinstance(c, dict) and c.get("success") is False]
        rows.append(
            {
                "source": source,
                "rows_in": info.get("rows_in"),
                "rows_valid": info.get("rows_valid"),
                "rows_quarantined": info.get("rows_quarantined"),
                "checks": len(checks),
                "checks_failed": len(failed),
            }
        )
    return rows


# --- partitions and features ----------------------------------------------------------------------


def localities_of(clean_dir: Path) -> list[str]:
    return sorted(
        pl.scan_parquet(Path(clean_dir) / "residents.parquet")
        .select(pl.col("locality").fill_null("Unknown").unique())
        .collect()["locality"]
        .to_list()
    )


def partition_clean(clean_dir: Path, out_root: Path) -> dict[str, Path]:
    """Split clean data per locality (residents by locality; events by their person), for fan-out.

    Features only look at a resident's own events and their household (same UPRN, hence same
    locality), so per-locality features equal the whole-population features.
    """
    clean_dir = Path(clean_dir)
    residents = pl.read_parquet(clean_dir / "residents.parquet").with_columns(pl.col("locality").fill_null("Unknown"))
    if out_root.exists():
        shutil.rmtree(out_root)
    sources = [p for p in sorted(clean_dir.glob("*.parquet")) if p.stem != "residents"]
    events = {p.stem: pl.read_parquet(p) for p in sources}
    parts: dict[str, Path] = {}
    for locality, people in residents.group_by("locality", maintain_order=True):
        name = str(locality[0])
        part_dir = out_root / locality_file_stem(name)
        part_dir.mkdir(parents=True)
        people.write_parquet(part_dir / "residents.parquet")
        ids = people.select("person_id")
        for source, frame in events.items():
            frame.join(ids, on="person_id", how="semi").write_parquet(part_dir / f"{source}.parquet")
        parts[name] = part_dir
    return dict(sorted(parts.items()))


def fresh_dir(path: Path) -> Path:
    """An empty directory (a re-run must not mix in files of an earlier run's partitioning)."""
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path


def build_partition_features(clean_dir: Path, index_date: date, out_path: Path) -> Path:
    """Build one partition's point-in-time features and keep them on disk (small messages between workers)."""
    from features.build import build_features

    features = build_features(Path(clean_dir), index_date)
    opted_out = opted_out_people(Path(clean_dir))
    if opted_out:  # never scored, never listed, never shown (DESIGN §7); still counted in the cohort funnel
        features = features.filter(~pl.col("person_id").is_in(opted_out))
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_suffix(".parquet.tmp")
    features.write_parquet(tmp)
    os.replace(tmp, out_path)
    return out_path


# --- training and scoring -------------------------------------------------------------------------


def should_train(mode: str, settings: Settings) -> bool:
    """``auto`` trains only when there is no champion yet; ``always``/``never`` do what they say."""
    if mode not in TRAIN_MODES:
        raise UpstreamError(f"--train must be one of {', '.join(TRAIN_MODES)}, not {mode!r}")
    if mode == "always":
        return True
    if mode == "never":
        return False
    return champion_ref(settings) is None


def run_training(clean_dir: Path, index_date: date, settings: Settings, sample: int | None = None) -> Any:
    """Train as of the scoring date: ``models.train`` picks earlier dates whose 12-month outcomes are known."""
    from models.train import train_and_register
    from upstream.console import quiet_prints

    with quiet_prints():  # MLflow prints "Successfully registered model ..." straight to stderr
        return train_and_register(Path(clean_dir), settings.target, index_date, settings, sample=sample)


def score_partition(features_path: Path, settings: Settings) -> pl.DataFrame:
    """Score one partition's features with the champion (loaded on the worker that runs this).

    Each row carries ``model_name``/``model_version`` of the model that scored it, so the run records the
    version actually used even if the champion alias moves while the run is in progress.
    """
    model = champion_or_none(settings)
    if model is None:
        raise UpstreamError(f"no champion model for target {settings.target!r}: run with --train auto/always first")
    features = pl.read_parquet(features_path)
    return score_features(features, model, settings.lists.top_reasons).with_columns(
        pl.lit(model_name(settings.target), dtype=pl.String).alias("model_name"),
        pl.lit(str(model.version), dtype=pl.String).alias("model_version"),
    )


def model_identity(settings: Settings) -> tuple[str, str]:
    ref = champion_ref(settings)
    if ref is None:
        raise UpstreamError(f"no champion model for target {settings.target!r}")
    return ref.name, ref.version


def scored_model_identity(parts: list[pl.DataFrame], settings: Settings) -> tuple[str, str]:
    """(model name, version) that scored ``parts`` (``score_partition`` output).

    Refuses partitions scored by different versions (the champion changed mid-run): one run, one model.
    Falls back to the current champion only when nothing was scored at all.
    """
    found = {
        (name, version)
        for part in parts
        if part.height and {"model_name", "model_version"} <= set(part.columns)
        for name, version in part.select("model_name", "model_version").unique().iter_rows()
    }
    if len(found) > 1:
        versions = ", ".join(sorted(v for _, v in found))
        raise UpstreamError(f"partitions were scored by different model versions ({versions}): the champion "
                            "changed during the run; re-run the week")
    if found:
        return found.pop()
    return model_identity(settings)


@dataclass(frozen=True)
class ScoreRun:
    run_id: str
    week: str
    index_date: date
    n_scored: int
    model_name: str  # the model that scored this run (not whatever is champion when someone asks later)
    model_version: str


def store_scores(
    parts: list[pl.DataFrame], index_date: date, settings: Settings, model_name: str, model_version: str
) -> ScoreRun:
    """Band the combined partitions and write them under a new, not yet published run."""
    from pipelines.run_guard import claim_home

    claim_home(settings.home)  # the store is the writer: never alongside another run on this home
    engine = get_engine(settings.db_url)
    banded = combine_partitions(parts)
    run_id = new_run_id()
    week = iso_week(index_date)
    start_score_run(
        engine,
        run_id=run_id,
        week=week,
        index_date=index_date,
        target=settings.target,
        model_name=model_name,
        model_version=model_version,
    )
    try:
        n = write_scores(engine, run_id, banded)
    except BaseException:
        # On the way out: never leave a run "running" or its partial rows behind (a retry starts a new
        # run). If even this fails (the process is being killed), the next run's start-up reaps it.
        discard_run(engine, run_id)
        raise
    return ScoreRun(run_id, week, index_date, n, model_name, model_version)


def model_metrics_rows(settings: Settings, train_result: Any | None) -> list[dict[str, Any]]:
    """Model metrics for the run's artifact: this run's training, else the champion's MLflow run."""
    metrics: dict[str, Any] = {}
    identity: dict[str, Any] = {}
    if train_result is not None:
        raw = getattr(train_result, "metrics", None)
        if raw is None and isinstance(train_result, dict):
            raw = train_result.get("metrics")
        metrics = dict(raw or {})
        for field in ("version", "alias", "promoted", "run_id"):
            value = getattr(train_result, field, None)
            if value is not None:
                identity[field] = value
    else:
        ref = champion_ref(settings)
        if ref is not None:
            identity = {"version": ref.version, "alias": "champion", "run_id": ref.run_id}
            try:
                from mlflow.tracking import MlflowClient

                metrics = MlflowClient(settings.tracking_uri).get_run(ref.run_id).data.metrics
            except Exception:  # metrics are informative only; never fail a weekly run for them
                metrics = {}
    rows = [{"metric": key, "value": str(value)} for key, value in identity.items()]
    rows += [
        {"metric": key, "value": f"{float(value):.4f}"}
        for key, value in sorted(metrics.items())
        if isinstance(value, int | float)
    ]
    return rows


def load_scores_for_lists(settings: Settings, run_id: str) -> pl.DataFrame:
    """A stored run's scores as ``build_lists`` takes them, without reasons (fetched for listed people only:
    decoding every resident's JSON would dominate publishing at 280k+)."""
    import sqlalchemy as sa

    from upstream.store import scores

    engine = get_engine(settings.db_url)
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(
                scores.c.person_id,
                scores.c.locality,
                scores.c.score,
                scores.c.band,
                scores.c.in_long_term_care,
            ).where(scores.c.run_id == run_id)
        ).all()
    return pl.DataFrame(
        {
            "person_id": [r[0] for r in rows],
            "locality": [r[1] for r in rows],
            "score": [r[2] for r in rows],
            "band": [r[3] for r in rows],
            "in_long_term_care": [bool(r[4]) for r in rows],
        },
        schema={
            "person_id": pl.String,
            "locality": pl.String,
            "score": pl.Float64,
            "band": pl.String,
            "in_long_term_care": pl.Boolean,
        },
    ).with_columns(pl.lit("[]").alias("reasons"))


def load_reasons(settings: Settings, run_id: str, person_ids: list[str]) -> pl.DataFrame:
    """person_id, reasons (JSON text) of some residents of one run."""
    import sqlalchemy as sa

    from upstream.store import scores

    engine = get_engine(settings.db_url)
    found: list[tuple[str, str]] = []
    with engine.connect() as conn:
        for start in range(0, len(person_ids), 500):
            chunk = person_ids[start : start + 500]
            found += [
                (r[0], json.dumps(r[1], separators=(",", ":")))
                for r in conn.execute(
                    sa.select(scores.c.person_id, scores.c.reasons).where(
                        scores.c.run_id == run_id, scores.c.person_id.in_(chunk)
                    )
                )
            ]
    return pl.DataFrame(
        {"person_id": [f[0] for f in found], "reasons": [f[1] for f in found]},
        schema={"person_id": pl.String, "reasons": pl.String},
    )


@dataclass(frozen=True)
class PublishedLists:
    week: str
    run_id: str
    replaced_run_id: str | None
    sizes: list[dict[str, Any]]
    files: list[Path]
    funnel: list[dict[str, Any]] = field(default_factory=list)
    offers: list[dict[str, Any]] = field(default_factory=list)


def week_features(settings: Settings, index_date: date) -> pl.DataFrame | None:
    """The feature table a week's run built (all partitions), or None when it is no longer on disk."""
    paths = sorted((week_root(settings, index_date) / "features").glob("*.parquet"))
    if not paths:
        return None
    return pl.concat([pl.read_parquet(p) for p in paths], how="vertical_relaxed")


def clean_dir_of(settings: Settings, index_date: date) -> Path:
    return week_root(settings, index_date) / "ingest" / "clean"


class ModelExplainer:
    """The champion's per-feature contributions, for "what changed" (``pipelines.what_changed.Explainer``)."""

    def __init__(self, model: Any) -> None:
        self.bundle = getattr(model, "bundle", model)
        self.feature_names = list(self.bundle.feature_names)

    def contributions_of(self, features: pl.DataFrame) -> Any:
        return self.bundle.contributions(self.bundle.encoder.transform(features))


def explainer_or_none(settings: Settings) -> ModelExplainer | None:
    model = champion_or_none(settings)
    if model is None or not hasattr(getattr(model, "bundle", model), "contributions"):
        return None
    return ModelExplainer(model)


def opted_out_people(clean_dir: Path) -> list[str]:
    """person_id of everyone in the delivery's opt-out file (ingest wrote it; absent = nobody)."""
    path = Path(clean_dir) / "opt_outs.parquet"
    if not path.exists():
        return []
    return pl.read_parquet(path, columns=["person_id"])["person_id"].unique().to_list()


def publish_run(run: ScoreRun, settings: Settings, before_commit: Callable[[], None] | None = None) -> PublishedLists:
    """Build the week's lists (cohort, sections, words, offers), export them and publish atomically.

    Order: list files are staged, then the DB transaction publishes (lists, funnel, removal of opted-out
    people from every stored week), then the staged files take the week's place. Any failure before the
    commit leaves the DB and the files of the last good run.
    """
    from expectations.cohort import cohort_at
    from pipelines.lists import commit_exports, stage_exports
    from pipelines.what_changed import what_changed
    from upstream.offers import load_catalogue

    catalogue = load_catalogue(settings)  # a broken council catalogue fails before anything is written
    engine = get_engine(settings.db_url)
    clean_dir = clean_dir_of(settings, run.index_date)
    cohort = cohort_at(clean_dir, run.index_date, settings.cohort)
    current = load_scores_for_lists(settings, run.run_id)
    last = previous_published(engine, run.index_date, run.week)
    comparison = comparison_published(engine, run.index_date, run.week, settings.lists.rise_lookback_weeks)
    lists = build_lists(
        current,
        settings.lists,
        cohort,
        index_date=run.index_date,
        comparison_scores=load_run_scores(engine, comparison.run_id) if comparison else None,
        comparison_date=comparison.index_date if comparison else None,
        previous_members=load_run_list_members(engine, last.run_id) if last else None,
    )
    features_now = week_features(settings, run.index_date)
    offers = catalogue.match(features_now.join(lists.select("person_id"), on="person_id", how="semi")) \
        if features_now is not None else None
    changes: dict[str, str] = {}
    if features_now is not None:
        explainer = explainer_or_none(settings)
        for section, against in (("new", last), ("rising", comparison)):
            people = lists.filter(pl.col("section") == section).select("person_id")
            if against is None or people.height == 0:
                continue
            changes.update(what_changed(features_now, week_features(settings, against.index_date), people,
                                        clean_dir, run.index_date, against.index_date, explainer))
    lists = attach_details(
        lists, settings.lists, reasons=load_reasons(settings, run.run_id, lists["person_id"].to_list()),
        offers=offers, changes=changes,
    )
    localities = sorted(current["locality"].unique().to_list())
    funnel = funnel_rows(cohort, settings.cohort, localities)
    week_dir = lists_dir(settings, run.week)
    staging = stage_exports(lists, week_dir, localities, funnel)
    try:
        replaced = publish_week(
            engine,
            week=run.week,
            run_id=run.run_id,
            index_date=run.index_date,
            lists=lists,
            funnel=funnel,
            opted_out=opted_out_people(clean_dir),
            before_commit=before_commit,
        )
    except BaseException:
        # The run stays "complete" but unpublished, so a retry can publish it; it is cleared when the
        # week is next published.
        shutil.rmtree(staging, ignore_errors=True)
        raise
    files = commit_exports(staging, week_dir)
    return PublishedLists(run.week, run.run_id, replaced, list_sizes(lists, localities), files,
                          [{k: r[k] for k in ("locality", "step", "label", "shown")} for r in funnel],
                          offer_demand(lists, catalogue, localities))


def no_champion_message(trained: Any, settings: Settings) -> str:
    """Why a first run publishes nothing, and what the analyst can do about it (no silent failure)."""
    reasons = "; ".join(getattr(trained, "gate_reasons", []) or []) or "see the MLflow run"
    version = getattr(trained, "version", "?")
    return (
        f"no list published: the first model (upstream-{settings.target} version {version}, alias challenger) "
        f"failed the promotion gate and there is no champion yet. Why: {reasons}. What to do: read the "
        f"challenger's model card (its MLflow run, gate/gate_decision.json); a calibration or subgroup failure "
        f"usually needs more data (a larger population or more years) or a fix to the data it names. If the "
        f"lead analyst accepts the model as it is, relax the named threshold in the settings "
        f"(UPSTREAM_GATE__..., recorded with the run) and run again with --train always."
    )
