"""The operational database: score history, weekly lists, API keys and the audit log.

SQLAlchemy Core, so the default SQLite file (WAL mode) and a PostgreSQL URL both work.
The pipeline writes scores and lists; the API reads them and writes keys and audit rows.
Publishing is a pointer swap in ``published_weeks``: a week's new run becomes visible in one
transaction, so a run that dies half-way never replaces the last good scores and lists.
"""

from __future__ import annotations

import json
from functools import cache
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

metadata = sa.MetaData()

score_runs = sa.Table(
    "score_runs",
    metadata,
    sa.Column("run_id", sa.String(64), primary_key=True),
    sa.Column("week", sa.String(8), nullable=False, index=True),  # ISO week, e.g. 2026-W48
    sa.Column("index_date", sa.Date, nullable=False),
    sa.Column("target", sa.String(40), nullable=False),
    sa.Column("model_name", sa.String(100), nullable=False),
    sa.Column("model_version", sa.String(20), nullable=False),
    sa.Column("status", sa.String(12), nullable=False),  # running | complete | failed
    sa.Column("n_scored", sa.Integer),
    sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("finished_at", sa.DateTime(timezone=True)),
)

scores = sa.Table(
    "scores",
    metadata,
    sa.Column("run_id", sa.String(64), sa.ForeignKey("score_runs.run_id"), nullable=False),
    sa.Column("person_id", sa.String(64), nullable=False),
    sa.Column("locality", sa.String(80), nullable=False),
    sa.Column("score", sa.Float, nullable=False),
    sa.Column("band", sa.String(20), nullable=False),
    # [{"feature", "value", "text", "contribution"}] of the people whose reasons the week's run read (everyone on
    # a list); NULL for everyone else, explained on demand from the week's features (pipelines.explain).
    sa.Column("reasons", sa.JSON(none_as_null=True), nullable=True),
    sa.Column("in_long_term_care", sa.Boolean, nullable=False, default=False),
    sa.PrimaryKeyConstraint("run_id", "person_id"),
    sa.Index("ix_scores_person", "person_id"),
    sa.Index("ix_scores_run_locality", "run_id", "locality"),
)

published_weeks = sa.Table(
    "published_weeks",
    metadata,
    sa.Column("week", sa.String(8), primary_key=True),
    sa.Column("run_id", sa.String(64), sa.ForeignKey("score_runs.run_id"), nullable=False),
    sa.Column("index_date", sa.Date, nullable=False),
    sa.Column("published_at", sa.DateTime(timezone=True), nullable=False),
)

risk_lists = sa.Table(
    "risk_lists",
    metadata,
    sa.Column("run_id", sa.String(64), sa.ForeignKey("score_runs.run_id"), nullable=False),
    sa.Column("week", sa.String(8), nullable=False),
    sa.Column("locality", sa.String(80), nullable=False),
    sa.Column("rank", sa.Integer, nullable=False),
    sa.Column("person_id", sa.String(64), nullable=False),
    sa.Column("score", sa.Float, nullable=False),
    sa.Column("band", sa.String(20), nullable=False),
    # The rest follows the one list row declaration (upstream.list_row.LIST_ROW).
    sa.Column("section", sa.String(10), nullable=False),  # new | rising | top
    sa.Column("change_points", sa.Float),  # percentage points since the comparison week; null if not scored then
    sa.Column("why_listed", sa.Text, nullable=False),
    sa.Column("what_changed", sa.Text),
    sa.Column("suggested_offers", sa.Text, nullable=False),  # offer ids, ";"-separated
    # Of suggested_offers: those within the offer's weekly capacity, and those beyond it (waiting list).
    sa.Column("offers_this_week", sa.Text),
    sa.Column("offers_waiting", sa.Text),
    sa.Column("offer_evidence", sa.Text, nullable=False),
    sa.Column("top_reasons", sa.Text, nullable=False),
    sa.Column("age_band", sa.String(10), nullable=False),
    sa.Column("gp_practice", sa.String(10)),
    sa.Column("reasons", sa.JSON, nullable=False),
    # Among the locality's capacity highest risks this week (whatever the section): next week's entry level.
    sa.Column("among_highest", sa.Boolean),
    sa.PrimaryKeyConstraint("run_id", "locality", "rank"),
    sa.Index("ix_lists_week_locality", "week", "locality"),
)

#: The stored columns of one list row (what the pipeline writes and the API reads); what is SHOWN is declared
#: in upstream.list_row.
LIST_ROW_COLUMNS: tuple[str, ...] = tuple(c.name for c in risk_lists.columns if c.name not in ("run_id", "week"))

cohort_funnels = sa.Table(
    "cohort_funnels",
    metadata,
    sa.Column("run_id", sa.String(64), sa.ForeignKey("score_runs.run_id"), nullable=False),
    sa.Column("week", sa.String(8), nullable=False),
    sa.Column("locality", sa.String(80), nullable=False),
    sa.Column("position", sa.Integer, nullable=False),  # residents, then each exclusion in order, then in cohort
    sa.Column("step", sa.String(60), nullable=False),  # "residents", a cohort reason id, or "in_cohort"
    sa.Column("label", sa.String(200), nullable=False),
    # Already small-number suppressed: null = 1-7 ("<8"), others rounded to 5. Raw counts are never stored.
    sa.Column("people", sa.Integer),
    sa.PrimaryKeyConstraint("run_id", "locality", "position"),
)

#: Per published week, residents by locality, band and score tenth: what the summary and histogram show for
#: a week whose scores have moved to the history store (``pipelines.history_store``). Written by
#: ``pipelines.score_history`` when it moves a week; raw counts, suppressed when shown like every count.
score_summaries = sa.Table(
    "score_summaries",
    metadata,
    sa.Column("run_id", sa.String(64), sa.ForeignKey("score_runs.run_id"), nullable=False),
    sa.Column("locality", sa.String(80), nullable=False),
    sa.Column("band", sa.String(20), nullable=False),
    sa.Column("score_bin", sa.Integer, nullable=False),  # 0..9: the score's tenth of [0, 1]
    sa.Column("residents", sa.Integer, nullable=False),
    sa.PrimaryKeyConstraint("run_id", "locality", "band", "score_bin"),
)

api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("key_id", sa.String(32), primary_key=True),
    sa.Column("key_hash", sa.String(128), nullable=False),
    sa.Column("role", sa.String(20), nullable=False),  # locality | analyst | admin
    sa.Column("localities", sa.JSON, nullable=False),
    sa.Column("label", sa.String(200)),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("revoked_at", sa.DateTime(timezone=True)),
)

audit_log = sa.Table(
    "audit_log",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("key_id", sa.String(32), nullable=False),
    sa.Column("role", sa.String(20), nullable=False),
    sa.Column("route", sa.String(200), nullable=False),
    sa.Column("person_id", sa.String(64)),
    sa.Column("locality", sa.String(80)),
    sa.Column("week", sa.String(8)),
    sa.Column("status_code", sa.Integer, nullable=False),
    # What left the server: json | csv | xlsx | html (None for refusals, which carry nothing).
    sa.Column("format", sa.String(8)),
    # A refused request's subject as given but not valid (an NHS number, a malformed id): keyed hash only.
    sa.Column("subject_hash", sa.String(64)),
)

#: Web sign-in sessions (serving.sessions): the browser holds a random id, the server only its SHA-256.
web_sessions = sa.Table(
    "web_sessions",
    metadata,
    sa.Column("session_hash", sa.String(64), primary_key=True),
    sa.Column("key_id", sa.String(32), nullable=False, index=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("revoked_at", sa.DateTime(timezone=True)),
)

#: Columns added after the first release: (table, column) -> DDL type, added in place on older databases.
_ADDED_COLUMNS = {("audit_log", "format"): "VARCHAR(8)", ("audit_log", "subject_hash"): "VARCHAR(64)",
                  ("risk_lists", "offers_this_week"): "TEXT", ("risk_lists", "offers_waiting"): "TEXT",
                  ("risk_lists", "among_highest"): "BOOLEAN"}

#: One row per weekly flow run (issue 16): what the analysts' run-history page shows.
weekly_runs = sa.Table(
    "weekly_runs",
    metadata,
    sa.Column("flow_run_id", sa.String(64), primary_key=True),
    sa.Column("week", sa.String(8), index=True),
    sa.Column("index_date", sa.Date),
    sa.Column("state", sa.String(40), nullable=False),  # running | completed | completed with warnings | failed
    sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("finished_at", sa.DateTime(timezone=True)),
    sa.Column("timings", sa.JSON, nullable=False, default=dict),  # step -> seconds
    sa.Column("delivery", sa.JSON, nullable=False, default=dict),  # source -> {rows_in, rows_valid, rows_quarantined}
    sa.Column("score_run_id", sa.String(64)),
    sa.Column("model_name", sa.String(100)),
    sa.Column("model_version", sa.String(20)),
    sa.Column("training_run_id", sa.String(64)),  # MLflow run of a model trained by this flow run
    sa.Column("monitoring_run_id", sa.String(64)),  # MLflow run holding this week's monitoring metrics
    sa.Column("data_docs", sa.String(500)),  # path of the GX Data Docs index
    sa.Column("warnings", sa.JSON, nullable=False, default=list),  # short texts, no personal data
    sa.Column("error", sa.Text),
)

#: Monitoring results, one row per check per week (issue 16); read by the analysts' monitoring page.
monitoring_results = sa.Table(
    "monitoring_results",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("week", sa.String(8), nullable=False, index=True),
    sa.Column("index_date", sa.Date, nullable=False),
    sa.Column("flow_run_id", sa.String(64)),
    sa.Column("kind", sa.String(30), nullable=False),  # feature_drift | score_drift | volume | quarantine | ...
    sa.Column("subject", sa.String(100), nullable=False),  # feature, source or scored week
    sa.Column("metric", sa.String(40), nullable=False),  # psi | relative_change | auroc | o_e | ...
    sa.Column("value", sa.Float),
    sa.Column("threshold", sa.Float),
    sa.Column("status", sa.String(10), nullable=False),  # ok | warn | alert | info
    sa.Column("model_version", sa.String(20)),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)

#: What a team did for a listed person in a week (loop/actions.py declares the actions and their rules).
actions = sa.Table(
    "actions",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("person_id", sa.String(64), nullable=False),
    sa.Column("week", sa.String(8), nullable=False),  # ISO week of the listing, e.g. 2025-W20
    sa.Column("action", sa.String(20), nullable=False),
    sa.Column("offer", sa.String(60)),
    sa.Column("reason", sa.String(500)),
    sa.Column("locality", sa.String(80)),
    sa.Column("source", sa.String(200), nullable=False),  # "import:<file name>" or "api:<key id>"
    sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
    sa.UniqueConstraint("person_id", "week", "action", "offer", name="uq_actions_person_week_action_offer"),
    sa.Index("ix_actions_week", "week"),
)

#: Outcome follow-up of every listed person (loop/outcomes.py): one row per person, listing week and window,
#: written once the window has closed in the data.
listing_outcomes = sa.Table(
    "listing_outcomes",
    metadata,
    sa.Column("person_id", sa.String(64), nullable=False),
    sa.Column("week", sa.String(8), nullable=False),
    sa.Column("window", sa.String(8), nullable=False),  # 91d | 6m | 12m
    sa.Column("locality", sa.String(80), nullable=False),
    sa.Column("emergency_admission", sa.Boolean, nullable=False),
    sa.Column("care_escalation", sa.Boolean, nullable=False),
    sa.Column("death", sa.Boolean, nullable=False),
    sa.Column("computed_at", sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint("person_id", "week", "window"),
    sa.Index("ix_outcomes_week_locality", "week", "locality"),
)


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


class EncodedJSON(str):
    """JSON text the pipeline already encoded (a resident's reasons, ``pipelines.scoring.encode_reasons``).

    A JSON column stores it as it is: without this, the text would be stored as a JSON *string*, so every
    row had to be decoded into Python objects only for the driver to encode them again (1.9M rows a week).
    """

    def __new__(cls, text: str) -> EncodedJSON:
        if not isinstance(text, str):  # None would be stored as the text "None"
            raise TypeError(f"EncodedJSON takes JSON text, not {type(text).__name__}")
        return super().__new__(cls, text)


def _json_serializer(value: Any) -> str:
    """The engine's JSON encoder: pre-encoded text goes through untouched, anything else is ``json.dumps``-ed."""
    return str.__str__(value) if isinstance(value, EncodedJSON) else json.dumps(value)


@cache
def get_engine(url: str) -> Engine:
    """One engine per URL; creates the tables if missing (idempotent)."""
    if url.startswith("sqlite:///"):
        from pathlib import Path

        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(url, future=True, pool_pre_ping=True, json_serializer=_json_serializer)
    if engine.dialect.name == "sqlite":
        sa.event.listen(engine, "connect", _sqlite_pragmas)
    metadata.create_all(engine)
    _add_missing_columns(engine)
    _allow_null_reasons(engine)
    return engine


def _add_missing_columns(engine: Engine) -> None:
    """Bring a database made by an older release up to the current tables (additive columns only)."""
    inspector = sa.inspect(engine)
    for (table, column), ddl in _ADDED_COLUMNS.items():
        if column not in {c["name"] for c in inspector.get_columns(table)}:
            with engine.begin() as conn:
                conn.execute(sa.text(f"ALTER TABLE {table} ADD COLUMN {column} {ddl}"))


def _allow_null_reasons(engine: Engine) -> None:
    """A database made before reasons became optional has ``scores.reasons NOT NULL``: drop that constraint.

    PostgreSQL does it in place. SQLite cannot alter a column, so the table is rebuilt once (SQLite's own
    "12-step" procedure: new table, copy, drop, rename, indexes) in one transaction; at two weeks of a county
    (3.6M rows) that is a minute, once.
    """
    found = {c["name"]: c for c in sa.inspect(engine).get_columns("scores")}
    if found["reasons"]["nullable"]:
        return
    if engine.dialect.name == "postgresql":
        with engine.begin() as conn:
            conn.execute(sa.text("ALTER TABLE scores ALTER COLUMN reasons DROP NOT NULL"))
        return
    if engine.dialect.name != "sqlite":
        raise RuntimeError(f"cannot make scores.reasons nullable on {engine.dialect.name}: alter it by hand")
    from sqlalchemy.schema import CreateIndex, CreateTable

    def sql(element: Any) -> str:
        return str(element.compile(dialect=engine.dialect)).strip()

    names = ", ".join(c.name for c in scores.columns)
    raw = engine.raw_connection()
    try:
        dbapi = raw.driver_connection  # sqlite3 in autocommit, so BEGIN ... COMMIT holds the DDL too
        previous, dbapi.isolation_level = dbapi.isolation_level, None
        cursor = dbapi.cursor()
        cursor.execute("PRAGMA foreign_keys=OFF")  # only outside a transaction; nothing refers to scores
        try:
            cursor.execute("BEGIN IMMEDIATE")
            try:
                cursor.execute(sql(CreateTable(scores)).replace("CREATE TABLE scores", "CREATE TABLE scores_rebuilt", 1))
                cursor.execute(f"INSERT INTO scores_rebuilt ({names}) SELECT {names} FROM scores")
                cursor.execute("DROP TABLE scores")
                cursor.execute("ALTER TABLE scores_rebuilt RENAME TO scores")
                for index in scores.indexes:
                    cursor.execute(sql(CreateIndex(index)))
                cursor.execute("COMMIT")
            except BaseException:
                cursor.execute("ROLLBACK")
                raise
        finally:
            cursor.execute("PRAGMA foreign_keys=ON")
            dbapi.isolation_level = previous
    finally:
        raw.close()
