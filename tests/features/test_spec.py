"""ehrQL-style spec tests: a handful of hand-written people, each with expected values worked out by hand.

Index date T = 2024-06-01 (2024 is a leap year). Useful window starts, worked out on a calendar:
  T - 91 days  = 2024-03-02 (3-month windows)
  T - 182 days = 2023-12-02 (6-month windows)
  T - 365 days = 2023-06-02 (12-month windows)
  T - 730 days = 2022-06-02 (24-month windows, HFRS)
For every column a person's expectation does not mention, the expected value is the "nothing
recorded" default: 0 for counts, False for flags, 0.0 for scores, null for days_since_last_fall.
"""

from __future__ import annotations

from datetime import date

import polars as pl
import pytest

from features.build import build_features
from features.codelists import (
    CARER_SNOMED,
    DEMENTIA_SNOMED,
    EFI_DEFICITS,
    HOUSEBOUND_SNOMED,
    NO_LONGER_HOUSEBOUND_SNOMED,
)
from features.registry import FEATURES
from tests.features.conftest import unique_code

T = date(2024, 6, 1)
OLD = date(2020, 1, 1)  # long before T, outside every window

FALL_A = "161898004"  # "Falls": in falls_snomed.csv and in the eFI falls deficit list
FALL_B = "1912002"  # "Fall": likewise


def _gp(person: str, day: date, code: str) -> dict:
    return {"person_id": person, "event_date": day, "snomed_code": code}


@pytest.fixture(scope="module")
def table(tmp_path_factory: pytest.TempPathFactory) -> pl.DataFrame:
    from tests.features.conftest import write_clean

    efi = {name: unique_code(cl) for name, cl in EFI_DEFICITS.items()}
    rows = {
        "residents": [
            # alice: born 1940-06-02, birthday not yet reached on 2024-06-01 -> 83; LSOA decile 4; alone.
            {"person_id": "alice", "date_of_birth": date(1940, 6, 2), "sex": "2", "ethnic_category": "H",
             "lsoa11": "E01016012", "uprn": "U-alice"},
            # bob and carol share a home; carol died 2024-03-01.
            {"person_id": "bob", "date_of_birth": date(1930, 1, 1), "sex": "1", "ethnic_category": "99",
             "lsoa11": "E09999999", "uprn": "U-home", "locality": "South"},
            {"person_id": "carol", "date_of_birth": date(1932, 1, 1), "uprn": "U-home",
             "date_of_death": date(2024, 3, 1)},
            # dave and erin share a home, both alive.
            {"person_id": "dave", "date_of_birth": date(1950, 6, 1), "sex": "1", "uprn": "U-de"},
            {"person_id": "erin", "date_of_birth": date(1950, 12, 31), "uprn": "U-de", "ethnic_category": "M"},
            # frank registered on T itself: not yet registered at T -> not in the table.
            {"person_id": "frank", "registration_start": T},
            # gina died the day before T (residents only): not in the table.
            {"person_id": "gina", "date_of_death": date(2024, 5, 31)},
            # hank dies on T (registered in deaths only): alive at T -> in the table.
            {"person_id": "hank", "date_of_birth": date(2000, 2, 29), "sex": "9", "ethnic_category": "C"},
        ],
        "deaths": [
            {"person_id": "carol", "date_of_death": date(2024, 3, 1), "underlying_cause_icd10": "I219"},
            {"person_id": "hank", "date_of_death": T, "underlying_cause_icd10": "I219"},
        ],
        "gp_events": [
            # alice's falls: 2024-01-10 twice (one date), 2023-09-01, and 2023-05-01 (before T-365).
            _gp("alice", date(2024, 1, 10), FALL_A),
            _gp("alice", date(2024, 1, 10), FALL_B),
            _gp("alice", date(2023, 9, 1), FALL_B),
            _gp("alice", date(2023, 5, 1), FALL_A),
            # alice's conditions, recorded long ago (eFI is "ever"): 4 diseases.
            _gp("alice", OLD, efi["hypertension"]),
            _gp("alice", OLD, efi["diabetes"]),
            _gp("alice", OLD, efi["heart-failure"]),
            _gp("alice", OLD, efi["arthritis"]),
            # bob: housebound, then no longer housebound -> not housebound; a carer.
            _gp("bob", date(2022, 1, 1), unique_code(HOUSEBOUND_SNOMED)),
            _gp("bob", date(2023, 1, 1), unique_code(NO_LONGER_HOUSEBOUND_SNOMED)),
            _gp("bob", date(2023, 1, 1), unique_code(CARER_SNOMED)),
            # dave: no-longer-housebound, then housebound again -> housebound; dementia.
            _gp("dave", date(2022, 1, 1), unique_code(NO_LONGER_HOUSEBOUND_SNOMED)),
            _gp("dave", date(2023, 1, 1), unique_code(HOUSEBOUND_SNOMED)),
            _gp("dave", date(2024, 5, 1), unique_code(DEMENTIA_SNOMED)),
            # dave: 9 more eFI deficits, one of them a disease (ckd).
            *[_gp("dave", OLD, efi[d]) for d in (
                "ckd", "dizziness", "dyspnoea", "foot-problems", "hearing-loss", "sleep-disturbance",
                "vision-problems", "weight-loss", "skin-ulcer")],
        ],
        "hospital_spells": [
            # alice: emergency fall admission 2024-04-20 to 2024-04-30 (S72 1.4 + W19 3.2 HFRS points).
            {"person_id": "alice", "admission_date": date(2024, 4, 20), "discharge_date": date(2024, 4, 30),
             "admission_method": "21", "primary_diagnosis": "S720", "secondary_diagnoses": "W19"},
            # alice: elective 2022-07-01 (inside 730 days), dementia in Alzheimer's (F00 7.1) and W19 again.
            {"person_id": "alice", "admission_date": date(2022, 7, 1), "discharge_date": date(2022, 7, 3),
             "admission_method": "11", "primary_diagnosis": "F009", "secondary_diagnoses": "W19,I10"},
            # dave: emergency spell 2022-05-01 (before T-730: no HFRS, not in 24 m) and one 2023-12-01
            # still open at T (no discharge): bed days count up to T.
            {"person_id": "dave", "admission_date": date(2022, 5, 1), "discharge_date": date(2022, 5, 9),
             "admission_method": "22", "primary_diagnosis": "F00"},
            {"person_id": "dave", "admission_date": date(2024, 5, 25), "discharge_date": None,
             "admission_method": "2A", "primary_diagnosis": "N390", "secondary_diagnoses": "R296,F05"},
            # dave: an elective spell started 2023-05-30, discharged 2023-06-05: only nights from T-365
            # (2023-06-02) count: 3 bed days.
            {"person_id": "dave", "admission_date": date(2023, 5, 30), "discharge_date": date(2023, 6, 5),
             "admission_method": "12", "primary_diagnosis": "Z000"},
        ],
        "ae_attendances": [
            # alice: A&E for a fall, by ambulance, on the same day as a GP falls code.
            {"person_id": "alice", "arrival_date": date(2024, 1, 10), "arrival_mode": "1",
             "chief_complaint_snomed": FALL_B, "admitted": False},
            # dave: two walk-ins in the last 3 months, one ambulance 20 months ago.
            {"person_id": "dave", "arrival_date": date(2024, 5, 25), "arrival_mode": "2",
             "chief_complaint_snomed": "21522001", "admitted": True},
            {"person_id": "dave", "arrival_date": date(2024, 4, 1), "arrival_mode": "2",
             "chief_complaint_snomed": "21522001"},
            {"person_id": "dave", "arrival_date": date(2022, 10, 1), "arrival_mode": "1",
             "chief_complaint_snomed": "21522001"},
        ],
        "social_care_events": [
            {"person_id": "erin", "event_type": "Request", "event_start_date": date(2023, 10, 1)},
            {"person_id": "erin", "event_type": "Assessment", "event_start_date": date(2023, 10, 15)},
            {"person_id": "erin", "event_type": "Service", "event_start_date": date(2023, 11, 1),
             "event_end_date": date(2023, 12, 1), "service_type": "Short Term Support: ST-Max",
             "service_component": "Home Support", "event_outcome": "Ongoing Low Level Support"},
            {"person_id": "erin", "event_type": "Service", "event_start_date": date(2024, 1, 5),
             "service_type": "Long Term Support: Community", "service_component": "Home Support"},
            # telecare ended the day before T -> not open at T.
            {"person_id": "erin", "event_type": "Service", "event_start_date": date(2024, 2, 1),
             "event_end_date": date(2024, 5, 31), "service_type": "Long Term Support: Community",
             "service_component": "Telecare"},
            {"person_id": "erin", "event_type": "Service", "event_start_date": date(2024, 3, 1),
             "event_end_date": date(2024, 3, 1), "service_type": "Short Term Support: Other Short Term",
             "service_component": "Equipment"},
            # a request after the last service start: no service followed it.
            {"person_id": "erin", "event_type": "Request", "event_start_date": date(2024, 4, 1),
             "primary_support_reason": "Social Support: Support for Social Isolation/Other"},
            # bob: carer support service (he is a carer); also an open telecare service.
            {"person_id": "bob", "event_type": "Service", "event_start_date": date(2023, 2, 1),
             "service_type": "Carer Support", "service_component": "Telecare"},
        ],
    }
    return build_features(write_clean(tmp_path_factory.mktemp("spec"), **rows), T)


EXPECTED: dict[str, dict] = {
    "alice": {
        "age": 83, "sex": "2", "female": True, "imd_decile": 4, "ethnic_group": "Asian", "locality": "North",
        # fall dates in [2023-06-02, 2024-06-01): GP 2023-09-01, 2024-01-10 (two codes, one date);
        # A&E 2024-01-10 (same date); admission 2024-04-20 -> 3 distinct dates. 2023-05-01 is too old.
        "falls_gp_12m": 2, "ae_falls_12m": 1, "falls_admissions_12m": 1, "falls_admissions_24m": 1,
        "falls_12m": 3,
        # 2024-04-20 -> 2024-06-01: 10 days to 30 April + 31 (May) + 1 = 42.
        "days_since_last_fall": 42,
        # eFI deficits: falls, hypertension, diabetes, heart-failure, arthritis = 5/36 = 0.1389 -> mild.
        "efi": 5 / 36, "efi_category": "mild",
        "efi_falls": True, "efi_hypertension": True, "efi_diabetes": True, "efi_heart_failure": True,
        "efi_arthritis": True,
        # multimorbidity: hypertension, diabetes, heart failure, arthritis (falls is not a disease) = 4.
        "multimorbidity_count": 4,
        # HFRS codes (distinct, any position, 2 y): S72 1.4 + W19 3.2 + F00 7.1 (I10 scores 0) = 11.7.
        "hfrs": 11.7, "hfrs_band": "intermediate",
        "household_size": 1, "lives_alone": True,
        "emergency_admissions_3m": 1, "emergency_admissions_12m": 1, "emergency_admissions_24m": 1,
        # 2024-04-20 -> 2024-04-30 = 10 nights.
        "bed_days_12m": 10,
        "ae_attendances_12m": 1, "ae_attendances_24m": 1, "ambulance_arrivals_12m": 1,
        "ambulance_arrivals_24m": 1,
        # GP dates in 12 m: 2023-09-01, 2024-01-10.
        "gp_contacts_12m": 2,
        # acute events in 12 m: admission 2024-04-20 (last 3 m), A&E 2024-01-10 (prior 9 m): 1/3 - 1/9.
        "utilisation_trend": 1 / 3 - 1 / 9,
    },
    "bob": {
        "age": 94, "sex": "1", "female": False, "imd_decile": None, "ethnic_group": "Not stated",
        "locality": "South",
        # carol died 2024-03-01, 92 days before T: outside 91-day window, inside 182 and 365.
        "bereaved_3m": False, "bereaved_6m": True, "bereaved_12m": True,
        "household_size": 1, "lives_alone": True,
        "housebound": False, "carer": True,
        # Carer Support service with a Telecare component, no end date: open at T.
        "telecare": True,
        "gp_contacts_12m": 0,
    },
    "dave": {
        # born 1950-06-01: 74th birthday on T itself counts as reached.
        "age": 74, "sex": "1", "female": False, "imd_decile": 4, "ethnic_group": "White", "locality": "North",
        "household_size": 2, "lives_alone": False,
        "housebound": True, "dementia": True, "efi_housebound": False,
        # 9 eFI deficits (the housebound and dementia codes chosen are in no eFI list) = 9/36 = 0.25.
        "efi": 0.25, "efi_category": "moderate",
        **{f"efi_{d}": True for d in ("ckd", "dizziness", "dyspnoea", "foot_problems", "hearing_loss",
                                      "sleep_disturbance", "vision_problems", "weight_loss", "skin_ulcer")},
        # multimorbidity: ckd + dementia = 2.
        "multimorbidity_count": 2,
        # HFRS: only the 2024-05-25 spell is in the window (the F00 spell of 2022-05-01 is before
        # T-730): N39 3.2 + R29 3.6 + F05 3.2 = 10.0.
        "hfrs": 10.0, "hfrs_band": "intermediate",
        "emergency_admissions_3m": 1, "emergency_admissions_12m": 1, "emergency_admissions_24m": 1,
        # open spell 2024-05-25 -> T: 7 nights; elective 2023-05-30..2023-06-05 clipped to 2023-06-02: 3.
        "bed_days_12m": 10,
        "ae_attendances_3m": 2, "ae_attendances_12m": 2, "ae_attendances_24m": 3, "ambulance_arrivals_24m": 1,
        # GP dates in 12 m: 2024-05-01 only.
        "gp_contacts_12m": 1,
        # acute events in 12 m, all in the last 3 m: admission 05-25, A&E 05-25 and 04-01 -> 3/3 - 0 = 1.
        "utilisation_trend": 1.0,
    },
    "erin": {
        # born 1950-12-31 -> 73 at 2024-06-01.
        "age": 73, "sex": "2", "female": True, "ethnic_group": "Black", "imd_decile": 4, "locality": "North",
        "household_size": 2, "lives_alone": False,
        "in_long_term_care": True, "reablement_12m": 1, "reablement_outcome": "Ongoing Low Level Support",
        "telecare": False, "equipment": True,
        # request 2023-10-01 was followed by services; request 2024-04-01 came after the last service start.
        "requests_without_service_12m": 1, "social_isolation_support_12m": True,
    },
    "hank": {
        # born 2000-02-29: on 2024-06-01 he is 24. Dies on T: still alive at T.
        "age": 24, "sex": "9", "female": False, "ethnic_group": "White", "imd_decile": 4, "locality": "North",
        "household_size": 1, "lives_alone": True,
    },
}


def _default(name: str):
    dtype = FEATURES[name].dtype
    if name in ("efi_category",):
        return "fit"
    if name == "hfrs_band":
        return "low"
    if dtype == pl.Boolean:
        return False
    if dtype == pl.Int32 and name != "days_since_last_fall":
        return 0
    if dtype == pl.Float64:
        return 0.0
    return None


def test_only_alive_registered_people_are_in_the_table(table: pl.DataFrame) -> None:
    assert table["person_id"].to_list() == sorted(EXPECTED)
    assert (table["index_date"] == T).all()


@pytest.mark.parametrize("person", sorted(EXPECTED))
def test_person_matches_hand_worked_values(table: pl.DataFrame, person: str) -> None:
    row = table.filter(pl.col("person_id") == person).to_dicts()[0]
    expected = EXPECTED[person]
    mismatches = {}
    for name in FEATURES:
        if name in ("person_id", "index_date"):
            continue
        want = expected.get(name, _default(name))
        got = row[name]
        ok = got == pytest.approx(want) if isinstance(want, float) else got == want
        if not ok:
            mismatches[name] = (got, want)
    assert not mismatches, f"{person}: (got, expected) {mismatches}"
