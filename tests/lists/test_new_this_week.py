""""New this week" means the person's own risk put them on the list; drifting in because others left is `top`.

Locality North, capacity 3 (band: everyone). T = Mon 23 Nov 2026, last week C = Mon 16 Nov 2026.
Last week's list: a 0.60, b 0.50, c 0.48 (all among the 3 highest), so North's entry level was 0.48.
This week:
- a is in hospital at T (excluded) and c has left the area (not scored): two places free up;
- e was 0.30 last week and had an emergency admission on 18 Nov (discharged 20 Nov): now 0.55 >= 0.48, so
  e would have been listed last week with this week's risk -> `new`, and what_changed names the admission;
- d was 0.45 last week and nothing in d's record changed: still 0.45 < 0.48, listed only because a and c
  left -> `top`, and why_listed says so in words;
- b stays `top`; f (0.10) is not listed (the 3 highest are e, b, d).
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import polars as pl

from pipelines.lists import attach_details, build_lists, entry_levels
from pipelines.scoring import assign_bands
from pipelines.what_changed import what_changed
from tests.features.conftest import write_clean
from tests.lists.test_what_changed import LinearExplainer, feature_row, frame
from tests.pipelines.conftest import score_frame
from upstream.list_row import section_rules
from upstream.settings import ListSettings

T = date(2026, 11, 23)
C = date(2026, 11, 16)
RULES = ListSettings(band_percentile=0.0, capacity_per_locality=3, risk_rise_threshold=0.5)
LAST_WEEK = pl.DataFrame(
    [("a", "North", 0.60, True, "top"), ("b", "North", 0.50, True, "top"), ("c", "North", 0.48, True, "top")],
    schema={"person_id": pl.String, "locality": pl.String, "score": pl.Float64, "among_highest": pl.Boolean,
            "section": pl.String}, orient="row",
)


def _cohort(people: dict[str, str | None]) -> pl.DataFrame:
    return pl.DataFrame({"person_id": list(people), "locality": ["North"] * len(people),
                         "gp_practice": ["G1"] * len(people), "age": [80] * len(people),
                         "exclusion_reason": list(people.values())},
                        schema={"person_id": pl.String, "locality": pl.String, "gp_practice": pl.String,
                                "age": pl.Int32, "exclusion_reason": pl.String})


def test_entering_by_own_event_is_new_and_drifting_in_is_top(tmp_path: Path) -> None:
    now = assign_bands(score_frame([("a", "North", 0.62, False), ("b", "North", 0.50, False),
                                    ("e", "North", 0.55, False), ("d", "North", 0.45, False),
                                    ("f", "North", 0.10, False)]))
    cohort = _cohort({"a": "inpatient", "b": None, "e": None, "d": None, "f": None})
    lists = build_lists(now, RULES, cohort, index_date=T, comparison_scores=LAST_WEEK.select("person_id", "score")
                        .vstack(pl.DataFrame({"person_id": ["e", "d", "f"], "score": [0.30, 0.45, 0.10]})),
                        comparison_date=C, previous_list=LAST_WEEK)
    rows = {r["person_id"]: r for r in lists.to_dicts()}
    assert sorted(rows) == ["b", "d", "e"]
    assert (rows["e"]["section"], rows["e"]["rank"]) == ("new", 1)
    assert rows["e"]["why_listed"] == "New this week; among the 3 highest risks in North"
    assert (rows["b"]["section"], rows["d"]["section"]) == ("top", "top")
    assert rows["b"]["why_listed"] == "Among the 3 highest risks in North"
    assert rows["d"]["why_listed"] == ("Not on last week's list; among the 3 highest risks in North "
                                       "(others left the list)")
    assert [rows[p]["rank"] for p in ("b", "d")] == [2, 3]  # top by risk, after the new section
    assert all(rows[p]["among_highest"] for p in ("b", "d", "e"))

    # what changed, for the new row only, from the two weeks' features and the dated event
    clean = write_clean(
        tmp_path / "clean", residents=[{"person_id": p} for p in ("a", "b", "d", "e", "f")],
        hospital_spells=[{"person_id": "e", "admission_date": date(2026, 11, 18),
                          "discharge_date": date(2026, 11, 20), "primary_diagnosis": "J18"}],
    )
    before = frame(feature_row("e"), feature_row("d", lives_alone=True))
    after = frame(feature_row("e", emergency_admissions_3m=1, emergency_admissions_12m=1, bed_days_12m=2),
                  feature_row("d", lives_alone=True))
    new_people = lists.filter(pl.col("section") == "new").select("person_id")
    changes = what_changed(after, before, new_people, clean, T, C, LinearExplainer())
    done = attach_details(lists, changes=changes)
    shown = dict(zip(done["person_id"], done["what_changed"], strict=True))
    assert shown == {"e": "emergency admission on 18 Nov 2026", "b": None, "d": None}


def test_rising_outsider_is_new_whatever_the_entry_level() -> None:
    # g rose 0.20 -> 0.47 (+27 points >= 25): below the entry level 0.48 but their own risk rose -> new.
    now = assign_bands(score_frame([("b", "North", 0.50, False), ("g", "North", 0.47, False),
                                    ("h", "North", 0.46, False)]))
    lists = build_lists(now, RULES.model_copy(update={"risk_rise_threshold": 0.25}),
                        _cohort({"b": None, "g": None, "h": None}), index_date=T,
                        comparison_scores=pl.DataFrame({"person_id": ["b", "g", "h"], "score": [0.5, 0.2, 0.46]}),
                        comparison_date=C, previous_list=LAST_WEEK)
    section = dict(zip(lists["person_id"], lists["section"], strict=True))
    assert section == {"g": "new", "b": "top", "h": "top"}


def test_entry_level_is_last_weeks_lowest_highest_risk() -> None:
    # A riser listed below the capacity edge does not lower the entry level (among_highest False).
    rows = LAST_WEEK.vstack(pl.DataFrame([("r", "North", 0.20, False, "rising"), ("s", "South", 0.9, True, "new")],
                                         schema=LAST_WEEK.schema, orient="row"))
    assert dict(entry_levels(rows).iter_rows()) == {"North": 0.48, "South": 0.9}
    # Lists published before among_highest was stored (null) fall back to their `top` section.
    old = rows.with_columns(pl.lit(None, pl.Boolean).alias("among_highest"))
    assert dict(entry_levels(old).iter_rows()) == {"North": 0.48}


def test_first_list_for_a_locality_has_no_new_and_no_others_left() -> None:
    # Last week's list had only North: South has no entry level, so like a first list everyone there is top.
    now = assign_bands(score_frame([("s1", "South", 0.7, False), ("s2", "South", 0.6, False)]))
    cohort = _cohort({"s1": None, "s2": None}).with_columns(pl.lit("South").alias("locality"))
    lists = build_lists(now, RULES, cohort, index_date=T, previous_list=LAST_WEEK)
    assert lists["section"].to_list() == ["top", "top"]
    assert lists["why_listed"].to_list() == ["Among the 2 highest risks in South"] * 2


def test_section_rules_are_the_declared_words() -> None:
    words = section_rules(RULES)
    assert "entry level" in words["new"] and "others left" in words["new"]
    assert "others left" in words["top"] and "3 highest" in words["top"]


class AgeExplainer:
    """A one-feature model: contribution = 0.01 x age (a birthday raises it)."""

    def __init__(self) -> None:
        self.feature_names = ["age"]

    def contributions_of(self, features: pl.DataFrame):
        return features.select(pl.col("age").cast(pl.Float64) * 0.01).to_numpy()


def test_new_after_an_exclusion_ended_names_the_event(tmp_path: Path) -> None:
    # w was in hospital on C (admitted 10 Nov, discharged 19 Nov) and r was in reablement (1 Nov - 20 Nov):
    # neither could be listed last week. Their risks did not change (0.70 and 0.60, both >= the entry level
    # 0.48), so they are new because their own situation changed: leaving hospital, reablement ending.
    from expectations.cohort import cohort_at
    from expectations.contract import REABLEMENT_SERVICE_TYPE
    from upstream.settings import CohortSettings

    clean = write_clean(
        tmp_path / "clean", residents=[{"person_id": p, "registration_start": date(2000, 1, 1)} for p in "bwrx"]
        + [{"person_id": "y", "date_of_birth": date(2008, 11, 20), "registration_start": date(2009, 1, 1)}],
        hospital_spells=[{"person_id": "w", "admission_date": date(2026, 11, 10),
                          "discharge_date": date(2026, 11, 19), "primary_diagnosis": "J18"},
                         # x: in hospital on C, home on 17 Nov, back in as an emergency 19-21 Nov
                         {"person_id": "x", "admission_date": date(2026, 11, 12),
                          "discharge_date": date(2026, 11, 17), "primary_diagnosis": "J18"},
                         {"person_id": "x", "admission_date": date(2026, 11, 19),
                          "discharge_date": date(2026, 11, 21), "primary_diagnosis": "J18"}],
        social_care_events=[{"person_id": "r", "event_type": "Service", "service_type": REABLEMENT_SERVICE_TYPE,
                             "event_start_date": date(2026, 11, 1), "event_end_date": date(2026, 11, 20)}],
    )
    at_c = cohort_at(clean, C, CohortSettings())
    excluded_before = dict(at_c.filter(pl.col("exclusion_reason").is_not_null())
                           .select("person_id", "exclusion_reason").iter_rows())
    # worked out from the rules: in hospital at C; reablement open at C
    assert excluded_before == {"w": "inpatient", "r": "open_long_term_service_or_reablement", "x": "inpatient",
                               "y": "under_min_age"}
    now = assign_bands(score_frame([("b", "North", 0.50, False), ("w", "North", 0.70, False),
                                    ("r", "North", 0.60, False), ("x", "North", 0.65, False)]))
    lists = build_lists(now, RULES.model_copy(update={"capacity_per_locality": 4}),
                        _cohort({"b": None, "w": None, "r": None, "x": None}), index_date=T,
                        comparison_scores=pl.DataFrame({"person_id": ["b", "w", "r", "x"],
                                                        "score": [0.5, 0.7, 0.6, 0.55]}),
                        comparison_date=C, previous_list=LAST_WEEK)
    assert dict(zip(lists["person_id"], lists["section"], strict=True)) == {
        "w": "new", "x": "new", "r": "new", "b": "top"}
    before = frame(feature_row("w"), feature_row("r"), feature_row("x", emergency_admissions_3m=1))
    after = frame(feature_row("w"), feature_row("r"), feature_row("x", emergency_admissions_3m=2))
    changes = what_changed(after, before, lists.filter(pl.col("section") == "new").select("person_id"), clean, T,
                           C, LinearExplainer(), excluded_before)
    # y turned 18 on 20 Nov (under 18 on C): the birthday is said once, even though age also rose
    turned = what_changed(pl.DataFrame({"person_id": ["y"], "age": [18]}),
                          pl.DataFrame({"person_id": ["y"], "age": [17]}),
                          pl.DataFrame({"person_id": ["y"]}), clean, T, C, AgeExplainer(), {"y": "under_min_age"})
    assert turned == {"y": "turned 18 on 20 Nov 2026 (last week: under 18)"}
    assert changes == {
        "w": "discharged from hospital on 19 Nov 2026 (last week: in hospital)",
        "r": "reablement ended on 20 Nov 2026 (last week: already has long-term care or reablement)",
        # the discharge is said once (first, as what ended the exclusion), then the new admission
        "x": "discharged from hospital on 17 Nov 2026 (last week: in hospital); emergency admission on 19 Nov 2026",
    }
