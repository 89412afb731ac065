"""Outcome follow-up on hand-built people: which windows have closed, and what happened in each.

Listing week 2025-W02 (Monday T = 2025-01-06); the data ends 2026-01-31, so 91 days (to 2025-04-07),
6 months (182 days, to 2025-07-07) and 12 months (365 days, to 2026-01-06) have all closed. A second listing
in 2025-W40 (T = 2025-09-29) has only its 91-day window closed (to 2025-12-29). Expected values by hand.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import polars as pl
import sqlalchemy as sa

from expectations.contract import SOURCES
from loop.outcomes import ascof_2b, follow_up, outcome_summary
from upstream.settings import Settings
from upstream.store import get_engine, listing_outcomes, published_weeks, risk_lists, score_runs

T = date(2025, 1, 6)
T2 = date(2025, 9, 29)
D = timedelta


def _write(clean: Path, name: str, rows: list[dict]) -> None:
    schema = {"person_id": pl.String, **{k: v for k, v in SOURCES[name].schema.items() if k != "nhs_number"}}
    pl.DataFrame(rows, schema=schema, orient="row").write_parquet(clean / f"{name}.parquet")


def _resident(pid: str, born: date = date(1940, 1, 1), dod: date | None = None, locality: str = "North") -> dict:
    return {"person_id": pid, "date_of_birth": born, "sex": "1", "ethnic_category": "A", "lsoa11": "E01000001",
            "uprn": "1", "gp_practice": "G1", "locality": locality, "registration_start": date(2000, 1, 1),
            "date_of_death": dod}


def _spell(pid: str, adm: date, dis: date | None, method: str = "21", sid: str | None = None) -> dict:
    return {"person_id": pid, "spell_id": sid or f"S-{pid}-{adm}", "admission_date": adm, "discharge_date": dis,
            "admission_method": method, "primary_diagnosis": "R55", "secondary_diagnoses": "",
            "discharge_destination": "19"}


def _service(pid: str, start: date, end: date | None, service: str) -> dict:
    return {"person_id": pid, "event_type": "Service", "event_start_date": start, "event_end_date": end,
            "service_type": service, "service_component": None, "primary_support_reason": None,
            "event_outcome": None, "unit_cost": None}


LTS_COMMUNITY = "Long Term Support: Community"
NURSING = "Long Term Support: Nursing Care"
REAB = "Short Term Support: ST-Max"


def _clean(tmp_path: Path) -> Path:
    clean = tmp_path / "clean"
    clean.mkdir()
    residents = [_resident(p) for p in ("a", "b", "c", "d", "e", "f", "g")]
    residents[2] = _resident("c", dod=T + D(200))
    residents[5] = _resident("f", dod=T - D(3))  # died before the listing week: cannot be followed
    _write(clean, "residents", residents)
    _write(clean, "deaths", [{"person_id": "c", "date_of_death": T + D(200), "underlying_cause_icd10": "I219"}])
    _write(clean, "hospital_spells", [
        _spell("a", T + D(50), T + D(55)),                  # emergency at 50 days: every window
        _spell("b", T + D(120), T + D(125)),                # emergency at 120 days: 6 and 12 months only
        _spell("e", T + D(10), T + D(12), method="11"),     # elective: not an emergency admission
        _spell("g", T - D(10), T - D(5)),                   # before the listing: nothing
        _spell("g", T2 + D(90), T2 + D(92)),                # second listing: day 90 < 91 days
        _spell("x", date(2026, 1, 31), None),               # the last date in the data
    ])
    _write(clean, "social_care_events", [
        _service("d", T + D(300), None, LTS_COMMUNITY),     # new long-term support at 300 days: 12 months
        _service("e", T - D(400), None, NURSING),           # open at T: a later service is not an escalation
        _service("e", T + D(30), None, LTS_COMMUNITY),
    ])
    for name in ("gp_events", "ae_attendances"):
        _write(clean, name, [])
    return clean


def _publish(settings: Settings, week: str, t: date, people: list[str]) -> None:
    now = datetime.now(UTC)
    with get_engine(settings.db_url).begin() as conn:
        conn.execute(score_runs.insert(), [{"run_id": week, "week": week, "index_date": t, "target": "crisis",
                                            "model_name": "m", "model_version": "1", "status": "complete",
                                            "started_at": now, "finished_at": now}])
        conn.execute(risk_lists.insert(), [
            {"run_id": week, "week": week, "locality": "North", "rank": i, "person_id": p, "score": 0.5,
             "band": "high", "section": "top", "change_points": None, "why_listed": "Among the highest risks", "what_changed": None, "suggested_offers": "", "offer_evidence": "", "top_reasons": "", "age_band": "75-79", "gp_practice": None, "reasons": []}
            for i, p in enumerate(people)])
        conn.execute(published_weeks.insert(), [{"week": week, "run_id": week, "index_date": t, "published_at": now}])


def test_windows_close_and_outcomes_are_right_per_person(tmp_path):
    settings = Settings(home=tmp_path / "home")
    clean = _clean(tmp_path)
    _publish(settings, "2025-W02", T, ["a", "b", "c", "d", "e", "f"])
    _publish(settings, "2025-W40", T2, ["g"])
    result = follow_up(clean, settings)
    with get_engine(settings.db_url).connect() as conn:
        rows = conn.execute(sa.select(listing_outcomes)).mappings().all()
    got = {(r["person_id"], r["week"], r["window"]): (r["emergency_admission"], r["care_escalation"], r["death"])
           for r in rows}
    no = (False, False, False)
    expected = {
        **{("a", "2025-W02", w): (True, False, False) for w in ("91d", "6m", "12m")},
        ("b", "2025-W02", "91d"): no, ("b", "2025-W02", "6m"): (True, False, False),
        ("b", "2025-W02", "12m"): (True, False, False),
        ("c", "2025-W02", "91d"): no, ("c", "2025-W02", "6m"): no, ("c", "2025-W02", "12m"): (False, False, True),
        ("d", "2025-W02", "91d"): no, ("d", "2025-W02", "6m"): no, ("d", "2025-W02", "12m"): (False, True, False),
        **{("e", "2025-W02", w): no for w in ("91d", "6m", "12m")},
        ("g", "2025-W40", "91d"): (True, False, False),
    }
    assert got == expected  # f (dead before the week) is not followed; g's 6 and 12 months are still open
    assert result.new_rows == len(expected) and result.pending == 2
    assert follow_up(clean, settings).new_rows == 0  # a closed window is computed once


def test_each_weekly_run_follows_only_the_windows_that_closed_since_the_last(tmp_path):
    """Week by week: with data to T + 100 days only the 91-day window of 2025-W02 has closed; a week later
    nothing new has; once the data reach T + 182 the 6-month window follows, and nothing is computed twice."""
    settings = Settings(home=tmp_path / "home")
    clean = _clean(tmp_path)
    _publish(settings, "2025-W02", T, ["a", "b"])
    first = follow_up(clean, settings, data_end=T + D(100))
    assert (first.new_rows, first.pending) == (2, 4)  # a, b at 91 days; 6 and 12 months open for both
    assert follow_up(clean, settings, data_end=T + D(107)).new_rows == 0
    later = follow_up(clean, settings, data_end=T + D(182))
    assert (later.new_rows, later.pending) == (2, 2)
    with get_engine(settings.db_url).connect() as conn:
        six = conn.execute(sa.select(listing_outcomes.c.person_id, listing_outcomes.c.emergency_admission)
                           .where(listing_outcomes.c.window == "6m")).all()
    assert sorted(six) == [("a", True), ("b", True)]  # admissions at 50 and 120 days
    # the narrowed person-level copies of the sources are gone
    assert not list(settings.home.glob("follow-up-*"))


def test_summary_per_locality_and_week_is_suppressed(tmp_path):
    settings = Settings(home=tmp_path / "home")
    clean = _clean(tmp_path)
    _publish(settings, "2025-W02", T, ["a", "b", "c", "d", "e", "f"])
    follow_up(clean, settings)
    summary = {(r["week"], r["window"]): r for r in outcome_summary(settings)}
    # 5 people followed (1-7 -> "<8"); 0 stays "0"
    assert summary[("2025-W02", "91d")] == {"locality": "North", "week": "2025-W02", "window": "91d",
                                             "followed": "<8", "emergency_admission": "<8",
                                             "care_escalation": "0", "death": "0"}


def test_ascof_2b_counts_older_people_discharged_into_reablement_still_at_home_at_91_days(tmp_path):
    clean = tmp_path / "clean"
    clean.mkdir()
    dis = date(2025, 3, 10)
    people = [f"p{i:02d}" for i in range(20)]
    residents = [_resident(p) for p in people]
    residents += [_resident("young", born=date(1965, 1, 1)), _resident("late")]
    residents[0] = _resident("p00", dod=dis + D(40))     # died within 91 days
    residents[1] = _resident("p01", dod=dis + D(91))     # died on day 91: not at home at 91 days
    residents[2] = _resident("p02", dod=dis + D(120))    # died after: still at home at 91 days
    _write(clean, "residents", residents)
    _write(clean, "deaths", [])
    _write(clean, "hospital_spells", [_spell(p, dis - D(5), dis) for p in [*people, "young", "late"]]
           + [_spell("x", date(2025, 12, 31), None)])
    services = [_service(p, dis + D(2), dis + D(40), REAB) for p in [*people, "young"]]
    services += [_service("late", dis + D(30), dis + D(60), REAB),        # not "into" reablement
                 _service("p03", dis + D(50), None, NURSING),               # care home within 91 days
                 _service("p04", dis + D(60), None, LTS_COMMUNITY)]         # community support: still at home
    _write(clean, "social_care_events", services)
    for name in ("gp_events", "ae_attendances"):
        _write(clean, name, [])
    table = ascof_2b(clean)
    # 20 people aged 65+ discharged into reablement; p00, p01 died, p03 moved to a care home -> 17 at home
    # (rounded to 15); the proportion is from the rounded counts
    assert table.to_dicts() == [{"locality": "North", "month": "2025-03", "discharged_into_reablement": "20",
                                 "still_at_home": "15", "proportion": 0.75}]
