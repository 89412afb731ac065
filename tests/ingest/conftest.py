"""A small hand-made delivery whose every defect, and the exact reason ingest must give, is written out.

NHS numbers are made with the Modulus 11 rule by hand (``_nhs``), SNOMED codes come from the published
falls code list, and the expected reasons below were worked out row by row, not taken from ingest.
"""

from __future__ import annotations

import json
from datetime import date, timedelta
from pathlib import Path

import polars as pl
import pytest

from expectations.identifiers import nhs_check_digit
from upstream.settings import Settings

AS_OF = date(2026, 1, 1)


def _nhs(stem: int) -> str:
    """First valid NHS number at or after the 9-digit stem (skips stems with no check digit)."""
    while True:
        nine = f"{stem:09d}"
        check = nhs_check_digit(nine)
        if check is not None:
            return nine + str(check)
        stem += 1


P0, P1, P5, P6, P7, P8, P9, P4 = (_nhs(400000000 + 10 * i) for i in range(8))
UNKNOWN = _nhs(499000000)
_p2_valid = _nhs(450000000)
P2_BAD = _p2_valid[:9] + str((int(_p2_valid[9]) + 1) % 10)  # wrong check digit
FALL = "161898004"  # Falls (published falls SNOMED list)
FALL_WHEELCHAIR = "17886000"
BAD_VERHOEFF = "161898005"

D = date


def _residents() -> pl.DataFrame:
    base = dict(sex="1", ethnic_category="A", lsoa11="E01000001", uprn="100", gp_practice="G82001",
                locality="North", registration_start=D(2000, 1, 1), date_of_death=None)
    rows = [
        dict(base, nhs_number=P0, date_of_birth=D(1950, 3, 1)),                      # 0 valid
        dict(base, nhs_number=P1, date_of_birth=D(1940, 5, 5), sex="2",
             locality="Newcastle (West)"),                                            # 1 valid
        dict(base, nhs_number=P2_BAD, date_of_birth=D(1960, 1, 1)),                  # 2 bad mod 11
        dict(base, nhs_number=P0, date_of_birth=D(1951, 1, 1)),                      # 3 repeats row 0's person
        dict(base, nhs_number=P4, date_of_birth=D(1899, 12, 31)),                    # 4 before 1900, age 126
        dict(base, nhs_number=P5, date_of_birth=D(1970, 1, 1), sex="X",
             locality="North/East"),                 # 5 sex not in set; "/" cannot be one URL path segment
        dict(base, nhs_number=P6, date_of_birth=D(2026, 6, 1)),                      # 6 future, age < 0
        dict(base, nhs_number=P7, date_of_birth=D(1980, 1, 1), registration_start=None),  # 7 null required
        dict(base, nhs_number=P8, date_of_birth=D(1910, 1, 2)),                      # 8 valid: aged 115
        dict(base, nhs_number=P9, date_of_birth=D(1910, 1, 1)),                      # 9 aged 116 today
    ]
    return pl.DataFrame(rows, schema={"nhs_number": pl.String, "date_of_birth": pl.Date, "sex": pl.String,
                                      "ethnic_category": pl.String, "lsoa11": pl.String, "uprn": pl.String,
                                      "gp_practice": pl.String, "locality": pl.String,
                                      "registration_start": pl.Date, "date_of_death": pl.Date})


def _gp_events() -> pl.DataFrame:
    rows = [
        (P0, D(2025, 1, 1), FALL, 1.5),            # 0 valid
        (P1, D(2024, 5, 5), FALL_WHEELCHAIR, None),  # 1 valid
        (P0, D(2025, 1, 1), FALL, 1.5),            # 2 exact copy of row 0
        (P0, D(2025, 2, 1), BAD_VERHOEFF, None),   # 3 Verhoeff fails
        (P5, D(2025, 2, 1), FALL, None),           # 4 person quarantined in residents
        (UNKNOWN, D(2025, 2, 1), FALL, None),      # 5 valid NHS number, not a resident
        (P1, D(2027, 1, 1), FALL, None),           # 6 future
        (P2_BAD, D(2025, 2, 1), FALL, None),       # 7 bad NHS number
        (P8, None, FALL, None),                    # 8 null event date
        (P1, D(2025, 3, 1), "12345", None),        # 9 too short
    ]
    return pl.DataFrame(rows, schema={"nhs_number": pl.String, "event_date": pl.Date, "snomed_code": pl.String,
                                      "value": pl.Float64}, orient="row")


def _spells() -> pl.DataFrame:
    rows = [
        (P0, "S1", D(2025, 1, 1), D(2025, 1, 5), "21", "w19.9", "I10, e11.9", "19"),  # 0 valid
        (P1, "S2", D(2025, 3, 1), None, "11", "W19X", None, None),                    # 1 valid, still in
        (P1, "S3", D(2025, 3, 10), D(2025, 3, 1), "21", "I10", "", "19"),              # 2 discharge < admission
        (P8, "S4", D(2025, 4, 1), D(2025, 4, 2), "ZZ", "I10", "", "19"),               # 3 bad admission method
        (P8, "S1", D(2025, 5, 1), D(2025, 5, 2), "21", "I10", "", "19"),               # 4 spell id repeated
        (P0, "S5", D(2025, 6, 1), D(2025, 6, 2), "21", "XYZ", "", "19"),               # 5 not ICD-shaped
        (P0, "S6", D(2025, 7, 1), D(2025, 7, 2), "21", "I10", "I10,ABC", "19"),        # 6 bad secondary
        (P8, "S7", D(2025, 8, 1), D(2025, 8, 3), "22", "R29.6", "W19-", "51"),         # 7 valid
        (P0, "S8", D(2025, 1, 3), D(2025, 1, 4), "21", "I10", "", "19"),               # 8 inside S1
        (P1, "S9", D(2025, 4, 1), None, "21", "I10", "", None),                        # 9 second open spell
        (P8, "S10", D(2025, 9, 1), None, "11", "I10", "", "19"),                       # 10 open, has destination
        (P8, "S11", D(2025, 9, 10), AS_OF + timedelta(days=3), "11", "I10", "", "19"),  # 11 discharged after extract
    ]
    return pl.DataFrame(rows, schema={"nhs_number": pl.String, "spell_id": pl.String, "admission_date": pl.Date,
                                      "discharge_date": pl.Date, "admission_method": pl.String,
                                      "primary_diagnosis": pl.String, "secondary_diagnoses": pl.String,
                                      "discharge_destination": pl.String}, orient="row")


AE_CSV = (
    "nhs_number,arrival_date,arrival_mode,chief_complaint_snomed,diagnosis_snomed,admitted\n"
    f"{P0},2025-01-01,1,{FALL},,true\n"                      # 0 valid
    f"{P1},2025-01-02,3,{FALL},,false\n"                     # 1 arrival mode not in set
    f"{P8},2025-01-03,2,{FALL},{FALL_WHEELCHAIR},maybe\n"    # 2 admitted does not parse
    f"{P8},2025-01-04,2,{FALL},{FALL_WHEELCHAIR},false\n"    # 3 valid
)


def _social_care() -> pl.DataFrame:
    rows = [
        (P0, "Service", D(2025, 1, 1), None, "Long Term Support: Nursing Care", "Telecare",
         "Support with Memory & Cognition", None, 700.0),                                  # 0 valid
        (P1, "Visit", D(2025, 1, 1), None, None, None, None, None, None),                 # 1 bad event type
        (P1, "Service", D(2025, 2, 1), D(2025, 1, 1), "Carer Support", None, None, None, None),  # 2 end < start
        (P8, "Request", D(2025, 3, 1), D(2025, 3, 1), None, None, None, "NFA", None),      # 3 valid
    ]
    return pl.DataFrame(rows, schema={"nhs_number": pl.String, "event_type": pl.String,
                                      "event_start_date": pl.Date, "event_end_date": pl.Date,
                                      "service_type": pl.String, "service_component": pl.String,
                                      "primary_support_reason": pl.String, "event_outcome": pl.String,
                                      "unit_cost": pl.Float64}, orient="row")


def _deaths() -> pl.DataFrame:
    rows = [(P8, D(2025, 12, 1), "I21.9"), (P1, D(1800, 1, 1), "I10"), (P8, D(2025, 12, 2), "I10")]
    return pl.DataFrame(rows, schema={"nhs_number": pl.String, "date_of_death": pl.Date,
                                      "underlying_cause_icd10": pl.String}, orient="row")


#: source -> {row_index: reason}, worked out by hand from the rows above.
EXPECTED_REASONS = {
    "residents": {
        2: "nhs_number_mod11",
        3: "duplicate_row",
        4: "date_not_before_earliest(date_of_birth); age_0_115",
        5: "in_value_set(sex); locality_name_format(locality)",
        6: "date_not_after_as_of(date_of_birth); age_0_115",
        7: "not_null(registration_start)",
        9: "age_0_115",
    },
    "gp_events": {
        2: "duplicate_row",
        3: "snomed_verhoeff_length(snomed_code)",
        4: "person_in_residents",
        5: "person_in_residents",
        6: "date_not_after_as_of(event_date)",
        7: "nhs_number_mod11; person_in_residents",
        8: "not_null(event_date)",
        9: "snomed_verhoeff_length(snomed_code)",
    },
    "hospital_spells": {
        2: "discharge_on_or_after_admission",
        3: "in_value_set(admission_method)",
        4: "duplicate_row",
        5: "icd10_format(primary_diagnosis)",
        6: "icd10_list_format(secondary_diagnoses)",
        8: "spell_starts_inside_another_spell",
        9: "second_open_spell",
        10: "discharge_destination_iff_discharged",
        11: "date_not_after_as_of(discharge_date)",
    },
    "ae_attendances": {1: "in_value_set(arrival_mode)", 2: "type(admitted)"},
    "social_care_events": {1: "in_value_set(event_type)", 2: "end_on_or_after_start"},
    "deaths": {1: "date_not_before_earliest(date_of_death)", 2: "duplicate_row"},
}
ROWS_IN = {"residents": 10, "gp_events": 10, "hospital_spells": 12, "ae_attendances": 4,
           "social_care_events": 4, "deaths": 3}


def write_delivery(raw: Path) -> Path:
    raw.mkdir(parents=True, exist_ok=True)
    _residents().write_parquet(raw / "residents.parquet")
    _gp_events().write_parquet(raw / "gp_events.parquet")
    _spells().write_parquet(raw / "hospital_spells.parquet")
    (raw / "ae_attendances.csv").write_text(AE_CSV)
    _social_care().write_parquet(raw / "social_care_events.parquet")
    _deaths().write_parquet(raw / "deaths.parquet")
    (raw / "_delivery.json").write_text(json.dumps({"extract_date": AS_OF.isoformat()}))
    return raw


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path / "home", pseudo_key="test-key-not-secret")


@pytest.fixture
def delivery(tmp_path: Path) -> Path:
    return write_delivery(tmp_path / "raw")
