"""Row-level checks, declared from the data contract.

One list per source says *what* is checked (name, column, kind). How each check is evaluated
lives in two places that must agree: a cheap polars expression producing a pass/fail boolean
per row (``check_exprs``), and the Great Expectations expectation that judges it
(``expectations.suites``). Quarantine reasons are the check tokens, so a reader of the
quarantine file sees exactly which expectation a row failed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import polars as pl

from expectations.contract import LOCALITY_NAME_RE, OPTIONAL_SOURCES, SOURCES, Source
from expectations.identifiers import (
    ICD10_CANONICAL_RE,
    icd10_canonical_expr,
    nhs_number_valid_expr,
    snomed_valid_expr,
)
from features.codelists import imd_deciles

#: Canonical comma-separated ICD-10 list (empty allowed).
ICD10_LIST_CANONICAL_RE = r"^(?:" + ICD10_CANONICAL_RE[1:-1] + r"(?:," + ICD10_CANONICAL_RE[1:-1] + r")*)?$"
LSOA11_RE = r"^[EW]01[0-9]{6}$"
ODS_PRACTICE_RE = r"^[A-Z][0-9]{5}$"

# Check names (stable: they appear in quarantine reasons and in the validation summary).
NOT_NULL = "not_null"
TYPE = "type"
NHS_MOD11 = "nhs_number_mod11"
SNOMED_VALID = "snomed_verhoeff_length"
ICD10_FORMAT = "icd10_format"
ICD10_LIST_FORMAT = "icd10_list_format"
LSOA11_FORMAT = "lsoa11_format"
ODS_FORMAT = "ods_practice_format"
LOCALITY_FORMAT = "locality_name_format"
VALUE_SET = "in_value_set"
NOT_FUTURE = "date_not_after_as_of"
NOT_TOO_EARLY = "date_not_before_earliest"
DISCHARGE_AFTER_ADMISSION = "discharge_on_or_after_admission"
END_AFTER_START = "end_on_or_after_start"
AGE_RANGE = "age_0_115"
DUPLICATE = "duplicate_row"
PERSON_IN_RESIDENTS = "person_in_residents"
DESTINATION_IFF_DISCHARGED = "discharge_destination_iff_discharged"
SPELL_INSIDE_ANOTHER = "spell_starts_inside_another_spell"
SECOND_OPEN_SPELL = "second_open_spell"
# Address history (the optional ``addresses`` source).
TO_AFTER_FROM = "to_date_on_or_after_from_date"
LSOA11_KNOWN = "lsoa11_known"
ADDRESS_OVERLAP = "address_starts_inside_another_address"
SECOND_CURRENT_ADDRESS = "second_current_address"

#: Checks across a person's rows (spell or address history): judged only among rows that pass every row-level
#: check, so a corrupted copy of a spell or an address never condemns the genuine row it was copied from.
HISTORY_CHECKS = {SPELL_INSIDE_ANOTHER, SECOND_OPEN_SPELL, ADDRESS_OVERLAP, SECOND_CURRENT_ADDRESS}

#: Checks whose name already says which column they concern: their token is the bare name.
_SELF_NAMED = {NHS_MOD11, DISCHARGE_AFTER_ADMISSION, END_AFTER_START, AGE_RANGE, DUPLICATE, PERSON_IN_RESIDENTS,
               DESTINATION_IFF_DISCHARGED, SPELL_INSIDE_ANOTHER, SECOND_OPEN_SPELL, TO_AFTER_FROM, ADDRESS_OVERLAP,
               SECOND_CURRENT_ADDRESS}


@dataclass(frozen=True)
class Check:
    """One row-level check of one source. ``column`` is the column it is about (None: whole row)."""

    name: str
    column: str | None
    params: tuple = ()

    @property
    def token(self) -> str:
        """How the check is named in a quarantine reason, e.g. ``not_null(date_of_birth)``."""
        if self.name in _SELF_NAMED or self.column is None:
            return self.name
        return f"{self.name}({self.column})"

    @property
    def flag_column(self) -> str:
        """Name of the pass/fail boolean column GX validates (a plain identifier)."""
        return f"ok__{self.name}__{self.column or 'row'}"


def row_checks(source: Source | str) -> list[Check]:
    """Every row-level check for a source, in the order reasons are written."""
    src = (SOURCES.get(source) or OPTIONAL_SOURCES[source]) if isinstance(source, str) else source
    checks: list[Check] = []
    for col in src.columns:
        if col.dtype != pl.String:
            checks.append(Check(TYPE, col.name))
        if col.required:
            checks.append(Check(NOT_NULL, col.name))
    for col in src.columns:
        if col.kind == "nhs_number":
            checks.append(Check(NHS_MOD11, col.name))
        elif col.kind == "snomed":
            checks.append(Check(SNOMED_VALID, col.name))
        elif col.kind == "icd10":
            checks.append(Check(ICD10_FORMAT, col.name))
        elif col.kind == "icd10_list":
            checks.append(Check(ICD10_LIST_FORMAT, col.name))
        elif col.kind == "lsoa11":
            checks.append(Check(LSOA11_FORMAT, col.name))
        elif col.kind == "ods_practice":
            checks.append(Check(ODS_FORMAT, col.name))
        elif col.kind == "locality_name":
            checks.append(Check(LOCALITY_FORMAT, col.name))
        elif col.kind == "date":
            checks.append(Check(NOT_FUTURE, col.name))
            checks.append(Check(NOT_TOO_EARLY, col.name))
        if col.allowed is not None:
            checks.append(Check(VALUE_SET, col.name, col.allowed))
    if src.name == "residents":
        checks.append(Check(AGE_RANGE, "date_of_birth"))
    if "discharge_on_or_after_admission" in src.extra_checks:
        checks.append(Check(DISCHARGE_AFTER_ADMISSION, "discharge_date", ("admission_date",)))
    if "end_on_or_after_start" in src.extra_checks:
        checks.append(Check(END_AFTER_START, "event_end_date", ("event_start_date",)))
    if "destination_iff_discharged" in src.extra_checks:
        checks.append(Check(DESTINATION_IFF_DISCHARGED, "discharge_destination", ("discharge_date",)))
    if "to_on_or_after_from" in src.extra_checks:
        checks.append(Check(TO_AFTER_FROM, "to_date", ("from_date",)))
    if "lsoa_known" in src.extra_checks:
        # A well-formed code that is not an England LSOA 2011 (a typo, or a 2021 code) has no IMD decile: the
        # address would give deprivation "unknown" at every T it covers.
        checks.append(Check(LSOA11_KNOWN, "lsoa11"))
    checks.append(Check(DUPLICATE, None, src.key))
    if src.person_linked:
        checks.append(Check(PERSON_IN_RESIDENTS, "nhs_number"))
    if "spell_history" in src.extra_checks:
        checks.append(Check(SPELL_INSIDE_ANOTHER, "admission_date", ("discharge_date",)))
        checks.append(Check(SECOND_OPEN_SPELL, "discharge_date", ("admission_date",)))
    if "address_history" in src.extra_checks:
        checks.append(Check(ADDRESS_OVERLAP, "from_date", ("to_date",)))
        checks.append(Check(SECOND_CURRENT_ADDRESS, "to_date", ("from_date",)))
    return checks


#: History checks: (starts inside another period, second open period) -> (start column, end column).
_PERIOD_CHECKS = {
    (SPELL_INSIDE_ANOTHER, SECOND_OPEN_SPELL): ("admission_date", "discharge_date"),
    (ADDRESS_OVERLAP, SECOND_CURRENT_ADDRESS): ("from_date", "to_date"),
}


def history_flags(frame: pl.DataFrame, checks: list[Check], row_ok: pl.Series) -> pl.DataFrame:
    """Pass/fail columns of every history check of a source (spells or addresses), in the frame's row order."""
    names = {c.name for c in checks}
    parts = [
        period_history_flags(frame, [c for c in checks if c.name in pair], row_ok, *columns, *pair)
        for pair, columns in _PERIOD_CHECKS.items() if names & set(pair)
    ]
    return pl.concat(parts, how="horizontal")


def spell_history_flags(frame: pl.DataFrame, checks: list[Check], row_ok: pl.Series) -> pl.DataFrame:
    """Pass/fail columns for the spell-history checks (see :func:`period_history_flags`)."""
    return period_history_flags(frame, checks, row_ok, "admission_date", "discharge_date",
                                SPELL_INSIDE_ANOTHER, SECOND_OPEN_SPELL)


def period_history_flags(frame: pl.DataFrame, checks: list[Check], row_ok: pl.Series, start: str, end: str,
                         inside_check: str, second_open_check: str) -> pl.DataFrame:
    """Pass/fail columns for a person's periods (hospital spells, addresses), in the frame's row order.

    A person is in one hospital, and lives at one address, at a time. So among the rows that pass every
    row-level check, ordered by start (closed before open on the same day, then file order):

    - ``inside_check`` (e.g. ``spell_starts_inside_another_spell``): starts before the latest end of an
      earlier period of the same person (an open period has not ended). Starting on that end day is a
      same-day transfer or move, allowed.
    - ``second_open_check`` (e.g. ``second_open_spell``): open (no end date) while an earlier period of the
      same person is also open. Such a row only gets this, more specific, reason.

    Rows that fail a row-level check pass these (they are quarantined anyway and must not condemn others).
    """
    wanted = {c.name for c in checks}
    never = pl.date(9999, 12, 31)
    order = (
        frame.select("nhs_number", start, end)
        .with_row_index("_row")
        .with_columns(_ok=row_ok)
        .filter(pl.col("_ok"))
        .sort("nhs_number", start, pl.col(end).is_null(), "_row")
        .with_columns(
            _latest_end=pl.col(end).fill_null(never).cum_max().shift(1).over("nhs_number"),
            _open_before=pl.col(end).is_null().cast(pl.Int32).cum_sum().shift(1).over("nhs_number"),
        )
        .with_columns(
            _second_open=pl.col(end).is_null() & (pl.col("_open_before").fill_null(0) > 0),
            _inside=(pl.col(start) < pl.col("_latest_end")).fill_null(False),
        )
    )
    verdict = {
        inside_check: ~(pl.col("_inside") & ~pl.col("_second_open")),
        second_open_check: ~pl.col("_second_open"),
    }
    out = pl.DataFrame({"_row": pl.Series(range(frame.height), dtype=pl.UInt32)}).join(
        order.select("_row", *[verdict[c.name].alias(c.flag_column) for c in checks if c.name in wanted]),
        on="_row", how="left",
    ).sort("_row")
    return out.drop("_row").fill_null(True)


def minus_years(day: date, years: int) -> date:
    """Same calendar day ``years`` earlier (29 Feb -> 28 Feb)."""
    try:
        return day.replace(year=day.year - years)
    except ValueError:
        return day.replace(year=day.year - years, day=28)


def earliest_birth_date(as_of: date, max_age_years: int) -> date:
    """Oldest date of birth still aged <= max_age_years on ``as_of`` (the day after the (max+1)th birthday)."""
    from datetime import timedelta

    return minus_years(as_of, max_age_years + 1) + timedelta(days=1)


def canonical_icd10_list_expr(column: str) -> pl.Expr:
    """Comma list -> canonical codes joined by commas; null/blank -> empty string."""
    return (
        pl.col(column)
        .fill_null("")
        .str.split(",")
        .list.eval(icd10_canonical_expr(pl.element()))
        .list.eval(pl.element().filter(pl.element() != ""))
        .list.join(",")
    )


def canonicalise(typed: pl.DataFrame, source: Source) -> pl.DataFrame:
    """ICD-10 columns to their canonical form (the clean data holds these; checks judge these)."""
    exprs = []
    for col in source.columns:
        if col.kind == "icd10":
            exprs.append(icd10_canonical_expr(col.name).alias(col.name))
        elif col.kind == "icd10_list":
            exprs.append(canonical_icd10_list_expr(col.name).alias(col.name))
    return typed.with_columns(exprs) if exprs else typed


def _mod11_per_distinct(series: pl.Series, known_valid: pl.Series | None = None) -> pl.Series:
    """Modulus 11 once per distinct NHS number: events repeat each person many times.

    ``known_valid``: numbers already found valid in this delivery (the valid residents, each of which passed
    this same check on the same string), so an event source computes the digits only for numbers that are
    not a valid resident's: at county scale that is 1.9M distinct numbers per event source not recomputed.
    """
    uniques = series.unique().to_frame("nhs")
    if known_valid is None or known_valid.is_empty():
        lookup = uniques.with_columns(nhs_number_valid_expr("nhs").alias("ok"))
    else:
        known = uniques["nhs"].is_in(known_valid.implode()).fill_null(False)
        lookup = pl.concat([
            uniques.filter(known).with_columns(ok=pl.lit(True)),
            uniques.filter(~known).with_columns(nhs_number_valid_expr("nhs").alias("ok")),
        ])
    return series.to_frame("nhs").join(lookup, on="nhs", how="left", maintain_order="left", nulls_equal=True)["ok"]


def _when_present(column: str, passed: pl.Expr) -> pl.Expr:
    """Nulls are judged only by not_null; every other check passes them."""
    return pl.when(pl.col(column).is_null()).then(True).otherwise(passed.fill_null(False))


def check_exprs(
    checks: list[Check],
    *,
    as_of: date,
    earliest: date,
    max_age_years: int,
    raw_names: dict[str, str],
    valid_people: pl.Series | None,
) -> list[pl.Expr]:
    """Polars pass/fail expressions (True = pass) over a frame holding typed+canonical columns and the
    raw columns under ``raw_names[column]``. Every expression is non-null, so GX sees plain booleans."""
    exprs: list[pl.Expr] = []
    for check in checks:
        c = check.column
        if check.name == NOT_NULL:
            expr = pl.col(raw_names[c]).is_not_null()
        elif check.name == TYPE:
            expr = ~(pl.col(raw_names[c]).is_not_null() & pl.col(c).is_null())
        elif check.name == NHS_MOD11:
            expr = _when_present(c, pl.col(c).map_batches(
                lambda values: _mod11_per_distinct(values, valid_people), return_dtype=pl.Boolean))
        elif check.name == SNOMED_VALID:
            expr = _when_present(c, snomed_valid_expr(c))
        elif check.name == ICD10_FORMAT:
            expr = _when_present(c, pl.col(c).str.contains(ICD10_CANONICAL_RE))
        elif check.name == ICD10_LIST_FORMAT:
            expr = _when_present(c, pl.col(c).str.contains(ICD10_LIST_CANONICAL_RE))
        elif check.name == LSOA11_FORMAT:
            expr = _when_present(c, pl.col(c).str.contains(LSOA11_RE))
        elif check.name == ODS_FORMAT:
            expr = _when_present(c, pl.col(c).str.contains(ODS_PRACTICE_RE))
        elif check.name == LOCALITY_FORMAT:
            expr = _when_present(c, pl.col(c).str.contains(LOCALITY_NAME_RE))
        elif check.name == VALUE_SET:
            expr = _when_present(c, pl.col(c).is_in(list(check.params)))
        elif check.name == NOT_FUTURE:
            expr = _when_present(c, pl.col(c) <= as_of)
        elif check.name == NOT_TOO_EARLY:
            expr = _when_present(c, pl.col(c) >= earliest)
        elif check.name == AGE_RANGE:
            low = earliest_birth_date(as_of, max_age_years)
            expr = _when_present(c, (pl.col(c) >= low) & (pl.col(c) <= as_of))
        elif check.name == LSOA11_KNOWN:
            expr = _when_present(c, pl.col(c).is_in(sorted(imd_deciles())))
        elif check.name in (DISCHARGE_AFTER_ADMISSION, END_AFTER_START, TO_AFTER_FROM):
            start = check.params[0]
            expr = (
                pl.when(pl.col(c).is_null() | pl.col(start).is_null())
                .then(True)
                .otherwise(pl.col(c) >= pl.col(start))
            )
        elif check.name == DESTINATION_IFF_DISCHARGED:
            expr = pl.col(c).is_null() == pl.col(check.params[0]).is_null()
        elif check.name == DUPLICATE:
            raw_all = list(raw_names.values())
            expr = pl.struct(raw_all).is_first_distinct()
            if check.params:
                keys = [raw_names[k] for k in check.params]
                key_first = pl.struct(keys).is_first_distinct()
                key_null = pl.any_horizontal([pl.col(k).is_null() for k in keys])
                expr = expr & (key_first | key_null)
        elif check.name == PERSON_IN_RESIDENTS:
            people = valid_people if valid_people is not None else pl.Series([], dtype=pl.String)
            expr = _when_present(c, pl.col(c).is_in(people.implode()))
        else:  # pragma: no cover - a new check name without an expression is a programming error
            raise AssertionError(f"no expression for check {check.name}")
        exprs.append(expr.fill_null(True).alias(check.flag_column))
    return exprs
