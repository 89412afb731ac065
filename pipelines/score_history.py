"""Score history: EVERY read and write of scores, score runs, published weeks and stored lists.

The one boundary with the score tables of ``upstream.store`` and with the history store
(``pipelines.history_store``): the pipeline, the API (``serving.queries`` only re-exports the reads below),
the loop and retention all come here; a guard test fails on a direct read elsewhere.

Two tiers (issue 15 item 4): the database holds the newest ``retention.database_score_weeks`` published
weeks' scores, with the reasons of the people the run explained (the listed ones: ``pipelines.explain``), plus every published week's lists,
funnel and summary counts; older weeks' scores move to the parquet history store when a week is published
(``settle_history``). Readers get one answer from both: a week is read from the database while its scores are
there, else from the history store. A week's run writes its scores under a fresh ``run_id`` (invisible to readers), then ``publish_week``
makes it visible in ONE transaction: insert the lists, repoint ``published_weeks[week]`` and delete
every other run of that week. A run that dies before that transaction leaves the last good week
served; re-running a week never duplicates history.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

import polars as pl
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from pipelines.history_store import HISTORY_SCHEMA, HistoryStore
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
    score_summaries,
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

    WHY in ``person_id`` order: every index on ``scores`` but one leads with the run (constant) then the person,
    or is the person alone, so rows in person order are appended at each index's right-hand edge instead of
    landing on a random page of a B-tree that no longer fits SQLite's page cache. Measured on the 280k home
    (267k rows into a database holding two runs): 3.8 s CPU in banded order, 1.2 s in person order
    (bench/README.md, issue 15 session 5). The stored rows are the same; readers that need an order ask for it.
    """
    written = 0
    columns = ["run_id", *SCORE_ROW.names()]
    banded = banded.sort("person_id")
    for start in range(0, banded.height, _CHUNK):
        chunk = banded.slice(start, _CHUNK).select(pl.lit(run_id, dtype=pl.String).alias("run_id"), *SCORE_ROW.names())
        with engine.begin() as conn:
            bulk_insert(conn, scores, columns, chunk.rows())
        written += chunk.height
    with engine.begin() as conn:
        conn.execute(
            score_runs.update()
            .where(score_runs.c.run_id == run_id)
            .values(status="complete", n_scored=written, finished_at=_now())
        )
    return written


def bulk_insert(conn: Connection, table: sa.Table, columns: list[str], rows: list[tuple[Any, ...]]) -> None:
    """Insert plain row tuples (``columns`` order) the fastest way the driver has, inside ``conn``'s transaction.

    WHY not ``conn.execute(table.insert(), dicts)``: SQLAlchemy then builds a dict and runs every column's
    bind processor per row, which made the score insert the largest part of the score step (about 10 s per
    270k residents). Here PostgreSQL (psycopg) gets ``COPY ... FROM STDIN`` and SQLite one DBAPI
    ``executemany`` over tuples. The stored values are the same: booleans become SQLite's 0/1 as SQLAlchemy's
    ``Boolean`` makes them, and a JSON column receives the JSON text scoring encoded (what ``EncodedJSON``
    passes through). Any other dialect falls back to SQLAlchemy Core.
    """
    if not rows:
        return
    dialect = conn.dialect
    names = ", ".join(columns)
    if dialect.name == "postgresql" and dialect.driver == "psycopg":
        cursor = conn.connection.driver_connection.cursor()
        with cursor, cursor.copy(f"COPY {table.name} ({names}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
    elif dialect.name == "sqlite" and dialect.paramstyle == "qmark":
        placeholders = ", ".join("?" * len(columns))
        conn.exec_driver_sql(f"INSERT INTO {table.name} ({names}) VALUES ({placeholders})", rows)
    else:
        json_columns = {c for c in columns if isinstance(table.c[c].type, sa.JSON)}
        conn.execute(table.insert(), [
            {c: EncodedJSON(v) if c in json_columns and v is not None else v for c, v in zip(columns, row, strict=True)}
            for row in rows
        ])


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
    _delete_run_scores(engine, run_id)


def _delete_run_scores(engine: Engine, run_id: str) -> int:
    """Delete one run's score rows in short transactions (see ``write_scores`` on SQLite's one write lock)."""
    total = 0
    while True:
        batch = sa.select(scores.c.person_id).where(scores.c.run_id == run_id).limit(_CHUNK)
        with engine.begin() as conn:
            deleted = conn.execute(
                scores.delete().where(scores.c.run_id == run_id, scores.c.person_id.in_(batch.scalar_subquery()))
            ).rowcount
        if not deleted:
            return total
        total += deleted


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
        # The same rows in the columnar tier, so the week's readers (publishing, monitoring) need not read
        # them back from the database (``_staged_copy``).
        history_store(settings).stage(run_id, banded.with_columns(
            pl.lit(week).alias("week"), pl.lit(index_date, dtype=pl.Date).alias("index_date")))
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


def _driver_rows(conn: Connection, statement: sa.Select) -> list[tuple]:
    """Every row of a query as the driver returns it (plain tuples, no SQLAlchemy ``Row`` per row).

    Why: monitoring reads every resident's score of this week and the last (3.8M rows at county scale), and
    building a ``Row`` per row cost more than the query (about 2.5x the driver's fetch). Only for columns the
    driver already returns as their Python type (strings, floats), so nothing is lost by skipping SQLAlchemy."""
    result = conn.execute(statement)
    try:
        return result.cursor.fetchall() if result.cursor is not None else []
    finally:
        result.close()


def _staged_copy(conn: Connection, history: HistoryStore | None, run_id: str) -> pl.DataFrame | None:
    """A run's rows from the history store's staged copy when it holds exactly the database's rows, else None.

    WHY: publishing and monitoring each read this week's and last week's scores (1.8M rows at county scale,
    3-4 s per read from SQLite); the staged parquet is read in a fraction of that. Exact, not a cache that can
    go stale: the staged copy is written from the very rows the run inserted (``store_scores``) and later only
    loses the people the database lost at the same publish (opt-outs, ``stage_history``), while the database
    only ever deletes a run's rows. So the database's rows are a subset of the staged ones, and equal counts
    mean equal rows; any other deletion since (an opt-out applied at a later publish) makes the counts differ
    and the database is read as before. Rows come in the database's order for runs stored in person order
    (its run index reads locality by locality, each in insertion order: ``HistoryStore.stage``)."""
    if history is None:
        return None
    staged_rows = history.staged_rows(run_id)
    if staged_rows is None:
        return None
    in_database = conn.execute(sa.select(sa.func.count()).select_from(scores).where(scores.c.run_id == run_id))
    if in_database.scalar_one() != staged_rows:
        return None
    return history.staged(run_id)


def load_run_scores(engine: Engine, run_id: str, history: HistoryStore | None = None) -> pl.DataFrame:
    """person_id, score of one run ("change since" the comparison week; monitoring's score drift and matured
    weeks). A published week whose scores have moved to ``history`` is read from there, and a run whose rows
    ``history`` holds staged is read from that copy (``_staged_copy``)."""
    with engine.connect() as conn:
        staged = _staged_copy(conn, history, run_id)
        if staged is not None:
            return staged.select("person_id", "score")
        rows = _driver_rows(conn, sa.select(scores.c.person_id, scores.c.score).where(scores.c.run_id == run_id))
        week = None if rows or history is None else conn.execute(
            sa.select(published_weeks.c.week).where(published_weeks.c.run_id == run_id)).scalar_one_or_none()
    if week is not None and history is not None:
        return history.week(week).select("person_id", "score")
    return _frame(rows, ("person_id", "score"))


#: What list building reads of every resident of a run: all of ``SCORE_ROW`` but the reasons, which are
#: fetched for the listed people only (decoding every resident's reasons would dominate publishing at 280k+).
LIST_INPUT_COLUMNS: tuple[str, ...] = tuple(name for name in SCORE_ROW if name != "reasons")


def load_scores_for_lists(engine: Engine, run_id: str, history: HistoryStore | None = None) -> pl.DataFrame:
    """A stored run's scores as ``build_lists`` takes them (``LIST_INPUT_COLUMNS``).

    From ``history``'s staged copy of the run when it holds exactly the database's rows (``_staged_copy``: the
    score step staged them). Else read as the driver's tuples (``_driver_rows``), columnar in one go: SQLAlchemy
    ``Row`` objects were most of this read (1 of the publish step's 10 CPU s at 280k). ``in_long_term_care``
    comes back as SQLite's 0/1 or PostgreSQL's bool, so it is typed by a cast, as SQLAlchemy's ``Boolean`` did
    per row."""
    with engine.connect() as conn:
        staged = _staged_copy(conn, history, run_id)
        if staged is not None:
            return staged.select(LIST_INPUT_COLUMNS).cast({name: SCORE_ROW[name] for name in LIST_INPUT_COLUMNS})
        rows = _driver_rows(conn, sa.select(*(scores.c[name] for name in LIST_INPUT_COLUMNS))
                            .where(scores.c.run_id == run_id))
    raw = {name: (pl.Int8 if SCORE_ROW[name] == pl.Boolean else SCORE_ROW[name]) for name in LIST_INPUT_COLUMNS}
    frame = pl.DataFrame(rows, schema=raw, orient="row") if rows else pl.DataFrame(schema=raw)
    return frame.cast({name: SCORE_ROW[name] for name in LIST_INPUT_COLUMNS})


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
        # The listed people's reasons (explained at publishing: scoring stored none) are kept with their score
        # too, so the resident view shows a listed person's reasons without working them out again.
        reasons_of = scores.update().where(scores.c.run_id == run_id, scores.c.person_id == sa.bindparam("listed"),
                                           scores.c.reasons.is_(None)).values(reasons=sa.bindparam("explained"))
        for chunk in _chunks([{"listed": r["person_id"], "explained": r["reasons"]} for r in rows]):
            conn.execute(reasons_of, chunk)
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


# --- the history store: moving weeks out of the database, retention ---------------------------------


def history_store(settings: Settings) -> HistoryStore:
    """The home's history store (``settings.history_dir``)."""
    return HistoryStore(settings.history_dir)


@dataclass(frozen=True)
class SettledHistory:
    """What ``settle_history`` did: weeks moved out of the database, opted-out rows removed from history."""

    moved_weeks: list[str]
    moved_rows: int
    opted_out_rows: int
    #: Wall seconds by part (summary counts + the rows, staged or from the database; the store write; the
    #: database delete; opt-outs).
    seconds: dict[str, float] = field(default_factory=dict)


#: Equal-width score bins of the stored summaries (the web page's histogram uses the same ten).
SUMMARY_BINS = 10


def _bin_of(column: Any, bins: int = SUMMARY_BINS) -> Any:
    # Thresholds in a CASE, not CAST/FLOOR, so SQLite and PostgreSQL bin identically.
    return sa.case(*[(column < (i + 1) / bins, i) for i in range(bins - 1)], else_=bins - 1)


def _has_scores(conn: Connection, run_id: str) -> bool:
    return conn.execute(sa.select(sa.literal(1)).where(scores.c.run_id == run_id).limit(1)).first() is not None


def _summarised(conn: Connection, run_id: str) -> bool:
    found = sa.select(sa.literal(1)).where(score_summaries.c.run_id == run_id).limit(1)
    return conn.execute(found).first() is not None


def _history_rows(engine: Engine, history: HistoryStore, week: PublishedWeek, opted_out: list[str]) -> pl.DataFrame:
    """One published week's scores as the history store keeps them (``HISTORY_SCHEMA``, no reasons): staged at
    its publish (``stage_history``), else read from the database. Opted-out people are left out either way
    (the staged rows were written before later weeks' opt-outs)."""
    frame = history.staged(week.run_id)
    if frame is None:
        columns = ("person_id", "locality", "score", "band", "in_long_term_care")
        with engine.connect() as conn:
            rows = conn.execute(sa.select(*(scores.c[c] for c in columns)).where(scores.c.run_id == week.run_id)).all()
        frame = _frame(rows, columns).with_columns(
            pl.lit(week.week).alias("week"), pl.lit(week.index_date, dtype=pl.Date).alias("index_date"))
    if opted_out:
        frame = frame.filter(~pl.col("person_id").is_in(opted_out))
    return frame.select(list(HISTORY_SCHEMA)).cast(HISTORY_SCHEMA)


def stage_history(history: HistoryStore, week: PublishedWeek, current: pl.DataFrame,
                  opted_out: list[str] | None = None) -> None:
    """After a publish: keep the published run's rows (``current``: what list building read) for the day its
    week moves to the history store, so that move need not read 1.9M rows back from the database."""
    frame = current.with_columns(pl.lit(week.week).alias("week"), pl.lit(week.index_date, dtype=pl.Date)
                                 .alias("index_date"))
    if opted_out:
        frame = frame.filter(~pl.col("person_id").is_in(opted_out))
    if frame.height == current.height and history.staged_rows(week.run_id) == current.height:
        return  # the score step staged these very rows (``store_scores``) and no opt-out removed any of them
    history.stage(week.run_id, frame)


def settle_history(
    engine: Engine, history: HistoryStore, keep_in_db: int, opted_out: list[str] | None = None
) -> SettledHistory:
    """After a publish: move the scores of published weeks older than the newest ``keep_in_db`` to ``history``.

    Per week, in an order that a crash at any point leaves readable and the next publish finishes: (1) the
    summary counts the API shows for the week are stored in the database, (2) the week's rows are written to
    the history store (its manifest swap is the commit), (3) the week's score rows are deleted from the
    database in short transactions. Between (2) and (3) the week is in both tiers and readers prefer the
    database. Opted-out people are then removed from the history store too (``publish_week`` removed them
    from the database): an opt-out applies to the past (DESIGN §7). Only published weeks ever enter the store,
    so a failed run leaves nothing in it.
    """
    from pipelines.history_store import block_of

    with engine.connect() as conn:
        newest_first = conn.execute(
            sa.select(published_weeks.c.week, published_weeks.c.run_id, published_weeks.c.index_date)
            .order_by(published_weeks.c.index_date.desc())
        ).all()
        to_move = [PublishedWeek(*row) for row in newest_first[keep_in_db:] if _has_scores(conn, row[1])]
    moved_rows = 0
    seconds = dict.fromkeys(("summary_and_rows", "write_store", "delete_database", "opt_outs"), 0.0)
    for block in sorted({block_of(w.week) for w in to_move}):  # one block rewrite per block, oldest first
        weeks = [w for w in to_move if block_of(w.week) == block]
        started = time.perf_counter()
        for w in weeks:
            with engine.begin() as conn:
                if not _summarised(conn, w.run_id):
                    conn.execute(score_summaries.insert().from_select(
                        ["run_id", "locality", "band", "score_bin", "residents"],
                        sa.select(scores.c.run_id, scores.c.locality, scores.c.band, _bin_of(scores.c.score),
                                  sa.func.count()).where(scores.c.run_id == w.run_id)
                        .group_by(scores.c.run_id, scores.c.locality, scores.c.band, _bin_of(scores.c.score)),
                    ))
        frame = pl.concat([_history_rows(engine, history, w, opted_out or []) for w in weeks])
        read = time.perf_counter()
        history.add_weeks(frame)
        written = time.perf_counter()
        moved_rows += frame.height
        for w in weeks:
            _delete_run_scores(engine, w.run_id)
        seconds["summary_and_rows"] += read - started
        seconds["write_store"] += written - read
        seconds["delete_database"] += time.perf_counter() - written
    # Staged rows are kept only for published runs still in the database (moved, replaced: gone).
    history.unstage({row[1] for row in newest_first[:keep_in_db]})
    started = time.perf_counter()
    removed = history.remove_people(opted_out) if opted_out else 0
    seconds["opt_outs"] = time.perf_counter() - started
    return SettledHistory([w.week for w in sorted(to_move, key=lambda w: w.index_date)], moved_rows, removed,
                          {k: round(v, 2) for k, v in seconds.items()})


def expire_score_weeks(engine: Engine, history: HistoryStore, oldest_kept: date) -> dict[str, int]:
    """Retention: delete every scored week (run) with an index date before ``oldest_kept``, in both tiers.

    The database's rows go in one transaction; then the history store drops every week no longer published
    (only retention unpublishes a week, so these are exactly the expired ones, including any a failed earlier
    retention run left behind). ``scores`` counts score rows removed from both tiers."""
    removed = {"score_runs": 0, "scores": 0, "list_rows": 0}
    with engine.begin() as conn:
        old_runs = sa.select(score_runs.c.run_id).where(score_runs.c.index_date < oldest_kept)
        removed["list_rows"] = conn.execute(risk_lists.delete().where(risk_lists.c.run_id.in_(old_runs))).rowcount
        removed["scores"] = conn.execute(scores.delete().where(scores.c.run_id.in_(old_runs))).rowcount
        # Every other per-run table (cohort funnels, summaries, published weeks...) goes with its run: found from
        # the foreign keys, so a table added later cannot outlive the retention period unnoticed.
        for table in _tables_keyed_by_run():
            conn.execute(table.delete().where(table.c.run_id.in_(old_runs)))
        removed["score_runs"] = conn.execute(score_runs.delete().where(score_runs.c.index_date < oldest_kept)).rowcount
        still_published = set(conn.execute(sa.select(published_weeks.c.week)).scalars())
    expired = [w for w in history.weeks() if w not in still_published]
    if expired:
        removed["scores"] += history.remove_weeks(expired)  # score rows, wherever they were kept
    return removed


def _tables_keyed_by_run() -> list[sa.Table]:
    """Tables other than scores and lists whose rows belong to one score run (foreign key to score_runs)."""
    from upstream.store import metadata

    named = {score_runs.name, scores.name, risk_lists.name}
    return [
        table
        for table in reversed(metadata.sorted_tables)
        if table.name not in named and any(fk.column.table is score_runs for fk in table.foreign_keys)
    ]


# --- the loop's reads ----------------------------------------------------------------------------------


def published_listings(engine: Engine, week_from: str | None = None, week_to: str | None = None) -> pl.DataFrame:
    """``person_id, week, locality`` of everyone on a published list (optionally weeks in [from, to])."""
    query = sa.select(risk_lists.c.person_id, risk_lists.c.week, risk_lists.c.locality).join(
        published_weeks, sa.and_(published_weeks.c.run_id == risk_lists.c.run_id,
                                 published_weeks.c.week == risk_lists.c.week))
    if week_from is not None:
        query = query.where(risk_lists.c.week >= week_from)
    if week_to is not None:
        query = query.where(risk_lists.c.week <= week_to)
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    return pl.DataFrame(rows, schema={"person_id": pl.String, "week": pl.String, "locality": pl.String},
                        orient="row")


# --- the API's reads (re-exported by serving.queries) --------------------------------------------------
#
# Every query reaches ``scores`` and ``risk_lists`` through ``published_weeks``, so rows of a run that failed
# or is still being written are never served (ARCHITECTURE: publishing is a pointer swap).


@dataclass(frozen=True)
class ServedWeek:
    """A published week as the API names it (with the model that scored it)."""

    week: str
    run_id: str
    index_date: date
    model_name: str | None
    model_version: str | None


def published(conn: Connection, week: str | None = None) -> ServedWeek | None:
    """The published run for ``week``, or the latest published week when ``week`` is None."""
    query = (
        sa.select(
            published_weeks.c.week,
            published_weeks.c.run_id,
            published_weeks.c.index_date,
            score_runs.c.model_name,
            score_runs.c.model_version,
        )
        .select_from(published_weeks.outerjoin(score_runs, score_runs.c.run_id == published_weeks.c.run_id))
        .order_by(published_weeks.c.week.desc())
        .limit(1)
    )
    if week is not None:
        query = query.where(published_weeks.c.week == week)
    row = conn.execute(query).first()
    return ServedWeek(**row._mapping) if row else None


def recent_weeks(conn: Connection, up_to: str, n: int) -> list[ServedWeek]:
    """The ``n`` published weeks ending at ``up_to``, oldest first (for trend charts)."""
    rows = conn.execute(
        sa.select(
            published_weeks.c.week,
            published_weeks.c.run_id,
            published_weeks.c.index_date,
            sa.null().label("model_name"),
            sa.null().label("model_version"),
        )
        .where(published_weeks.c.week <= up_to)
        .order_by(published_weeks.c.week.desc())
        .limit(n)
    ).all()
    return [ServedWeek(**row._mapping) for row in reversed(rows)]


def localities(conn: Connection, run_id: str) -> list[str]:
    """Localities scored in a published run."""
    if _summarised(conn, run_id):
        source = sa.select(score_summaries.c.locality).where(score_summaries.c.run_id == run_id)
    else:
        source = sa.select(scores.c.locality).where(scores.c.run_id == run_id)
    return sorted(set(conn.execute(source.distinct()).scalars()))


def locality_known(conn: Connection, run_id: str, locality: str) -> bool:
    """Whether the run scored anyone in ``locality`` (an empty list is still a valid answer)."""
    found = conn.execute(
        sa.select(sa.literal(1)).where(scores.c.run_id == run_id, scores.c.locality == locality).limit(1)
    ).first() or conn.execute(
        sa.select(sa.literal(1)).where(score_summaries.c.run_id == run_id, score_summaries.c.locality == locality)
        .limit(1)
    ).first()
    return found is not None


#: A list row's stored columns, as declared once in upstream.store / upstream.list_row (the structured reasons
#: are not part of the shown row; the locality is the caller's).
_LIST_FIELDS = tuple(name for name in LIST_ROW_COLUMNS if name not in ("locality", "reasons"))


@dataclass(frozen=True)
class ListFilter:
    """Cuts a team makes: a section, an offer id, a GP practice (None = all)."""

    section: str | None = None
    offer: str | None = None
    gp_practice: str | None = None


def _list_conditions(run_id: str, week: str, locality: str, cut: ListFilter) -> list:
    conditions = [risk_lists.c.run_id == run_id, risk_lists.c.week == week, risk_lists.c.locality == locality]
    if cut.section:
        conditions.append(risk_lists.c.section == cut.section)
    if cut.gp_practice:
        conditions.append(risk_lists.c.gp_practice == cut.gp_practice)
    if cut.offer:
        # ids are ";"-separated: match whole ids only ("telecare" must not match "telecare_plus")
        padded = sa.literal(";") + risk_lists.c.suggested_offers + sa.literal(";")
        conditions.append(padded.like(f"%;{cut.offer};%"))
    return conditions


def _published_lists():
    return risk_lists.join(
        published_weeks,
        sa.and_(published_weeks.c.run_id == risk_lists.c.run_id, published_weeks.c.week == risk_lists.c.week),
    )


def list_rows(
    conn: Connection,
    run_id: str,
    week: str,
    locality: str,
    limit: int | None = None,
    offset: int = 0,
    cut: ListFilter | None = None,
) -> tuple[list[dict], int]:
    """The published list for one locality and week, in rank order: (one page of rows, total matching).

    ``limit`` None = every row from ``offset``: lists are bounded (capacity plus risers), and a silently
    cut list is the failure this API must never have.
    """
    conditions = _list_conditions(run_id, week, locality, cut or ListFilter())
    total = conn.execute(
        sa.select(sa.func.count()).select_from(_published_lists()).where(*conditions)
    ).scalar_one()
    query = (
        sa.select(*(risk_lists.c[name] for name in _LIST_FIELDS))
        .select_from(_published_lists())
        .where(*conditions)
        .order_by(risk_lists.c.rank)
        .offset(offset)
    )
    if limit is not None:
        query = query.limit(limit)
    rows = [dict(zip(_LIST_FIELDS, row, strict=True)) for row in conn.execute(query).all()]
    return rows, int(total)


def list_facets(conn: Connection, run_id: str, week: str, locality: str) -> dict[str, list[str]]:
    """The GP practices and offers present in a published list (for the web page's filters)."""
    rows = conn.execute(
        sa.select(risk_lists.c.gp_practice, risk_lists.c.suggested_offers)
        .select_from(_published_lists())
        .where(*_list_conditions(run_id, week, locality, ListFilter()))
    ).all()
    practices = sorted({r.gp_practice for r in rows if r.gp_practice})
    offers = sorted({o for r in rows for o in (r.suggested_offers or "").split(";") if o})
    return {"gp_practices": practices, "offers": offers}


def list_offer_marks(conn: Connection, run_id: str, week: str, locality: str) -> list[dict]:
    """suggested_offers, offers_this_week, offers_waiting of every row of a published list (offer places)."""
    rows = conn.execute(
        sa.select(risk_lists.c.suggested_offers, risk_lists.c.offers_this_week, risk_lists.c.offers_waiting)
        .select_from(_published_lists())
        .where(*_list_conditions(run_id, week, locality, ListFilter()))
    ).all()
    return [dict(r._mapping) for r in rows]


def section_counts(conn: Connection, run_id: str, week: str, locality: str, cut: ListFilter) -> dict[str, int]:
    """Rows per section of a published list under a filter (the section part of ``cut`` is ignored)."""
    base = ListFilter(offer=cut.offer, gp_practice=cut.gp_practice)
    rows = conn.execute(
        sa.select(risk_lists.c.section, sa.func.count().label("n"))
        .select_from(_published_lists())
        .where(*_list_conditions(run_id, week, locality, base))
        .group_by(risk_lists.c.section)
    ).all()
    return {row.section: int(row.n) for row in rows}


def cohort_funnel(conn: Connection, run_id: str, week: str, locality: str) -> list[dict]:
    """A published week's (already suppressed) cohort funnel for one locality, in order."""
    rows = conn.execute(
        sa.select(cohort_funnels.c.step, cohort_funnels.c.label, cohort_funnels.c.people)
        .where(cohort_funnels.c.run_id == run_id, cohort_funnels.c.week == week, cohort_funnels.c.locality == locality)
        .order_by(cohort_funnels.c.position)
    ).all()
    return [dict(row._mapping) for row in rows]


def resident_history(conn: Connection, person_id: str, history: HistoryStore | None = None) -> list[dict]:
    """A resident's published scores, newest week first: the database's weeks, then the weeks that have moved to
    ``history``. ``reasons`` is the stored list, or None when the week's run did not explain this person (only
    listed people are explained in the run; ``pipelines.explain`` works out anyone else's on demand) and for
    the history store's weeks (it keeps no reasons)."""
    rows = conn.execute(
        sa.select(
            published_weeks.c.week,
            published_weeks.c.index_date,
            scores.c.locality,
            scores.c.score,
            scores.c.band,
            scores.c.reasons,
            scores.c.in_long_term_care,
        )
        .select_from(scores.join(published_weeks, published_weeks.c.run_id == scores.c.run_id))
        .where(scores.c.person_id == person_id)
        .order_by(published_weeks.c.week.desc())
    ).all()
    weeks = [dict(row._mapping) for row in rows]
    if history is None:
        return weeks
    stored = history.person(person_id)
    if stored.is_empty():
        return weeks
    in_db = {w["week"] for w in weeks}
    # Only weeks still published (retention may have just unpublished one) and not in the database.
    published_dates = dict(conn.execute(sa.select(published_weeks.c.week, published_weeks.c.index_date)).all())
    for row in stored.iter_rows(named=True):
        if row["week"] in in_db or published_dates.get(row["week"]) != row["index_date"]:
            continue
        weeks.append({"week": row["week"], "index_date": row["index_date"], "locality": row["locality"],
                      "score": row["score"], "band": row["band"], "reasons": None,
                      "in_long_term_care": row["in_long_term_care"]})
    return sorted(weeks, key=lambda w: w["week"], reverse=True)


def band_counts(conn: Connection, run_id: str) -> list[tuple[str, str, int]]:
    """(locality, band, residents) for a published run; suppression is applied by the caller."""
    if _summarised(conn, run_id):
        t, count = score_summaries, sa.func.sum(score_summaries.c.residents)
    else:
        t, count = scores, sa.func.count()
    rows = conn.execute(
        sa.select(t.c.locality, t.c.band, count.label("n"))
        .where(t.c.run_id == run_id)
        .group_by(t.c.locality, t.c.band)
        .order_by(t.c.locality, t.c.band)
    ).all()
    return [(row.locality, row.band, int(row.n)) for row in rows]


def score_histogram(conn: Connection, run_id: str, locality: str, bins: int = SUMMARY_BINS) -> list[int]:
    """Residents per equal-width score bin in [0, 1], counted in the database (the stored summary once the
    week's scores have moved to the history store)."""
    if bins == SUMMARY_BINS and _summarised(conn, run_id):
        rows = conn.execute(
            sa.select(score_summaries.c.score_bin.label("b"), sa.func.sum(score_summaries.c.residents).label("n"))
            .where(score_summaries.c.run_id == run_id, score_summaries.c.locality == locality)
            .group_by(score_summaries.c.score_bin)
        ).all()
    else:
        bin_expr = _bin_of(scores.c.score, bins)
        rows = conn.execute(
            sa.select(bin_expr.label("b"), sa.func.count().label("n"))
            .where(scores.c.run_id == run_id, scores.c.locality == locality)
            .group_by(bin_expr)
        ).all()
    counts = [0] * bins
    for row in rows:
        counts[max(0, min(bins - 1, int(row.b)))] += int(row.n)
    return counts


def new_entries(conn: Connection, weeks: list[ServedWeek], locality: str) -> list[tuple[str, int, int]]:
    """(week, new this week, listed) for each given published week."""
    out = []
    for pw in weeks:
        row = conn.execute(
            sa.select(
                sa.func.count().label("listed"),
                sa.func.coalesce(sa.func.sum(sa.case((risk_lists.c.section == "new", 1), else_=0)), 0).label("new"),
            ).where(risk_lists.c.run_id == pw.run_id, risk_lists.c.week == pw.week, risk_lists.c.locality == locality)
        ).one()
        out.append((pw.week, int(row.new), int(row.listed)))
    return out
