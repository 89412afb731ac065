"""The PostgreSQL option, for real: the weekly flow writes scores and lists to a PostgreSQL server, a re-run
replaces the week without duplicating history, and the API serves them.

Needs a server: ``UPSTREAM_TEST_POSTGRES_URL``, the URL of a role that may create databases (CREATEDB; no
superuser needed). ``test.sh``, run as root (as CI does), starts a throwaway cluster in a temporary directory
on an ephemeral port with a random password, and removes it afterwards; elsewhere this module is skipped,
saying why. Each run gets its own, freshly created database, dropped afterwards.
"""

from __future__ import annotations

import os
import uuid

import pytest
import sqlalchemy as sa

SERVER_URL = os.environ.get("UPSTREAM_TEST_POSTGRES_URL")
pytestmark = pytest.mark.skipif(not SERVER_URL, reason="UPSTREAM_TEST_POSTGRES_URL is not set (test.sh sets it as root)")


@pytest.fixture(scope="module")
def postgres_url():
    server = sa.create_engine(SERVER_URL, isolation_level="AUTOCOMMIT")
    name = f"upstream_test_{uuid.uuid4().hex[:10]}"
    with server.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield server.url.set(database=name).render_as_string(hide_password=False)
    finally:
        with server.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        server.dispose()


@pytest.fixture(scope="module")
def weekly_on_postgres(tmp_path_factory, prefect_harness, small_delivery_gate, postgres_url):
    from pipelines.flows import weekly
    from pipelines.weeks import delivery_extract_date
    from synthetic.generate import generate_delivery

    root = tmp_path_factory.mktemp("postgres")
    generate_delivery(root / "raw", residents=2000, seed=8)
    extract = delivery_extract_date(root / "raw")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("UPSTREAM_DATABASE_URL", postgres_url)
        first = weekly(str(root / "raw"), extract, train="always", home=str(root / "home"))
        again = weekly(str(root / "raw"), extract, train="never", home=str(root / "home"))
        yield root / "home", first, again


def test_flow_writes_to_postgres_and_a_rerun_replaces_the_week(weekly_on_postgres, postgres_url):
    from upstream.store import published_weeks, risk_lists, score_runs, scores

    _, first, again = weekly_on_postgres
    assert again["replaced_run_id"] == first["run_id"]
    engine = sa.create_engine(postgres_url)
    assert engine.dialect.name == "postgresql"
    with engine.connect() as conn:
        count = {t.name: conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one()
                 for t in (score_runs, scores, published_weeks, risk_lists)}
        published = conn.execute(sa.select(published_weeks.c.run_id)).scalar_one()
    engine.dispose()
    assert published == again["run_id"] != first["run_id"]
    # One run and one list per week survive: history is replaced, not duplicated.
    assert count["score_runs"] == count["published_weeks"] == 1
    assert count["scores"] == again["n_scored"] > 1500
    assert count["risk_lists"] > 0


def test_api_serves_from_postgres(weekly_on_postgres, postgres_url):
    from fastapi.testclient import TestClient

    from serving.app import create_app
    from serving.keys import create_key
    from upstream.settings import Settings
    from upstream.store import get_engine

    home, _, again = weekly_on_postgres
    settings = Settings(home=home, database_url=postgres_url)
    engine = get_engine(settings.db_url)
    admin = {"X-API-Key": create_key(engine, "admin", [])}
    with TestClient(create_app(settings)) as client:
        summary = client.get("/summary", headers=admin).json()
        locality = max(summary["cells"], key=lambda cell: cell["residents"] or 0)["locality"]
        listed = client.get(f"/localities/{locality}/rising-risk?limit=5", headers=admin)
        assert listed.status_code == 200 and listed.json()["week"] == again["week"]
        rows = listed.json()["rows"]
        assert [r["rank"] for r in rows] == [1, 2, 3, 4, 5] and all(r["top_reasons"] for r in rows)
        person = rows[0]["person_id"]
        score = client.get(f"/residents/{person}/score", headers=admin).json()
        # Listed: explained at publishing, stored with the score through PostgreSQL's JSON column.
        assert score["reasons"] and score["reasons_note"] is None
        assert [r["text"] for r in score["reasons"]] == rows[0]["top_reasons"].split("; ")
        # The list shows the same stored score, as a percentage with one decimal (upstream.list_row).
        shown = rows[0]["risk_percent"]
        assert shown.endswith("%") and score["score"] * 100 == pytest.approx(float(shown.strip("<> %")), abs=0.05)
        csv = client.get(f"/localities/{locality}/rising-risk?limit=5&format=csv", headers=admin)
        assert csv.status_code == 200 and csv.text.count("\n") == 6
        audit = client.get("/audit?limit=10", headers=admin).json()
    assert {row["route"] for row in audit} >= {"/localities/{locality}/rising-risk", "/residents/{person_id}/score"}
