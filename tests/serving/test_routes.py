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
    assert [row["risk_percent"] for row in body["rows"]] == ["90.0%", "80.0%", "70.0%", "42.0%", "41.0%"]
    assert [row["section"] for row in body["rows"]] == ["top", "top", "new", "new", "new"]
    for row in body["rows"]:
        assert row["nhs_number"] == scored.people[row["person_id"]].nhs_number
    assert body["rows"][0]["top_reasons"] == "2 falls in last 6 months; lives alone"
    assert (body["total"], body["count"], body["partial"], body["next_offset"]) == (5, 5, False, None)
    assert r.headers["x-total-count"] == "5" and r.headers["x-partial"] == "false"
    # places by hand (scored_db): rank 1 has both offers this week, rank 3 falls only, rank 5 waits for both
    marks = [(row["rank"], row["offers_this_week"], row["offers_waiting"]) for row in body["rows"] if row["rank"] % 2]
    assert marks == [(1, "falls_prevention;telecare", ""), (3, "falls_prevention", "telecare"),
                     (5, "", "falls_prevention;telecare")]
    # per offer, over the whole list: weekly places (shipped catalogue) against people suggested (suppressed)
    offers = {o["offer"]: o for o in body["offers"]}
    assert offers["falls_prevention"] == {"offer": "falls_prevention", "title": "Falls prevention",
                                          "weekly_capacity": 20, "suggested": "<8", "with_place": "<8",
                                          "waiting": "<8"}
    assert offers["bereavement_support"]["suggested"] == "0" and offers["reablement"]["weekly_capacity"] == 10


def test_list_for_analyst_has_no_nhs_numbers(client, keys):
    body = client.get("/localities/South/rising-risk", headers=auth(keys["analyst"])).json()
    assert len(body["rows"]) == 4
    assert all(row["nhs_number"] is None for row in body["rows"])


def test_list_earlier_week_paging_and_unpublished_week(client, keys, scored):
    r = client.get("/localities/North/rising-risk?week=2026-W46&limit=2", headers=auth(keys["north"]))
    assert r.status_code == 200
    body = r.json()
    assert [row["risk_percent"] for row in body["rows"]] == ["86.0%", "76.0%"]  # W48 scores minus 0.04
    assert body["rows"][0]["change_points"] is None
    # a page says so: 2 of 5, and where the next page starts
    assert (body["total"], body["count"], body["partial"], body["next_offset"]) == (5, 2, True, 2)
    last = client.get("/localities/North/rising-risk?week=2026-W46&limit=2&offset=4", headers=auth(keys["north"]))
    assert [r["rank"] for r in last.json()["rows"]] == [5] and last.json()["next_offset"] is None
    assert last.json()["partial"] is True
    # W49 exists in the DB but its run failed and was never published.
    assert client.get("/localities/North/rising-risk?week=2026-W49", headers=auth(keys["north"])).status_code == 404


def test_list_filters_by_section_offer_and_practice(client, keys, scored):
    h = auth(keys["north"])
    new = client.get("/localities/North/rising-risk?section=new", headers=h).json()
    assert [r["rank"] for r in new["rows"]] == [3, 4, 5] and new["total"] == 3 and new["partial"] is False
    # ranks 1, 3, 5 have falls_prevention;telecare (odd ranks)
    telecare = client.get("/localities/North/rising-risk?offer=telecare", headers=h).json()
    assert [r["rank"] for r in telecare["rows"]] == [1, 3, 5]
    assert client.get("/localities/North/rising-risk?offer=tele", headers=h).json()["total"] == 0  # whole ids
    practice = client.get("/localities/North/rising-risk?gp_practice=G82001", headers=h).json()
    assert [r["rank"] for r in practice["rows"]] == [1, 2]
    both = client.get("/localities/North/rising-risk?gp_practice=G82002&offer=falls_prevention&format=csv",
                      headers=h)
    assert [row["rank"] for row in csv.DictReader(io.StringIO(both.text))] == ["3", "5"]
    assert both.headers["x-total-count"] == "2"


def test_list_csv_rows(client, keys, scored):
    r = client.get("/localities/North/rising-risk?format=csv", headers=auth(keys["north"]))
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/csv")
    assert 'filename="rising-risk_North_2026-W48.csv"' in r.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert [row["rank"] for row in rows] == ["1", "2", "3", "4", "5"]
    assert rows[0]["risk_percent"] == "90.0%"
    assert rows[0]["nhs_number"] == scored.people[rows[0]["person_id"]].nhs_number
    assert rows[0]["top_reasons"] == "2 falls in last 6 months; lives alone"  # rank 1 -> 2 reasons
    assert rows[2]["section"] == "new" and rows[0]["section"] == "top"
    assert rows[2]["what_changed"] == "emergency admission on 12 Nov 2026" and rows[0]["what_changed"] == ""


def test_list_xlsx_opens_and_has_rows(client, keys, scored):
    r = client.get("/localities/South/rising-risk?format=xlsx", headers=auth(keys["analyst"]))
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    sheet = openpyxl.load_workbook(io.BytesIO(r.content)).active
    values = list(sheet.values)
    assert values[0][:3] == ("Rank", "Section", "Person id")  # analyst: no NHS number column
    assert len(values) == 1 + 4
    offers_sheet = openpyxl.load_workbook(io.BytesIO(r.content))["Offers"]
    assert [c.value for c in offers_sheet[2]][:3] == ["falls_prevention", "Falls prevention", 20]
    assert values[1][5] == 0.68  # South's top risk, a number shown through the risk format
    assert sheet.freeze_panes == "A2"


def test_cohort_funnel_route_is_suppressed_and_scoped(client, keys):
    body = client.get("/localities/North/cohort", headers=auth(keys["north"])).json()
    assert body["week"] == "2026-W48"
    assert [(s["step"], s["people"], s["shown"]) for s in body["steps"]][:3] == [
        ("residents", 30, "30"), ("under_min_age", None, "<8"), ("inpatient", 10, "10")]
    assert body["steps"][-1] == {"step": "in_cohort", "label": "In the list cohort", "people": 15, "shown": "15"}
    assert client.get("/localities/North/cohort", headers=auth(keys["south"])).status_code == 403
    assert client.get("/localities/East/cohort", headers=auth(keys["analyst"])).status_code == 404


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
