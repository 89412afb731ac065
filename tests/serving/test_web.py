"""Web pages through TestClient: login cookie, locality redirect, escaping, downloads with the cookie."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

from tests.serving.conftest import auth


def form_token(page: str) -> str:
    """The CSRF token the page put in its form (serving/templates/_forms.html)."""
    return re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)


def test_login_sets_httponly_strict_cookie_and_cookie_authenticates(app, keys):
    with TestClient(app) as browser:
        token = form_token(browser.get("/ui/login").text)
        bad = browser.post("/ui/login", data={"api_key": "ups_nope", "csrf_token": token}, follow_redirects=False)
        assert bad.status_code == 401 and "not recognised" in bad.text
        ok = browser.post("/ui/login", data={"api_key": keys["south"], "csrf_token": token}, follow_redirects=False)
        assert ok.status_code == 303 and ok.headers["location"] == "/ui"
        cookie = ok.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie
        # The cookie holds a session id, never the key (nor its secret part).
        session_id = browser.cookies["upstream_session"]
        # the whole secret (token_urlsafe may itself contain "_": split("_")[2] was sometimes one letter)
        assert keys["south"].split("_", 2)[2] not in session_id and keys["south"] not in cookie
        # A single-locality key goes straight to its list.
        home = browser.get("/ui", follow_redirects=False)
        assert home.status_code == 303 and home.headers["location"] == "/ui/localities/South"
        # The cookie also authorises the download links on the page.
        csv = browser.get("/localities/South/rising-risk?format=csv")
        assert csv.status_code == 200 and csv.text.count("\n") == 1 + 4
        assert browser.post("/ui/logout", follow_redirects=False).status_code == 403  # no CSRF token
        out = browser.post("/ui/logout", data={"csrf_token": token}, follow_redirects=False)
        assert out.status_code == 303
        # Signing out ends the session on the server: a kept copy of the cookie no longer works.
        # (the kept copy is set on the client: per-request cookies are deprecated by Starlette's test client)
        browser.cookies.clear()
        browser.cookies.set("upstream_session", session_id)
        assert browser.get("/localities/South/rising-risk").status_code == 401
        browser.cookies.clear()
        assert browser.get("/localities/South/rising-risk").status_code == 401


def test_analyst_home_lists_every_locality(client, keys):
    r = client.get("/ui", headers=auth(keys["analyst"]), follow_redirects=False)
    assert r.status_code == 200
    for name in ("East", "North", "South"):
        assert f'href="/ui/localities/{name}"' in r.text


def test_locality_page_contents(client, keys, scored):
    r = client.get("/ui/localities/North?week=2026-W47", headers=auth(keys["north"]))
    assert r.status_code == 200
    assert r.headers["content-security-policy"].startswith("default-src 'none'")
    assert r.text.count('<tr class="nhsuk-table__row"') == 5
    assert 'id="new-count">2<' in r.text  # W47: two new entries
    # Offers: places against people suggested (ranks 1, 3, 5 fit both offers: 3 people -> "<8"), and the
    # rows beyond capacity say "waiting list" (rank 3: telecare; rank 5: both).
    assert r.text.count('<tr class="nhsuk-table__row app-offer-place"') == 7  # the shipped catalogue's offers
    assert '<tr class="nhsuk-table__row app-offer-place" data-offer="falls_prevention"><th scope="row">Falls ' \
           'prevention</th><td>20</td><td>&lt;8</td><td>&lt;8</td><td>&lt;8</td></tr>' in r.text
    assert r.text.count("(waiting list)</li>") == 3
    assert "format=csv" in r.text and "format=xlsx" in r.text
    assert "<script src=\"/static/sort.js\">" in r.text
    # Nothing is fetched from elsewhere: the only absolute URL is the SVG namespace identifier.
    page = r.text.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "http://" not in page and "https://" not in page


def test_static_assets_are_local(client):
    assert client.get("/static/upstream.css").status_code == 200
    assert client.get("/static/sort.js").status_code == 200
