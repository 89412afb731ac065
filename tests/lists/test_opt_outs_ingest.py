"""The optional opt-out source is ingested like the others: contract, GX checks, quarantine with reasons,
pseudonymised, and counts reconcile; a header-only file means nobody opted out."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from expectations.ingest import ingest_delivery
from expectations.pseudonymise import pseudonymise_one
from tests.ingest.conftest import P0, P1, P2_BAD, UNKNOWN, write_delivery
from upstream.settings import Settings


def _settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path / "home", pseudo_key="test-key-not-secret")


def test_opt_outs_are_validated_quarantined_and_pseudonymised(tmp_path: Path) -> None:
    raw = write_delivery(tmp_path / "raw")
    # P0 and P1 are valid residents; P2_BAD fails Mod 11; UNKNOWN is nobody in residents; P0 repeats.
    (raw / "opt_outs.csv").write_text(f"nhs_number\n{P0}\n{P1}\n{P2_BAD}\n{UNKNOWN}\n{P0}\n")
    settings = _settings(tmp_path)
    out = tmp_path / "out"
    summary = ingest_delivery(raw, out, settings)
    entry = summary["opt_outs"]
    assert (entry["rows_in"], entry["rows_valid"], entry["rows_quarantined"]) == (5, 2, 3)
    clean = pl.read_parquet(out / "clean" / "opt_outs.parquet")
    assert clean.columns == ["person_id"]
    key = settings.pseudonymisation_key()
    assert sorted(clean["person_id"]) == sorted([pseudonymise_one(P0, key), pseudonymise_one(P1, key)])
    quarantined = pl.read_parquet(out / "quarantine" / "opt_outs.parquet")
    assert quarantined["row_index"].to_list() == [2, 3, 4]
    assert all(reason for reason in quarantined["reason"])
    assert P0 not in clean.write_csv()  # no NHS number in the analytical output


def test_header_only_opt_out_file_means_nobody_and_no_file_means_none(tmp_path: Path) -> None:
    raw = write_delivery(tmp_path / "raw")
    (raw / "opt_outs.csv").write_text("nhs_number\n")
    out = tmp_path / "out"
    summary = ingest_delivery(raw, out, _settings(tmp_path))
    assert (summary["opt_outs"]["rows_in"], summary["opt_outs"]["rows_valid"]) == (0, 0)
    assert pl.read_parquet(out / "clean" / "opt_outs.parquet").height == 0
    (raw / "opt_outs.csv").unlink()
    summary = ingest_delivery(raw, out, _settings(tmp_path))
    assert "opt_outs" not in summary and not (out / "clean" / "opt_outs.parquet").exists()


def test_opted_out_people_read_through_the_one_clean_reader(tmp_path: Path) -> None:
    """``expectations.cohort.opted_out_people`` (what scoring filters and publishing removes): each person once,
    nobody when the file is absent, and a clean file without ``person_id`` is a clear error, not a traceback."""
    import pytest

    from expectations.cohort import opted_out_people
    from upstream.errors import BadFileError

    raw = write_delivery(tmp_path / "raw")
    (raw / "opt_outs.csv").write_text(f"nhs_number\n{P1}\n{P0}\n{P0}\n")  # P0 twice
    settings = _settings(tmp_path)
    out = tmp_path / "out"
    ingest_delivery(raw, out, settings)
    key = settings.pseudonymisation_key()
    assert opted_out_people(out / "clean") == sorted([pseudonymise_one(P0, key), pseudonymise_one(P1, key)])
    (out / "clean" / "opt_outs.parquet").unlink()
    assert opted_out_people(out / "clean") == []
    pl.DataFrame({"nhs_number": [P0]}).write_parquet(out / "clean" / "opt_outs.parquet")
    with pytest.raises(BadFileError, match="person_id"):
        opted_out_people(out / "clean")
