"""The per-row action control on the web: CSRF token required, same scope, rules and audit as the API."""

from __future__ import annotations

import re

import sqlalchemy as sa

from tests.serving.conftest import auth
from upstream.store import actions, get_engine


def _stored(settings, person_id: str) -> list[tuple[str, str | None]]:
    with get_engine(settings.db_url).connect() as conn:
        return [(r.action, r.offer) for r in conn.execute(sa.select(actions).where(actions.c.person_id == person_id))]


def test_form_records_an_action_with_a_valid_token_only(client, keys, scored, serving_settings):
    listed = [r["person_id"] for r in scored.lists[("2026-W48", "North")]]
    person = next(p for p in scored.in_locality("North") if p.person_id == listed[-1])
    page = client.get("/ui/localities/North/actions?week=2026-W48", headers=auth(keys["north"]))
    assert page.status_code == 200
    assert f'data-person="{person.person_id}"' in page.text
    token = re.search(r'name="csrf" value="([0-9a-f]{64})"', page.text).group(1)
    form = {"person_id": person.person_id, "week": "2026-W48", "action": "offered", "offer": "befriending"}

    forged = client.post("/ui/localities/North/actions", data={**form, "csrf": "0" * 64},
                         headers=auth(keys["north"]), follow_redirects=False)
    assert forged.status_code == 403
    assert _stored(serving_settings, person.person_id) == []

    other_key = client.post("/ui/localities/North/actions", data={**form, "csrf": token},
                            headers=auth(keys["both"]), follow_redirects=False)
    assert other_key.status_code == 403  # the token is bound to the key that loaded the page

    ok = client.post("/ui/localities/North/actions", data={**form, "csrf": token}, headers=auth(keys["north"]),
                     follow_redirects=False)
    assert ok.status_code == 303 and "saved=recorded" in ok.headers["location"]
    assert _stored(serving_settings, person.person_id) == [("offered", "befriending")]
    shown = client.get(ok.headers["location"], headers=auth(keys["north"]))
    assert "offered (befriending)" in shown.text


def test_form_applies_the_action_rules_and_scope(client, keys, scored, serving_settings):
    south = scored.in_locality("South")[6]
    page = client.get("/ui/localities/North/actions?week=2026-W48", headers=auth(keys["north"]))
    token = re.search(r'name="csrf" value="([0-9a-f]{64})"', page.text).group(1)
    r = client.post("/ui/localities/North/actions",
                    data={"person_id": south.person_id, "week": "2026-W48", "action": "contacted", "csrf": token},
                    headers=auth(keys["north"]), follow_redirects=False)
    assert r.status_code == 404 and _stored(serving_settings, south.person_id) == []
    north = scored.in_locality("North")[7]
    r = client.post("/ui/localities/North/actions",
                    data={"person_id": north.person_id, "week": "2026-W48", "action": "not_appropriate",
                          "csrf": token}, headers=auth(keys["north"]), follow_redirects=False)
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


def test_a_non_ascii_token_is_refused_not_a_server_error(client, keys, scored):
    pid = scored.in_locality("North")[0].person_id
    r = client.post("/ui/localities/North/actions",
                    data={"person_id": pid, "week": "2026-W48", "action": "contacted", "csrf": "z\u00e9\U0001d17d"},
                    headers=auth(keys["north"]), follow_redirects=False)
    assert r.status_code == 403
