"""The API over a DB written by the pipeline's own scoring and publishing functions.

``pipelines.score_history.store_scores`` and ``pipelines.publish.publish_run`` are what the weekly flow calls after scoring; here
they get hand-made score frames instead of a trained model's output, so the expected lists can be
worked out on paper. This pins serving to the flow's real write path (bands, ranks, change, new,
JSON reasons, run replacement), not only to our own fixture.
"""

from __future__ import annotations

import json
from datetime import date

import polars as pl
import pytest
from fastapi.testclient import TestClient

from pipelines.publish import publish_run
from pipelines.score_history import store_scores
from pipelines.weeks import clean_dir_of
from serving.app import create_app
from serving.keys import create_key
from upstream.settings import ListSettings, Settings
from upstream.store import get_engine

W47, W48 = date(2026, 11, 16), date(2026, 11, 23)
FALL = json.dumps([{"feature": "falls_12m", "value": 2, "text": "2 falls in last 6 months", "contribution": 0.2}])


def _frame(rows: list[tuple[str, str, float, bool]]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "person_id": [r[0] for r in rows],
            "locality": [r[1] for r in rows],
            "score": [r[2] for r in rows],
            "in_long_term_care": [r[3] for r in rows],
            "reasons": [FALL] * len(rows),
        }
    )


def _pid(locality: str, i: int) -> str:
    return f"{'a' if locality == 'North' else 'b'}{i:015x}"


@pytest.fixture(scope="module")
def flow_home(tmp_path_factory):
    settings = Settings(
        home=tmp_path_factory.mktemp("flow_home"),
        pseudo_key="test-key-not-secret",
        lists=ListSettings(band_percentile=0.8, capacity_per_locality=500, risk_rise_threshold=0.05, top_reasons=3),
    )
    # Ten residents per locality, scores 0.05, 0.15, ..., 0.95 (North) and 0.02 ... 0.92 (South).
    week47 = [(_pid("North", i), "North", round(0.05 + 0.1 * i, 2), False) for i in range(10)]
    week47 += [(_pid("South", i), "South", round(0.02 + 0.1 * i, 2), False) for i in range(10)]
    # W48: North #2 rises 0.25 -> 0.32 (+0.07, a risk rise); North #9 (0.95) moves into long-term care.
    week48 = [(p, loc, 0.32 if p == _pid("North", 2) else s, p == _pid("North", 9)) for p, loc, s, _ in week47]
    # The clean delivery each week's cohort is read from: North #9 starts a residential placement on
    # 20 Nov (so is in the cohort at W47, a care-home resident at W48); South #9 opts out before W48.
    from tests.features.conftest import write_clean

    residents = [{"person_id": p, "locality": loc} for p, loc, _, _ in week47]
    placement = {"person_id": _pid("North", 9), "event_type": "Service", "event_start_date": date(2026, 11, 20),
                 "service_type": "Long Term Support: Residential Care"}
    for index_date in (W47, W48):
        clean = write_clean(clean_dir_of(settings, index_date), residents=residents,
                            social_care_events=[placement])
        if index_date == W48:
            pl.DataFrame({"person_id": [_pid("South", 9)]}).write_parquet(clean / "opt_outs.parquet")
    for index_date, rows in ((W47, week47), (W48, week48), (W48, week48)):  # W48 twice: a re-run replaces it
        run = store_scores([_frame(rows)], index_date, settings, "upstream-crisis", "3")
        publish_run(run, settings)
    settings.restricted_dir.mkdir(parents=True, exist_ok=True)
    pl.DataFrame(
        {"person_id": [r[0] for r in week47], "nhs_number": [f"999{i:07d}" for i in range(len(week47))]}
    ).write_parquet(settings.reid_map_path)
    engine = get_engine(settings.db_url)
    keys = {"north": create_key(engine, "locality", ["North"]), "analyst": create_key(engine, "analyst", [])}
    with TestClient(create_app(settings)) as client:
        yield client, keys


def test_list_served_from_flow_output(flow_home):
    client, keys = flow_home
    body = client.get("/localities/North/rising-risk", headers={"X-API-Key": keys["north"]}).json()
    assert body["week"] == "2026-W48" and body["model_version"] == "3"
    rows = [(r["person_id"], r["risk_percent"], r["section"], r["change_points"], r["nhs_number"]) for r in body["rows"]]
    # By hand: North #9 (0.95) starts a care-home placement between W47 and W48: excluded. 0.85 is at the 80th
    # percentile (8 of 10 lower) and was on W47's list (with #9): top. #2 rose 0.25 -> 0.32 (+7 points >= 5)
    # and was not on W47's list: new, shown first.
    assert [r[:4] for r in rows] == [
        (_pid("North", 2), "32.0%", "new", 7.0),
        (_pid("North", 8), "85.0%", "top", 0.0),
    ]
    assert rows[0][4] == "9990000002" and rows[1][4] == "9990000008"
    assert body["rows"][0]["why_listed"] == "New this week; Risk up 7.0 points in 1 week"
    assert body["rows"][1]["why_listed"] == "The highest risk in North"
    assert body["rows"][1]["top_reasons"] == "2 falls in last 6 months"
    assert body["total"] == 2 and body["partial"] is False


def test_opted_out_resident_is_gone_but_counted(flow_home):
    client, keys = flow_home
    h = {"X-API-Key": keys["analyst"]}
    south = client.get("/localities/South/rising-risk", headers=h).json()
    assert _pid("South", 9) not in {r["person_id"] for r in south["rows"]}
    # every week's score history of the opted-out person is gone, so the person routes know nothing
    assert client.get(f"/residents/{_pid('South', 9)}/score", headers=h).status_code == 404
    assert client.get("/localities/South/rising-risk?week=2026-W47", headers=h).json()["total"] == 1
    funnel = {s["step"]: s["shown"] for s in client.get("/localities/South/cohort", headers=h).json()["steps"]}
    assert funnel["opted_out"] == "<8" and funnel["residents"] == "10" and funnel["in_cohort"] == "10"
    north = {s["step"]: s["shown"] for s in client.get("/localities/North/cohort", headers=h).json()["steps"]}
    assert north["care_home"] == "<8" and north["in_cohort"] == "10"  # 9 rounds to 10


def test_resident_history_across_flow_weeks(flow_home):
    client, keys = flow_home
    body = client.get(f"/residents/{_pid('North', 9)}/score", headers={"X-API-Key": keys["analyst"]}).json()
    assert body["in_long_term_care"] is True
    assert body["band"] == "high"  # 9 of 10 lower: 90th percentile, below the 95th for "very high"
    # One history point per week although W48 was run twice: the re-run replaced the first.
    assert [(h["week"], h["score"]) for h in body["history"]] == [("2026-W48", 0.95), ("2026-W47", 0.95)]


def test_summary_over_flow_output_is_suppressed(flow_home):
    client, keys = flow_home
    cells = client.get("/summary", headers={"X-API-Key": keys["analyst"]}).json()["cells"]
    # 10 residents per locality split 5 low / 3 moderate / 2 high: every cell is 1-7, so all suppressed.
    assert {(c["locality"], c["band"]) for c in cells} == {
        (loc, band) for loc in ("North", "South") for band in ("low", "moderate", "high")
    }
    assert all(c["residents"] is None for c in cells)
