"""Great Expectations suites, built in code from the contract (``expectations.checks.row_checks``).

Two ways to express the same checks, measured in ``bench/bench_ingest.py``:

- ``"precomputed"`` (the default, fastest): polars evaluates every check once into a boolean
  column ``ok__<check>__<column>``; GX judges each with ``expect_column_values_to_be_in_set([True])``.
  Every row-level verdict and its row positions still come from GX.
- ``"native"``: GX's own expectations (not-null, in-set, regex, between, column pair) on the typed
  pandas frame; only the checks GX cannot express (Modulus 11, Verhoeff, first-occurrence duplicates,
  membership of the valid residents) use precomputed boolean columns.

Each expectation carries ``meta.token`` (its quarantine reason token) and ``meta.check``/``meta.column``.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Literal

import great_expectations.expectations as gxe
import polars as pl
from great_expectations.core import ExpectationSuite

from expectations import checks as C
from expectations.contract import LOCALITY_NAME_RE, OPTIONAL_SOURCES, SOURCES, Source
from expectations.read import RAW_PREFIX

Mode = Literal["precomputed", "native"]

#: Checks that GX cannot express natively: always fed to GX as precomputed boolean columns.
ALWAYS_PRECOMPUTED = {C.TYPE, C.NHS_MOD11, C.SNOMED_VALID, C.DUPLICATE, C.PERSON_IN_RESIDENTS,
                      C.DESTINATION_IFF_DISCHARGED, C.LSOA11_KNOWN, *C.HISTORY_CHECKS}


def suite_name(source: str) -> str:
    return f"upstream_{source}"


def _midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day)


def _meta(check: C.Check) -> dict:
    return {"token": check.token, "check": check.name, "column": check.column}


def _native(check: C.Check, source: Source, as_of: date, earliest: date, max_age_years: int) -> gxe.Expectation:
    c = check.column
    meta = _meta(check)
    if check.name == C.NOT_NULL:
        is_string = source.column(c).dtype == pl.String
        return gxe.ExpectColumnValuesToNotBeNull(column=c if is_string else RAW_PREFIX + c, meta=meta)
    if check.name == C.VALUE_SET:
        return gxe.ExpectColumnValuesToBeInSet(column=c, value_set=list(check.params), meta=meta)
    regex = {
        C.ICD10_FORMAT: C.ICD10_CANONICAL_RE,
        C.ICD10_LIST_FORMAT: C.ICD10_LIST_CANONICAL_RE,
        C.LSOA11_FORMAT: C.LSOA11_RE,
        C.ODS_FORMAT: C.ODS_PRACTICE_RE,
        C.LOCALITY_FORMAT: LOCALITY_NAME_RE,
    }.get(check.name)
    if regex is not None:
        return gxe.ExpectColumnValuesToMatchRegex(column=c, regex=regex, meta=meta)
    # pandas holds dates as Timestamps, which compare with datetimes only (not dates or strings).
    if check.name == C.NOT_FUTURE:
        return gxe.ExpectColumnValuesToBeBetween(column=c, max_value=_midnight(as_of), meta=meta)
    if check.name == C.NOT_TOO_EARLY:
        return gxe.ExpectColumnValuesToBeBetween(column=c, min_value=_midnight(earliest), meta=meta)
    if check.name == C.AGE_RANGE:
        low = C.earliest_birth_date(as_of, max_age_years)
        return gxe.ExpectColumnValuesToBeBetween(
            column=c, min_value=_midnight(low), max_value=_midnight(as_of), meta=meta
        )
    if check.name in (C.DISCHARGE_AFTER_ADMISSION, C.END_AFTER_START, C.TO_AFTER_FROM):
        return gxe.ExpectColumnPairValuesAToBeGreaterThanB(
            column_A=c, column_B=check.params[0], or_equal=True, ignore_row_if="either_value_is_missing", meta=meta
        )
    raise AssertionError(f"no native expectation for {check.name}")


def build_suite(
    source: str | Source,
    mode: Mode = "precomputed",
    *,
    as_of: date | None = None,
    earliest: date = date(1900, 1, 1),
    max_age_years: int = 115,
) -> ExpectationSuite:
    """The Expectation Suite for one source. ``as_of`` is needed only by the native mode (date bounds)."""
    src = (SOURCES.get(source) or OPTIONAL_SOURCES[source]) if isinstance(source, str) else source
    expectations: list[gxe.Expectation] = []
    for check in C.row_checks(src):
        if mode == "precomputed" or check.name in ALWAYS_PRECOMPUTED:
            expectations.append(
                gxe.ExpectColumnValuesToBeInSet(column=check.flag_column, value_set=[True], meta=_meta(check))
            )
        else:
            if as_of is None:
                raise ValueError("the native suite needs as_of for its date bounds")
            expectations.append(_native(check, src, as_of, earliest, max_age_years))
    # Given to the constructor, not one ``add_expectation`` at a time: once a suite of this name is in the
    # file-backed context (every weekly run after the first), GX persists the suite on each addition.
    suite = ExpectationSuite(
        name=suite_name(src.name),
        expectations=expectations,
        meta={"source": src.name, "mode": mode, "built_from": "expectations.contract via expectations.checks"},
    )
    return suite
