"""The per-row action control on the web: a browser signed in with a session must send the form's CSRF token;
same scope, rules and audit as the API."""

from __future__ import annotations

import re

import sqlalchemy as sa
from fastapi.testclient import TestClient

from tests.serving.conftest import auth
from upstream.store import actions, audit_log, get_engine


def _stored(settings, person_id: str) -> list[tuple[str, str | None]]:
    with get_engine(settings.db_url).connect() as conn:
        return [(r.action, r.offer) for r in conn.execute(sa.select(actions).where(actions.c.person_id == person_id))]


def _form_token(page: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)


def _signed_in(app, key: str) -> TestClient:
    """A browser with a session cookie (the way people use the page), not a script with a header key."""
    browser = TestClient(app)
    token = _form_token(browser.get("/ui/login").text)
    signed = browser.post("/ui/login", data={"api_key": key, "csrf_token": token}, follow_redirects=False)
    assert signed.status_code == 303
    return browser


def test_form_records_an_action_with_a_valid_token_only(app, keys, scored, serving_settings):
    listed = [r["person_id"] for r in scored.lists[("2026-W48", "North")]]
    person = next(p for p in scored.in_locality("North") if p.person_id == listed[-1])
    with _signed_in(app, keys["north"]) as browser:
        page = browser.get("/ui/localities/North/actions?week=2026-W48")
        assert page.status_code == 200
        assert f'data-person="{person.person_id}"' in page.text
        token = _form_token(page.text)
        form = {"person_id": person.person_id, "week": "2026-W48", "action": "offered", "offer": "befriending"}

        forged = browser.post("/ui/localities/North/actions", data={**form, "csrf_token": "A" * 43},
                              follow_redirects=False)
        missing = browser.post("/ui/localities/North/actions", data=form, follow_redirects=False)
        assert forged.status_code == 403 and missing.status_code == 403
        assert _stored(serving_settings, person.person_id) == []

        ok = browser.post("/ui/localities/North/actions", data={**form, "csrf_token": token}, follow_redirects=False)
        assert ok.status_code == 303 and "saved=recorded" in ok.headers["location"]
        assert _stored(serving_settings, person.person_id) == [("offered", "befriending")]
        shown = browser.get(ok.headers["location"])
        assert "offered (befriending)" in shown.text
    with get_engine(serving_settings.db_url).connect() as conn:
        refused = conn.execute(
            sa.select(sa.func.count()).select_from(audit_log).where(
                audit_log.c.route == "/ui/localities/{locality}/actions", audit_log.c.status_code == 403,
                audit_log.c.person_id == person.person_id)
        ).scalar_one()
    assert refused == 2  # both refused posts are in the audit log


def test_form_applies_the_action_rules_and_scope(app, keys, scored, serving_settings):
    south = scored.in_locality("South")[6]
    north = scored.in_locality("North")[7]
    with _signed_in(app, keys["north"]) as browser:
        token = _form_token(browser.get("/ui/localities/North/actions?week=2026-W48").text)
        r = browser.post("/ui/localities/North/actions",
                         data={"person_id": south.person_id, "week": "2026-W48", "action": "contacted",
                               "csrf_token": token}, follow_redirects=False)
        assert r.status_code == 404 and _stored(serving_settings, south.person_id) == []
        r = browser.post("/ui/localities/North/actions",
                         data={"person_id": north.person_id, "week": "2026-W48", "action": "not_appropriate",
                               "csrf_token": token}, follow_redirects=False)
        assert r.status_code == 400 and "reason is required" in r.text


def test_analysts_do_not_get_the_form(client, keys):
    assert client.get("/ui/localities/North/actions", headers=auth(keys["analyst"])).status_code == 403


def test_evaluation_report_is_linked_and_shown_to_analysts_only(client, keys, serving_settings):
    folder = serving_settings.home / "evaluation" / "2026-11-29"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "evaluation.md").write_text("# Upstream evaluation\n\n- Risk ratio: 0.870 <script>\n")
    home = client.get("/ui", headers=auth(keys["analyst"]), follow_redirects=False)
    assert 'href="/ui/evaluation"' in home.text
    page = client.get("/ui/evaluation", headers=auth(keys["analyst"]))
    assert page.status_code == 200 and "Risk ratio: 0.870 &lt;script&gt;" in page.text  # escaped
    assert client.get("/ui/evaluation", headers=auth(keys["north"])).status_code == 403


def test_a_non_ascii_token_is_refused_not_a_server_error(app, keys, scored):
    pid = scored.in_locality("North")[0].person_id
    with _signed_in(app, keys["north"]) as browser:
        browser.get("/ui/localities/North/actions?week=2026-W48")
        r = browser.post("/ui/localities/North/actions",
                         data={"person_id": pid, "week": "2026-W48", "action": "contacted",
                               "csrf_token": "z\u00e9\U0001d17d"}, follow_redirects=False)
    assert r.status_code == 403
