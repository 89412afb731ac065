"""Null handling is declared per feature (``Feature.if_none_recorded``), and the builder follows it."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import polars as pl

from expectations.contract import clean_schema
from features.build import build_features
from features.registry import FEATURES

#: Hand-listed from the data dictionary: features whose null means "unknown" or "not applicable", never 0.
STAYS_NULL = {
    "person_id", "index_date", "age", "sex", "female", "imd_decile", "ethnic_group", "locality",
    "days_since_last_fall", "efi", "efi_category", "hfrs_band", "household_size", "lives_alone",
    "reablement_outcome",
}


def test_counts_flags_and_scores_declare_their_none_recorded_value() -> None:
    declared = {n: f.if_none_recorded for n, f in FEATURES.items()}
    assert {n for n, v in declared.items() if v is None} == STAYS_NULL
    assert declared["falls_12m"] == 0 and declared["dementia"] is False and declared["hfrs"] == 0.0


def test_a_person_with_no_records_gets_the_declared_values(tmp_path: Path) -> None:
    T = date(2024, 6, 3)
    for source in ("residents", "deaths", "gp_events", "hospital_spells", "ae_attendances", "social_care_events"):
        rows = [{"person_id": "p1", "date_of_birth": date(1940, 1, 1), "registration_start": date(2000, 1, 1),
                 "uprn": "u1", "sex": "2", "lsoa11": "not-an-lsoa", "locality": "North"}] if source == "residents" else []
        schema = clean_schema(source)
        pl.DataFrame([{c: r.get(c) for c in schema} for r in rows], schema=schema).write_parquet(
            tmp_path / f"{source}.parquet")
    row = build_features(tmp_path, T).row(0, named=True)
    for name, feature in FEATURES.items():
        if feature.if_none_recorded is not None:
            assert row[name] == feature.if_none_recorded, name
    assert row["days_since_last_fall"] is None  # never fell: unknown, not 0 days
    assert row["imd_decile"] is None  # LSOA not in the IMD file
    assert (row["age"], row["household_size"], row["lives_alone"], row["efi"]) == (84, 1, True, 0.0)
