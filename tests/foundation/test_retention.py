"""Retention is enforced, not just written down: old audit rows, sessions and scored weeks are deleted."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import sqlalchemy as sa

from upstream.cli import main
from upstream.retention import enforce_retention
from upstream.settings import Settings
from upstream.store import audit_log, get_engine, published_weeks, risk_lists, score_runs, scores, web_sessions

NOW = datetime(2026, 11, 29, 12, tzinfo=UTC)


def _seed(settings: Settings) -> None:
    engine = get_engine(settings.db_url)
    with engine.begin() as conn:
        for days_ago in (10, 400, 3000):  # kept, kept, past 8 x 366 = 2928 days
            conn.execute(audit_log.insert().values(at=NOW - timedelta(days=days_ago), key_id="k", role="admin",
                                                   route="/audit", status_code=200))
        for i, expired_days_ago in enumerate((-1, 3, 30)):  # live, expired 3 days ago, expired 30 days ago
            conn.execute(web_sessions.insert().values(
                session_hash=f"{i:064d}", key_id="k", created_at=NOW - timedelta(days=60),
                expires_at=NOW - timedelta(days=expired_days_ago)))
        for run_id, index_date in (("old", date(2024, 10, 1)), ("new", date(2026, 11, 23))):  # 112 and 1 weeks ago
            conn.execute(score_runs.insert().values(
                run_id=run_id, week=f"W-{run_id}", index_date=index_date, target="crisis", model_name="m",
                model_version="1", status="complete", started_at=NOW))
            conn.execute(published_weeks.insert().values(week=f"W-{run_id}", run_id=run_id, index_date=index_date,
                                                         published_at=NOW))
            for n in range(3):
                conn.execute(scores.insert().values(run_id=run_id, person_id=f"{run_id}{n}", locality="North",
                                                    score=0.5, band="high", reasons=[], in_long_term_care=False))
            conn.execute(risk_lists.insert().values(
                run_id=run_id, week=f"W-{run_id}", locality="North", rank=1, person_id=f"{run_id}0", score=0.5,
                band="high", change_since_last_week=None, new_this_week=True, reason_for_listing="top_band",
                reasons=[]))


def test_enforce_retention_deletes_only_what_is_past_its_period(tmp_path):
    settings = Settings(home=tmp_path)
    _seed(settings)
    removed = enforce_retention(settings, now=NOW)
    # Defaults: audit 2928 days, sessions 7 days after expiry, weeks 104 weeks.
    assert removed == {"audit_rows": 1, "web_sessions": 1, "score_runs": 1, "scores": 3, "list_rows": 1}
    with get_engine(settings.db_url).connect() as conn:
        assert conn.execute(sa.select(score_runs.c.run_id)).scalars().all() == ["new"]
        assert conn.execute(sa.select(sa.func.count()).select_from(scores)).scalar_one() == 3
        assert conn.execute(sa.select(sa.func.count()).select_from(web_sessions)).scalar_one() == 2
    assert enforce_retention(settings, now=NOW) == dict.fromkeys(removed, 0)  # idempotent


def test_retention_can_keep_everything(tmp_path):
    settings = Settings(home=tmp_path, retention={"audit_days": None, "score_weeks": None})
    _seed(settings)
    removed = enforce_retention(settings, now=NOW)
    assert removed["audit_rows"] == removed["score_runs"] == 0


def test_retention_command(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("UPSTREAM_HOME", str(tmp_path))
    from upstream.settings import get_settings

    get_settings.cache_clear()
    try:
        assert main(["retention"]) == 0
    finally:
        get_settings.cache_clear()
    assert "retention: removed 0 audit rows" in capsys.readouterr().out
