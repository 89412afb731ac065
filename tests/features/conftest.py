"""Fixtures for feature tests: write hand-made people as ingest-style clean parquet files."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from expectations.contract import SOURCES, clean_schema
from features.codelists import CodeList

RESIDENT_DEFAULTS: dict[str, Any] = {
    "date_of_birth": date(1940, 6, 15),
    "sex": "2",
    "ethnic_category": "A",
    "lsoa11": "E01016012",
    "gp_practice": "G82001",
    "locality": "North",
    "registration_start": date(2000, 1, 1),
    "date_of_death": None,
}
SPELL_DEFAULTS: dict[str, Any] = {
    "discharge_date": None,
    "admission_method": "21",
    "secondary_diagnoses": "",
    "discharge_destination": "19",
}
AE_DEFAULTS: dict[str, Any] = {"arrival_mode": "2", "diagnosis_snomed": None, "admitted": False}
SC_DEFAULTS: dict[str, Any] = {
    "event_end_date": None, "service_type": None, "service_component": None,
    "primary_support_reason": None, "event_outcome": None, "unit_cost": None,
}
GP_DEFAULTS: dict[str, Any] = {"value": None}
DEFAULTS = {
    "residents": RESIDENT_DEFAULTS, "hospital_spells": SPELL_DEFAULTS, "ae_attendances": AE_DEFAULTS,
    "social_care_events": SC_DEFAULTS, "gp_events": GP_DEFAULTS, "deaths": {},
}


def write_clean(directory: Path, **rows: list[dict[str, Any]]) -> Path:
    """Write each source's rows (defaults filled in) as <directory>/<source>.parquet; all six sources."""
    directory.mkdir(parents=True, exist_ok=True)
    spell_counter = 0
    for source in SOURCES:
        records = []
        for row in rows.get(source, []):
            full = {**DEFAULTS[source], **row}
            if source == "residents":
                full.setdefault("uprn", f"U-{full['person_id']}")
            if source == "hospital_spells" and "spell_id" not in full:
                spell_counter += 1
                full["spell_id"] = f"S{spell_counter}"
            records.append(full)
        schema = clean_schema(source)
        frame = pl.DataFrame(records, schema=schema) if records else pl.DataFrame(schema=schema)
        frame.write_parquet(directory / f"{source}.parquet")
    return directory


@pytest.fixture
def clean_writer(tmp_path: Path) -> Callable[..., Path]:
    return lambda **rows: write_clean(tmp_path / "clean", **rows)


def unique_code(codelist: CodeList) -> str:
    """A code of ``codelist`` that is in no other shipped SNOMED list, so a test controls exactly
    which concepts one event switches on (several published lists share codes)."""
    from features.codelists import ALL_SNOMED_LISTS

    others: set[str] = set()
    for other in ALL_SNOMED_LISTS:
        if other.filename != codelist.filename:
            others |= other.codes()
    return min(c for c in codelist.codes() if c not in others)
