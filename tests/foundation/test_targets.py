"""One ``TARGETS`` declaration drives the setting, the CLI, the API enum, the model card and the labels."""

from __future__ import annotations

import argparse
from datetime import date

import polars as pl
import pytest
from pydantic import ValidationError

from models import cli as models_cli
from models.card import card_context
from models.labels import build_labels
from serving.app import create_app
from upstream.settings import Settings
from upstream.targets import TARGETS

#: written out by hand from DESIGN §5, so a renamed or dropped target fails here rather than passing silently
EXPECTED = ["emergency_admission", "care_escalation", "crisis"]


def test_the_declaration_is_the_three_design_outcomes() -> None:
    assert list(TARGETS) == EXPECTED


def test_settings_reject_an_undeclared_target(tmp_path) -> None:
    assert Settings(home=tmp_path, target="care_escalation").target == "care_escalation"
    with pytest.raises(ValidationError) as caught:
        Settings(home=tmp_path, target="crises")
    assert "unknown target 'crises'; choose one of emergency_admission, care_escalation, crisis" in str(caught.value)


def test_cli_choices_are_the_targets() -> None:
    parser = argparse.ArgumentParser()
    models_cli.configure(parser)
    assert parser.parse_args(["--target", "emergency_admission", "--index-date", "2025-01-06"]).target == (
        "emergency_admission"
    )
    with pytest.raises(SystemExit):
        parser.parse_args(["--target", "crises", "--index-date", "2025-01-06"])


def test_api_target_enum_is_the_targets(tmp_path) -> None:
    settings = Settings(home=tmp_path, pseudo_key="test-key-not-secret")
    schema = create_app(settings).openapi()  # the schema the (key-protected) /openapi.json serves
    enums = [
        schema["components"]["schemas"][ref["$ref"].rsplit("/", 1)[1]]["enum"]
        for path in schema["paths"].values()
        for op in path.values()
        for param in op.get("parameters", [])
        if param["name"] == "target"
        for ref in param["schema"].get("anyOf", [param["schema"]])
        if "$ref" in ref
    ]
    assert enums and all(values == EXPECTED for values in enums)


def test_model_card_says_what_each_target_predicts() -> None:
    context = card_context(
        target="care_escalation", version="1", run_id="r", alias="champion", chosen="logistic", metrics={},
        candidate_metrics={}, baseline_metrics={}, fairness=pl.DataFrame(), context={}, gate={}, codelists={},
    )
    assert "new long-term social care service or care-home admission in the next 12 months" in context["intended_use"]


def test_labels_build_one_column_per_target(tmp_path) -> None:
    """One resident, no events: a row with every declared target False."""
    day = date(2024, 1, 1)
    pl.DataFrame({"person_id": ["p1"], "date_of_birth": [date(1950, 1, 1)], "registration_start": [date(2000, 1, 1)],
                  "date_of_death": [None]}, schema_overrides={"date_of_death": pl.Date}).write_parquet(
        tmp_path / "residents.parquet")
    pl.DataFrame(schema={"person_id": pl.String, "date_of_death": pl.Date}).write_parquet(tmp_path / "deaths.parquet")
    pl.DataFrame(schema={"person_id": pl.String, "admission_method": pl.String, "admission_date": pl.Date}).write_parquet(
        tmp_path / "hospital_spells.parquet")
    pl.DataFrame(schema={"person_id": pl.String, "event_type": pl.String, "service_type": pl.String,
                         "event_start_date": pl.Date, "event_end_date": pl.Date}).write_parquet(
        tmp_path / "social_care_events.parquet")
    labels = build_labels(tmp_path, day)
    assert labels.columns == ["person_id", *EXPECTED]
    assert labels.row(0) == ("p1", False, False, False)
