"""Identifier and code checks shared by the generator (to make valid and deliberately invalid values)
and by ingest (to reject them). Each has a scalar form and a vectorised polars form.
"""

from __future__ import annotations

import re

import polars as pl

# --- NHS number: 10 digits, Modulus 11 check digit (NHS Data Dictionary) -----------------------

_NHS_WEIGHTS = (10, 9, 8, 7, 6, 5, 4, 3, 2)


def nhs_check_digit(first_nine: str) -> int | None:
    """Check digit for the first nine digits, or None where no valid check digit exists (remainder 10)."""
    total = sum(int(d) * w for d, w in zip(first_nine, _NHS_WEIGHTS, strict=True))
    check = 11 - total % 11
    if check == 11:
        return 0
    return None if check == 10 else check


def nhs_number_is_valid(value: str | None) -> bool:
    if value is None or len(value) != 10 or not value.isdigit():
        return False
    return nhs_check_digit(value[:9]) == int(value[9])


def nhs_number_valid_expr(column: str | pl.Expr) -> pl.Expr:
    """Vectorised Modulus 11 check; null or malformed -> False."""
    col = pl.col(column) if isinstance(column, str) else column
    digits = [col.str.slice(i, 1).cast(pl.Int32, strict=False) for i in range(10)]
    total = sum(d * w for d, w in zip(digits[:9], _NHS_WEIGHTS, strict=True))
    check = 11 - total % 11
    expected = pl.when(check == 11).then(0).otherwise(check)
    well_formed = col.str.contains(r"^\d{10}$").fill_null(False)
    return (well_formed & (expected != 10) & (expected == digits[9])).fill_null(False)


# --- SNOMED CT concept id: 6-18 digits, Verhoeff check digit -----------------------------------

_VERHOEFF_D = (
    (0, 1, 2, 3, 4, 5, 6, 7, 8, 9),
    (1, 2, 3, 4, 0, 6, 7, 8, 9, 5),
    (2, 3, 4, 0, 1, 7, 8, 9, 5, 6),
    (3, 4, 0, 1, 2, 8, 9, 5, 6, 7),
    (4, 0, 1, 2, 3, 9, 5, 6, 7, 8),
    (5, 9, 8, 7, 6, 0, 4, 3, 2, 1),
    (6, 5, 9, 8, 7, 1, 0, 4, 3, 2),
    (7, 6, 5, 9, 8, 2, 1, 0, 4, 3),
    (8, 7, 6, 5, 9, 3, 2, 1, 0, 4),
    (9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
)
_VERHOEFF_P = (
    (0, 1, 2, 3, 4, 5, 6, 7, 8, 9),
    (1, 5, 7, 6, 2, 8, 3, 0, 9, 4),
    (5, 8, 0, 3, 7, 9, 6, 1, 4, 2),
    (8, 9, 1, 6, 0, 4, 3, 5, 2, 7),
    (9, 4, 5, 3, 1, 2, 6, 8, 7, 0),
    (4, 2, 8, 6, 5, 7, 3, 9, 0, 1),
    (2, 7, 9, 3, 8, 0, 6, 4, 1, 5),
    (7, 0, 4, 6, 9, 1, 3, 2, 5, 8),
)
_SNOMED_RE = re.compile(r"^\d{6,18}$")


def verhoeff_is_valid(digits: str) -> bool:
    check = 0
    for position, char in enumerate(reversed(digits)):
        check = _VERHOEFF_D[check][_VERHOEFF_P[position % 8][int(char)]]
    return check == 0


def snomed_is_valid(value: str | None) -> bool:
    return value is not None and bool(_SNOMED_RE.match(value)) and verhoeff_is_valid(value)


def snomed_valid_expr(column: str | pl.Expr) -> pl.Expr:
    """Vectorised SNOMED check. Verhoeff runs once per distinct code (codes repeat heavily)."""
    col = pl.col(column) if isinstance(column, str) else column
    return col.map_batches(_snomed_valid_series, return_dtype=pl.Boolean).fill_null(False)


def _snomed_valid_series(series: pl.Series) -> pl.Series:
    uniques = series.drop_nulls().unique()
    lookup = pl.DataFrame({"code": uniques, "ok": [snomed_is_valid(v) for v in uniques.to_list()]})
    return (
        series.to_frame("code").join(lookup, on="code", how="left", maintain_order="left")["ok"].fill_null(False)
    )


# --- ICD-10: accept W19, W19X, W19.9, w199, W19-; canonical = upper case, no dot, no filler ----

#: Letter, two digits, optional 4th character digit (5th character allowed, as used in UK extensions).
ICD10_CANONICAL_RE = r"^[A-Z][0-9]{2}[0-9]{0,2}$"


def icd10_canonical_expr(column: str | pl.Expr) -> pl.Expr:
    """Normalise to the canonical form; something that still is not ICD-10-shaped stays as-is
    (upper-cased) so the validity check can reject it with its original meaning intact."""
    col = pl.col(column) if isinstance(column, str) else column
    return (
        col.str.strip_chars()
        .str.to_uppercase()
        .str.replace_all(".", "", literal=True)
        .str.replace(r"^([A-Z][0-9]{2})[X\-]$", "$1")
        .str.replace(r"^([A-Z][0-9]{3})[X\-]$", "$1")
    )


def icd10_canonical(value: str) -> str:
    return pl.select(icd10_canonical_expr(pl.lit(value))).item()


def icd10_valid_expr(canonical: str | pl.Expr) -> pl.Expr:
    col = pl.col(canonical) if isinstance(canonical, str) else canonical
    return col.str.contains(ICD10_CANONICAL_RE).fill_null(False)
