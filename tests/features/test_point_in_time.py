"""Point in time: for every source, events on T - 1 day count, events on T and T + 1 day do not.

Each source gets its own person with three otherwise identical events on T - 1, T and T + 1, so
every expected count below is exactly 1 (only the T - 1 event), worked out by hand.
"""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import polars as pl
import pytest

from features.build import build_features
from features.codelists import DEMENTIA_SNOMED, EFI_DEFICITS
from tests.features.conftest import unique_code, write_clean

T = date(2024, 6, 1)
BEFORE, ON, AFTER = T - timedelta(days=1), T, T + timedelta(days=1)
DAYS = (BEFORE, ON, AFTER)
FALL = "1912002"


@pytest.fixture(scope="module")
def table(tmp_path_factory: pytest.TempPathFactory) -> pl.DataFrame:
    people = ["gp", "efi_on", "spells", "ae", "care", "care_on", "widow", "widow_on", "reg_before", "reg_on",
              "died_before", "died_on", "edge"]
    residents = [{"person_id": p} for p in people]
    for r in residents:
        if r["person_id"] == "reg_before":
            r["registration_start"] = BEFORE
        if r["person_id"] == "reg_on":
            r["registration_start"] = ON
        if r["person_id"] == "died_before":
            r["date_of_death"] = BEFORE
        if r["person_id"] == "died_on":
            r["date_of_death"] = ON
    # household deaths: widow's partner died T-1; widow_on's partner died on T (alive at T).
    residents += [
        {"person_id": "partner1", "uprn": "U-widow", "date_of_death": BEFORE},
        {"person_id": "partner2", "uprn": "U-widow_on", "date_of_death": ON},
    ]
    ckd = unique_code(EFI_DEFICITS["ckd"])
    rows = {
        "residents": residents,
        "deaths": [
            {"person_id": "partner1", "date_of_death": BEFORE, "underlying_cause_icd10": "I219"},
            {"person_id": "partner2", "date_of_death": ON, "underlying_cause_icd10": "I219"},
        ],
        "gp_events": [
            *[{"person_id": "gp", "event_date": d, "snomed_code": FALL} for d in DAYS],
            *[{"person_id": "gp", "event_date": d, "snomed_code": unique_code(DEMENTIA_SNOMED)} for d in DAYS[1:]],
            *[{"person_id": "efi_on", "event_date": d, "snomed_code": ckd} for d in DAYS[1:]],
            # lower edge of the 12-month window: T-365 counts, T-366 does not.
            {"person_id": "edge", "event_date": T - timedelta(days=365), "snomed_code": FALL},
            {"person_id": "edge", "event_date": T - timedelta(days=366), "snomed_code": FALL},
        ],
        "hospital_spells": [
            {"person_id": "spells", "admission_date": d, "discharge_date": d + timedelta(days=3),
             "admission_method": "21", "primary_diagnosis": "S720", "secondary_diagnoses": f"W19,{code}"}
            # each spell carries a different HFRS code so we can see which ones were scored
            for d, code in zip(DAYS, ("F00", "G81", "G30"), strict=True)
        ],
        "ae_attendances": [
            {"person_id": "ae", "arrival_date": d, "arrival_mode": "1", "chief_complaint_snomed": FALL}
            for d in DAYS
        ],
        "social_care_events": [
            *[{"person_id": "care", "event_type": "Service", "event_start_date": d,
               "service_type": "Short Term Support: ST-Max", "service_component": "Telecare"} for d in DAYS],
            *[{"person_id": "care", "event_type": "Request", "event_start_date": d} for d in DAYS],
            {"person_id": "care", "event_type": "Service", "event_start_date": BEFORE,
             "service_type": "Long Term Support: Nursing Care"},
            {"person_id": "care_on", "event_type": "Service", "event_start_date": ON,
             "service_type": "Long Term Support: Nursing Care", "service_component": "Telecare"},
        ],
    }
    return build_features(write_clean(tmp_path_factory.mktemp("pit"), **rows), T)


def _row(table: pl.DataFrame, person: str) -> dict:
    return table.filter(pl.col("person_id") == person).to_dicts()[0]


def test_population_uses_registration_and_death_strictly_before_t(table: pl.DataFrame) -> None:
    ids = set(table["person_id"])
    assert "reg_before" in ids and "reg_on" not in ids  # registered on T: not yet registered at T
    assert "died_on" in ids and "died_before" not in ids  # died on T: alive at T
    assert "partner2" in ids and "partner1" not in ids


def test_gp_events(table: pl.DataFrame) -> None:
    row = _row(table, "gp")
    assert row["falls_gp_12m"] == 1 and row["falls_12m"] == 1
    assert row["days_since_last_fall"] == 1
    assert row["gp_contacts_12m"] == 1
    assert row["dementia"] is False  # dementia codes only on T and T+1
    assert row["efi"] == pytest.approx(1 / 36)  # the T-1 fall code is also the eFI falls deficit
    assert _row(table, "efi_on")["efi"] == 0.0 and _row(table, "efi_on")["efi_ckd"] is False


def test_window_lower_edge_is_inclusive(table: pl.DataFrame) -> None:
    row = _row(table, "edge")
    assert row["falls_gp_12m"] == 1  # T-365 in, T-366 out
    assert row["days_since_last_fall"] == 365


def test_hospital_spells(table: pl.DataFrame) -> None:
    row = _row(table, "spells")
    assert row["emergency_admissions_3m"] == 1
    assert row["falls_admissions_12m"] == 1 and row["falls_12m"] == 1
    # only the T-1 spell: S72 1.4 + W19 3.2 + F00 7.1 = 11.7 (G81 and G30 are on T and T+1)
    assert row["hfrs"] == pytest.approx(11.7)
    # admitted T-1, discharge after T: counts up to T = 1 night
    assert row["bed_days_12m"] == 1


def test_ae_attendances(table: pl.DataFrame) -> None:
    row = _row(table, "ae")
    assert row["ae_attendances_3m"] == 1 and row["ambulance_arrivals_3m"] == 1
    assert row["ae_falls_12m"] == 1 and row["falls_12m"] == 1 and row["days_since_last_fall"] == 1
    assert row["utilisation_trend"] == pytest.approx(1 / 3)


def test_social_care_events(table: pl.DataFrame) -> None:
    row = _row(table, "care")
    assert row["reablement_12m"] == 1
    assert row["in_long_term_care"] is True and row["telecare"] is True
    # the T-1 request was followed by a service started on T-1 (same day): not "without service";
    # the requests on T and T+1 are not seen at all.
    assert row["requests_without_service_12m"] == 0
    on = _row(table, "care_on")
    assert on["in_long_term_care"] is False and on["telecare"] is False


def test_household_deaths(table: pl.DataFrame) -> None:
    widow = _row(table, "widow")
    assert widow["bereaved_3m"] is True and widow["lives_alone"] is True
    widow_on = _row(table, "widow_on")
    # partner died on T: still alive at T, so not bereaved and not living alone.
    assert widow_on["bereaved_3m"] is False and widow_on["bereaved_12m"] is False
    assert widow_on["lives_alone"] is False and widow_on["household_size"] == 2


def test_missing_uprn_gives_unknown_household_not_alone(tmp_path: Path) -> None:
    # two people without a UPRN must not be counted as one household, nor as living alone
    clean = write_clean(tmp_path / "c", residents=[{"person_id": "x", "uprn": None}, {"person_id": "y", "uprn": None}])
    table = build_features(clean, T)
    assert table["household_size"].to_list() == [None, None]
    assert table["lives_alone"].to_list() == [None, None]


def test_blank_uprn_is_an_unknown_household_too(tmp_path: Path) -> None:
    # "" and "  " are not one shared address: neither household size, living alone nor bereavement
    clean = write_clean(
        tmp_path / "c",
        residents=[
            {"person_id": "x", "uprn": ""},
            {"person_id": "y", "uprn": "  "},
            {"person_id": "z", "uprn": "", "date_of_death": T - timedelta(days=30)},
        ],
    )
    table = build_features(clean, T).sort("person_id")
    assert table["person_id"].to_list() == ["x", "y"]
    assert table["household_size"].to_list() == [None, None]
    assert table["lives_alone"].to_list() == [None, None]
    assert table["bereaved_3m"].to_list() == [False, False]
