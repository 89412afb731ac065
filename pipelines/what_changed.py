"""What changed for a new or rising person since the comparison week, in words with dates (DESIGN §6).

Computed from the DIFFERENCE between the two weeks, not from this week's reasons:
1. the person's model inputs at T and at the comparison date C (both feature tables are kept per week);
2. each feature's contribution at T minus at C, both from the current model (so a model change cannot
   masquerade as a change in the person): the features whose value changed AND whose contribution rose
   are what moved the score up;
3. those features are grouped into the event that explains them (one emergency admission moves
   ``emergency_admissions_3m``, ``bed_days_12m`` and ``hfrs`` together), the groups ranked by the
   contribution they added, and each is said with the dated events found in the clean sources in [C, T)
   ("emergency admission on 12 Nov 2026", "household bereavement in October 2026", "first fall recorded
   on 3 Nov 2026"). A change with no dated event behind it (a window rolling on) is said from the feature.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import date
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import polars as pl

from expectations.cohort import scan_clean
from expectations.contract import (
    CARE_HOME_SERVICE_TYPES,
    EMERGENCY_ADMISSION_METHODS,
    REABLEMENT_SERVICE_TYPE,
    SERVICE_EVENT_TYPE,
)
from features.build import clean_address_periods, held_on, household_deaths, resident_deaths
from features.registry import EFI_DEFICIT_COLUMNS, FEATURES, MODEL_FEATURES, reason_text

PERSON = "person_id"
#: At most this many changes are named per person (the biggest first).
MAX_CHANGES = 3

#: Which event explains a change in each model input. Features not named here are said from the feature.
EVENT_OF_FEATURE: dict[str, str] = {
    **dict.fromkeys(("emergency_admissions_3m", "emergency_admissions_12m", "emergency_admissions_24m",
                     "bed_days_12m", "hfrs", "utilisation_trend"), "hospital"),
    **dict.fromkeys(("ae_attendances_3m", "ae_attendances_12m", "ae_attendances_24m", "ambulance_arrivals_3m",
                     "ambulance_arrivals_12m", "ambulance_arrivals_24m"), "ae"),
    **dict.fromkeys(("falls_12m", "falls_gp_12m", "ae_falls_12m", "falls_admissions_12m", "falls_admissions_24m",
                     "days_since_last_fall", "efi_falls"), "fall"),
    **dict.fromkeys(("bereaved_3m", "bereaved_6m", "bereaved_12m", "lives_alone", "household_size", "imd_decile"),
                    "household"),
    **dict.fromkeys(("dementia", "carer", "housebound", "efi", "multimorbidity_count",
                     *(c for c in EFI_DEFICIT_COLUMNS.values() if c != "efi_falls")), "gp_record"),
    **dict.fromkeys(("requests_without_service_12m", "reablement_12m", "equipment",
                     "social_isolation_support_12m"), "social_care"),
    "age": "birthday",
    "gp_contacts_12m": "gp_contact",
}
#: A person excluded from the cohort at the comparison date C and listable at T: the event (kind, details;
#: None = any detail of that kind) in [C, T) that ended each exclusion (``expectations.cohort`` reason ids).
#: Leaving hospital or the end of a service is a change in the person's own situation, named first.
EXCLUSION_ENDED_BY: dict[str, tuple[str, tuple[str, ...] | None]] = {
    "inpatient": ("hospital", ("discharged from hospital",)),
    "care_home": ("service_end", ("care-home placement ended",)),
    "open_long_term_service_or_reablement": ("service_end", None),
    "under_min_age": ("birthday", None),
}

#: Features that change by themselves as time passes (the days since a fall grow by a week every week):
#: a rise in them is not a change in the person's records.
GROWS_WITH_TIME: frozenset[str] = frozenset({"days_since_last_fall"})
#: When a change is explained by events of several kinds, try them in this order (utilisation_trend rises
#: with an admission or an A&E visit).
FALLBACK_EVENTS: dict[str, tuple[str, ...]] = {"hospital": ("hospital", "ae"), "gp_record": ("gp_record", "fall")}


class Explainer(Protocol):
    """What the current model offers: per-feature contributions (rows x ``feature_names``)."""

    feature_names: list[str]

    def contributions_of(self, features: pl.DataFrame) -> np.ndarray: ...


def day_text(d: date) -> str:
    return f"{d.day} {d.strftime('%b %Y')}"


def month_text(d: date) -> str:
    return d.strftime("%B %Y")


def _dates_text(dates: Sequence[date]) -> str:
    dates = sorted(set(dates))
    if len(dates) == 1:
        return f"on {day_text(dates[0])}"
    return "on " + ", ".join(day_text(d) for d in dates[:-1]) + f" and {day_text(dates[-1])}"


# --- dated events in [C, T) from the clean sources --------------------------------------------------------


def _gp_concepts() -> pl.DataFrame:
    rows: list[tuple[str, str, str]] = []
    named = {"dementia": "dementia", "carer": "recorded as a carer", "housebound": "recorded as housebound"}
    for feature, words in named.items():
        for code in FEATURES[feature].codelists[0].codes():
            rows.append((code, feature, words))
    for column in EFI_DEFICIT_COLUMNS.values():
        if column == "efi_falls":
            continue
        words = FEATURES[column].reason(True) or column
        for code in FEATURES[column].codelists[0].codes():
            rows.append((code, column, words))
    return pl.DataFrame(rows, schema={"snomed_code": pl.String, "concept": pl.String, "words": pl.String},
                        orient="row").unique(["snomed_code", "concept"])


def _scan(clean_dir: Path, source: str) -> pl.LazyFrame | None:
    path = clean_dir / f"{source}.parquet"
    return pl.scan_parquet(path) if path.exists() else None


def _birthday_in(year: pl.Expr) -> pl.Expr:
    """The birthday in ``year``. 29 February falls on 1 March in a common year, as ``expectations.cohort.age_at``
    reckons age (a 1.9M-resident county run failed on pl.date(2026, 2, 29))."""
    dob = pl.col("date_of_birth")
    common_year = (year % 4 != 0) | ((year % 100 == 0) & (year % 400 != 0))
    moves = (dob.dt.month() == 2) & (dob.dt.day() == 29) & common_year
    return pl.date(year, pl.when(moves).then(3).otherwise(dob.dt.month()), pl.when(moves).then(1).otherwise(dob.dt.day()))


def _in_window(column: str) -> pl.Expr:
    """``column`` falls in the person's window [start, end): on or after C, before T."""
    return (pl.col(column) >= pl.col("start")) & (pl.col(column) < pl.col("end"))


def change_events(clean_dir: Path, people: pl.DataFrame) -> pl.DataFrame:
    """Dated events per person in [start, end): person_id, kind, date, detail.

    ``people``: person_id, start (the comparison date C), end (the index date T).
    """
    clean_dir = Path(clean_dir)
    schema = {PERSON: pl.String, "kind": pl.String, "date": pl.Date, "detail": pl.String}
    if people.height == 0:
        return pl.DataFrame(schema=schema)
    ids = people.lazy().select(PERSON, "start", "end")
    frames: list[pl.LazyFrame] = []

    spells = _scan(clean_dir, "hospital_spells")
    if spells is not None:
        joined = spells.join(ids, on=PERSON, how="inner")
        emergency = pl.col("admission_method").is_in(list(EMERGENCY_ADMISSION_METHODS))
        frames.append(joined.filter(_in_window("admission_date")).select(
            PERSON, pl.lit("hospital").alias("kind"), pl.col("admission_date").alias("date"),
            pl.when(emergency).then(pl.lit("emergency admission")).otherwise(pl.lit("hospital admission"))
            .alias("detail")))
        frames.append(joined.filter(_in_window("discharge_date") & (pl.col("admission_date") < pl.col("start"))).select(
            PERSON, pl.lit("hospital").alias("kind"), pl.col("discharge_date").alias("date"),
            pl.lit("discharged from hospital").alias("detail")))
        fall_codes = sorted(FEATURES["falls_admissions_12m"].codelists[0].codes())
        diagnoses = pl.concat_list(pl.col("primary_diagnosis"), pl.col("secondary_diagnoses").fill_null("").str.split(","))
        frames.append(joined.filter(_in_window("admission_date") & emergency).with_columns(diagnoses.alias("_dx"))
                      .explode("_dx")
                      .filter(pl.col("_dx").str.strip_chars().str.to_uppercase().str.slice(0, 3).is_in(fall_codes))
                      .select(PERSON, pl.lit("fall").alias("kind"), pl.col("admission_date").alias("date"),
                              pl.lit("fall (emergency admission)").alias("detail")))
    ae = _scan(clean_dir, "ae_attendances")
    if ae is not None:
        joined = ae.join(ids, on=PERSON, how="inner").filter(_in_window("arrival_date"))
        falls = sorted(FEATURES["ae_falls_12m"].codelists[0].codes())
        frames.append(joined.select(
            PERSON, pl.lit("ae").alias("kind"), pl.col("arrival_date").alias("date"),
            pl.when(pl.col("arrival_mode") == "1").then(pl.lit("A&E attendance by ambulance"))
            .otherwise(pl.lit("A&E attendance")).alias("detail")))
        frames.append(joined.filter(pl.col("chief_complaint_snomed").is_in(falls)
                                    | pl.col("diagnosis_snomed").is_in(falls).fill_null(False))
                      .select(PERSON, pl.lit("fall").alias("kind"), pl.col("arrival_date").alias("date"),
                              pl.lit("fall (A&E)").alias("detail")))
    gp = _scan(clean_dir, "gp_events")
    if gp is not None:
        joined = gp.join(ids, on=PERSON, how="inner").filter(_in_window("event_date"))
        falls = sorted(FEATURES["falls_gp_12m"].codelists[0].codes())
        frames.append(joined.filter(pl.col("snomed_code").is_in(falls)).select(
            PERSON, pl.lit("fall").alias("kind"), pl.col("event_date").alias("date"),
            pl.lit("fall (GP record)").alias("detail")))
        frames.append(joined.select(PERSON, pl.lit("gp_contact").alias("kind"), pl.col("event_date").alias("date"),
                                    pl.lit("GP contact").alias("detail")))
        frames.append(joined.join(_gp_concepts().lazy(), on="snomed_code", how="inner").select(
            PERSON, pl.lit("gp_record").alias("kind"), pl.col("event_date").alias("date"),
            pl.col("words").alias("detail")))
    sc = _scan(clean_dir, "social_care_events")
    if sc is not None:
        joined = sc.join(ids, on=PERSON, how="inner").filter(_in_window("event_start_date"))
        detail = (
            pl.when(pl.col("event_type") == "Request").then(pl.lit("request for care support"))
            .when(pl.col("service_type") == REABLEMENT_SERVICE_TYPE).then(pl.lit("reablement started"))
            .when(pl.col("service_component") == "Equipment").then(pl.lit("equipment provided"))
            .when(pl.col("primary_support_reason").str.contains("Isolation")).then(pl.lit("support for social isolation"))
            .otherwise(None)
        )
        frames.append(joined.select(PERSON, pl.lit("social_care").alias("kind"),
                                    pl.col("event_start_date").alias("date"), detail.alias("detail"))
                      .filter(pl.col("detail").is_not_null()))
        ended = (
            pl.when(pl.col("service_type") == REABLEMENT_SERVICE_TYPE).then(pl.lit("reablement ended"))
            .when(pl.col("service_type").is_in(list(CARE_HOME_SERVICE_TYPES))).then(pl.lit("care-home placement ended"))
            .otherwise(pl.lit("long-term support ended"))
        )
        frames.append(sc.join(ids, on=PERSON, how="inner")
                      .filter((pl.col("event_type") == SERVICE_EVENT_TYPE) & _in_window("event_end_date"))
                      .select(PERSON, pl.lit("service_end").alias("kind"), pl.col("event_end_date").alias("date"),
                              ended.alias("detail")))
    residents = _scan(clean_dir, "residents")
    if residents is not None:
        window = (people["start"].min(), people["end"].max())
        frames.extend(_household_events(clean_dir, ids, window))  # type: ignore[arg-type]
        mine = residents.select(PERSON, "date_of_birth").join(ids, on=PERSON, how="inner")
        # a birthday in [C, T): "turned 80"; the window may straddle New Year, so both years are tried
        for bound in ("start", "end"):
            birthday = _birthday_in(pl.col(bound).dt.year())
            frames.append(mine.with_columns(birthday.alias("_bday")).filter(_in_window("_bday")).select(
                PERSON, pl.lit("birthday").alias("kind"), pl.col("_bday").alias("date"),
                pl.format("turned {}", (pl.col("_bday").dt.year() - pl.col("date_of_birth").dt.year())).alias("detail")))
    if not frames:
        return pl.DataFrame(schema=schema)
    return pl.concat([f.select(list(schema)).cast(schema) for f in frames]).unique().collect().sort(
        PERSON, "date", "kind", "detail")


def _household_events(clean_dir: Path, ids: pl.LazyFrame, window: tuple[date, date]) -> list[pl.LazyFrame]:
    """Changes to a person's household in [start, end), read from where each person lived on each day through
    the features' own address resolver (``features.build``: the address history when delivered, else the
    residents file's address), so what changed agrees with the household features at C and at T and a move
    after T can say nothing. Events: a household bereavement (dated to its month, as it concerns someone
    else), the person's own move (a period beginning in the window; on its from_date the old address is
    still held, as in ``held_on``), and someone else moving out of or into the address the person held
    throughout the window (month only, for the same reason)."""
    periods = clean_address_periods(clean_dir)
    first, last = window
    deaths = resident_deaths(scan_clean(clean_dir, "residents"), scan_clean(clean_dir, "deaths")).filter(
        (pl.col("_day") >= first) & (pl.col("_day") < last))  # only deaths some window can hold

    def event(day: str, detail: str) -> list[pl.Expr]:
        return [PERSON, pl.lit("household").alias("kind"), pl.col(day).alias("date"), pl.lit(detail).alias("detail")]

    bereaved = household_deaths(periods, deaths).join(ids, on=PERSON, how="inner").filter(_in_window("_day"))
    mine = periods.join(ids, on=PERSON, how="inner")
    moved = mine.filter(_in_window("from_date"))
    # The address held at both ends of the window (no own move in it): others' comings and goings there.
    stayed = mine.filter(held_on(pl.col("start")) & held_on(pl.col("end"))).select(PERSON, "uprn", "start", "end")
    others = periods.filter(pl.col("uprn").is_not_null()).select(pl.col(PERSON).alias("_other"), "uprn",
                                                                  "from_date", "to_date")
    near = stayed.filter(pl.col("uprn").is_not_null()).join(others, on="uprn", how="inner").filter(
        pl.col("_other") != pl.col(PERSON))
    # Someone who died there left by dying, which the bereavement says: their period's end is not a move.
    died = deaths.select("_other", pl.col("_day").alias("_died"))
    left = near.filter(_in_window("to_date")).join(died, on="_other", how="left").filter(
        pl.col("_died").is_null() | (pl.col("_died") > pl.col("to_date")))
    return [
        bereaved.select(*event("_day", HOUSEHOLD_BEREAVEMENT)),
        moved.select(*event("from_date", OWN_MOVE)),
        left.select(*event("to_date", MEMBER_MOVED_OUT)),
        near.filter(_in_window("from_date")).select(*event("from_date", MEMBER_MOVED_IN)),
    ]


#: What each household event says, and whether its day is said (the person's own move) or only its month
#: (a death or a move of someone else: the list shows the person, not the people they live with).
HOUSEHOLD_BEREAVEMENT = "household bereavement"
OWN_MOVE = "moved to a new address"
MEMBER_MOVED_OUT = "a household member moved out"
MEMBER_MOVED_IN = "someone moved into the household"
HOUSEHOLD_EVENT_ORDER = (HOUSEHOLD_BEREAVEMENT, OWN_MOVE, MEMBER_MOVED_OUT, MEMBER_MOVED_IN)


def _household_text(events: list[tuple[date, str]]) -> str:
    by_detail: dict[str, list[date]] = defaultdict(list)
    for d, detail in events:
        by_detail[detail].append(d)
    parts = []
    for detail in sorted(by_detail, key=lambda x: HOUSEHOLD_EVENT_ORDER.index(x) if x in HOUSEHOLD_EVENT_ORDER
                         else len(HOUSEHOLD_EVENT_ORDER)):
        dates = by_detail[detail]
        parts.append(f"{detail} {_dates_text(dates)}" if detail == OWN_MOVE
                     else f"{detail} in {month_text(max(dates))}")
    return "; ".join(parts)


def _event_text(kind: str, events: list[tuple[date, str]], first_fall: bool) -> str:
    """Words for one kind of event: "emergency admission on 12 Nov 2026", "household bereavement in October"."""
    if kind == "household":
        return _household_text(events)
    if kind == "birthday":
        return events[-1][1]
    if kind == "fall":
        words = "first fall recorded" if first_fall else ("fall recorded" if len({d for d, _ in events}) == 1
                                                           else f"{len({d for d, _ in events})} falls recorded")
        return f"{words} {_dates_text([d for d, _ in events])}"
    by_detail: dict[str, list[date]] = defaultdict(list)
    for d, detail in events:
        by_detail[detail].append(d)
    parts = []
    for detail, dates in by_detail.items():
        if kind == "gp_record":
            parts.append(f"{detail} first recorded {_dates_text(dates[:1])}")
        elif len(set(dates)) > 1:
            parts.append(f"{len(set(dates))} x {detail} {_dates_text(dates)}")
        else:
            parts.append(f"{detail} {_dates_text(dates)}")
    return "; ".join(parts)


def _feature_text(name: str, before: Any, now: Any) -> str:
    """A change with no dated event behind it, said from the feature itself."""
    text = reason_text(name, now)
    if text:
        return text
    words = name.replace("_", " ")
    return f"{words} now {now} (was {before})"


# --- the per-person explanation ----------------------------------------------------------------------------


def explain_changes(
    current: pl.DataFrame,
    previous: pl.DataFrame,
    events: pl.DataFrame,
    contributions_now: np.ndarray | None,
    contributions_before: np.ndarray | None,
    feature_names: list[str],
    comparison_date: date,
    excluded_before: dict[str, str] | None = None,
) -> dict[str, str]:
    """person_id -> what changed, for people in both tables (aligned by person_id, same order).

    ``excluded_before``: person_id -> the cohort exclusion that held for them at the comparison date; the
    event that ended it is named first (:func:`exclusion_ended`)."""
    if current.height == 0:
        return {}
    if current["person_id"].to_list() != previous["person_id"].to_list():
        raise ValueError("current and previous feature rows must be aligned by person_id")
    names = [n for n in feature_names if n in current.columns and n in previous.columns]
    now_rows = current.select(PERSON, *names).to_dicts()
    before_rows = previous.select(*names).to_dicts()
    by_person: dict[str, list[tuple[date, str, str]]] = defaultdict(list)
    for pid, kind, d, detail in events.select(PERSON, "kind", "date", "detail").iter_rows():
        by_person[pid].append((d, kind, detail))
    index = {n: feature_names.index(n) for n in names}
    out: dict[str, str] = {}
    since = day_text(comparison_date)
    for i, (now, before) in enumerate(zip(now_rows, before_rows, strict=True)):
        pid = now.pop(PERSON)
        gains: dict[str, float] = defaultdict(float)  # event kind, or "feature:<name>" -> added contribution
        changed_features: dict[str, list[str]] = defaultdict(list)
        best: dict[str, tuple[float, str]] = {}
        person_events = by_person.get(pid, [])
        kinds_seen = {k for _, k, _ in person_events}
        for name in names:
            a, b = now[name], before[name]
            if a == b or (a is None and b is None):
                continue
            if name in GROWS_WITH_TIME and a is not None and b is not None and a > b:
                continue
            if contributions_now is not None and contributions_before is not None:
                gain = float(contributions_now[i, index[name]] - contributions_before[i, index[name]])
            else:  # no attributions available: every change that is itself a reason counts equally
                gain = 1.0 if reason_text(name, a) else 0.0
            if gain <= 0:
                continue
            kind = EVENT_OF_FEATURE.get(name)
            candidates = FALLBACK_EVENTS.get(kind, (kind,)) if kind else ()
            found = next((k for k in candidates if k in kinds_seen), None)
            # No dated event behind it: one text per kind of change, said from its biggest feature.
            key = found if found else f"feature:{kind or name}"
            gains[key] += gain
            changed_features[key].append(name)
            best[key] = max(best.get(key, (gain, name)), (gain, name))
        texts: list[str] = []
        reason = (excluded_before or {}).get(pid)
        if reason is not None:
            text, used = exclusion_ended(reason, person_events, comparison_date)
            texts.append(text)
            person_events = [e for e in person_events if e != used]  # said once, not again in its group
        if not gains and not texts:
            out[pid] = f"No change in the records since {since} raised the risk"
            continue
        for key, _ in sorted(gains.items(), key=lambda kv: -kv[1]):
            if len(texts) == MAX_CHANGES:
                break
            if key.startswith("feature:"):
                name = best[key][1]
                text = _feature_text(name, before[name], now[name])
            else:
                events_of_kind = [(d, detail) for d, k, detail in person_events if k == key]
                if not events_of_kind:  # its only event already said what ended the exclusion
                    continue
                first_fall = key == "fall" and before.get("days_since_last_fall") is None
                text = _event_text(key, events_of_kind, first_fall)
                if key == "household" and now.get("lives_alone") is True and before.get("lives_alone") is False:
                    text = f"now lives alone ({text})"  # what the household event meant for the person
            if text and text not in texts:
                texts.append(text)
        out[pid] = "; ".join(texts)
    return out


def exclusion_ended(
    reason: str, events: list[tuple[date, str, str]], comparison_date: date
) -> tuple[str, tuple[date, str, str] | None]:
    """Why a person excluded at C can be listed at T, in words, and the (date, kind, detail) event said: the
    dated event that ended the exclusion ("discharged from hospital on 13 Nov 2025 (last week: in hospital)"),
    or, with no such event (a code now older than the rule's window, an opt-out withdrawn), that the
    exclusion no longer holds (no event)."""
    from expectations.cohort import RULES_BY_REASON
    from upstream.settings import CohortSettings

    rule = RULES_BY_REASON.get(reason)
    title = rule.title(CohortSettings()).lower() if rule else reason.replace("_", " ")
    kind, details = EXCLUSION_ENDED_BY.get(reason, ("", ()))
    ending = sorted(e for e in events if e[1] == kind and (details is None or e[2] in details))
    if ending:
        d, _, detail = ending[-1]
        return f"{detail} {_dates_text([d])} (last week: {title})", ending[-1]
    return f"no longer excluded ({title} on {day_text(comparison_date)})", None


def what_changed(
    current: pl.DataFrame,
    previous: pl.DataFrame | None,
    people: pl.DataFrame,
    clean_dir: Path | None,
    index_date: date,
    comparison_date: date,
    explainer: Explainer | None,
    excluded_before: dict[str, str] | None = None,
) -> dict[str, str]:
    """person_id -> what changed since ``comparison_date`` for ``people`` (a person_id column).

    ``excluded_before``: person_id -> cohort exclusion reason at ``comparison_date`` for people who could not
    be listed then (``expectations.cohort.cohort_at`` at C): the event that ended it is named first.

    ``current``/``previous``: the feature tables at T and at C. People missing from ``previous`` were not
    in the population at C (newly registered or moved in).
    """
    ids = people.select(PERSON).unique()
    if ids.height == 0:
        return {}
    cur = current.join(ids, on=PERSON, how="inner").sort(PERSON)
    if previous is None:
        return {pid: f"Not available: the features of {day_text(comparison_date)} are no longer kept"
                for pid in cur[PERSON]}
    prev = previous.join(cur.select(PERSON), on=PERSON, how="inner").sort(PERSON)
    out = {pid: f"Newly registered or moved into the area since {day_text(comparison_date)}"
           for pid in cur.join(prev.select(PERSON), on=PERSON, how="anti")[PERSON]}
    cur = cur.join(prev.select(PERSON), on=PERSON, how="semi").sort(PERSON)
    names = explainer.feature_names if explainer is not None else [n for n in MODEL_FEATURES if n in cur.columns]
    c_now = c_before = None
    if explainer is not None and cur.height:
        c_now, c_before = explainer.contributions_of(cur), explainer.contributions_of(prev)
    events = (
        change_events(clean_dir, cur.select(PERSON).with_columns(
            pl.lit(comparison_date).alias("start"), pl.lit(index_date).alias("end")))
        if clean_dir is not None
        else pl.DataFrame(schema={PERSON: pl.String, "kind": pl.String, "date": pl.Date, "detail": pl.String})
    )
    out.update(explain_changes(cur, prev, events, c_now, c_before, names, comparison_date, excluded_before))
    return out
