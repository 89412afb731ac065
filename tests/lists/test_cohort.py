"""The cohort exclusions of DESIGN §6 on hand-built clean tables, with answers worked out by hand.

T = Monday 23 Nov 2026. Every resident defaults to born 15 Jun 1940 (86 at T), registered in 2000,
alive, in North. Each person below exercises one edge of one rule; the expected reason is written next
to them from the rule's words, not from running the code.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import polars as pl
import pytest

from expectations.cohort import (
    COHORT_REASONS,
    COHORT_RULES,
    REASON_COLUMN,
    cohort_at,
    funnel_counts,
    in_cohort,
)
from features.codelists import CARE_HOME_SNOMED, PALLIATIVE_CARE_SNOMED
from tests.features.conftest import unique_code, write_clean
from upstream.settings import CohortSettings, Settings

T = date(2026, 11, 23)
RES = "Long Term Support: Residential Care"
COMMUNITY = "Long Term Support: Community"
REABLEMENT = "Short Term Support: ST-Max"

# person -> expected first exclusion reason (None = in the cohort); people absent are not in the population.
EXPECTED: dict[str, str | None] = {
    "adult": None,
    "child_16": "under_min_age",
    "turns_18_tomorrow": "under_min_age",
    "turns_18_today": None,
    "in_hospital": "inpatient",
    "discharged_on_T": "inpatient",  # no discharge BEFORE T
    "discharged_day_before": None,
    "admitted_on_T": None,  # not admitted before T
    "placement_starts_on_T": "care_home",  # the bug in the issue: a service starting ON T is open at T
    "placement_starts_tomorrow": None,
    "placement_ended_day_before": None,
    "placement_ends_on_T": "care_home",
    "care_home_code_in_window": "care_home",  # T - 365 is inside [T-365, T)
    "care_home_code_too_old": None,  # T - 366
    "community_care_open": "open_long_term_service_or_reablement",
    "reablement_starts_on_T": "open_long_term_service_or_reablement",
    "reablement_finished": None,
    "assessment_only": None,
    "palliative_code": "last_year_of_life",
    "palliative_code_old": None,
    "opted_out": "opted_out",
    "child_in_hospital": "under_min_age",  # first rule wins
    "in_hospital_from_care_home": "inpatient",
    "dies_on_T": None,  # alive at T
    "south_adult": None,
    "south_in_hospital": "inpatient",
}


def _delivery(directory: Path) -> Path:
    care_home_code = unique_code(CARE_HOME_SNOMED)
    palliative = unique_code(PALLIATIVE_CARE_SNOMED)
    residents = [{"person_id": p} for p in EXPECTED if p not in (
        "child_16", "turns_18_tomorrow", "turns_18_today", "child_in_hospital", "dies_on_T", "south_adult",
        "south_in_hospital")]
    residents += [
        {"person_id": "child_16", "date_of_birth": date(2010, 1, 1)},
        {"person_id": "turns_18_tomorrow", "date_of_birth": date(2008, 11, 24)},
        {"person_id": "turns_18_today", "date_of_birth": date(2008, 11, 23)},
        {"person_id": "child_in_hospital", "date_of_birth": date(2016, 3, 3)},
        {"person_id": "dies_on_T", "date_of_death": T},
        {"person_id": "south_adult", "locality": "South"},
        {"person_id": "south_in_hospital", "locality": "South"},
        # not in the population at T
        {"person_id": "died_before", "date_of_death": date(2026, 11, 1)},
        {"person_id": "registered_on_T", "registration_start": T},
        {"person_id": "death_registered_before"},
    ]
    spells = [
        {"person_id": "in_hospital", "admission_date": date(2026, 11, 20), "primary_diagnosis": "J18"},
        {"person_id": "discharged_on_T", "admission_date": date(2026, 11, 20), "discharge_date": T,
         "primary_diagnosis": "J18"},
        {"person_id": "discharged_day_before", "admission_date": date(2026, 11, 10),
         "discharge_date": date(2026, 11, 22), "primary_diagnosis": "J18"},
        {"person_id": "admitted_on_T", "admission_date": T, "primary_diagnosis": "J18"},
        {"person_id": "child_in_hospital", "admission_date": date(2026, 11, 21), "primary_diagnosis": "J18"},
        {"person_id": "in_hospital_from_care_home", "admission_date": date(2026, 11, 21), "primary_diagnosis": "J18"},
        {"person_id": "south_in_hospital", "admission_date": date(2026, 11, 1), "primary_diagnosis": "J18"},
    ]

    def service(person: str, service_type: str, start: date, end: date | None = None) -> dict:
        return {"person_id": person, "event_type": "Service", "service_type": service_type,
                "event_start_date": start, "event_end_date": end}

    social_care = [
        service("placement_starts_on_T", RES, T),
        service("placement_starts_tomorrow", RES, date(2026, 11, 24)),
        service("placement_ended_day_before", RES, date(2025, 1, 1), date(2026, 11, 22)),
        service("placement_ends_on_T", RES, date(2025, 1, 1), T),
        service("community_care_open", COMMUNITY, date(2026, 1, 1)),
        service("reablement_starts_on_T", REABLEMENT, T),
        service("reablement_finished", REABLEMENT, date(2026, 10, 1), date(2026, 10, 30)),
        service("in_hospital_from_care_home", RES, date(2024, 5, 1)),
        {"person_id": "assessment_only", "event_type": "Assessment", "event_start_date": date(2026, 11, 1)},
    ]
    gp = [
        {"person_id": "care_home_code_in_window", "event_date": date(2025, 11, 23), "snomed_code": care_home_code},
        {"person_id": "care_home_code_too_old", "event_date": date(2025, 11, 22), "snomed_code": care_home_code},
        {"person_id": "palliative_code", "event_date": date(2026, 9, 1), "snomed_code": palliative},
        {"person_id": "palliative_code_old", "event_date": date(2025, 6, 1), "snomed_code": palliative},
        # recorded on T itself: not history yet, so it must not exclude anyone
        {"person_id": "adult", "event_date": T, "snomed_code": care_home_code},
    ]
    deaths = [{"person_id": "death_registered_before", "date_of_death": date(2026, 10, 1),
               "underlying_cause_icd10": "I21"}]
    clean = write_clean(directory, residents=residents, hospital_spells=spells, social_care_events=social_care,
                        gp_events=gp, deaths=deaths)
    pl.DataFrame({"person_id": ["opted_out"]}).write_parquet(clean / "opt_outs.parquet")
    return clean


@pytest.fixture
def clean(tmp_path: Path) -> Path:
    return _delivery(tmp_path / "clean")


def test_rules_are_declared_once_in_design_order() -> None:
    assert COHORT_REASONS == (
        "under_min_age", "inpatient", "care_home", "open_long_term_service_or_reablement",
        "last_year_of_life", "opted_out",
    )
    for rule in COHORT_RULES:
        assert rule.describe(CohortSettings()).strip()
    assert "18" in COHORT_RULES[0].describe(CohortSettings())
    assert COHORT_RULES[0].title(CohortSettings(min_age=21)) == "Under 21"


def test_first_exclusion_reason_per_person(clean: Path) -> None:
    frame = cohort_at(clean, T, CohortSettings())
    got = dict(zip(frame["person_id"], frame[REASON_COLUMN], strict=True))
    assert got == EXPECTED  # also proves died_before / registered_on_T / death_registered_before are absent
    assert dict(zip(frame["person_id"], frame["age"], strict=True))["turns_18_today"] == 18


def test_min_age_is_a_setting(clean: Path) -> None:
    frame = cohort_at(clean, T, CohortSettings(min_age=16))
    got = dict(zip(frame["person_id"], frame[REASON_COLUMN], strict=True))
    assert got["child_16"] is None
    assert got["turns_18_tomorrow"] is None
    assert got["child_in_hospital"] == "under_min_age"  # 10 years old: still under 16
    frame = cohort_at(clean, T, CohortSettings(min_age=0))
    assert dict(zip(frame["person_id"], frame[REASON_COLUMN], strict=True))["child_in_hospital"] == "inpatient"


def test_funnel_adds_up_per_locality(clean: Path) -> None:
    funnel = {row["locality"]: row for row in funnel_counts(cohort_at(clean, T, CohortSettings())).to_dicts()}
    north = {p: r for p, r in EXPECTED.items() if not p.startswith("south")}
    assert funnel["North"]["residents"] == len(north) == 24
    assert funnel["North"]["under_min_age"] == 3
    assert funnel["North"]["inpatient"] == 3
    assert funnel["North"]["care_home"] == 3
    assert funnel["North"]["open_long_term_service_or_reablement"] == 2
    assert funnel["North"]["last_year_of_life"] == 1
    assert funnel["North"]["opted_out"] == 1
    assert funnel["North"]["in_cohort"] == 11
    assert funnel["South"]["residents"] == 2 and funnel["South"]["inpatient"] == 1 and funnel["South"]["in_cohort"] == 1
    for row in funnel.values():
        assert row["residents"] == row["in_cohort"] + sum(row[r] for r in COHORT_REASONS)


def test_in_cohort_and_no_opt_out_file(tmp_path: Path) -> None:
    clean = _delivery(tmp_path / "clean")
    (clean / "opt_outs.parquet").unlink()
    frame = cohort_at(clean, T, CohortSettings())
    got = dict(zip(frame["person_id"], frame[REASON_COLUMN], strict=True))
    assert got["opted_out"] is None  # no opt-out file: nobody is opted out
    assert set(in_cohort(frame)["person_id"]) == {p for p, r in EXPECTED.items() if r is None} | {"opted_out"}


def test_cohort_setting_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UPSTREAM_COHORT__MIN_AGE", "21")
    assert Settings().cohort.min_age == 21
    monkeypatch.delenv("UPSTREAM_COHORT__MIN_AGE")
    assert Settings().cohort.min_age == 18
