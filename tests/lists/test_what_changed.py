"""What changed, on people whose change between two weeks is constructed by hand.

T = Mon 23 Nov 2026, the comparison week C = Mon 16 Nov 2026. Each person's two feature rows and their
events in the clean sources are written here; the expected words are worked out from the rule (features
that changed AND whose contribution rose, grouped by the event that explains them, biggest first, with the
dates of those events in [C, T)).
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import polars as pl

from features.codelists import DEMENTIA_SNOMED, FALLS_SNOMED
from pipelines.what_changed import change_events, what_changed
from tests.features.conftest import unique_code, write_clean

T = date(2026, 11, 23)
C = date(2026, 11, 16)
WEIGHTS = {
    "emergency_admissions_3m": 0.8, "emergency_admissions_12m": 0.3, "bed_days_12m": 0.02,
    "ae_attendances_3m": 0.2, "ambulance_arrivals_3m": 0.2, "falls_12m": 0.5, "days_since_last_fall": 0.0,
    "bereaved_3m": 0.6, "lives_alone": 0.3, "dementia": 0.9, "gp_contacts_12m": 0.1,
}


class LinearExplainer:
    """A hand-written linear model: contribution = weight x value (null = 0)."""

    def __init__(self) -> None:
        self.feature_names = list(WEIGHTS)

    def contributions_of(self, features: pl.DataFrame) -> np.ndarray:
        cols = [features[n].cast(pl.Float64).fill_null(0.0).to_numpy() * w for n, w in WEIGHTS.items()]
        return np.column_stack(cols)


def feature_row(person: str, **values: object) -> dict:
    row: dict = {name: 0 for name in WEIGHTS}
    row.update({"person_id": person, "bereaved_3m": False, "lives_alone": False, "dementia": False,
                "days_since_last_fall": None})
    row.update(values)
    return row


SCHEMA = {"person_id": pl.String, **{n: pl.Int32 for n in WEIGHTS}, "bereaved_3m": pl.Boolean,
          "lives_alone": pl.Boolean, "dementia": pl.Boolean}


def frame(*rows: dict) -> pl.DataFrame:
    return pl.DataFrame(list(rows), schema=SCHEMA)


def test_what_changed_names_the_events_that_moved_the_score(tmp_path: Path) -> None:
    fall_code = unique_code(FALLS_SNOMED)
    dementia_code = unique_code(DEMENTIA_SNOMED)
    clean = write_clean(
        tmp_path / "clean",
        residents=[{"person_id": p} for p in ("admitted", "first_fall", "two_things", "nothing", "aged_out",
                                              "new_resident")]
        + [{"person_id": "bereaved", "uprn": "U1"}, {"person_id": "spouse", "uprn": "U1",
                                                    "date_of_death": date(2026, 11, 18)}],
        hospital_spells=[
            {"person_id": "admitted", "admission_date": date(2026, 11, 18), "discharge_date": date(2026, 11, 20),
             "primary_diagnosis": "J18"},
            # before C: not a change of this week
            {"person_id": "aged_out", "admission_date": date(2025, 11, 20), "discharge_date": date(2025, 11, 21),
             "primary_diagnosis": "J18"},
        ],
        ae_attendances=[{"person_id": "two_things", "arrival_date": date(2026, 11, 17), "arrival_mode": "1",
                         "chief_complaint_snomed": dementia_code}],
        gp_events=[
            {"person_id": "first_fall", "event_date": date(2026, 11, 20), "snomed_code": fall_code},
            {"person_id": "two_things", "event_date": date(2026, 11, 19), "snomed_code": dementia_code},
            # on T itself: not yet history
            {"person_id": "nothing", "event_date": T, "snomed_code": fall_code},
        ],
    )
    previous = frame(
        feature_row("admitted"),
        feature_row("bereaved"),
        feature_row("first_fall"),
        feature_row("two_things"),
        feature_row("nothing"),
        feature_row("aged_out", emergency_admissions_12m=1),
    )
    current = frame(
        feature_row("admitted", emergency_admissions_3m=1, emergency_admissions_12m=1, bed_days_12m=2),
        feature_row("bereaved", bereaved_3m=True, lives_alone=True),
        feature_row("first_fall", falls_12m=1, days_since_last_fall=3, gp_contacts_12m=1),
        feature_row("two_things", ae_attendances_3m=1, ambulance_arrivals_3m=1, dementia=True),
        feature_row("nothing"),
        feature_row("aged_out", emergency_admissions_12m=0),
        feature_row("new_resident"),
    )
    people = current.select("person_id")
    no_events = what_changed(current, previous, people, None, T, C, LinearExplainer())
    # without the clean sources there are no dates: one text per kind of change, from its biggest feature
    assert no_events["admitted"] == "1 emergency admission in the last 3 months"
    got = what_changed(current, previous, people, clean, T, C, LinearExplainer())
    assert got == {
        "admitted": "emergency admission on 18 Nov 2026",
        # the spouse's death left them alone (lives_alone False -> True): said with the event that did it
        "bereaved": "now lives alone (household bereavement in November 2026)",
        # the fall (0.5) moved the score more than the GP contact that recorded it (0.1)
        "first_fall": "first fall recorded on 20 Nov 2026; GP contact on 20 Nov 2026",
        # dementia added 0.9, the ambulance A&E visit 0.2 + 0.2: dementia first
        "two_things": "dementia first recorded on 19 Nov 2026; A&E attendance by ambulance on 17 Nov 2026",
        "nothing": "No change in the records since 16 Nov 2026 raised the risk",
        "aged_out": "No change in the records since 16 Nov 2026 raised the risk",
        "new_resident": "Newly registered or moved into the area since 16 Nov 2026",
    }


def test_change_events_window_is_half_open(tmp_path: Path) -> None:
    clean = write_clean(
        tmp_path / "clean",
        residents=[{"person_id": "a"}],
        hospital_spells=[
            {"person_id": "a", "admission_date": C, "discharge_date": C, "primary_diagnosis": "J18"},
            {"person_id": "a", "admission_date": T, "primary_diagnosis": "J18"},
            {"person_id": "a", "admission_date": date(2026, 11, 1), "discharge_date": date(2026, 11, 22),
             "primary_diagnosis": "J18", "admission_method": "11"},
        ],
    )
    events = change_events(clean, pl.DataFrame({"person_id": ["a"], "start": [C], "end": [T]}))
    assert events.select("date", "detail").rows() == [
        (C, "emergency admission"),  # on C: inside [C, T)
        (date(2026, 11, 22), "discharged from hospital"),  # admitted before C, discharged inside
    ]  # the admission on T is not yet history
