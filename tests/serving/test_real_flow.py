"""The API over a database made by the real weekly Prefect flow (synthetic delivery -> ingest -> features
-> train -> score -> publish). Expected values come from the raw delivery (who lives where, their NHS
numbers) and the keyed pseudonym, not from serving's own code.
"""

from __future__ import annotations

import os

import polars as pl
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from expectations.pseudonymise import pseudonymise_one
from serving.app import create_app
from serving.keys import create_key
from synthetic import generate
from upstream.settings import Settings
from upstream.store import audit_log, get_engine, published_weeks, risk_lists

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def flow_db(tmp_path_factory, prefect_harness, small_delivery_gate):
    from pipelines.flows import weekly
    from pipelines.weeks import delivery_extract_date

    root = tmp_path_factory.mktemp("serving_flow")
    raw, home = root / "raw", root / "home"
    generate.generate_delivery(raw, residents=2000, seed=5)
    with pytest.MonkeyPatch.context() as env:
        # Scoring is the one place that chooses how many reasons a resident keeps (lists.top_reasons): with
        # 2 set for the run, the stored scores and list rows must hold at most 2 (checked below).
        env.setenv("UPSTREAM_LISTS__TOP_REASONS", "2")
        result = weekly(str(raw), delivery_extract_date(raw), train="always", home=str(home))
    settings = Settings(home=home)
    residents = pl.read_parquet(raw / "residents.parquet", columns=["nhs_number", "locality"]).with_columns(
        pl.col("nhs_number").cast(pl.String)
    )
    return settings, result, residents


def test_api_serves_the_flow_output(flow_db):
    settings, result, residents = flow_db
    key = os.environ.get("UPSTREAM_PSEUDO_KEY", "").encode() or settings.pseudonymisation_key()
    engine = get_engine(settings.db_url)
    with engine.connect() as conn:
        week = conn.execute(sa.select(published_weeks.c.week)).scalar_one()
        by_locality = dict(
            conn.execute(
                sa.select(risk_lists.c.locality, sa.func.count())
                .join(published_weeks, published_weeks.c.run_id == risk_lists.c.run_id)
                .group_by(risk_lists.c.locality)
            ).all()
        )
    assert week == result["week"]
    with engine.connect() as conn:
        listed_reasons = conn.execute(sa.select(risk_lists.c.reasons)).scalars().all()
    # The run's setting (2) reached scoring: no listed person has 3 reasons (the model's own default) and
    # someone has exactly 2.
    assert max(len(reasons) for reasons in listed_reasons) == 2
    locality, other = sorted(by_locality, key=lambda name: -by_locality[name])[:2]
    home_of = dict(zip(residents["nhs_number"], residents["locality"], strict=True))
    pid_to_nhs = {pseudonymise_one(n, key): n for n in residents["nhs_number"].to_list()}

    local_key = create_key(engine, "locality", [locality])
    with TestClient(create_app(settings)) as client:
        h = {"X-API-Key": local_key}
        body = client.get(f"/localities/{locality}/rising-risk", headers=h).json()  # the whole list by default
        assert body["week"] == week and body["count"] == body["total"] == by_locality[locality] > 0
        assert body["partial"] is False
        assert [r["rank"] for r in body["rows"]] == list(range(1, body["count"] + 1))
        for row in body["rows"]:
            # The NHS number is the one the council delivered for this pseudonym, and they live here.
            assert row["nhs_number"] == pid_to_nhs[row["person_id"]]
            assert home_of[row["nhs_number"]] == locality
            assert row["top_reasons"] and row["why_listed"] and row["section"] in ("new", "rising", "top")
        first = body["rows"][0]["person_id"]
        score = client.get(f"/residents/{first}/score", headers=h).json()
        assert score["locality"] == locality and score["nhs_number"] == pid_to_nhs[first]
        assert len(score["reasons"]) <= 2
        # Someone from the other locality is invisible to this key.
        outsider = client.get(f"/localities/{other}/rising-risk", headers={"X-API-Key": create_key(engine, "analyst", [])})
        outsider_pid = outsider.json()["rows"][0]["person_id"]
        assert client.get(f"/residents/{outsider_pid}/score", headers=h).status_code == 404
        assert client.get("/models/current", headers=h).status_code == 200
    with engine.connect() as conn:
        audited = conn.execute(
            sa.select(sa.func.count()).select_from(audit_log).where(audit_log.c.key_id == local_key.split("_")[1])
        ).scalar_one()
    assert audited == 3  # list, own resident, refused outsider


def _md_rows(card: str, heading: str) -> list[list[str]]:
    """The body rows of the first Markdown table after ``heading``."""
    section = card.split(heading, 1)[1]
    lines = [line for line in section.splitlines() if line.startswith("|")]
    end = next((i for i, line in enumerate(lines[2:], 2) if not line.startswith("|")), len(lines))
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines[2:end]]


def test_served_model_card_gives_no_count_back(flow_db):
    """Probe of the real card and metrics a locality key is served: every count suppressed or a multiple of 5;
    a group with any suppressed count shows no rate or statistic; every rate times its shown denominator gives
    back a multiple of 5 (the rounded count), never an exact one."""
    settings, _, _ = flow_db
    key = create_key(get_engine(settings.db_url), "locality", ["North"])
    with TestClient(create_app(settings)) as client:
        body = client.get("/models/current", headers={"X-API-Key": key}).json()
    card, metrics = body["model_card"], body["metrics"]
    probes, failures = 0, []

    def check(ok: bool, what: str) -> None:
        nonlocal probes
        probes += 1
        if not ok:
            failures.append(what)

    def is_count(text: str) -> bool:
        return text == "<8" or (text.isdigit() and int(text) % 5 == 0)

    for dimension, group, n, events, rate, oe, auroc, ref, fpr, fnr in _md_rows(card, "## Fairness"):
        where = f"{dimension}={group}"
        check(is_count(n) and is_count(events), f"{where}: counts {n}, {events}")
        if "<8" in (n, events) or (n.isdigit() and events.isdigit() and 0 < int(n) - int(events) < 8):
            check({rate, oe, auroc, ref, fpr, fnr} == {"–"}, f"{where}: a statistic next to a suppressed count")
        elif rate != "–":
            check(abs(float(rate) * int(n) - 5 * round(float(rate) * int(n) / 5)) < 0.5, f"{where}: rate x n")
        if fnr != "–" and events.isdigit():
            check(abs(float(fnr) * int(events) - 5 * round(float(fnr) * int(events) / 5)) < 0.5, f"{where}: FNR")
    data = dict((r[0], r[1]) for r in _md_rows(card, "## Data"))
    check(is_count(data["training rows"]) and is_count(data["test rows (people)"]), f"data: {data}")
    check(is_count(str(int(metrics["test_n"]))), f"test_n {metrics['test_n']}")
    shown = metrics["test_event_rate"] * metrics["test_n"]
    check(abs(shown - 5 * round(shown / 5)) < 0.5, f"test_event_rate x test_n = {shown}")
    print(f"model card probes: {probes}, failures: {len(failures)}")
    assert probes > 10 and failures == [], failures
