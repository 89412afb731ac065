"""The operational database: score history, weekly lists, API keys and the audit log.

SQLAlchemy Core, so the default SQLite file (WAL mode) and a PostgreSQL URL both work.
The pipeline writes scores and lists; the API reads them and writes keys and audit rows.
Publishing is a pointer swap in ``published_weeks``: a week's new run becomes visible in one
transaction, so a run that dies half-way never replaces the last good scores and lists.
"""

from __future__ import annotations

from functools import cache

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
    sa.Column("reasons", sa.JSON, nullable=False),  # [{"feature", "value", "text", "contribution"}]
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
    sa.Column("change_since_last_week", sa.Float),  # null when not scored last week
    sa.Column("new_this_week", sa.Boolean, nullable=False),
    sa.Column("reason_for_listing", sa.String(20), nullable=False),  # top_band | risk_rise | both
    sa.Column("reasons", sa.JSON, nullable=False),
    sa.PrimaryKeyConstraint("run_id", "locality", "rank"),
    sa.Index("ix_lists_week_locality", "week", "locality"),
)

#: The columns of one published list row, in order (what lists, exports and the API share).
LIST_ROW_COLUMNS: tuple[str, ...] = tuple(c.name for c in risk_lists.columns if c.name not in ("run_id", "week"))

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
_ADDED_COLUMNS = {("audit_log", "format"): "VARCHAR(8)", ("audit_log", "subject_hash"): "VARCHAR(64)"}


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


@cache
def get_engine(url: str) -> Engine:
    """One engine per URL; creates the tables if missing (idempotent)."""
    if url.startswith("sqlite:///"):
        from pathlib import Path

        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(url, future=True, pool_pre_ping=True)
    if engine.dialect.name == "sqlite":
        sa.event.listen(engine, "connect", _sqlite_pragmas)
    metadata.create_all(engine)
    _add_missing_columns(engine)
    return engine


def _add_missing_columns(engine: Engine) -> None:
    """Bring a database made by an older release up to the current tables (additive columns only)."""
    inspector = sa.inspect(engine)
    for (table, column), ddl in _ADDED_COLUMNS.items():
        if column not in {c["name"] for c in inspector.get_columns(table)}:
            with engine.begin() as conn:
                conn.execute(sa.text(f"ALTER TABLE {table} ADD COLUMN {column} {ddl}"))
