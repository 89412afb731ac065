"""``GET /models/current`` against a real MLflow sqlite tracking store in a temporary directory."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from serving.app import create_app
from serving.keys import create_key
from upstream.settings import Settings
from upstream.store import get_engine

CARD = "# Model card: upstream-crisis\n\nIntended use: weekly rising-risk lists.\n\nSmall numbers: rule.\n"
#: What MLflow holds (raw, for data scientists) and what any key may see. The issue's own example: 809 events
#: in 5538 people. Worked by hand: n -> 5540; events 809 -> 810, rate 810/5540 = 0.1462 (4 places, so that
#: 0.1462 x 5540 = 810, the rounded count, not 809); AUROC and
#: slope to 2 decimals; sensitivity over 809 events may have 2 decimals (809 x 0.01 = 8 >= 5), PPV over
#: ceil(0.2 x 5538) = 1108 flagged has 2 (1108 x 0.001 = 1.1 < 5 rules out 3).
RAW_METRICS = {"test_auroc": 0.78123, "test_calibration_slope": 0.9731, "test_n": 5538.0,
               "test_event_rate": 809 / 5538, "test_sensitivity_top20": 400 / 809, "test_ppv_top20": 400 / 1108}
SHOWN_METRICS = {"test_auroc": 0.78, "test_calibration_slope": 0.97, "test_n": 5540.0, "test_event_rate": 0.1462,
                 "test_sensitivity_top20": 0.49, "test_ppv_top20": 0.36}


def _register_champion(settings: Settings) -> str:
    """What models/ does at promotion: a run with metrics and a card, a registered version, alias champion."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=settings.tracking_uri, registry_uri=settings.tracking_uri)
    experiment_id = client.create_experiment("upstream", artifact_location=(settings.artifact_root).as_uri())
    run = client.create_run(experiment_id)
    for name, value in RAW_METRICS.items():
        client.log_metric(run.info.run_id, name, value)
    client.log_text(run.info.run_id, CARD, "model_card/model_card.md")
    client.set_terminated(run.info.run_id)
    client.create_registered_model("upstream-crisis")
    client.create_model_version("upstream-crisis", source=f"{run.info.artifact_uri}/model", run_id=run.info.run_id)
    second = client.create_model_version("upstream-crisis", source=f"{run.info.artifact_uri}/model", run_id=run.info.run_id)
    client.set_registered_model_alias("upstream-crisis", "champion", second.version)
    return run.info.run_id


def test_current_model_card_and_metrics(tmp_path):
    import mlflow

    settings = Settings(home=tmp_path, pseudo_key="test-key-not-secret")
    run_id = _register_champion(settings)
    process_tracking_uri = mlflow.get_tracking_uri()
    key = create_key(get_engine(settings.db_url), "analyst", [])
    with TestClient(create_app(settings)) as client:
        r = client.get("/models/current", headers={"X-API-Key": key})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["model_name"] == "upstream-crisis"
        assert body["version"] == "2"  # the alias, not the latest-created or first version
        assert body["run_id"] == run_id
        assert body["metrics"] == SHOWN_METRICS
        assert body["model_card"] == CARD
        assert body["alias"] == "champion"
        # No champion for another target yet.
        assert client.get("/models/current?target=care_escalation", headers={"X-API-Key": key}).status_code == 404
        assert client.get("/models/current").status_code == 401
    # Serving reads the registry through its own client: MLflow's process-wide store is left as it was.
    assert mlflow.get_tracking_uri() == process_tracking_uri != settings.tracking_uri


def test_model_card_reads_the_champion_through_models_registry(tmp_path):
    """Serving's one path to the champion (there is no second, direct-MLflow path): alias, metrics, card."""
    from serving.model_card import NoChampion, champion_summary

    settings = Settings(home=tmp_path, pseudo_key="test-key-not-secret")
    run_id = _register_champion(settings)
    summary = champion_summary("crisis", settings)
    assert (summary["version"], summary["run_id"], summary["model_card"]) == ("2", run_id, CARD)
    assert summary["metrics"] == SHOWN_METRICS
    with pytest.raises(NoChampion):
        champion_summary("care_escalation", settings)
