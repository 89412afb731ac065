"""Retention: delete what the governance pack says is kept no longer (docs/governance/retention.md).

Why a plain function with an explicit ``now``: the lead runs it weekly (``upstream retention``, or a cron
line next to the weekly flow), tests run it at a chosen date, and it reports what it removed by kind so the
run log shows that retention is actually enforced. Only counts are reported, never people.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from upstream.settings import Settings
from upstream.store import audit_log, get_engine, web_sessions


def enforce_retention(settings: Settings, now: datetime | None = None) -> dict[str, int]:
    """Delete audit rows, web sessions and scored weeks older than their retention settings; rows removed by kind."""
    now = now or datetime.now(UTC)
    policy = settings.retention
    engine = get_engine(settings.db_url)
    removed = {"audit_rows": 0, "web_sessions": 0, "score_runs": 0, "scores": 0, "list_rows": 0}
    with engine.begin() as conn:
        if policy.audit_days is not None:
            cutoff = now - timedelta(days=policy.audit_days)
            removed["audit_rows"] = conn.execute(audit_log.delete().where(audit_log.c.at < cutoff)).rowcount
        session_cutoff = now - timedelta(days=policy.session_days)
        removed["web_sessions"] = conn.execute(
            web_sessions.delete().where(
                sa.or_(web_sessions.c.expires_at < session_cutoff, web_sessions.c.revoked_at < session_cutoff)
            )
        ).rowcount
    if policy.score_weeks is not None:
        # Score tables and the history store are pipelines.score_history's (one path for score history).
        from pipelines.score_history import expire_score_weeks, history_store

        oldest_kept = (now - timedelta(weeks=policy.score_weeks)).date()
        removed.update(expire_score_weeks(engine, history_store(settings), oldest_kept))
    return removed

