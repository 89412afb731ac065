"""The real ``publish-lists`` Prefect flow: artifacts, and a failure drill that must change nothing."""

from __future__ import annotations

import json
from datetime import date

import pytest

from pipelines.drills import InjectedFailure
from pipelines.score_history import published_week, store_scores
from tests.pipelines.conftest import latest_artifact, score_frame
from upstream.store import get_engine


def test_publish_flow_artifact_and_failure_drill(prefect_harness, settings):
    from pipelines.flows import publish_lists

    home = str(settings.home)
    # Default rules list percentile >= 0.8 (percentile = share of the locality with a lower score).
    # Alpha: 50 residents -> ranks 41..50 -> 10 listed -> shown "10".
    # Beta: 3 residents -> percentiles 0, 1/3, 2/3 -> nobody -> "0".  Gamma: 10 -> 2 listed -> "<8".
    rows = [(f"a{i:02d}", "Alpha", i / 100, False) for i in range(1, 51)]
    rows += [("b1", "Beta", 0.5, False), ("b2", "Beta", 0.6, False), ("b3", "Beta", 0.7, False)]
    rows += [(f"g{i}", "Gamma", i / 10, False) for i in range(10)]
    from pipelines.weeks import clean_dir_of
    from tests.features.conftest import write_clean

    # the week's clean delivery (read for the cohort): everyone an adult resident of their locality
    write_clean(clean_dir_of(settings, date(2026, 11, 23)),
                residents=[{"person_id": p, "locality": loc} for p, loc, _, _ in rows])
    run = store_scores([score_frame(rows)], date(2026, 11, 23), settings, "upstream-crisis", "1")
    result = publish_lists(run, home)
    assert result["run_id"] == run.run_id and result["week"] == "2026-W48"

    data = latest_artifact("list-sizes")["data"]
    sizes = {row["locality"]: row for row in (json.loads(data) if isinstance(data, str) else data)}
    # the first list: nothing to compare with, so all 10 are "top"; no features on disk here, so no offer
    assert sizes["Alpha"] == {"locality": "Alpha", "listed": "10", "new": "0", "rising": "0", "top": "10",
                              "with_offer": "0"}
    data = latest_artifact("cohort-funnel")["data"]
    funnel = [r for r in (json.loads(data) if isinstance(data, str) else data) if r["locality"] == "Alpha"]
    assert (funnel[0]["step"], funnel[0]["shown"]) == ("residents", "50")
    assert funnel[-1] == {"locality": "Alpha", "step": "in_cohort", "label": "In the list cohort", "shown": "50"}
    assert sizes["Beta"]["listed"] == "0"
    assert sizes["Gamma"]["listed"] == "<8"

    # Failure drill: a second run of the week that dies inside the publish transaction.
    engine = get_engine(settings.db_url)
    rerun = store_scores(
        [score_frame([(pid, loc, 0.99, ltc) for pid, loc, _, ltc in rows])],
        date(2026, 11, 24),
        settings,
        "upstream-crisis",
        "2",
    )
    csv = settings.home / "lists" / "2026-W48" / "alpha.csv"
    before = csv.read_bytes()
    with pytest.raises(InjectedFailure):
        publish_lists(rerun, home, inject_failure="publish")
    assert published_week(engine, "2026-W48").run_id == run.run_id
    assert published_week(engine, "2026-W48").index_date == date(2026, 11, 23)
    assert csv.read_bytes() == before
