"""Worked examples of the feature registry: one behaviour each, on tiny hand-written tables.

As OpenSAFELY ehrQL's ``tests/spec``: every :class:`Spec` is run as a test
(``tests/features/test_feature_specs.py`` builds the features from exactly these rows and checks the
expected values) and rendered into ``docs/data_dictionary.md`` by ``upstream docs``, so the examples a
reader sees are the ones that pass. Expected values are worked out by hand; the working is in ``arithmetic``.

Rows give only the columns that matter; every other column takes the test writer's neutral default
(residents: alive, registered 2000-01-01, born 1940-06-15, own UPRN; spells: emergency method 21, no
discharge; A&E: walk-in). Everyone named in ``expected`` is a resident.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

#: The index date of every example. Window starts, from a calendar: T-91 = 2024-03-02, T-182 = 2023-12-02,
#: T-365 = 2023-06-02.
SPEC_T = date(2024, 6, 1)


@dataclass(frozen=True)
class Spec:
    """One behaviour of one feature: source rows in, the value per person at :data:`SPEC_T` out."""

    feature: str
    behaviour: str
    tables: dict[str, list[dict[str, Any]]]
    expected: dict[str, Any]
    arithmetic: str


SPECS: tuple[Spec, ...] = (
    Spec(
        "emergency_admissions_12m",
        "counts emergency admissions admitted in [T-365, T): the window's first day counts, T itself does not",
        {"hospital_spells": [
            {"person_id": "p1", "admission_date": date(2023, 6, 1), "admission_method": "21"},
            {"person_id": "p1", "admission_date": date(2023, 6, 2), "admission_method": "21"},
            {"person_id": "p1", "admission_date": date(2024, 1, 1), "admission_method": "11"},
            {"person_id": "p1", "admission_date": date(2024, 5, 31), "admission_method": "22"},
            {"person_id": "p1", "admission_date": date(2024, 6, 1), "admission_method": "21"},
        ]},
        {"p1": 2, "p2": 0},
        "p1: 2023-06-02 (= T-365, first day in) + 2024-05-31 = 2; 2023-06-01 is a day too early, 11 is an "
        "elective method, 2024-06-01 is T (the future). p2 has no spells: 0, the declared value when none is "
        "recorded.",
    ),
    Spec(
        "bed_days_12m",
        "counts the nights of each spell inside [T-365, T), a spell still open at T up to T",
        {"hospital_spells": [
            {"person_id": "p1", "admission_date": date(2023, 5, 30), "discharge_date": date(2023, 6, 5)},
            {"person_id": "p1", "admission_date": date(2024, 5, 25), "discharge_date": None},
        ]},
        {"p1": 10},
        "2023-06-02 to 2023-06-05 = 3 nights (the nights before T-365 do not count) + 2024-05-25 to T "
        "(2024-06-01) = 7 nights; 3 + 7 = 10.",
    ),
    Spec(
        "ambulance_arrivals_3m",
        "counts A&E arrivals by ambulance (arrival_mode 1) in [T-91, T)",
        {"ae_attendances": [
            {"person_id": "p1", "arrival_date": date(2024, 3, 1), "arrival_mode": "1"},
            {"person_id": "p1", "arrival_date": date(2024, 3, 2), "arrival_mode": "1"},
            {"person_id": "p1", "arrival_date": date(2024, 5, 1), "arrival_mode": "2"},
        ]},
        {"p1": 1},
        "Only 2024-03-02 (= T-91) by ambulance counts: 2024-03-01 is before the window, 2024-05-01 is a "
        "walk-in (mode 2).",
    ),
    Spec(
        "in_long_term_care",
        "a Long Term Support service is open at T when it started before T and did not end before T",
        {"social_care_events": [
            {"person_id": "p1", "event_type": "Service", "event_start_date": date(2024, 1, 5),
             "event_end_date": None, "service_type": "Long Term Support: Community"},
            {"person_id": "p2", "event_type": "Service", "event_start_date": date(2024, 1, 5),
             "event_end_date": date(2024, 5, 31), "service_type": "Long Term Support: Community"},
            {"person_id": "p3", "event_type": "Service", "event_start_date": date(2024, 1, 5),
             "event_end_date": date(2024, 6, 1), "service_type": "Long Term Support: Nursing Care"},
            {"person_id": "p4", "event_type": "Service", "event_start_date": date(2024, 6, 1),
             "event_end_date": None, "service_type": "Long Term Support: Residential Care"},
        ]},
        {"p1": True, "p2": False, "p3": True, "p4": False},
        "p1 has no end date: open. p2 ended the day before T: closed. p3 ends on T, not before it: open. p4 "
        "starts on T, which is not history yet.",
    ),
    Spec(
        "bereaved_3m",
        "another resident of the same UPRN died in [T-91, T)",
        {"residents": [
            {"person_id": "p1", "uprn": "U1"},
            {"person_id": "p2", "uprn": "U1", "date_of_death": date(2024, 3, 1)},
        ]},
        {"p1": False},
        "p2 died 2024-03-01, 92 days before T, one day before the 91-day window starts (2024-03-02).",
    ),
    Spec(
        "bereaved_6m",
        "another resident of the same UPRN died in [T-182, T)",
        {"residents": [
            {"person_id": "p1", "uprn": "U1"},
            {"person_id": "p2", "uprn": "U1", "date_of_death": date(2024, 3, 1)},
        ]},
        {"p1": True},
        "2024-03-01 is on or after T-182 (2023-12-02): inside the 6-month window.",
    ),
    Spec(
        "utilisation_trend",
        "acute use per month in the last 3 months minus per month in the 9 months before",
        {
            "hospital_spells": [{"person_id": "p1", "admission_date": date(2024, 4, 20), "admission_method": "21"}],
            "ae_attendances": [{"person_id": "p1", "arrival_date": date(2024, 1, 10)}],
        },
        {"p1": 1 / 3 - 1 / 9, "p2": 0.0},
        "p1: the admission on 2024-04-20 is in [T-91, T), the A&E visit on 2024-01-10 in [T-365, T-91): "
        "1/3 - 1/9 = 0.2222. p2 has no acute use: 0.0.",
    ),
    Spec(
        "days_since_last_fall",
        "days from the latest fall before T; unknown (null), not 0, for someone who never fell",
        {"hospital_spells": [
            {"person_id": "p1", "admission_date": date(2024, 4, 20), "admission_method": "21",
             "primary_diagnosis": "S720", "secondary_diagnoses": "W19"},
        ]},
        {"p1": 42, "p2": None},
        "p1: emergency admission with W19 (a fall) on 2024-04-20; 10 days to 30 April + 31 in May + 1 = 42. "
        "p2: no fall ever recorded.",
    ),
    Spec(
        "requests_without_service_12m",
        "counts requests in [T-365, T) with no service starting on or after the request date",
        {"social_care_events": [
            {"person_id": "p1", "event_type": "Request", "event_start_date": date(2023, 10, 1)},
            {"person_id": "p1", "event_type": "Service", "event_start_date": date(2023, 11, 1),
             "service_type": "Short Term Support: ST-Max"},
            {"person_id": "p1", "event_type": "Request", "event_start_date": date(2024, 4, 1)},
        ]},
        {"p1": 1},
        "The 2023-10-01 request was followed by the 2023-11-01 service; the 2024-04-01 request was not: 1.",
    ),
)
