"""The drift drill through the REAL weekly Prefect flow (issue 16 "Measured").

One generated delivery: week 1 trains (the champion's reference profile is logged with it), week 2 is the
same delivery again (nothing may be raised), then week 2 is re-delivered with everyone 8 years older
(the age drift alert) and with half the GP events missing (the volume alert). Alerts are caught by a
real HTTP receiver on an ephemeral port. A failure drill posts ``run_failed`` and records the run failed.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa

from synthetic import generate
from synthetic.drills import half_missing, older_population
from tests.operations.test_alerts import Receiver
from upstream.settings import Settings
from upstream.store import get_engine, monitoring_results, weekly_runs


@pytest.fixture(scope="module")
def drill(tmp_path_factory, prefect_harness, small_delivery_gate):
    from pipelines.flows import weekly
    from pipelines.weeks import delivery_extract_date

    root = tmp_path_factory.mktemp("drill")
    raw = root / "raw"
    generate.generate_delivery(raw, residents=3000, seed=5)
    extract = delivery_extract_date(raw)
    home = str(root / "home")
    out = {"home": home, "extract": extract, "states": {}, "posts": {}}
    with Receiver() as receiver, pytest.MonkeyPatch.context() as patch:
        patch.setenv("UPSTREAM_ALERTS__WEBHOOK_URL", receiver.url)
        patch.setenv("UPSTREAM_ALERTS__PUBLIC_URL", "https://upstream.example.nhs.uk")

        def week(name, delivery, index_date, train="auto", **kw):
            before = len(receiver.received)
            state = weekly(str(delivery), index_date, train=train, home=home, return_state=True, **kw)
            out["states"][name] = state
            out["posts"][name] = [r["body"] for r in receiver.received[before:]]
            out[name] = _week_results(home, index_date)

        week("week1", raw, extract - timedelta(days=7), train="always")
        week("unchanged", raw, extract)
        week("older", older_population(raw, root / "older"), extract)
        week("half_gp", half_missing(raw, root / "half", "gp_events"), extract)
        week("forty_gp", half_missing(raw, root / "forty", "gp_events", missing=0.4), extract)
        week("failed", raw, extract, inject_failure="score")
        # A retrained model that must beat the champion by 0.5 AUROC is kept as challenger: an alert.
        patch.setenv("UPSTREAM_GATE__MIN_AUROC_GAIN", "0.5")
        week("challenger", raw, extract - timedelta(days=14), train="always")
    return out


def _week_results(home, index_date):
    from pipelines.scoring import iso_week

    engine = get_engine(Settings(home=home).db_url)
    with engine.connect() as conn:
        rows = conn.execute(sa.select(monitoring_results).where(monitoring_results.c.week == iso_week(index_date))).mappings().all()
    return [dict(r) for r in rows]


def post_week(drill):
    from pipelines.scoring import iso_week

    return iso_week(drill["extract"])


def test_monitoring_is_logged_to_mlflow_per_week_on_the_champion(drill):
    from mlflow.tracking import MlflowClient

    settings = Settings(home=drill["home"])
    client = MlflowClient(settings.tracking_uri)
    experiment = client.get_experiment_by_name("upstream-crisis-monitoring")
    runs = client.search_runs([experiment.experiment_id])
    # week 1, unchanged, older, 40% missing, challenger: five monitored runs (failed runs never got there)
    assert len(runs) == 5
    assert {r.data.tags["model_name"] for r in runs} == {"upstream-crisis"}
    assert {r.data.tags["model_version"] for r in runs} == {"1"}  # the challenger never scores
    latest = next(r for r in runs if r.data.tags["week"] == post_week(drill))
    history = client.get_metric_history(latest.info.run_id, "feature_drift.age.smd")
    assert history and history[0].step == drill["extract"].toordinal() // 7
    from pipelines.scoring import iso_week

    version = client.get_model_version("upstream-crisis", "1")
    assert version.tags["last_monitored_week"] == iso_week(drill["extract"] - timedelta(days=14))


def test_a_model_kept_as_challenger_raises_an_alert(drill):
    state = drill["states"]["challenger"]
    assert state.is_completed() and state.name == "Completed with warnings"
    (post,) = drill["posts"]["challenger"]
    assert post["event"] == "challenger_kept" and "v2" in post["text"]


def _alerts(rows):
    return {(r["kind"], r["subject"], r["metric"]) for r in rows if r["status"] == "alert"}


def test_unchanged_delivery_raises_nothing(drill):
    rows = drill["unchanged"]
    kinds = {r["kind"] for r in rows}
    assert {"feature_drift", "score_drift", "volume", "quarantine", "performance"} <= kinds
    assert _alerts(rows) == set()
    assert drill["posts"]["unchanged"] == []
    state = drill["states"]["unchanged"]
    assert state.is_completed() and state.name == "Completed"


def test_older_population_raises_the_age_drift_alert(drill):
    flagged = _alerts(drill["older"])
    assert ("feature_drift", "age", "smd") in flagged
    assert not any(kind == "volume" for kind, _, _ in flagged)  # same rows delivered
    state = drill["states"]["older"]
    assert state.is_completed() and state.name == "Completed with warnings"
    result = state.result()  # the run's result is still there for the CLI
    assert result["week"] == post_week(drill) and any("age" in w for w in result["warnings"])
    (post,) = drill["posts"]["older"]
    assert post["event"] == "monitoring_threshold" and "age" in post["text"]
    assert post["link"] == "https://upstream.example.nhs.uk/ui/monitoring"


def test_half_missing_gp_events_is_refused_by_ingest_and_alerted(drill):
    # ingest's own table check fails a source that lost half its rows: the run fails, and says so
    assert drill["states"]["half_gp"].is_failed()
    assert [(p["event"], "step ingest" in p["text"]) for p in drill["posts"]["half_gp"]] == [("run_failed", True)]


def test_forty_percent_missing_gp_events_raises_the_volume_alert(drill):
    flagged = _alerts(drill["forty_gp"])
    assert ("volume", "gp_events", "relative_change") in flagged
    volume = next(r for r in drill["forty_gp"] if r["kind"] == "volume" and r["subject"] == "gp_events")
    assert volume["value"] == pytest.approx(0.4, abs=0.001)
    assert drill["states"]["forty_gp"].name == "Completed with warnings"
    (post,) = drill["posts"]["forty_gp"]
    assert post["event"] == "monitoring_threshold" and "gp_events" in post["text"]


def test_failed_run_posts_an_alert_and_is_recorded(drill):
    assert drill["states"]["failed"].is_failed()
    (post,) = drill["posts"]["failed"]
    assert post["event"] == "run_failed" and "score" in post["text"]
    engine = get_engine(Settings(home=drill["home"]).db_url)
    with engine.connect() as conn:
        runs = conn.execute(sa.select(weekly_runs).order_by(weekly_runs.c.started_at)).mappings().all()
    assert [r["state"] for r in runs] == [
        "completed", "completed", "completed with warnings", "failed", "completed with warnings", "failed",
        "completed with warnings",
    ]
    assert runs[3]["error"] == "step ingest: UpstreamError"
    assert runs[5]["error"] == "step score: InjectedFailure"
    assert set(runs[0]["timings"]) == {"ingest", "features", "train", "score", "publish", "outcomes", "monitor"}
    assert runs[0]["training_run_id"] and runs[1]["training_run_id"] is None
    assert runs[1]["delivery"]["residents"]["rows_in"] == 3000
    assert all(runs[i]["model_version"] == "1" for i in (0, 1, 2, 4))


def test_analyst_pages_show_the_runs_and_the_monitoring(drill):
    """The real app on the drill's database: analysts see runs and plots; locality teams do not."""
    import json
    from pathlib import Path

    from fastapi.testclient import TestClient

    from serving.app import create_app
    from serving.keys import create_key
    from upstream.disclosure import suppress_count

    settings = Settings(home=drill["home"], pseudo_key="test-key-not-secret")
    engine = get_engine(settings.db_url)
    analyst = create_key(engine, "analyst", [])
    locality = create_key(engine, "locality", ["North"])
    with TestClient(create_app(settings)) as client:
        assert client.get("/ui/runs", follow_redirects=False).headers["location"] == "/ui/login"
        assert client.get("/ui/monitoring", headers={"X-API-Key": locality}).status_code == 403
        runs = client.get("/ui/runs", headers={"X-API-Key": analyst})
        monitoring = client.get("/ui/monitoring", headers={"X-API-Key": analyst})
    assert runs.status_code == 200
    assert runs.text.count('data-flow-run="') == 7
    assert runs.text.count(">failed") == 2 and "step score: InjectedFailure" in runs.text
    assert "MLflow training run" in runs.text and "MLflow monitoring run" in runs.text
    # Delivery counts as published: the worked-out suppression of the summary's own counts
    week_dir = next(Path(drill["home"], "weeks").iterdir())
    summary = json.loads((week_dir / "ingest" / "validation_summary.json").read_text())
    deaths = summary["deaths"]["rows_in"]
    shown = suppress_count(deaths)
    assert f"deaths: {'<8' if shown is None else f'{shown:,}'} / 0" in runs.text
    assert monitoring.status_code == 200
    # the latest monitored week is the 40%-missing delivery: its volume alert heads the table
    assert 'id="flagged"' in monitoring.text and "gp_events" in monitoring.text
    assert monitoring.text.count('src="data:image/png;base64,') >= 4
