"""A hand-made scored database for the serving tests.

Why hand-made: the weekly flow (pipelines) is being built in parallel. Every row here is written
through ``upstream.store`` tables exactly as ``score``/``publish_lists`` will write them, so the
fixture can be swapped for real flow output (see ``conftest.scored``) without touching the tests
that only rely on ``Truth``. Values are chosen by hand so expected API answers can be worked out
on paper (see the counts in ``EXPECTED_SUMMARY_W48``).

Layout (published weeks 2026-W46..W48; a *failed, unpublished* run for 2026-W49 must stay invisible):
- North: 30 residents in W48: 3 high (0.9, 0.8, 0.7), 13 moderate (0.30..0.42), 14 low (0.05..0.18).
- South: 20 residents in W48: 9 high (0.60..0.68), 11 low (0.08..0.18).
- East: 5 residents, all low.
- One resident ("mover") lived in South in W46 and in North from W47.
- One resident appears only in the failed W49 run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime

import polars as pl

from expectations.identifiers import nhs_check_digit
from expectations.pseudonymise import pseudonymise_one
from upstream.settings import Settings
from upstream.store import cohort_funnels, get_engine, published_weeks, risk_lists, score_runs, scores

WEEKS = {"2026-W46": date(2026, 11, 9), "2026-W47": date(2026, 11, 16), "2026-W48": date(2026, 11, 23)}
FAILED_WEEK, FAILED_DATE = "2026-W49", date(2026, 11, 30)

REASON_TEXTS = [
    {"feature": "falls_12m", "value": 2, "text": "2 falls in last 6 months", "contribution": 0.21},
    {"feature": "lives_alone", "value": True, "text": "lives alone", "contribution": 0.12},
    {"feature": "bereaved_6m", "value": True, "text": "bereaved 3 months ago", "contribution": 0.08},
]

# Hand-worked /summary for W48: 1-7 -> null, otherwise nearest 5.
EXPECTED_SUMMARY_W48 = {
    ("East", "low"): None,  # 5
    ("North", "high"): None,  # 3
    ("North", "moderate"): 15,  # 13
    ("North", "low"): 15,  # 14
    ("South", "high"): 10,  # 9
    ("South", "low"): 10,  # 11
}


def _nhs_number(serial: int) -> str:
    """A valid (Mod 11) NHS number in the 999 test range."""
    n = serial
    while True:
        first_nine = f"999{n:06d}"
        check = nhs_check_digit(first_nine)
        if check is not None:
            return first_nine + str(check)
        n += 100_000  # keep serials distinct


@dataclass
class Person:
    nhs_number: str
    person_id: str
    locality: str
    score: float  # W48 score
    band: str


@dataclass
class Truth:
    """What the fixture wrote, for tests to compare against."""

    people: dict[str, Person] = field(default_factory=dict)  # person_id -> Person (W48 state)
    lists: dict[tuple[str, str], list[dict]] = field(default_factory=dict)  # (week, locality) -> rows
    mover: str = ""
    failed_only: str = ""
    absent: str = "0123456789abcdef"  # well-formed id that nobody has
    latest_week: str = "2026-W48"

    def in_locality(self, locality: str) -> list[Person]:
        return [p for p in self.people.values() if p.locality == locality]


def _band(score: float) -> str:
    return "high" if score >= 0.5 else "moderate" if score >= 0.2 else "low"


#: The W48 cohort funnel of North, as the pipeline publishes it (already suppressed): 30 residents, 3 under 18
#: (suppressed), 10 inpatients, 0 others, 15 in the cohort. Rounded values do not have to add up.
FUNNEL_NORTH_W48 = [
    ("residents", "Residents alive and registered at the index date", 30),
    ("under_min_age", "Under 18", None),
    ("inpatient", "In hospital", 10),
    ("care_home", "Lives in a care home", 0),
    ("open_long_term_service_or_reablement", "Already has long-term care or reablement", 0),
    ("last_year_of_life", "Palliative or end-of-life care", 0),
    ("opted_out", "Opted out", 0),
    ("in_cohort", "In the list cohort", 15),
]


def _list_words(rank: int, n: int, n_new: int, week: str, locality: str) -> dict:
    """The words of a hand-made list row: the last ``n_new`` ranks are new, ranks 1-3 top, the rest rising."""
    section = "new" if rank > n - n_new else "top" if rank <= 3 else "rising"
    offers = "falls_prevention;telecare" if rank % 2 else ""
    return {
        "section": section,
        "change_points": None if week == "2026-W46" else 2.0,
        "why_listed": {"new": "New this week", "top": f"Among the 3 highest risks in {locality}",
                       "rising": "Risk up 2.0 points in 1 week"}[section],
        "what_changed": None if section == "top" else "emergency admission on 12 Nov 2026",
        "suggested_offers": offers,
        # places by hand: rank 1 gets both offers, rank 3 falls only (telecare waiting), rank 5+ waits for both
        "offers_this_week": offers if rank == 1 else "falls_prevention" if offers and rank == 3 else "",
        "offers_waiting": "" if rank == 1 else "telecare" if offers and rank == 3 else offers,
        "offer_evidence": "falls_prevention: 2 falls | telecare: lives alone" if offers else "No offer fits",
        "top_reasons": "; ".join(r["text"] for r in REASON_TEXTS[: 1 + rank % 3]),
        "age_band": "75-84",
        "gp_practice": "G82001" if rank <= 2 else "G82002",
    }


def write_hand_scored_db(settings: Settings) -> Truth:
    """Write runs, scores, lists and the re-identification map under ``settings.home``."""
    key = settings.pseudonymisation_key()
    truth = Truth()
    serial = 1
    w48_scores: list[tuple[str, float]] = []
    plan = (
        [("North", s) for s in (0.9, 0.8, 0.7)]
        + [("North", 0.30 + 0.01 * i) for i in range(13)]
        + [("North", 0.05 + 0.01 * i) for i in range(14)]
        + [("South", 0.60 + 0.01 * i) for i in range(9)]
        + [("South", 0.08 + 0.01 * i) for i in range(11)]
        + [("East", 0.02 + 0.01 * i) for i in range(5)]
    )
    for locality, score in plan:
        nhs = _nhs_number(serial)
        serial += 1
        pid = pseudonymise_one(nhs, key)
        truth.people[pid] = Person(nhs, pid, locality, round(score, 4), _band(score))
        w48_scores.append((locality, score))
    north = sorted(truth.in_locality("North"), key=lambda p: -p.score)
    south = sorted(truth.in_locality("South"), key=lambda p: -p.score)
    truth.mover = north[4].person_id  # a moderate North resident who lived in South in W46
    failed_nhs = _nhs_number(serial)
    truth.failed_only = pseudonymise_one(failed_nhs, key)

    engine = get_engine(settings.db_url)
    now = datetime(2026, 11, 23, 6, 0, tzinfo=UTC)
    with engine.begin() as conn:
        for i, (week, index_date) in enumerate([*WEEKS.items(), (FAILED_WEEK, FAILED_DATE)]):
            run_id = f"run-{week}"
            failed = week == FAILED_WEEK
            conn.execute(
                score_runs.insert().values(
                    run_id=run_id,
                    week=week,
                    index_date=index_date,
                    target="crisis",
                    model_name="upstream-crisis",
                    model_version=str(i + 1),
                    status="failed" if failed else "complete",
                    n_scored=len(truth.people),
                    started_at=now,
                    finished_at=None if failed else now,
                )
            )
            # Earlier weeks: every score lower by 0.02 per week back, so history is strictly rising.
            back = (2 - i) * 0.02 if not failed else -0.05
            rows = []
            for p in truth.people.values():
                locality = "South" if (p.person_id == truth.mover and week == "2026-W46") else p.locality
                s = round(min(max(p.score - back, 0.0), 1.0), 4)
                rows.append(
                    {
                        "run_id": run_id,
                        "person_id": p.person_id,
                        "locality": locality,
                        "score": s,
                        "band": _band(s),
                        "reasons": REASON_TEXTS[: 1 + int(p.score * 10) % 3],
                        "in_long_term_care": False,
                    }
                )
            if failed:
                rows.append(
                    {
                        "run_id": run_id,
                        "person_id": truth.failed_only,
                        "locality": "North",
                        "score": 0.99,
                        "band": "high",
                        "reasons": REASON_TEXTS,
                        "in_long_term_care": False,
                    }
                )
            conn.execute(scores.insert(), rows)
            # Lists: top 5 North and top 4 South by the W48 order; new entries per week: W46 all, then 2, then 3.
            new_counts = {"2026-W46": 5, "2026-W47": 2, "2026-W48": 3, FAILED_WEEK: 5}
            for locality, ranked in (("North", north[:5]), ("South", south[:4])):
                list_rows = []
                n_new = new_counts[week] if locality == "North" else min(new_counts[week], len(ranked))
                for rank, p in enumerate(ranked, start=1):
                    s = round(min(max(p.score - back, 0.0), 1.0), 4)
                    list_rows.append(
                        {
                            "run_id": run_id,
                            "week": week,
                            "locality": locality,
                            "rank": rank,
                            "person_id": p.person_id,
                            "score": s,
                            "band": _band(s),
                            **_list_words(rank, len(ranked), n_new, week, locality),
                            "reasons": REASON_TEXTS[: 1 + rank % 3],
                        }
                    )
                conn.execute(risk_lists.insert(), list_rows)
                if not failed:
                    truth.lists[(week, locality)] = list_rows
            if week == "2026-W48":
                conn.execute(cohort_funnels.insert(), [
                    {"run_id": run_id, "week": week, "locality": "North", "position": i, "step": step,
                     "label": label, "people": people}
                    for i, (step, label, people) in enumerate(FUNNEL_NORTH_W48)
                ])
            if not failed:
                conn.execute(
                    published_weeks.insert().values(week=week, run_id=run_id, index_date=index_date, published_at=now)
                )
    settings.restricted_dir.mkdir(parents=True, exist_ok=True)
    pl.DataFrame(
        {
            "person_id": [p.person_id for p in truth.people.values()] + [truth.failed_only],
            "nhs_number": [p.nhs_number for p in truth.people.values()] + [failed_nhs],
        }
    ).write_parquet(settings.reid_map_path)
    return truth
