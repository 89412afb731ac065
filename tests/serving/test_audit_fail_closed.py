"""No audit row, no data: a locked audit log gives 503, never unaudited person-level data."""

from __future__ import annotations

import sqlite3

import sqlalchemy as sa
from fastapi.testclient import TestClient

from serving.app import create_app
from serving.keys import create_key
from tests.serving.scored_db import write_hand_scored_db
from upstream.settings import Settings
from upstream.store import get_engine


def test_locked_audit_log_fails_closed(tmp_path):
    settings = Settings(home=tmp_path, pseudo_key="test-key-not-secret")
    truth = write_hand_scored_db(settings)
    engine = get_engine(settings.db_url)
    # Wait 0.2 s (not the production 10 s) for the lock, to keep the test short.
    sa.event.listen(engine, "checkout", lambda conn, _rec, _proxy: conn.execute("PRAGMA busy_timeout=200"))
    key = create_key(engine, "locality", ["North"])
    person = truth.in_locality("North")[0]
    with TestClient(create_app(settings)) as client:
        assert client.get(f"/residents/{person.person_id}/score", headers={"X-API-Key": key}).status_code == 200
        blocker = sqlite3.connect(tmp_path / "upstream.db", isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")  # a long pipeline write holds the write lock
        try:
            for path in (f"/residents/{person.person_id}/score", "/localities/North/rising-risk?format=csv"):
                r = client.get(path, headers={"X-API-Key": key})
                assert r.status_code == 503
                assert r.headers["retry-after"] == "30"
                assert person.person_id not in r.text and person.nhs_number not in r.text
            assert client.get("/summary", headers={"X-API-Key": key}).status_code == 200  # aggregates still work
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        assert client.get(f"/residents/{person.person_id}/score", headers={"X-API-Key": key}).status_code == 200
