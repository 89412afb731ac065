"""The registry is the single declaration: table columns, dictionary, reasons and CLI all follow it."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from features.codelists import EFI_DEFICIT_COUNT, EFI_DEFICITS, hfrs_weights
from features.docs import DEFAULT_PATH, render_data_dictionary
from features.registry import FEATURES, MODEL_FEATURES, reason_text
from tests.features.conftest import write_clean
from upstream.cli import main

REQUIRED = tuple(["person_id", "index_date", "age", "sex", "imd_decile", "ethnic_group", "locality", "falls_12m", "falls_gp_12m", "falls_admissions_12m", "falls_admissions_24m", "ae_falls_12m", "days_since_last_fall", "efi", "efi_category", "hfrs", "hfrs_band", "lives_alone", "bereaved_3m", "bereaved_6m", "bereaved_12m", "carer", "housebound", "emergency_admissions_3m", "emergency_admissions_12m", "emergency_admissions_24m", "bed_days_12m", "ae_attendances_3m", "ae_attendances_12m", "ambulance_arrivals_12m", "gp_contacts_12m", "utilisation_trend", "in_long_term_care", "reablement_12m", "reablement_outcome", "telecare", "equipment", "requests_without_service_12m", "care_home_code", "dementia", "multimorbidity_count"])


def test_required_columns_are_declared() -> None:
    assert not set(REQUIRED) - set(FEATURES)


def test_model_features_are_numeric_or_boolean_and_exclude_ethnicity() -> None:
    assert "ethnic_group" not in MODEL_FEATURES and "person_id" not in MODEL_FEATURES
    assert len(MODEL_FEATURES) == len(set(MODEL_FEATURES))
    for name in MODEL_FEATURES:
        assert FEATURES[name].dtype in (pl.Int32, pl.Float64, pl.Boolean), name


def test_code_lists_are_the_published_ones() -> None:
    assert len(EFI_DEFICITS) == 35 and EFI_DEFICIT_COUNT == 36
    weights = hfrs_weights()
    assert len(weights) == 109 and round(sum(weights.values()), 1) == 173.2  # Gilbert 2018 total
    for feature in FEATURES.values():
        for codelist in feature.codelists:
            assert codelist.path.exists() and codelist.codes(), feature.name


@pytest.mark.parametrize(
    ("name", "value", "text"),
    [
        ("falls_12m", 2, "2 falls in the last 12 months"),
        ("falls_12m", 1, "1 fall in the last 12 months"),
        ("falls_12m", 0, None),
        ("lives_alone", True, "lives alone"),
        ("lives_alone", False, None),
        ("bereaved_6m", True, "bereaved in the last 6 months"),
        ("bereaved_3m", True, "bereaved in the last 3 months"),
        ("efi_category", "moderate", "eFI: moderate frailty"),
        ("efi_category", "fit", None),
        ("emergency_admissions_24m", 3, "3 emergency admissions in the last 2 years"),
        ("hfrs_band", "high", "hospital frailty risk: high"),
        ("efi", 0.25, "eFI 0.25"),
        ("days_since_last_fall", None, None),
        ("no_such_feature", 1, None),
    ],
)
def test_reason_text(name: str, value: object, text: str | None) -> None:
    assert reason_text(name, value) == text


def test_reason_text_accepts_model_side_values() -> None:
    # models hand over numpy scalars and floats (booleans become 1.0 in a feature matrix)
    assert reason_text("lives_alone", 1.0) == "lives alone"
    assert reason_text("lives_alone", np.bool_(True)) == "lives alone"
    assert reason_text("lives_alone", 0.0) is None
    assert reason_text("falls_12m", np.int64(3)) == "3 falls in the last 12 months"
    assert reason_text("falls_12m", 2.0) == "2 falls in the last 12 months"
    assert reason_text("days_since_last_fall", float("nan")) is None
    assert reason_text("days_since_last_fall", np.float64(30.0)) == "last fall 30 days ago"


def test_committed_data_dictionary_is_up_to_date() -> None:
    assert DEFAULT_PATH.read_text(encoding="utf-8") == render_data_dictionary(), "run `upstream docs`"


def test_data_dictionary_documents_every_feature_and_its_window() -> None:
    text = render_data_dictionary()
    for name in FEATURES:
        assert f"| `{name}` |" in text
    assert "| `hfrs` | Float64 | yes | hospital_spells | 730 days (2 years) |" in text
    assert "polypharmacy" in text.lower() and "fairness audit" in text


def test_docs_cli_writes_the_dictionary(tmp_path: Path) -> None:
    out = tmp_path / "dd.md"
    assert main(["docs", "--out", str(out)]) == 0
    assert out.read_text(encoding="utf-8") == render_data_dictionary()


def test_features_cli_writes_the_table(tmp_path: Path) -> None:
    clean = write_clean(tmp_path / "clean", residents=[{"person_id": "a"}, {"person_id": "b"}])
    out = tmp_path / "out" / "f.parquet"
    assert main(["features", "--clean", str(clean), "--index-date", "2024-06-01", "--out", str(out)]) == 0
    table = pl.read_parquet(out)
    assert table["person_id"].to_list() == ["a", "b"]
    assert table.columns == list(FEATURES)
    assert table["index_date"].to_list() == [date(2024, 6, 1)] * 2


def test_features_cli_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    clean = write_clean(tmp_path / "clean", residents=[{"person_id": "a"}])
    out = tmp_path / "f.parquet"
    assert main(["features", "--clean", str(clean), "--index-date", "2024-13-01", "--out", str(out)]) == 2
    assert "YYYY-MM-DD" in capsys.readouterr().err
    assert main(["features", "--clean", str(tmp_path / "nope"), "--index-date", "2024-06-01",
                 "--out", str(out)]) == 2
    (clean / "residents.parquet").unlink()
    assert main(["features", "--clean", str(clean), "--index-date", "2024-06-01", "--out", str(out)]) == 2
    assert "residents" in capsys.readouterr().err
    pl.DataFrame({"person_id": ["a"]}).write_parquet(clean / "residents.parquet")
    assert main(["features", "--clean", str(clean), "--index-date", "2024-06-01", "--out", str(out)]) == 2
    assert "date_of_birth" in capsys.readouterr().err
    assert not out.exists()


def test_reason_text_rounds_floats_for_people():
    from features.registry import reason_text

    assert reason_text("hfrs", 90.80000000000001) == "Hospital Frailty Risk Score 90.8"
    assert reason_text("hfrs", 16.0) == "Hospital Frailty Risk Score 16"
