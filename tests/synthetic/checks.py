"""Independent re-implementation of the contract checks, used to audit the generator's recorded defects.

Written from the contract text (DESIGN §3, expectations/contract.py), not from the generator's code, so a
defect the generator forgot to record, or a valid row that accidentally fails a check, shows up here.
"""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path

import polars as pl

from expectations.contract import ADDRESSES, SOURCES
from expectations.identifiers import nhs_number_is_valid, snomed_is_valid

ICD_RE = re.compile(r"^[A-Z][0-9]{2}[0-9]{0,2}$")


def canonical_icd(code: str) -> str:
    c = code.strip().upper().replace(".", "")
    if re.fullmatch(r"[A-Z][0-9]{2}[X\-]", c) or re.fullmatch(r"[A-Z][0-9]{3}[X\-]", c):
        c = c[:-1]
    return c


def read_source(delivery: Path, name: str) -> pl.DataFrame:
    pq = delivery / f"{name}.parquet"
    if pq.exists():
        return pl.read_parquet(pq)
    schema = (SOURCES.get(name) or ADDRESSES).schema
    return pl.read_csv(delivery / f"{name}.csv", schema=schema)  # type: ignore[arg-type]


def _england_lsoa11() -> set[str]:
    """England's LSOA 2011 codes, read straight from the shipped IMD 2019 file (first column)."""
    import csv
    import gzip

    from features.codelists import CODELIST_DIR

    with gzip.open(CODELIST_DIR / "imd2019_lsoa11_deciles.csv.gz", "rt", encoding="utf-8-sig") as fh:
        return {row[0] for row in list(csv.reader(fh))[1:]}


def row_problems(delivery: Path, extract: date) -> dict[tuple[str, int], set[str]]:
    """(source, row_index) -> the set of defect kinds that row shows."""
    found: dict[tuple[str, int], set[str]] = {}

    def flag(source: str, rows: list[int] | pl.Series, kind: str) -> None:
        for r in list(rows):
            found.setdefault((source, int(r)), set()).add(kind)

    frames = {name: read_source(delivery, name).with_row_index("_i") for name in SOURCES}
    declared = dict(SOURCES)
    if any((delivery / f"{ADDRESSES.name}.{ext}").exists() for ext in ("parquet", "csv")):
        frames[ADDRESSES.name] = read_source(delivery, ADDRESSES.name).with_row_index("_i")
        declared[ADDRESSES.name] = ADDRESSES
    res = frames["residents"]
    nhs_ok = res["nhs_number"].map_elements(nhs_number_is_valid, return_dtype=pl.Boolean)
    for name, df in frames.items():
        src = declared[name]
        ok = df["nhs_number"].map_elements(nhs_number_is_valid, return_dtype=pl.Boolean, skip_nulls=False)
        flag(name, df.filter(~ok.fill_null(False))["_i"], "bad_nhs_number")
        for col in src.columns:
            if col.required and col.name != "nhs_number":
                flag(name, df.filter(pl.col(col.name).is_null())["_i"], "null_required")
            if col.dtype == pl.Date:
                late = "discharge_after_extract" if col.name == "discharge_date" else "future_date"
                flag(name, df.filter(pl.col(col.name) > extract)["_i"], late)
                flag(name, df.filter(pl.col(col.name) < date(1900, 1, 1))["_i"], "date_before_1900")
            if col.allowed is not None:
                flag(name, df.filter(pl.col(col.name).is_not_null() & ~pl.col(col.name).is_in(col.allowed))["_i"],
                     "unknown_code")
            if col.kind == "snomed":
                bad = df.filter(pl.col(col.name).is_not_null()
                                & ~pl.col(col.name).map_elements(snomed_is_valid, return_dtype=pl.Boolean))
                flag(name, bad["_i"], "malformed_code")
            if col.kind in ("icd10", "icd10_list"):
                def icd_bad(v: str, many: bool = col.kind == "icd10_list") -> bool:
                    codes = [c for c in v.split(",")] if many else [v]
                    if many and v == "":
                        return False
                    return any(not ICD_RE.match(canonical_icd(c)) for c in codes)
                bad = df.filter(pl.col(col.name).is_not_null()
                                & pl.col(col.name).map_elements(icd_bad, return_dtype=pl.Boolean))
                flag(name, bad["_i"], "malformed_code")
        body = df.drop("_i")
        dup = ~body.select(pl.struct(pl.all()).is_first_distinct()).to_series()
        keys = {"residents": "nhs_number", "hospital_spells": "spell_id", "deaths": "nhs_number"}
        if name in keys:
            dup = dup | (~df[keys[name]].is_first_distinct() & df[keys[name]].is_not_null())
        flag(name, df.filter(dup)["_i"], "duplicate_row")
    spells = frames["hospital_spells"]
    flag("hospital_spells", spells.filter(pl.col("discharge_date") < pl.col("admission_date"))["_i"],
         "discharge_before_admission")
    known = set(res.filter(nhs_ok)["nhs_number"].to_list())
    for name, df in frames.items():
        if name == "residents":
            continue
        ok = df["nhs_number"].map_elements(nhs_number_is_valid, return_dtype=pl.Boolean).fill_null(False)
        unknown = df.filter(ok & ~pl.col("nhs_number").is_in(list(known)))
        flag(name, unknown["_i"], "unknown_person")
    for r in spells.iter_rows(named=True):  # open spells carry no destination
        if r["discharge_date"] is None and r["discharge_destination"] is not None:
            flag("hospital_spells", [r["_i"]], "open_spell_with_destination")
    _spell_history_problems(spells, found, flag)
    if ADDRESSES.name in frames:
        addresses = frames[ADDRESSES.name]
        flag(ADDRESSES.name, addresses.filter(pl.col("to_date") < pl.col("from_date"))["_i"], "to_before_from")
        flag(ADDRESSES.name, addresses.filter(pl.col("lsoa11").is_not_null()
                                              & ~pl.col("lsoa11").is_in(sorted(_england_lsoa11())))["_i"],
             "unknown_lsoa")
        _address_history_problems(addresses, found, flag)
    return found


def _address_history_problems(addresses: pl.DataFrame, found: dict, flag) -> None:
    """Among address rows with no other problem, walk each person's periods in move-in order: one address at a
    time (moving in on the day the last period ended is fine), and one current address."""
    by_person: dict[str, list[dict]] = {}
    for r in addresses.iter_rows(named=True):
        if ("addresses", r["_i"]) not in found:
            by_person.setdefault(r["nhs_number"], []).append(r)
    for periods in by_person.values():
        periods.sort(key=lambda r: (r["from_date"], r["to_date"] is None, r["_i"]))
        latest_end, any_current = None, False
        for r in periods:
            if r["to_date"] is None and any_current:
                flag("addresses", [r["_i"]], "second_current_address")
            elif latest_end is not None and r["from_date"] < latest_end:
                flag("addresses", [r["_i"]], "overlapping_address")
            end = r["to_date"] or date.max
            latest_end = end if latest_end is None else max(latest_end, end)
            any_current = any_current or r["to_date"] is None


def _spell_history_problems(spells: pl.DataFrame, found: dict, flag) -> None:
    """Among spells with no other problem, walk each person's stays in admission order (plain Python)."""
    rows = [r for r in spells.iter_rows(named=True) if ("hospital_spells", r["_i"]) not in found]
    by_person: dict[str, list[dict]] = {}
    for r in rows:
        by_person.setdefault(r["nhs_number"], []).append(r)
    for stays in by_person.values():
        stays.sort(key=lambda r: (r["admission_date"], r["discharge_date"] is None, r["_i"]))
        latest_end = None  # None: no earlier spell; date.max: an earlier spell is still open
        any_open = False
        for r in stays:
            if r["discharge_date"] is None and any_open:
                flag("hospital_spells", [r["_i"]], "second_open_spell")
            elif latest_end is not None and r["admission_date"] < latest_end:
                flag("hospital_spells", [r["_i"]], "overlapping_spell")
            end = r["discharge_date"] or date.max
            latest_end = end if latest_end is None else max(latest_end, end)
            any_open = any_open or r["discharge_date"] is None
