"""Actions through the API: scope like reads, analysts read pseudonymised, every write (and refusal) audited."""

from __future__ import annotations

import sqlalchemy as sa

from tests.serving.conftest import auth
from upstream.store import actions, audit_log, get_engine

ROUTE = "POST /residents/{person_id}/actions"


def _audit_rows(settings, person_id: str) -> list[tuple[str, int]]:
    with get_engine(settings.db_url).connect() as conn:
        return [(r.key_id, r.status_code) for r in conn.execute(
            sa.select(audit_log).where(audit_log.c.route == ROUTE, audit_log.c.person_id == person_id)
            .order_by(audit_log.c.id))]


def _stored(settings, person_id: str) -> list[tuple[str, str, str | None]]:
    with get_engine(settings.db_url).connect() as conn:
        return [(r.week, r.action, r.offer) for r in conn.execute(
            sa.select(actions).where(actions.c.person_id == person_id).order_by(actions.c.id))]


def _key_id(raw: str) -> str:
    return raw.split("_")[1]


def test_locality_key_records_for_its_own_resident_and_the_write_is_audited(client, keys, scored, serving_settings):
    pid = scored.in_locality("North")[1].person_id
    body = {"week": "2026-W48", "action": "offered", "offer": "telecare"}
    r = client.post(f"/residents/{pid}/actions", json=body, headers=auth(keys["north"]))
    assert r.status_code == 201, r.text
    assert r.json() == {"person_id": pid, "week": "2026-W48", "action": "offered", "offer": "telecare",
                        "reason": None, "locality": "North", "recorded": True}
    again = client.post(f"/residents/{pid}/actions", json=body, headers=auth(keys["north"]))
    assert again.status_code == 201 and again.json()["recorded"] is False  # idempotent
    assert _stored(serving_settings, pid) == [("2026-W48", "offered", "telecare")]
    assert _audit_rows(serving_settings, pid) == [(_key_id(keys["north"]), 201)] * 2


def test_other_localities_resident_is_not_found_and_nothing_is_written(client, keys, scored, serving_settings):
    pid = scored.in_locality("South")[1].person_id
    r = client.post(f"/residents/{pid}/actions", json={"week": "2026-W48", "action": "contacted"},
                    headers=auth(keys["north"]))
    assert r.status_code == 404  # the same answer as for nobody: no probing who lives where
    absent = client.post(f"/residents/{scored.absent}/actions", json={"week": "2026-W48", "action": "contacted"},
                         headers=auth(keys["north"]))
    assert absent.status_code == 404
    assert _stored(serving_settings, pid) == []
    assert _audit_rows(serving_settings, pid) == [(_key_id(keys["north"]), 404)]


def test_analysts_and_admins_cannot_write(client, keys, scored, serving_settings):
    pid = scored.in_locality("North")[2].person_id
    for role in ("analyst", "admin"):
        r = client.post(f"/residents/{pid}/actions", json={"week": "2026-W48", "action": "contacted"},
                        headers=auth(keys[role]))
        assert r.status_code == 403
    assert _stored(serving_settings, pid) == []
    assert [s for _, s in _audit_rows(serving_settings, pid)] == [403, 403]


def test_invalid_actions_are_refused_with_the_import_rules(client, keys, scored, serving_settings):
    pid = scored.in_locality("North")[3].person_id
    cases = [
        ({"week": "2026-W48", "action": "accepted"}, "offer is required for offered/accepted/declined"),
        ({"week": "2026-W48", "action": "offered", "offer": "yoga"}, "offer is not in the service catalogue"),
        ({"week": "2026-W48", "action": "not_appropriate"}, "reason is required for not_appropriate"),
        ({"week": "2026-W48", "action": "phoned"}, "action is not one of"),
    ]
    for body, text in cases:
        r = client.post(f"/residents/{pid}/actions", json=body, headers=auth(keys["north"]))
        assert r.status_code == 422 and text in r.json()["detail"]
    bad_week = client.post(f"/residents/{pid}/actions", json={"week": "2026-48", "action": "contacted"},
                           headers=auth(keys["north"]))
    assert bad_week.status_code == 422
    assert _stored(serving_settings, pid) == []


def test_reads_are_pseudonymised_and_scoped(client, keys, scored, serving_settings):
    north = scored.in_locality("North")[4]
    south = scored.in_locality("South")[4]
    assert client.post(f"/residents/{north.person_id}/actions", json={"week": "2026-W47", "action": "contacted"},
                       headers=auth(keys["north"])).status_code == 201
    assert client.post(f"/residents/{south.person_id}/actions",
                       json={"week": "2026-W47", "action": "not_appropriate", "reason": "moved away"},
                       headers=auth(keys["south"])).status_code == 201
    analyst = client.get("/actions?from=2026-W47&to=2026-W47", headers=auth(keys["analyst"]))
    assert analyst.status_code == 200
    rows = analyst.json()
    assert {(r["person_id"], r["action"]) for r in rows} == {(north.person_id, "contacted"),
                                                             (south.person_id, "not_appropriate")}
    assert all("nhs_number" not in r for r in rows)
    assert north.nhs_number not in analyst.text and south.nhs_number not in analyst.text
    own = client.get("/actions?from=2026-W47&to=2026-W47", headers=auth(keys["north"])).json()
    assert {r["person_id"] for r in own} == {north.person_id}
