"""Plain step functions: partitioning for fan-out, index dates, train modes, CLI errors."""

from __future__ import annotations

import json
from datetime import date

import polars as pl
import pytest

from pipelines.champion import should_train
from pipelines.partitions import partition_clean
from pipelines.weeks import resolve_index_date
from upstream.cli import main
from upstream.errors import UpstreamError


def test_partition_clean_splits_people_and_their_events(tmp_path):
    clean = tmp_path / "clean"
    clean.mkdir()
    pl.DataFrame({"person_id": ["a", "b", "c", "d"], "locality": ["North", "South", "North", None]}).write_parquet(
        clean / "residents.parquet"
    )
    pl.DataFrame({"person_id": ["a", "a", "b", "d", "c"], "value": [1, 2, 3, 4, 5]}).write_parquet(
        clean / "gp_events.parquet"
    )
    parts = partition_clean(clean, tmp_path / "parts")
    assert list(parts) == ["North", "South", "Unknown"]
    north = pl.read_parquet(parts["North"] / "gp_events.parquet").sort("value")
    assert north["value"].to_list() == [1, 2, 5]
    assert pl.read_parquet(parts["South"] / "gp_events.parquet")["value"].to_list() == [3]
    assert pl.read_parquet(parts["Unknown"] / "residents.parquet")["person_id"].to_list() == ["d"]
    # Re-partitioning replaces the previous partitions.
    pl.DataFrame({"person_id": ["a"], "locality": ["North"]}).write_parquet(clean / "residents.parquet")
    assert list(partition_clean(clean, tmp_path / "parts")) == ["North"]
    assert not (tmp_path / "parts" / "south").exists()


def test_index_date_from_delivery(tmp_path):
    assert resolve_index_date(tmp_path, date(2026, 1, 5)) == date(2026, 1, 5)
    assert resolve_index_date(tmp_path, None) == date.today()
    (tmp_path / "_delivery.json").write_text(json.dumps({"extract_date": "2026-11-23"}))
    assert resolve_index_date(tmp_path, None) == date(2026, 11, 23)
    (tmp_path / "_delivery.json").write_text(json.dumps({"extract_date": "23/11/2026"}))
    with pytest.raises(UpstreamError, match="extract_date"):
        resolve_index_date(tmp_path, None)


def test_train_modes(settings):
    # An empty MLflow store has no champion: auto trains, never does not.
    assert should_train("always", settings) is True
    assert should_train("never", settings) is False
    assert should_train("auto", settings) is True
    with pytest.raises(UpstreamError, match="--train"):
        should_train("sometimes", settings)


def test_cli_run_missing_delivery_is_a_clear_error(tmp_path, capsys):
    assert main(["run", "--raw", str(tmp_path / "nope")]) == 2
    assert "delivery directory not found" in capsys.readouterr().err


def test_cli_schedule_rejects_a_bad_cron(tmp_path, capsys):
    assert main(["schedule", "--raw", str(tmp_path), "--cron", "every monday"]) == 2
    assert "cron" in capsys.readouterr().err


def test_a_backdated_run_keeps_rows_dated_between_its_index_date_and_the_extract(tmp_path):
    """The weekly run's index date names the week; ingest's "not in the future" check uses the delivery's
    extract date. A run scoring 1 June 2025 from a delivery extracted on 1 January 2026 must keep a death
    dated 1 December 2025: it is a valid row, and (dated after T) it leaves that person alive at T. Had ingest
    checked against T, rows such as a discharge after T, the record that someone was in hospital at T,
    would be quarantined and that person wrongly listed."""
    from pipelines.delivery import run_ingest
    from tests.ingest.conftest import AS_OF, write_delivery
    from upstream.settings import Settings

    settings = Settings(home=tmp_path / "home", pseudo_key="test-key-not-secret")
    raw = write_delivery(tmp_path / "raw")
    index_date = date(2025, 6, 1)
    assert date(2026, 1, 1) == AS_OF  # the delivery's manifest says so
    out_dir, summary = run_ingest(raw, index_date, settings)
    assert out_dir == settings.home / "weeks" / "2025-W22" / "ingest"  # 1 June 2025 is in ISO week 22
    assert {entry["as_of"] for entry in summary.values()} == {"2026-01-01"}
    quarantine = pl.read_parquet(out_dir / "quarantine" / "deaths.parquet")
    # deaths row 0 (P8, 2025-12-01) is valid as of the extract date: not quarantined
    assert 0 not in set(quarantine["row_index"].to_list())
    deaths = pl.read_parquet(out_dir / "clean" / "deaths.parquet")
    assert date(2025, 12, 1) in set(deaths["date_of_death"].to_list())
