"""The optional address history is ingested like the other sources: contract, GX checks (including a person's
periods against each other), quarantine with reasons, pseudonymised, counts reconcile; a delivery without
it is ingested exactly as before.

Valid residents in the shared delivery (tests/ingest/conftest.py): P0, P1, P8. The reason of every row below
was worked out by hand from the row and the person's other rows.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import polars as pl
import pytest

from expectations.ingest import ingest_delivery
from expectations.pseudonymise import pseudonymise_one
from tests.ingest.conftest import P0, P1, P8, UNKNOWN, write_delivery
from upstream.settings import Settings

D = date
LSOA = "E01016012"
NOT_AN_LSOA_2011 = "E01099999"  # well formed, but no England LSOA 2011 has this code
ROWS = [  # nhs_number, uprn, lsoa11, from_date, to_date, expected reason (None = valid)
    (P0, "U1", LSOA, D(2000, 1, 1), D(2020, 6, 1), None),
    (P0, "U2", LSOA, D(2020, 6, 1), None, None),  # moved on the day the last period ended: contiguous
    (P1, "U3", LSOA, D(2010, 1, 1), D(2015, 1, 1), None),
    (P1, "U4", LSOA, D(2014, 6, 1), D(2018, 1, 1), "address_starts_inside_another_address"),
    (P1, "U5", LSOA, D(2018, 1, 1), D(2017, 1, 1), "to_date_on_or_after_from_date"),
    (P1, "U6", NOT_AN_LSOA_2011, D(2018, 1, 1), None, "lsoa11_known(lsoa11)"),
    (P1, "U7", LSOA, D(2019, 1, 1), None, None),
    (P1, "U8", LSOA, D(2020, 1, 1), None, "second_current_address"),
    (P8, "U9", LSOA, D(2030, 1, 1), None, "date_not_after_as_of(from_date)"),
    (UNKNOWN, "U10", LSOA, D(2001, 1, 1), None, "person_in_residents"),
    (P0, "U1", LSOA, D(2000, 1, 1), D(2020, 6, 1), "duplicate_row"),
]


def _write_addresses(raw: Path) -> None:
    pl.DataFrame([r[:5] for r in ROWS], schema={"nhs_number": pl.String, "uprn": pl.String, "lsoa11": pl.String,
                                                "from_date": pl.Date, "to_date": pl.Date},
                 orient="row").write_csv(raw / "addresses.csv")


@pytest.mark.parametrize("mode", ["precomputed", "native"])
def test_address_history_is_validated_quarantined_and_pseudonymised(tmp_path: Path, mode: str) -> None:
    raw = write_delivery(tmp_path / "raw")
    _write_addresses(raw)
    settings = Settings(home=tmp_path / "home", pseudo_key="test-key-not-secret")
    out = tmp_path / "out"
    summary = ingest_delivery(raw, out, settings, mode=mode, build_docs=False)  # type: ignore[arg-type]
    entry = summary["addresses"]
    expected_bad = [i for i, row in enumerate(ROWS) if row[5] is not None]
    assert (entry["rows_in"], entry["rows_valid"], entry["rows_quarantined"]) == (11, 4, 7)
    assert entry["rows_in"] == entry["rows_valid"] + entry["rows_quarantined"]
    quarantined = pl.read_parquet(out / "quarantine" / "addresses.parquet")
    assert quarantined["row_index"].to_list() == expected_bad
    assert quarantined["reason"].to_list() == [ROWS[i][5] for i in expected_bad]
    clean = pl.read_parquet(out / "clean" / "addresses.parquet")
    assert clean.columns == ["person_id", "uprn", "lsoa11", "from_date", "to_date"]
    key = settings.pseudonymisation_key()
    assert clean["person_id"].to_list() == [pseudonymise_one(n, key) for n in (P0, P0, P1, P1)]
    assert clean["uprn"].to_list() == ["U1", "U2", "U3", "U7"]
    assert P0 not in clean.write_csv()


def test_a_delivery_without_addresses_is_ingested_as_before(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home", pseudo_key="test-key-not-secret")
    raw = write_delivery(tmp_path / "raw")
    summary = ingest_delivery(raw, tmp_path / "out", settings, build_docs=False)
    assert "addresses" not in summary
    assert not (tmp_path / "out" / "clean" / "addresses.parquet").exists()
    (raw / "addresses.csv").write_text("nhs_number,uprn,lsoa11,from_date,to_date\n")
    summary = ingest_delivery(raw, tmp_path / "out2", settings, build_docs=False)
    assert (summary["addresses"]["rows_in"], summary["addresses"]["rows_valid"]) == (0, 0)
