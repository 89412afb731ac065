"""Labels on hand-written people; every expected outcome is worked out from DESIGN §5 by hand."""

from __future__ import annotations

from datetime import date

import polars as pl
import pytest

from models.labels import build_labels, data_end
from upstream.errors import BadFileError

T = date(2024, 1, 1)  # outcome window [2024-01-01, 2024-12-31): 2024 is a leap year, T + 365 = 2024-12-31
D = date.fromisoformat


def _write_clean(tmp_path):
    residents = pl.DataFrame(
        {
            "person_id": list("ABCDEFGHIJKL"),
            "date_of_birth": [D("1940-01-01")] * 12,
            "sex": ["1"] * 12,
            "ethnic_category": ["A"] * 12,
            "lsoa11": ["E01000001"] * 12,
            "uprn": [str(i) for i in range(12)],
            "gp_practice": ["G82001"] * 12,
            "locality": ["North"] * 12,
            "registration_start": [D("2000-01-01")] * 7 + [T] + [D("2000-01-01")] * 4,
            "date_of_death": [None] * 5 + [D("2024-07-01"), D("2023-11-01")] + [None] * 5,
        }
    )
    spells = pl.DataFrame(
        {
            "person_id": ["A", "B", "B", "B", "L"],
            "spell_id": ["s1", "s2", "s3", "s4", "s5"],
            "admission_date": [D("2024-03-01"), D("2024-05-01"), D("2023-12-31"), D("2024-12-31"), D("2024-12-30")],
            "discharge_date": [D("2024-03-05"), D("2024-05-02"), D("2024-01-02"), D("2025-01-02"), D("2025-01-01")],
            "admission_method": ["21", "11", "21", "22", "2D"],
            "primary_diagnosis": ["W19"] * 5,
            "secondary_diagnoses": [""] * 5,
            "discharge_destination": ["19"] * 5,
        }
    )
    care = pl.DataFrame(
        {
            "person_id": ["C", "D", "D", "E", "E", "I", "K"],
            "event_type": ["Service", "Service", "Service", "Service", "Service", "Service", "Assessment"],
            "event_start_date": [D("2024-05-01"), D("2023-06-01"), D("2024-06-01"), D("2023-01-01"),
                                 D("2024-02-01"), D("2024-03-01"), D("2024-03-01")],
            "event_end_date": [None, None, None, D("2023-12-31"), None, D("2024-04-01"), D("2024-03-01")],
            "service_type": ["Long Term Support: Community", "Long Term Support: Residential Care",
                             "Long Term Support: Nursing Care", "Long Term Support: Community",
                             "Long Term Support: Community", "Short Term Support: ST-Max", None],
            "service_component": [None] * 7,
            "primary_support_reason": [None] * 7,
            "event_outcome": [None] * 7,
            "unit_cost": [None] * 7,
        },
        schema_overrides={"event_end_date": pl.Date, "service_type": pl.String, "service_component": pl.String,
                          "primary_support_reason": pl.String, "event_outcome": pl.String, "unit_cost": pl.Float64},
    )
    deaths = pl.DataFrame(
        {
            "person_id": ["F", "G", "J"],
            "date_of_death": [D("2024-07-01"), D("2023-11-01"), D("2024-02-02")],
            "underlying_cause_icd10": ["I21", "I21", "J18"],
        }
    )
    for name, frame in {"residents": residents, "hospital_spells": spells, "social_care_events": care,
                        "deaths": deaths}.items():
        frame.write_parquet(tmp_path / f"{name}.parquet")
    return tmp_path


def test_labels_follow_design_definitions(tmp_path):
    labels = build_labels(_write_clean(tmp_path), T)
    got = {row["person_id"]: (row["emergency_admission"], row["care_escalation"], row["crisis"])
           for row in labels.iter_rows(named=True)}
    expected = {
        "A": (True, False, True),    # emergency admission in the window
        "B": (False, False, False),  # elective in window; emergencies the day before T and on T + 365
        "C": (False, True, True),    # first long-term service in the window
        "D": (False, False, False),  # residential care already open at T; the nursing move is not "new"
        "E": (False, True, True),    # previous service ended before T, a new one starts in the window
        "F": (False, False, True),   # died in the window
        "I": (False, False, False),  # reablement (short-term) is not escalation
        "J": (False, False, True),   # death known only from the deaths register
        "K": (False, False, False),  # an assessment is not a service
        "L": (True, False, True),    # emergency admission on the last day of the window
    }
    # G died before T and H registered on T: neither is in the population.
    assert got == expected
    assert labels.schema["crisis"] == pl.Boolean


def test_missing_clean_file_is_a_clear_error(tmp_path):
    with pytest.raises(BadFileError, match=r"residents\.parquet"):
        build_labels(tmp_path, T)


def test_data_end_is_latest_recorded_date(tmp_path):
    assert data_end(_write_clean(tmp_path)) == D("2024-12-31")
