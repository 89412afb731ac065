"""Unusable files: ``upstream ingest`` exits non-zero with one message naming file, column and problem."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import polars as pl
import pytest

from upstream.cli import main
from upstream.settings import get_settings


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("UPSTREAM_HOME", str(tmp_path / "home"))
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def _missing(raw: Path) -> None:
    (raw / "deaths.parquet").unlink()


def _empty(raw: Path) -> None:
    (raw / "residents.parquet").write_bytes(b"")


def _no_rows(raw: Path) -> None:
    pl.read_parquet(raw / "deaths.parquet").head(0).write_parquet(raw / "deaths.parquet")


def _truncated(raw: Path) -> None:
    data = (raw / "gp_events.parquet").read_bytes()
    (raw / "gp_events.parquet").write_bytes(data[: len(data) // 2])


def _corrupt(raw: Path) -> None:
    (raw / "social_care_events.parquet").write_bytes(b"PAR1" + b"\x00garbage" * 50)


def _truncated_csv(raw: Path) -> None:
    # cut inside the last row: the reader would pad it with nulls and take it for a (bad) row
    text = (raw / "ae_attendances.csv").read_text()
    (raw / "ae_attendances.csv").write_text(text[: text.rstrip("\n").rfind(",2,") + 3])


def _renamed(raw: Path) -> None:
    frame = pl.read_parquet(raw / "hospital_spells.parquet").rename({"admission_date": "admit_date"})
    frame.write_parquet(raw / "hospital_spells.parquet")


def _dropped(raw: Path) -> None:
    pl.read_parquet(raw / "deaths.parquet").drop("underlying_cause_icd10").write_parquet(raw / "deaths.parquet")


def _wrong_type_strings(raw: Path) -> None:
    frame = pl.read_parquet(raw / "residents.parquet")
    frame.with_columns(pl.lit("unknown").alias("date_of_birth")).write_parquet(raw / "residents.parquet")


def _wrong_type_ints(raw: Path) -> None:
    frame = pl.read_parquet(raw / "gp_events.parquet")
    frame.with_columns(pl.int_range(pl.len()).alias("event_date")).write_parquet(raw / "gp_events.parquet")


def _wrong_type_csv(raw: Path) -> None:
    text = (raw / "ae_attendances.csv").read_text().splitlines()
    rows = [text[0]] + [",".join([*line.split(",")[:5], "perhaps"]) for line in text[1:]]
    (raw / "ae_attendances.csv").write_text("\n".join(rows) + "\n")


CASES: list[tuple[str, Callable[[Path], None], str, str | None, str]] = [
    ("missing", _missing, "deaths.parquet", None, "missing file"),
    ("empty", _empty, "residents.parquet", None, "empty file"),
    ("no rows", _no_rows, "deaths.parquet", None, "empty file (no rows)"),
    ("truncated", _truncated, "gp_events.parquet", None, "truncated or corrupt parquet"),
    ("truncated csv", _truncated_csv, "ae_attendances.csv", None, "truncated CSV file"),
    ("corrupt", _corrupt, "social_care_events.parquet", None, "truncated or corrupt parquet"),
    ("renamed", _renamed, "hospital_spells.parquet", "admission_date", "admit_date"),
    ("dropped", _dropped, "deaths.parquet", "underlying_cause_icd10", "missing column"),
    ("strings for dates", _wrong_type_strings, "residents.parquet", "date_of_birth", "wrong type throughout"),
    ("ints for dates", _wrong_type_ints, "gp_events.parquet", "event_date", "wrong type"),
    ("csv booleans", _wrong_type_csv, "ae_attendances.csv", "admitted", "wrong type throughout"),
]


@pytest.mark.parametrize(("label", "damage", "file", "column", "problem"), CASES, ids=[c[0] for c in CASES])
def test_bad_file_fails_cleanly(label, damage, file, column, problem, delivery: Path, tmp_path: Path, capsys) -> None:
    damage(delivery)
    out = tmp_path / "out"
    code = main(["ingest", "--raw", str(delivery), "--out", str(out)])
    err = capsys.readouterr().err
    assert code != 0
    assert file in err and problem in err
    if column is not None:
        assert f"column '{column}'" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not out.exists()
    assert not any(p.name.startswith(".out") for p in tmp_path.iterdir())
    assert not (tmp_path / "home" / "restricted" / "reid_map.parquet").exists()


def test_good_delivery_through_the_cli(delivery: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    assert main(["ingest", "--raw", str(delivery), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "residents: 10 in, 3 valid, 7 quarantined" in printed
    assert (out / "validation_summary.json").exists()


def test_table_level_fail_writes_nothing(delivery: Path, tmp_path: Path, capsys) -> None:
    import json

    previous = tmp_path / "previous.json"
    previous.write_text(json.dumps({"residents": {"rows_in": 100}}))  # 10 now: a 90% drop
    out = tmp_path / "out"
    code = main(["ingest", "--raw", str(delivery), "--out", str(out), "--previous", str(previous)])
    err = capsys.readouterr().err
    assert code == 2 and "row_count_change" in err and "residents" in err
    assert not out.exists()
