"""Features, labels and the list cohort share one population and one "service open at T" (expectations.cohort).

Hand-made people, T = 2024-06-03; who is eligible is worked out from DESIGN §5 (alive at T, born and
registered before T), not from the code.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import polars as pl

from expectations.cohort import CohortSources, population_at
from expectations.contract import clean_schema
from features.build import build_features
from models.labels import build_labels

T = date(2024, 6, 3)
LONG_AGO = date(2000, 1, 1)
BORN = date(1940, 5, 5)
NURSING = "Long Term Support: Nursing Care"


def _resident(person: str, *, born: date = BORN, registered: date = LONG_AGO, died: date | None = None) -> dict:
    return {"person_id": person, "date_of_birth": born, "registration_start": registered, "date_of_death": died,
            "uprn": f"u-{person}", "locality": "North", "gp_practice": "A81001"}


def _service(person: str, start: date, end: date | None = None) -> dict:
    return {"person_id": person, "event_type": "Service", "event_start_date": start, "event_end_date": end,
            "service_type": NURSING}


def _write(clean: Path, source: str, rows: list[dict]) -> None:
    schema = clean_schema(source)
    pl.DataFrame([{c: row.get(c) for c in schema} for row in rows], schema=schema).write_parquet(
        clean / f"{source}.parquet")


def _delivery(clean: Path) -> None:
    _write(clean, "residents", [
        _resident("alive"),
        _resident("died_day_before_T", died=date(2024, 6, 2)),
        _resident("died_on_T", died=T),  # alive at the start of T: eligible
        _resident("death_registered_before_T"),  # residents record not yet updated; the deaths source knows
        _resident("death_registered_after_T"),
        _resident("registered_on_T", registered=T),
        _resident("registered_after_T", registered=date(2024, 7, 1)),
        _resident("born_on_T", born=T),
        _resident("in_nursing_care"),
        _resident("nursing_care_from_T"),
    ])
    _write(clean, "deaths", [
        {"person_id": "death_registered_before_T", "date_of_death": date(2024, 5, 1)},
        {"person_id": "death_registered_after_T", "date_of_death": date(2024, 7, 1)},
    ])
    _write(clean, "social_care_events", [
        _service("in_nursing_care", date(2023, 1, 9)),  # open at T (no end date)
        _service("in_nursing_care", date(2024, 9, 2)),  # a second placement in the window: not an escalation
        _service("nursing_care_from_T", T),  # starts ON T: the outcome window, not history
    ])
    for source in ("gp_events", "hospital_spells", "ae_attendances"):
        _write(clean, source, [])


ELIGIBLE = {"alive", "died_on_T", "death_registered_after_T", "in_nursing_care", "nursing_care_from_T"}


def test_features_labels_and_cohort_have_the_same_people(tmp_path: Path) -> None:
    _delivery(tmp_path)
    features = build_features(tmp_path, T)
    labels = build_labels(tmp_path, T)
    cohort_population = population_at(CohortSources.from_clean_dir(tmp_path), T).collect()
    assert set(features["person_id"]) == ELIGIBLE
    assert set(labels["person_id"]) == ELIGIBLE
    assert set(cohort_population["person_id"]) == ELIGIBLE


def test_open_service_at_T_means_the_same_in_features_and_labels(tmp_path: Path) -> None:
    _delivery(tmp_path)
    features = dict(build_features(tmp_path, T).select("person_id", "in_long_term_care").iter_rows())
    escalation = dict(build_labels(tmp_path, T).select("person_id", "care_escalation").iter_rows())
    # Open before T: a feature, and so a later placement is not a new escalation.
    assert (features["in_nursing_care"], escalation["in_nursing_care"]) == (True, False)
    # Starting on T: not history for the feature, and a new service in the outcome window [T, T + 365).
    assert (features["nursing_care_from_T"], escalation["nursing_care_from_T"]) == (False, True)
    assert (features["alive"], escalation["alive"]) == (False, False)
