"""The real server (``upstream serve`` under uvicorn) in a subprocess: logs, and the web page in headless Chromium."""

from __future__ import annotations

import csv
import logging
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.serving.conftest import auth
from upstream.processes import stop_process

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def live_server(serving_settings, scored, keys, tmp_path_factory):
    """``upstream serve`` on a free loopback port; yields (base_url, path of its combined log output)."""
    port = _free_port()
    log_path = tmp_path_factory.mktemp("live") / "server.log"
    env = {
        **os.environ,
        "UPSTREAM_HOME": str(serving_settings.home),
        "UPSTREAM_PSEUDO_KEY": "test-key-not-secret",
    }
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "upstream.cli", "serve", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"server did not start:\n{log_path.read_text()}")
            time.sleep(0.2)
        yield base, log_path
    finally:
        stop_process(proc, timeout=10)


def _identifiers(scored) -> list[str]:
    ids = [p.person_id for p in scored.people.values()] + [p.nhs_number for p in scored.people.values()]
    return [*ids, scored.absent, scored.failed_only]


def _person_level_traffic(get, keys, scored) -> None:
    north = scored.in_locality("North")[0]
    south = scored.in_locality("South")[0]
    for key in (keys["north"], keys["analyst"]):
        get(f"/residents/{north.person_id}/score", key)
        get(f"/residents/{south.person_id}/score", key)
        get(f"/residents/{scored.absent}/score", key)
        get("/residents/not-a-person-id-but-close/score", key)
        get(f"/residents/{north.nhs_number}/score", key)  # someone pastes an NHS number in the URL
        get("/localities/North/rising-risk?format=csv", key)
        get("/ui/localities/North", key)
    get(f"/residents/{north.person_id}/score", "ups_0000000000000000_" + "x" * 43)


def test_no_personal_data_in_server_logs(live_server, keys, scored):
    base, log_path = live_server
    with httpx.Client(base_url=base) as http:
        _person_level_traffic(lambda path, key: http.get(path, headers=auth(key)), keys, scored)
    time.sleep(0.3)
    text = log_path.read_text()
    assert "GET /residents/{person_id}/score 200" in text  # the access log is on, with templates
    leaked = [i for i in _identifiers(scored) if i in text]
    assert leaked == []


def test_no_personal_data_in_in_process_logs(client, keys, scored, caplog):
    caplog.set_level(logging.DEBUG)
    _person_level_traffic(lambda path, key: client.get(path, headers=auth(key)), keys, scored)
    # httpx records are the *test client's* own request log (it runs in this process), not the app's.
    text = "\n".join(f"{r.name} {r.getMessage()}" for r in caplog.records if not r.name.startswith("httpx"))
    assert "upstream.serving.access" in text
    assert [i for i in _identifiers(scored) if i in text] == []


@pytest.mark.browser
def test_locality_page_in_headless_chromium(live_server, keys, scored, tmp_path):
    if not Path(CHROMIUM).exists() and shutil.which("chromium") is None:
        pytest.fail("Debian's chromium is not installed (test.sh installs it as root)")
    from playwright.sync_api import sync_playwright

    base, _ = live_server
    expected = scored.lists[("2026-W48", "North")]
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_context(accept_downloads=True).new_page()
            page.goto(f"{base}/ui")
            assert page.url.endswith("/ui/login")  # not signed in -> login form
            page.fill("#api_key", "ups_wrong")
            page.click("button[type=submit]")
            assert "was not recognised" in page.content()
            page.fill("#api_key", keys["north"])
            page.click("button[type=submit]")
            page.wait_for_selector("table.app-list")
            assert page.url.endswith("/ui/localities/North")  # single-locality key goes straight to its list
            # Sections, new first: W48 North has ranks 3-5 new and ranks 1-2 top (scored_db).
            assert [h.strip() for h in page.locator("main h2").all_inner_texts()][:2] == ["New this week", "Highest risk"]
            rows = page.locator("table.app-list tbody tr")
            assert rows.count() == len(expected) == 5
            new_rows = page.locator("#list-new tbody tr")
            assert [new_rows.nth(i).get_attribute("data-person") for i in range(3)] == [
                e["person_id"] for e in expected[2:]]
            first = new_rows.nth(0)
            assert scored.people[expected[2]["person_id"]].nhs_number in first.inner_text()
            assert "emergency admission on 12 Nov 2026" in first.inner_text()  # what changed
            assert page.locator("#new-count").inner_text() == "3"
            assert page.locator("#listed-count").inner_text() == "5"
            assert page.locator("svg.app-chart").count() == 2
            assert "-0.0" not in page.content()
            # A favicon is declared and served.
            assert page.locator("link[rel=icon]").get_attribute("href") == "/static/favicon.svg"
            assert page.request.get(f"{base}/favicon.ico").status == 200
            # Sort the new section by risk: first press sorts ascending, so the lowest risk comes first.
            page.click("#list-new th button:has-text('Risk')")
            assert new_rows.nth(0).get_attribute("data-person") == expected[-1]["person_id"]
            # Bands sort by severity, not alphabetically: in the top section, "high" (0.9, 0.8) rows only;
            # the band cells carry the severity rank.
            assert set(page.locator("#list-top td[data-value] strong.app-band").all_inner_texts()) == {"high"}
            assert page.locator("#list-top tbody tr").nth(0).locator("td").nth(6).get_attribute("data-value") == "3"
            # The cohort funnel is on the page, suppressed.
            funnel = page.locator("#cohort-funnel").inner_text()
            assert "Under 18" in funnel and "<8" in funnel
            # Filter by offer (ranks 1, 3, 5 fit telecare) and by GP practice.
            page.select_option("#filter-offer", "telecare")
            page.click("#apply-filters")
            page.wait_for_selector("#page-status")
            assert sorted(int(t) for t in page.locator("table.app-list tbody tr td:first-child").all_inner_texts()) \
                == [1, 3, 5]
            page.select_option("#filter-practice", "G82001")
            page.click("#apply-filters")
            page.wait_for_selector("#page-status")
            assert page.locator("table.app-list tbody tr td:first-child").all_inner_texts() == ["1"]
            page.goto(f"{base}/ui/localities/North?section=rising")
            assert page.locator("#empty-list").count() == 1  # nobody rising in the fixture's W48
            page.goto(f"{base}/ui/localities/North")
            # The CSV download carries the same rows, with NHS numbers for this locality key.
            with page.expect_download() as download_info:
                page.click("#download-csv")
            download = download_info.value
            assert download.suggested_filename == "rising-risk_North_2026-W48.csv"
            with open(download.path(), newline="") as fh:
                got = list(csv.DictReader(fh))
            assert [r["person_id"] for r in got] == [e["person_id"] for e in expected]
            assert [r["nhs_number"] for r in got] == [scored.people[e["person_id"]].nhs_number for e in expected]
            assert [r["risk_percent"] for r in got] == ["90.0%", "80.0%", "70.0%", "42.0%", "41.0%"]
            # Another locality's page is refused inside the same session.
            response = page.goto(f"{base}/ui/localities/South")
            assert response is not None and response.status == 403
            # Signing out ends the session.
            page.goto(f"{base}/ui/localities/North")
            page.click("text=Sign out")
            page.goto(f"{base}/ui/localities/North")
            assert page.url.endswith("/ui/login")
        finally:
            browser.close()
