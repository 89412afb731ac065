"""Score history: EVERY read and write of scores, score runs, published weeks and stored lists.

The pipeline's one boundary with the score tables of ``upstream.store`` (the API's reads are in
``serving.queries``). A week's run writes its scores under a fresh ``run_id`` (invisible to readers), then ``publish_week``
makes it visible in ONE transaction: insert the lists, repoint ``published_weeks[week]`` and delete
every other run of that week. A run that dies before that transaction leaves the last good week
served; re-running a week never duplicates history.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import polars as pl
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from pipelines.run_guard import claim_home, database_in_home
from pipelines.scoring import SCORE_ROW, combine_partitions, iso_week
from upstream.settings import Settings
from upstream.store import (
    LIST_ROW_COLUMNS,
    EncodedJSON,
    cohort_funnels,
    get_engine,
    published_weeks,
    risk_lists,
    score_runs,
    scores,
)

_CHUNK = 20_000


def new_run_id() -> str:
    return uuid.uuid4().hex


def _now() -> datetime:
    return datetime.now(UTC)


def _chunks(rows: list[dict[str, Any]], size: int = _CHUNK) -> Iterator[list[dict[str, Any]]]:
    for start in range(0, len(rows), size):
        yield rows[start : start + size]


def start_score_run(
    engine: Engine,
    *,
    run_id: str,
    week: str,
    index_date: date,
    target: str,
    model_name: str,
    model_version: str,
) -> None:
    """Record a run as ``running`` before any score is written, so a crash leaves a visible trace."""
    with engine.begin() as conn:
        conn.execute(
            score_runs.insert().values(
                run_id=run_id,
                week=week,
                index_date=index_date,
                target=target,
                model_name=model_name,
                model_version=str(model_version),
                status="running",
                started_at=_now(),
            )
        )


def write_scores(engine: Engine, run_id: str, banded: pl.DataFrame) -> int:
    """Insert a run's scores in short transactions of ``_CHUNK`` rows, then mark the run ``complete``.

    WHY short transactions: SQLite has ONE write lock per database file. Writing a county (1.8M rows) in
    one transaction held it for the whole insert (minutes on a busy 2-core machine), so any other writer
    of ``upstream.db`` in that window (a second weekly run, the API's audit rows, the clean-up of a failed
    attempt) waited out ``busy_timeout`` and failed with "database is locked". Each chunk now holds the
    lock for well under a second. Nothing is visible early: readers only see runs that ``published_weeks``
    points to, and a run that dies half-way is cleared by ``discard_run`` (on the way out) or
    ``reap_abandoned_runs`` (the next run's start-up). Rows are converted chunk by chunk too, so the
    store step no longer holds every resident's reasons as Python objects at once (gigabytes at 1.9M).
    """
    written = 0
    for start in range(0, banded.height, _CHUNK):
        rows = banded.slice(start, _CHUNK).select(SCORE_ROW.names()).to_dicts()
        for row in rows:
            row["run_id"] = run_id
            row["reasons"] = EncodedJSON(row["reasons"])  # stored as scoring encoded it: no decode/re-encode
        with engine.begin() as conn:
            conn.execute(scores.insert(), rows)
        written += len(rows)
    with engine.begin() as conn:
        conn.execute(
            score_runs.update()
            .where(score_runs.c.run_id == run_id)
            .values(status="complete", n_scored=written, finished_at=_now())
        )
    return written


def discard_run(engine: Engine, run_id: str) -> None:
    """A run that failed before publishing: mark it ``failed`` and delete its partial scores.

    The ``failed`` row stays (a visible trace of the attempt) until the week is next published. A
    published run is never touched, whatever its status.
    """
    with engine.begin() as conn:
        published = conn.execute(
            sa.select(published_weeks.c.week).where(published_weeks.c.run_id == run_id)
        ).first()
        if published is not None:
            return
        conn.execute(
            score_runs.update()
            .where(score_runs.c.run_id == run_id, score_runs.c.status != "complete")
            .values(status="failed", finished_at=_now())
        )
        conn.execute(risk_lists.delete().where(risk_lists.c.run_id == run_id))
    # Failed first, rows after, in short transactions like write_scores (a county's run is 1.8M rows): if
    # this is interrupted, the run is already "failed" and the next start-up deletes the rest.
    while True:
        batch = sa.select(scores.c.person_id).where(scores.c.run_id == run_id).limit(_CHUNK)
        with engine.begin() as conn:
            deleted = conn.execute(
                scores.delete().where(scores.c.run_id == run_id, scores.c.person_id.in_(batch.scalar_subquery()))
            ).rowcount
        if not deleted:
            return


def reap_abandoned_runs(engine: Engine) -> list[str]:
    """Runs left ``running`` by a process that died (SIGKILL, OOM, power): mark them failed, drop their rows.

    Only safe while holding the home's weekly-run lock (``pipelines.run_guard``): then no other process
    can be writing a run, so every ``running`` run is abandoned. Also drops the rows of older ``failed``
    runs. Returns the run ids marked failed now.
    """
    with engine.connect() as conn:
        published = set(conn.execute(sa.select(published_weeks.c.run_id)).scalars())
        unfinished = conn.execute(
            sa.select(score_runs.c.run_id, score_runs.c.status).where(score_runs.c.status.in_(("running", "failed")))
        ).all()
    reaped = []
    for run_id, status in unfinished:
        if run_id in published:
            continue
        discard_run(engine, run_id)
        if status == "running":
            reaped.append(run_id)
    return reaped


def begin_weekly_run(settings: Settings) -> list[str]:
    """Claim the home, then mark runs that an earlier, dead process left ``running`` as failed and remove
    their partial rows (only in the home's own database). Returns the run ids reaped."""
    claim_home(settings.home)
    if not database_in_home(settings):
        # The home's lock says nothing about runs of OTHER homes sharing an external database (e.g. one
        # PostgreSQL for several deployments or test sessions): never reap those; failed runs are still
        # discarded on the way out.
        return []
    return reap_abandoned_runs(get_engine(settings.db_url))


@dataclass(frozen=True)
class ScoreRun:
    """A week's scores stored under a run that is complete but not yet published."""

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


@dataclass(frozen=True)
class PublishedWeek:
    week: str
    run_id: str
    index_date: date


def published_week(engine: Engine, week: str) -> PublishedWeek | None:
    with engine.connect() as conn:
        row = conn.execute(sa.select(published_weeks).where(published_weeks.c.week == week)).first()
    return None if row is None else PublishedWeek(row.week, row.run_id, row.index_date)


def _one_published(engine: Engine, week: str, *where: Any, latest: bool) -> PublishedWeek | None:
    """The latest (or earliest) published week other than ``week`` that meets ``where``."""
    order = published_weeks.c.index_date.desc() if latest else published_weeks.c.index_date.asc()
    with engine.connect() as conn:
        row = conn.execute(
            sa.select(published_weeks).where(published_weeks.c.week != week, *where).order_by(order).limit(1)
        ).first()
    return None if row is None else PublishedWeek(row.week, row.run_id, row.index_date)


def previous_published(engine: Engine, index_date: date, week: str) -> PublishedWeek | None:
    """The latest other published week with an earlier index date ("last week")."""
    return _one_published(engine, week, published_weeks.c.index_date < index_date, latest=True)


def comparison_published(engine: Engine, index_date: date, week: str, lookback_weeks: int) -> PublishedWeek | None:
    """The week a rise is measured against: the latest published week at least ``lookback_weeks`` before
    ``index_date``; while fewer weeks exist, the earliest published one (so week 2 can already see risers)."""
    cutoff = date.fromordinal(index_date.toordinal() - 7 * lookback_weeks)
    return _one_published(engine, week, published_weeks.c.index_date <= cutoff, latest=True) or _one_published(
        engine, week, published_weeks.c.index_date < index_date, latest=False
    )


def matured_published_weeks(engine: Engine, scored_by: date, limit: int) -> list[PublishedWeek]:
    """The latest ``limit`` published weeks scored on or before ``scored_by`` (monitoring's matured weeks)."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(published_weeks.c.week, published_weeks.c.run_id, published_weeks.c.index_date)
            .where(published_weeks.c.index_date <= scored_by)
            .order_by(published_weeks.c.index_date.desc())
            .limit(limit)
        ).all()
    return [PublishedWeek(r[0], r[1], r[2]) for r in rows]


def published_localities(engine: Engine, week: str) -> list[str]:
    """The localities scored in a published week (the demo makes one key per locality)."""
    with engine.connect() as conn:
        return list(
            conn.execute(
                sa.select(scores.c.locality)
                .join(published_weeks, published_weeks.c.run_id == scores.c.run_id)
                .where(published_weeks.c.week == week)
                .distinct()
                .order_by(scores.c.locality)
            ).scalars()
        )


def _frame(rows: list[Any], columns: tuple[str, ...]) -> pl.DataFrame:
    """Rows of a score-history query as a frame typed by ``SCORE_ROW``."""
    return pl.DataFrame(
        {name: [row[i] for row in rows] for i, name in enumerate(columns)},
        schema={name: SCORE_ROW[name] for name in columns},
    )


def load_run_scores(engine: Engine, run_id: str) -> pl.DataFrame:
    """person_id, score of one run ("change since" the comparison week; monitoring's score drift)."""
    with engine.connect() as conn:
        rows = conn.execute(sa.select(scores.c.person_id, scores.c.score).where(scores.c.run_id == run_id)).all()
    return _frame(rows, ("person_id", "score"))


#: What list building reads of every resident of a run: all of ``SCORE_ROW`` but the reasons, which are
#: fetched for the listed people only (decoding every resident's reasons would dominate publishing at 280k+).
LIST_INPUT_COLUMNS: tuple[str, ...] = tuple(name for name in SCORE_ROW if name != "reasons")


def load_scores_for_lists(engine: Engine, run_id: str) -> pl.DataFrame:
    """A stored run's scores as ``build_lists`` takes them (``LIST_INPUT_COLUMNS``)."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(*(scores.c[name] for name in LIST_INPUT_COLUMNS)).where(scores.c.run_id == run_id)
        ).all()
    return _frame(rows, LIST_INPUT_COLUMNS)


def load_reasons(engine: Engine, run_id: str, person_ids: list[str]) -> pl.DataFrame:
    """person_id, reasons of some residents of one run, as the JSON text the database holds.

    Read as text (``CAST AS TEXT``) so the reasons are not decoded into Python objects and encoded again:
    the JSON array goes from the scores table to the list row as it is.
    """
    found: list[tuple[str, str]] = []
    with engine.connect() as conn:
        for start in range(0, len(person_ids), 500):
            chunk = person_ids[start : start + 500]
            found += conn.execute(
                sa.select(scores.c.person_id, sa.cast(scores.c.reasons, sa.Text)).where(
                    scores.c.run_id == run_id, scores.c.person_id.in_(chunk)
                )
            ).all()
    return _frame(found, ("person_id", "reasons"))


def load_run_list_members(engine: Engine, run_id: str) -> pl.DataFrame:
    """Everyone on one run's lists with their locality, risk, section and ``among_highest`` (for "new this
    week" and last week's entry level: ``pipelines.lists.build_lists``)."""
    columns = ("person_id", "locality", "score", "among_highest", "section")
    with engine.connect() as conn:
        result = conn.execute(
            sa.select(*(risk_lists.c[c] for c in columns)).where(risk_lists.c.run_id == run_id)
        ).all()
    return pl.DataFrame(
        [tuple(r) for r in result],
        schema={"person_id": pl.String, "locality": pl.String, "score": pl.Float64, "among_highest": pl.Boolean,
                "section": pl.String},
        orient="row",
    )


def _delete_runs(conn: Connection, run_ids: list[str]) -> None:
    if not run_ids:
        return
    conn.execute(risk_lists.delete().where(risk_lists.c.run_id.in_(run_ids)))
    conn.execute(cohort_funnels.delete().where(cohort_funnels.c.run_id.in_(run_ids)))
    conn.execute(scores.delete().where(scores.c.run_id.in_(run_ids)))
    conn.execute(score_runs.delete().where(score_runs.c.run_id.in_(run_ids)))


def publish_week(
    engine: Engine,
    *,
    week: str,
    run_id: str,
    index_date: date,
    lists: pl.DataFrame,
    funnel: list[dict[str, Any]] | None = None,
    opted_out: list[str] | None = None,
    before_commit: Callable[[], None] | None = None,
) -> str | None:
    """Make ``run_id`` the published run of ``week`` in one transaction; returns the replaced run id.

    Inserts the lists and the (already suppressed) cohort funnel, repoints ``published_weeks[week]`` and
    deletes every other run of the week (the replaced one and any failed attempts), so history holds exactly
    one run per week. People in ``opted_out`` are removed from every stored week's scores and lists in the
    same transaction: an opt-out applies to the past too (DESIGN §7).
    """
    rows = lists.select(LIST_ROW_COLUMNS).to_dicts()
    for row in rows:
        row["run_id"] = run_id
        row["week"] = week
        row["reasons"] = EncodedJSON(row["reasons"])
    with engine.begin() as conn:
        status = conn.execute(sa.select(score_runs.c.status).where(score_runs.c.run_id == run_id)).scalar_one_or_none()
        if status != "complete":
            raise RuntimeError(f"run {run_id} is {status or 'missing'}; only a complete run can be published")
        previous = conn.execute(
            sa.select(published_weeks.c.run_id).where(published_weeks.c.week == week)
        ).scalar_one_or_none()
        if previous == run_id:
            # Publishing the same run again (a task retry after the commit, e.g. when the file export
            # failed): replace its list rows instead of colliding with them on the primary key.
            conn.execute(risk_lists.delete().where(risk_lists.c.run_id == run_id))
            conn.execute(cohort_funnels.delete().where(cohort_funnels.c.run_id == run_id))
        for chunk in _chunks(rows):
            conn.execute(risk_lists.insert(), chunk)
        if funnel:
            conn.execute(cohort_funnels.insert(), [
                {"run_id": run_id, "week": week, "locality": r["locality"], "position": r["position"],
                 "step": r["step"], "label": r["label"], "people": r["people"]} for r in funnel
            ])
        for start in range(0, len(opted_out or []), 500):
            chunk_ids = (opted_out or [])[start : start + 500]
            conn.execute(risk_lists.delete().where(risk_lists.c.person_id.in_(chunk_ids)))
            conn.execute(scores.delete().where(scores.c.person_id.in_(chunk_ids)))
        if previous is None:
            conn.execute(
                published_weeks.insert().values(week=week, run_id=run_id, index_date=index_date, published_at=_now())
            )
        else:
            conn.execute(
                published_weeks.update()
                .where(published_weeks.c.week == week)
                .values(run_id=run_id, index_date=index_date, published_at=_now())
            )
        others = conn.execute(
            sa.select(score_runs.c.run_id).where(score_runs.c.week == week, score_runs.c.run_id != run_id)
        ).scalars()
        _delete_runs(conn, list(others))
        if before_commit is not None:
            before_commit()  # failure drills: anything raised here rolls the whole publish back
    return previous if previous != run_id else None
