"""Real-world defects, injected as *extra* rows so that removing exactly them gives back a consistent delivery.

Why extra rows: if a defect overwrote a valid row, quarantining it would also remove a real event (or a
real resident with events, a household member, a death...), and the cascade would make the truth wrong.
So every defect row is a corrupted copy of a valid row inserted right after it (or, in residents, a new
person with no events). Each carries exactly one defect; ``_truth/defects.parquet`` lists them.
"""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import polars as pl

from expectations.identifiers import verhoeff_is_valid

#: Impossible spell histories (a person is in one hospital at a time; open spells are not yet discharged).
SPELL_HISTORY_KINDS = ("overlapping_spell", "second_open_spell", "open_spell_with_destination",
                       "discharge_after_extract")
#: Impossible address histories (a person lives at one address at a time) and addresses that cannot be used.
ADDRESS_KINDS = ("overlapping_address", "second_current_address", "to_before_from", "unknown_lsoa")
DEFECT_KINDS = ("bad_nhs_number", "future_date", "date_before_1900", "discharge_before_admission",
                "malformed_code", "unknown_code", "duplicate_row", "unknown_person", "null_required",
                *SPELL_HISTORY_KINDS, *ADDRESS_KINDS)
#: A well-formed LSOA code that is no England LSOA 2011 (2011 codes end at E01033768).
UNKNOWN_LSOA = "E01099999"

KINDS: dict[str, tuple[str, ...]] = {
    "residents": ("bad_nhs_number", "future_date", "date_before_1900", "unknown_code", "null_required",
                  "duplicate_row"),
    "gp_events": ("bad_nhs_number", "unknown_person", "future_date", "date_before_1900", "malformed_code",
                  "null_required", "duplicate_row"),
    "hospital_spells": ("bad_nhs_number", "unknown_person", "future_date", "date_before_1900",
                        "discharge_before_admission", "malformed_code", "unknown_code", "null_required",
                        "duplicate_row", *SPELL_HISTORY_KINDS),
    "ae_attendances": ("bad_nhs_number", "unknown_person", "future_date", "date_before_1900", "malformed_code",
                       "unknown_code", "null_required", "duplicate_row"),
    "social_care_events": ("bad_nhs_number", "unknown_person", "future_date", "date_before_1900", "unknown_code",
                           "null_required", "duplicate_row"),
    "deaths": ("bad_nhs_number", "unknown_person", "future_date", "date_before_1900", "malformed_code",
               "null_required", "duplicate_row"),
    "addresses": ("bad_nhs_number", "unknown_person", "future_date", "date_before_1900", "null_required",
                  "duplicate_row", *ADDRESS_KINDS),
}
DATE_COLUMN = {"residents": "registration_start", "gp_events": "event_date", "hospital_spells": "admission_date",
               "ae_attendances": "arrival_date", "social_care_events": "event_start_date",
               "deaths": "date_of_death", "addresses": "from_date"}
NULLABLE_REQUIRED = {
    "residents": ("date_of_birth", "sex", "ethnic_category", "lsoa11", "uprn", "gp_practice", "locality",
                  "registration_start"),
    "gp_events": ("event_date", "snomed_code"),
    "hospital_spells": ("spell_id", "admission_method", "primary_diagnosis"),
    "ae_attendances": ("arrival_date", "arrival_mode", "chief_complaint_snomed", "admitted"),
    "social_care_events": ("event_type", "event_start_date"),
    "deaths": ("date_of_death", "underlying_cause_icd10"),
    "addresses": ("uprn", "lsoa11", "from_date"),
}
KEY_COLUMN = {"residents": "nhs_number", "hospital_spells": "spell_id", "deaths": "nhs_number"}


def break_check_digit(nhs: str) -> str:
    """Same first nine digits, wrong Modulus 11 check digit."""
    return nhs[:9] + str((int(nhs[9]) + 1 + (nhs[9] == "9")) % 10)


def malformed_snomed(code: str, rng: np.random.Generator) -> str:
    """A SNOMED-looking value that fails the check: wrong Verhoeff digit, too short, or not digits."""
    how = rng.integers(0, 3)
    if how == 0:
        for digit in "0123456789":
            candidate = code[:-1] + digit
            if not verhoeff_is_valid(candidate):
                return candidate
    if how == 1:
        return code[:4]
    return code[:-2] + "X" + code[-1]


def malformed_icd(code: str, rng: np.random.Generator) -> str:
    return ("9" + code.upper().replace(".", "")[:3]) if rng.random() < 0.5 else code[:1] + "Q" + code[1:2]


def inject(source: str, df: pl.DataFrame, rate: float, rng: np.random.Generator, extract: date,
           spare_nhs: list[str], unknown_nhs: np.ndarray, living_nhs: np.ndarray
           ) -> tuple[pl.DataFrame, list[tuple[int, str, str]]]:
    """Insert corrupted copies after randomly chosen valid rows.

    Returns the new frame and (row position in it, defect, column) for each inserted row. ``spare_nhs`` are
    valid NHS numbers owned by this chunk and used by nobody (consumed for new residents).
    """
    n = len(df)
    if rate <= 0 or n == 0:
        return df, []
    count = min(int(rng.binomial(n, rate)), n)
    if source == "residents":
        count = min(count, len(spare_nhs))
    if count == 0:
        return df, []
    picks = rng.choice(n, count, replace=False)
    kinds = KINDS[source]
    chosen = rng.integers(0, len(kinds), count)
    history = _spell_history(df) if source == "hospital_spells" else None
    if history is not None:
        # A second open spell needs an open one to copy: give those defects open spells (rare in a delivery).
        open_rows = np.setdiff1d(np.flatnonzero(df["discharge_date"].is_null().to_numpy()), picks)
        want = np.flatnonzero(np.array(kinds)[chosen] == "second_open_spell")
        take = min(len(want), len(open_rows))
        picks[want[:take]] = rng.choice(open_rows, take, replace=False)
    order_picks = np.argsort(picks)
    picks, chosen = picks[order_picks], chosen[order_picks]
    new_rows: list[dict] = []
    meta: list[tuple[str, str]] = []
    living = [x for x in living_nhs.tolist()]
    for pick, k in zip(picks.tolist(), chosen.tolist(), strict=True):
        row = df.row(pick, named=True)
        kind = kinds[k]
        if history is not None and kind in SPELL_HISTORY_KINDS:
            kind, column = _corrupt_history(row, kind, rng, extract, history)
            new_rows.append(row)
            meta.append((kind, column))
            continue
        if kind in ADDRESS_KINDS:
            kind, column = _corrupt_address(row, kind, rng, extract)
            new_rows.append(row)
            meta.append((kind, column))
            continue
        kind, column = _corrupt(source, row, kind, rng, extract, spare_nhs, unknown_nhs, living)
        new_rows.append(row)
        meta.append((kind, column))
    extra = pl.DataFrame(new_rows, schema=df.schema, orient="row")
    order = np.concatenate([np.arange(n) * 2, picks * 2 + 1])
    combined = pl.concat([df, extra]).with_columns(pl.Series("_k", order)).sort("_k")
    position = {int(key): i for i, key in enumerate(combined["_k"].to_list()) if key % 2 == 1}
    combined = combined.drop("_k")
    records = [(position[int(p) * 2 + 1], kind, column) for p, (kind, column) in zip(picks, meta, strict=True)]
    # A corrupted copy must never equal another row: that would be a second defect (duplicate) on it.
    dup = ~combined.select(pl.struct(pl.all()).is_first_distinct()).to_series()
    key = KEY_COLUMN.get(source)
    if key is not None:
        dup = dup | (~combined[key].is_first_distinct() & combined[key].is_not_null())
    intended = {r[0] for r in records if r[1] == "duplicate_row"}
    bad = [i for i in np.flatnonzero(dup.to_numpy()).tolist() if i not in intended]
    if bad:
        drop = set(bad)
        keep = np.array([i not in drop for i in range(len(combined))])
        shift = np.cumsum(~keep)
        combined = combined.filter(pl.Series(keep))
        records = [(i - int(shift[i]), kind, column) for i, kind, column in records if i not in drop]
    return combined, records


def _spell_history(df: pl.DataFrame) -> dict[str, tuple[bool, date | None]]:
    """Per person: (has an open spell, latest discharge date) in the valid spells."""
    per = df.group_by("nhs_number").agg(pl.col("discharge_date").is_null().any().alias("open"),
                                         pl.col("discharge_date").max().alias("last"))
    return {r[0]: (r[1], r[2]) for r in per.iter_rows()}


def _corrupt_history(row: dict, kind: str, rng: np.random.Generator, extract: date,
                     history: dict[str, tuple[bool, date | None]]) -> tuple[str, str]:
    """A copy of a spell that makes the person's spell history impossible, and nothing else wrong.

    The copy never ends later than the spell it copies, so it cannot make any genuine spell look impossible.
    Where the picked spell cannot carry the requested defect, a related one that it can carry is written.
    """
    row["spell_id"] = row["spell_id"] + "D"
    adm, dis = row["admission_date"], row["discharge_date"]
    has_open, last = history[row["nhs_number"]]
    if dis is None:  # copying an open spell: a second open spell, admitted on or after the first
        row["admission_date"] = adm + timedelta(days=int(rng.integers(0, (extract - adm).days + 1)))
        return "second_open_spell", "discharge_date"
    if kind in ("overlapping_spell", "second_open_spell") or has_open:
        if (dis - adm).days >= 2:
            row["admission_date"] = adm + timedelta(days=int(rng.integers(1, (dis - adm).days)))
            return "overlapping_spell", "admission_date"
        row["admission_method"] = "2Z"  # a same-day spell cannot hold another: an unknown code instead
        return "unknown_code", "admission_method"
    # After the person's last discharge, so only the intended defect is present.
    row["admission_date"] = last if last is not None else adm
    if kind == "open_spell_with_destination":
        row["discharge_date"] = None
        return kind, "discharge_destination"
    row["discharge_date"] = extract + timedelta(days=int(rng.integers(1, 60)))
    return "discharge_after_extract", "discharge_date"


def _corrupt_address(row: dict, kind: str, rng: np.random.Generator, extract: date) -> tuple[str, str]:
    """A copy of an address period with exactly one address defect.

    A copy that overlaps never ends later than the period it copies (nor starts earlier), so it cannot make a
    genuine period look impossible; a period too short to hold another gets an unknown LSOA instead.
    """
    start, end = row["from_date"], row["to_date"]
    if kind in ("overlapping_address", "second_current_address"):
        if end is None:  # a second current address, moved into after the first
            row["from_date"] = start + timedelta(days=int(rng.integers(1, max(2, (extract - start).days + 1))))
            if row["from_date"] <= extract:
                return "second_current_address", "to_date"
            row["from_date"] = start
        elif (end - start).days >= 2:
            row["from_date"] = start + timedelta(days=int(rng.integers(1, (end - start).days)))
            return "overlapping_address", "from_date"
        kind = "unknown_lsoa"
    if kind == "to_before_from":
        row["to_date"] = start - timedelta(days=int(rng.integers(1, 60)))
        return kind, "to_date"
    row["lsoa11"] = UNKNOWN_LSOA
    return "unknown_lsoa", "lsoa11"


def _corrupt(source: str, row: dict, kind: str, rng: np.random.Generator, extract: date, spare_nhs: list[str],
             unknown_nhs: np.ndarray, living: list[str]) -> tuple[str, str]:
    """Corrupt ``row`` in place with exactly one defect; return (defect, column)."""
    if kind == "duplicate_row":
        return kind, KEY_COLUMN.get(source, "")
    if source == "residents":
        row["nhs_number"] = spare_nhs.pop()
        row["date_of_death"] = None
    elif source == "hospital_spells":
        row["spell_id"] = row["spell_id"] + "D"
    elif source == "deaths" and kind not in ("bad_nhs_number", "unknown_person"):
        # A second death row for the same person would be a duplicate: use someone alive instead.
        row["nhs_number"] = living[int(rng.integers(0, len(living)))] if living else unknown_nhs[0]
        if not living:
            kind = "unknown_person"
    return kind, _apply(source, row, kind, rng, extract, unknown_nhs)


def _apply(source: str, row: dict, kind: str, rng: np.random.Generator, extract: date,
           unknown_nhs: np.ndarray) -> str:
    date_col = DATE_COLUMN[source]
    if kind == "bad_nhs_number":
        row["nhs_number"] = break_check_digit(row["nhs_number"])
        return "nhs_number"
    if kind == "unknown_person":
        row["nhs_number"] = str(unknown_nhs[int(rng.integers(0, len(unknown_nhs)))])
        return "nhs_number"
    if kind == "future_date":
        row[date_col] = extract + timedelta(days=int(rng.integers(1, 700)))
        if source == "hospital_spells":
            row["discharge_date"] = None
            row["discharge_destination"] = None
        if source == "social_care_events":
            row["event_end_date"] = None
        if source == "addresses":
            row["to_date"] = None
        return date_col
    if kind == "date_before_1900":
        col = "date_of_birth" if source == "residents" else date_col
        row[col] = date(1850, 1, 1) + timedelta(days=int(rng.integers(0, 365 * 49)))
        return col
    if kind == "discharge_before_admission":
        row["discharge_date"] = row["admission_date"] - timedelta(days=int(rng.integers(1, 60)))
        return "discharge_date"
    if kind == "malformed_code":
        if source in ("gp_events", "ae_attendances"):
            col = "snomed_code" if source == "gp_events" else "chief_complaint_snomed"
            row[col] = malformed_snomed(row[col], rng)
            return col
        if source == "deaths":
            row["underlying_cause_icd10"] = malformed_icd(row["underlying_cause_icd10"], rng)
            return "underlying_cause_icd10"
        if row["secondary_diagnoses"] and rng.random() < 0.5:
            codes = row["secondary_diagnoses"].split(",")
            codes[int(rng.integers(0, len(codes)))] = malformed_icd(codes[0], rng)
            row["secondary_diagnoses"] = ",".join(codes)
            return "secondary_diagnoses"
        row["primary_diagnosis"] = malformed_icd(row["primary_diagnosis"], rng)
        return "primary_diagnosis"
    if kind == "unknown_code":
        if source == "residents":
            if rng.random() < 0.5:
                row["sex"] = "X"
                return "sex"
            row["ethnic_category"] = "Q"
            return "ethnic_category"
        if source == "hospital_spells":
            row["admission_method"] = "2Z"
            return "admission_method"
        if source == "ae_attendances":
            row["arrival_mode"] = "3"
            return "arrival_mode"
        if row["event_type"] == "Service" and rng.random() < 0.6:
            row["service_type"] = "Long Term Support: Unknown"
            return "service_type"
        row["event_type"] = "Referral"
        return "event_type"
    if kind == "null_required":
        options = NULLABLE_REQUIRED[source]
        col = options[int(rng.integers(0, len(options)))]
        row[col] = None
        if source == "social_care_events" and col == "event_start_date":
            row["event_end_date"] = None
        return col
    raise ValueError(kind)
