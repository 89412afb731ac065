"""Route behaviour through the real app and a real (SQLite) scored DB."""

from __future__ import annotations

import csv
import io

import openpyxl
import sqlalchemy as sa

from tests.serving.conftest import auth
from tests.serving.scored_db import EXPECTED_SUMMARY_W48
from upstream.store import audit_log, get_engine


def test_health_needs_no_key(client):
    r = client.get("/health")
    assert r.status_code == 200 and r.json() == {"status": "ok"}


def test_list_json_matches_published_rows_with_nhs_numbers_for_locality_key(client, keys, scored):
    r = client.get("/localities/North/rising-risk", headers=auth(keys["north"]))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["week"] == "2026-W48"  # latest *published* week, not the failed W49 run
    assert body["index_date"] == "2026-11-23"
    expected = scored.lists[("2026-W48", "North")]
    assert [row["person_id"] for row in body["rows"]] == [e["person_id"] for e in expected]
    assert [row["score"] for row in body["rows"]] == [0.9, 0.8, 0.7, 0.42, 0.41]
    assert [row["new_this_week"] for row in body["rows"]] == [False, False, True, True, True]
    for row in body["rows"]:
        assert row["nhs_number"] == scored.people[row["person_id"]].nhs_number
    assert body["rows"][0]["reasons"][0]["text"] == "2 falls in last 6 months"


def test_list_for_analyst_has_no_nhs_numbers(client, keys):
    body = client.get("/localities/South/rising-risk", headers=auth(keys["analyst"])).json()
    assert len(body["rows"]) == 4
    assert all(row["nhs_number"] is None for row in body["rows"])


def test_list_earlier_week_limit_and_unpublished_week(client, keys, scored):
    r = client.get("/localities/North/rising-risk?week=2026-W46&limit=2", headers=auth(keys["north"]))
    assert r.status_code == 200
    rows = r.json()["rows"]
    assert [row["score"] for row in rows] == [0.86, 0.76]  # W48 scores minus 0.04
    assert rows[0]["change_since_last_week"] is None
    # W49 exists in the DB but its run failed and was never published.
    assert client.get("/localities/North/rising-risk?week=2026-W49", headers=auth(keys["north"])).status_code == 404


def test_list_csv_rows(client, keys, scored):
    r = client.get("/localities/North/rising-risk?format=csv", headers=auth(keys["north"]))
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/csv")
    assert 'filename="rising-risk_North_2026-W48.csv"' in r.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert [row["rank"] for row in rows] == ["1", "2", "3", "4", "5"]
    assert rows[0]["score"] == "0.9"
    assert rows[0]["nhs_number"] == scored.people[rows[0]["person_id"]].nhs_number
    assert rows[0]["reasons"] == "2 falls in last 6 months; lives alone"  # rank 1 -> 2 reasons
    assert rows[2]["new_this_week"] == "yes" and rows[0]["new_this_week"] == "no"


def test_list_xlsx_opens_and_has_rows(client, keys, scored):
    r = client.get("/localities/South/rising-risk?format=xlsx", headers=auth(keys["analyst"]))
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    sheet = openpyxl.load_workbook(io.BytesIO(r.content)).active
    values = list(sheet.values)
    assert values[0][:3] == ("rank", "person_id", "score")  # analyst: no nhs_number column
    assert len(values) == 1 + 4
    assert values[1][2] == 0.68  # South's top score


def test_resident_score_latest_and_history(client, keys, scored):
    pid = scored.mover
    r = client.get(f"/residents/{pid}/score", headers=auth(keys["north"]))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["week"] == "2026-W48" and body["locality"] == "North"
    assert body["score"] == 0.41 and body["band"] == "moderate"
    assert body["nhs_number"] == scored.people[pid].nhs_number
    # Scope across time: the mover lived in South in W46, so North sees only W47 and W48 ...
    assert [h["week"] for h in body["history"]] == ["2026-W48", "2026-W47"]
    assert [h["score"] for h in body["history"]] == [0.41, 0.39]
    # ... South sees only W46, and no NHS number (no longer its resident) ...
    south = client.get(f"/residents/{pid}/score", headers=auth(keys["south"])).json()
    assert (south["week"], south["locality"], south["score"], south["nhs_number"]) == ("2026-W46", "South", 0.37, None)
    assert [h["week"] for h in south["history"]] == ["2026-W46"]
    # ... and a key for both, or an analyst, sees all three weeks.
    for who in ("both", "analyst"):
        body = client.get(f"/residents/{pid}/score", headers=auth(keys[who])).json()
        assert [h["score"] for h in body["history"]] == [0.41, 0.39, 0.37]


def test_resident_only_in_failed_run_is_not_found(client, keys, scored):
    r = client.get(f"/residents/{scored.failed_only}/score", headers=auth(keys["admin"]))
    assert r.status_code == 404


def test_summary_suppresses_and_rounds(client, keys):
    body = client.get("/summary", headers=auth(keys["analyst"])).json()
    assert body["week"] == "2026-W48"
    got = {(c["locality"], c["band"]): c["residents"] for c in body["cells"]}
    assert got == EXPECTED_SUMMARY_W48


def test_summary_for_locality_key_only_covers_its_localities(client, keys):
    body = client.get("/summary", headers=auth(keys["south"])).json()
    assert {c["locality"] for c in body["cells"]} == {"South"}


def test_bounded_parameters_are_rejected(client, keys, serving_settings):
    h = auth(keys["analyst"])
    too_many = serving_settings.serving.max_list_limit + 1
    assert client.get(f"/localities/North/rising-risk?limit={too_many}", headers=h).status_code == 422
    assert client.get("/localities/North/rising-risk?limit=0", headers=h).status_code == 422
    assert client.get("/localities/North/rising-risk?week=2026-48", headers=h).status_code == 422
    assert client.get("/localities/North/rising-risk?week=2026-W54", headers=h).status_code == 422
    assert client.get("/localities/North/rising-risk?format=pdf", headers=h).status_code == 422
    assert client.get("/residents/NOT-AN-ID/score", headers=h).status_code == 422
    assert client.get(f"/residents/{'a' * 65}/score", headers=h).status_code == 422


def test_person_level_access_is_audited(client, keys, scored, serving_settings):
    from serving.keys import create_key

    engine = get_engine(serving_settings.db_url)
    key = create_key(engine, "locality", ["South"], "audit probe")
    key_id = key.split("_")[1]
    north_pid = scored.in_locality("North")[0].person_id
    south_pid = scored.in_locality("South")[0].person_id
    assert client.get(f"/residents/{south_pid}/score", headers=auth(key)).status_code == 200
    assert client.get(f"/residents/{north_pid}/score", headers=auth(key)).status_code == 404
    assert client.get("/localities/North/rising-risk", headers=auth(key)).status_code == 403
    assert client.get("/localities/South/rising-risk?format=csv", headers=auth(key)).status_code == 200
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(audit_log.c.route, audit_log.c.person_id, audit_log.c.locality, audit_log.c.status_code, audit_log.c.role)
            .where(audit_log.c.key_id == key_id)
            .order_by(audit_log.c.id)
        ).all()
    assert [tuple(r) for r in rows] == [
        ("/residents/{person_id}/score", south_pid, "South", 200, "locality"),
        ("/residents/{person_id}/score", north_pid, None, 404, "locality"),
        ("/localities/{locality}/rising-risk", None, "North", 403, "locality"),
        ("/localities/{locality}/rising-risk", None, "South", 200, "locality"),
    ]


def test_admin_reads_audit_log(client, keys, scored, serving_settings):
    """Newest first, exactly ``limit`` rows (six accesses are made here, so at least six rows exist)."""
    from serving.keys import create_key

    key = create_key(get_engine(serving_settings.db_url), "locality", ["South"], "audit reader probe")
    south = scored.in_locality("South")
    for person in south[:6]:
        assert client.get(f"/residents/{person.person_id}/score", headers=auth(key)).status_code == 200
    r = client.get("/audit?limit=5", headers=auth(keys["admin"]))
    assert r.status_code == 200
    rows = r.json()
    assert [row["person_id"] for row in rows] == [p.person_id for p in reversed(south[1:6])]
    assert {(row["key_id"], row["status_code"], row["locality"]) for row in rows} == {(key.split("_")[1], 200, "South")}
    # Reading the audit log names people, so it is audited too: the next read shows the last one first.
    newest = client.get("/audit?limit=1", headers=auth(keys["admin"])).json()[0]
    assert (newest["key_id"], newest["route"], newest["status_code"]) == (keys["admin"].split("_")[1], "/audit", 200)


def test_bearer_token_works_like_header(client, keys):
    r = client.get("/summary", headers={"Authorization": f"Bearer {keys['analyst']}"})
    assert r.status_code == 200


def test_security_headers(client, keys):
    r = client.get("/summary", headers=auth(keys["analyst"]))
    assert r.headers["cache-control"] == "no-store"
    assert r.headers["x-content-type-options"] == "nosniff"
