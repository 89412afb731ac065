"""The resident route reads a year of history from both tiers (database and history store), with the same
scope, audit and 404 rules as before. Weeks are the hand-written ones of tests/pipelines/test_history_store.py,
published through the real write path; the database keeps the newest two, the store the other six."""

from __future__ import annotations

import sqlalchemy as sa
from fastapi.testclient import TestClient

from pipelines.score_history import history_store, settle_history
from serving.app import create_app
from serving.keys import create_key
from tests.pipelines.test_history_store import LEAVER, STAYER, WEEKS, _publish, _week_rows
from upstream.settings import Settings
from upstream.store import audit_log, get_engine


def test_the_resident_route_returns_the_hand_written_year(tmp_path):
    settings = Settings(home=tmp_path, pseudo_key="test-key-not-secret", retention={"database_score_weeks": 2})
    engine = get_engine(settings.db_url)
    for k, week in enumerate(WEEKS):
        _publish(engine, week, _week_rows(k, week))
        settle_history(engine, history_store(settings), 2)
    assert len(history_store(settings).weeks()) == 6  # the route below really reads the store
    north = create_key(engine, "locality", ["North"])
    south = create_key(engine, "locality", ["South"])
    with TestClient(create_app(settings)) as client:
        body = client.get(f"/residents/{STAYER}/score", headers={"X-API-Key": north}).json()
        leaver = client.get(f"/residents/{LEAVER}/score", headers={"X-API-Key": south})
        hidden = client.get(f"/residents/{LEAVER}/score", headers={"X-API-Key": north})
    # Stayer: latest week W44 (score 0.17, high, its reasons from the database), then all eight weeks.
    assert (body["week"], body["score"], body["band"]) == ("2026-W44", 0.17, "high")
    assert [r["text"] for r in body["reasons"]] == ["1 fall"]
    assert [(h["week"], h["index_date"], h["score"], h["band"]) for h in body["history"]] == [
        ("2026-W44", "2026-10-26", 0.17, "high"), ("2026-W43", "2026-10-19", 0.16, "high"),
        ("2026-W42", "2026-10-12", 0.15, "high"), ("2026-W41", "2026-10-05", 0.14, "high"),
        ("2026-W40", "2026-09-28", 0.13, "moderate"), ("2026-W39", "2026-09-21", 0.12, "moderate"),
        ("2026-W38", "2026-09-14", 0.11, "moderate"), ("2026-W37", "2026-09-07", 0.10, "moderate")]
    # Leaver: scored W37-W39 in South only, all three now in the history store (no reasons kept there), and
    # W39's features are not on disk either: no reasons, and the response says why rather than guessing.
    assert leaver.status_code == 200
    assert (leaver.json()["week"], leaver.json()["locality"], leaver.json()["reasons"]) == ("2026-W39", "South", [])
    assert "Reasons for 2026-W39 are not available" in leaver.json()["reasons_note"]
    assert body["reasons_note"] is None
    assert [h["week"] for h in leaver.json()["history"]] == ["2026-W39", "2026-W38", "2026-W37"]
    # Scope holds across the store: North never saw the leaver, so the same 404 as for nobody.
    assert hidden.status_code == 404
    with engine.connect() as conn:
        audited = conn.execute(sa.select(audit_log.c.person_id, audit_log.c.status_code, audit_log.c.week)
                               .order_by(audit_log.c.id)).all()
    assert [tuple(a) for a in audited] == [(STAYER, 200, "2026-W44"), (LEAVER, 200, "2026-W39"), (LEAVER, 404, None)]
