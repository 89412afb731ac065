"""An unexpected server error answers 500 without putting SQL parameters (person ids) in the logs."""

from __future__ import annotations

import logging
import sqlite3

from fastapi.testclient import TestClient

from serving.app import create_app
from serving.keys import create_key
from tests.serving.scored_db import write_hand_scored_db
from upstream.settings import Settings
from upstream.store import get_engine


def test_database_error_is_500_and_logs_no_person_id(tmp_path, caplog):
    settings = Settings(home=tmp_path, pseudo_key="test-key-not-secret")
    truth = write_hand_scored_db(settings)
    key = create_key(get_engine(settings.db_url), "analyst", [])
    person = truth.in_locality("South")[0]
    db = sqlite3.connect(tmp_path / "upstream.db")
    db.execute("ALTER TABLE scores RENAME TO scores_moved")  # the resident query now fails inside the driver
    db.commit()
    db.close()
    caplog.set_level(logging.DEBUG)
    with TestClient(create_app(settings)) as client:
        r = client.get(f"/residents/{person.person_id}/score", headers={"X-API-Key": key})
    assert r.status_code == 500 and r.json() == {"detail": "internal error"}
    app_records = [rec for rec in caplog.records if not rec.name.startswith("httpx")]
    messages = "\n".join(rec.getMessage() + (str(rec.exc_info) if rec.exc_info else "") for rec in app_records)
    assert "unhandled OperationalError on /residents/{person_id}/score" in messages
    assert person.person_id not in messages
