"""The ingest speed levers keep every verdict and every output: GX without its batch fingerprint, the event
sources' Modulus 11 shortcut through the valid residents, quarantine rows picked before they are cast."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import polars as pl

from expectations import checks as C
from expectations.ingest import GxRunner, ingest_delivery
from expectations.suites import build_suite
from tests.ingest.conftest import EXPECTED_REASONS, P0, P1, P2_BAD, UNKNOWN
from upstream.settings import Settings


def test_gx_judges_every_row_without_hashing_the_batch(tmp_path: Path) -> None:
    """Rows 1 and 3 fail the type check, row 2 the not-null check (set by hand): GX names exactly those rows,
    the results carry no fingerprint, and the pandas mode GX ran under is not left behind."""
    from great_expectations.execution_engine import pandas_execution_engine

    suite = build_suite("deaths")
    checks = C.row_checks("deaths")
    frame = pd.DataFrame({c.flag_column: [True] * 5 for c in checks})
    type_dod = next(c for c in checks if c.name == C.TYPE and c.column == "date_of_death")
    not_null_nhs = next(c for c in checks if c.name == C.NOT_NULL and c.column == "nhs_number")
    frame.loc[[1, 3], type_dod.flag_column] = False
    frame.loc[[2], not_null_nhs.flag_column] = False
    copy_on_write_before = pd.get_option("mode.copy_on_write")

    failed, results = GxRunner(tmp_path / "gx").validate("deaths", suite, frame, chunk_rows=2)

    assert {token: rows for token, rows in failed.items() if rows} == {type_dod.token: [1, 3], not_null_nhs.token: [2]}
    assert len(results) == 3  # rows 0-1, 2-3, 4
    assert all("pandas_data_fingerprint" not in r.meta["batch_markers"] for r in results)
    assert pandas_execution_engine.HASH_THRESHOLD == 0
    assert pd.get_option("mode.copy_on_write") == copy_on_write_before


def test_an_event_source_s_modulus_11_verdicts_do_not_change_with_the_residents_shortcut() -> None:
    """P0 and P1 are valid residents; UNKNOWN is a valid number of nobody; P2_BAD has a wrong check digit;
    '123' is too short; null is judged by not_null only (False here, passed by check_exprs)."""
    events = pl.Series("nhs_number", [P0, UNKNOWN, P2_BAD, "123", None, P1, P0, P2_BAD])
    expected = [True, True, False, False, False, True, True, False]
    assert C._mod11_per_distinct(events).to_list() == expected
    assert C._mod11_per_distinct(events, pl.Series([P0, P1])).to_list() == expected
    assert C._mod11_per_distinct(events, pl.Series([], dtype=pl.String)).to_list() == expected


def test_quarantine_files_keep_their_layout(delivery: Path, settings: Settings, tmp_path: Path) -> None:
    """row_index (UInt32, file order) first, every contract column as read in strings, then the reason."""
    from expectations.contract import SOURCES

    out = tmp_path / "out"
    ingest_delivery(delivery, out, settings, build_docs=False)
    for source, expected in EXPECTED_REASONS.items():
        quarantine = pl.read_parquet(out / "quarantine" / f"{source}.parquet")
        names = SOURCES[source].names
        assert quarantine.columns == ["row_index", *names, "reason"], source
        assert quarantine.schema["row_index"] == pl.UInt32
        assert all(quarantine.schema[n] == pl.String for n in [*names, "reason"]), source
        assert quarantine["row_index"].to_list() == sorted(expected), source
