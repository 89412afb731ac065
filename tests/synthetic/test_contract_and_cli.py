"""Files follow the raw data contract, same arguments give the same bytes, and the CLI works."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import polars as pl
import pytest

from expectations.contract import SOURCES
from synthetic.generate import DEFAULT_END_DATE, generate_delivery
from upstream.cli import main

FILES = [*(f"{s}.parquet" for s in SOURCES), "_delivery.json", "_truth/defects.parquet",
         "_truth/risk_2024-11-18.parquet", "_truth/risk_2025-11-17.parquet"]


def test_parquet_columns_order_and_dtypes_match_contract(delivery):
    out, _ = delivery
    for name, source in SOURCES.items():
        df = pl.read_parquet(out / f"{name}.parquet")
        assert df.columns == source.names, name
        assert dict(df.schema) == source.schema, name
        assert len(df) > 0, name


def test_delivery_json(delivery):
    out, _ = delivery
    meta = json.loads((out / "_delivery.json").read_text())
    assert meta["extract_date"] == "2026-11-22"
    # 6 years by default: enough for training dates with the features' full 2-year history (models.train)
    assert (meta["seed"], meta["residents"], meta["years"], meta["world"]) == (11, 12_000, 6, "default")
    assert meta["generator_version"]


def test_all_dates_inside_window_except_long_running_services(delivery):
    out, _ = delivery
    window_start = date(2020, 11, 23)  # 2026-11-22 minus 6 x 365 days (the default 6 years)
    for name, col in [("gp_events", "event_date"), ("hospital_spells", "admission_date"),
                      ("ae_attendances", "arrival_date"), ("deaths", "date_of_death")]:
        df = pl.read_parquet(out / f"{name}.parquet")
        valid = df.filter(pl.col(col).is_between(date(1900, 1, 1), DEFAULT_END_DATE))
        assert valid[col].min() >= window_start, name


def test_same_arguments_same_bytes_and_seed_matters(tmp_path: Path):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    for d, seed in ((a, 5), (b, 5), (c, 6)):
        generate_delivery(d, residents=1500, seed=seed, defect_rate=0.03, years=2)
    files = [*(f"{s}.parquet" for s in SOURCES), "_delivery.json", "_truth/defects.parquet", "addresses.parquet",
             "_truth/moves.parquet"]
    files += [p.relative_to(a).as_posix() for p in (a / "_truth").glob("risk_*.parquet")]
    for f in files:
        assert (a / f).read_bytes() == (b / f).read_bytes(), f
    assert (a / "gp_events.parquet").read_bytes() != (c / "gp_events.parquet").read_bytes()


def test_csv_format_reads_back_with_contract_schema(tmp_path: Path):
    out = tmp_path / "csv"
    generate_delivery(out, residents=800, seed=3, fmt="csv", years=2)
    for name, source in SOURCES.items():
        path = out / f"{name}.csv"
        header = path.read_text().splitlines()[0]
        assert header.split(",") == source.names
        df = pl.read_csv(path, schema=source.schema)  # dates must parse as ISO
        assert dict(df.schema) == source.schema
    residents = pl.read_csv(out / "residents.csv", schema=SOURCES["residents"].schema)
    assert len(residents) == 800


def test_cli_writes_delivery_and_prints_summary(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    out = tmp_path / "cli"
    code = main(["synth", "--residents", "1000", "--seed", "2", "--out", str(out), "--years", "2",
                 "--defect-rate", "0.01", "--world", "alt", "--end-date", "2026-06-30"])
    assert code == 0
    text = capsys.readouterr().out
    assert "residents" in text and "oracle AUROC" in text and "elapsed" in text
    meta = json.loads((out / "_delivery.json").read_text())
    assert meta["world"] == "alt" and meta["extract_date"] == "2026-06-30"
    # default truth date: 2026-06-30 minus 365 days = 2025-06-30, a Monday
    assert (out / "_truth" / "risk_2025-06-30.parquet").exists()
    assert pl.read_parquet(out / "residents.parquet").height >= 1000


def test_cli_rejects_bad_options_with_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    code = main(["synth", "--residents", "100", "--seed", "1", "--out", str(tmp_path / "x"), "--defect-rate", "0.9"])
    assert code == 2
    assert "defect rate" in capsys.readouterr().err


def test_parallel_workers_write_the_same_bytes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    import synthetic.generate as gen

    monkeypatch.setattr(gen, "CHUNK_RESIDENTS", 600)  # several chunks from a small population
    one, two = tmp_path / "one", tmp_path / "two"
    s1 = generate_delivery(one, residents=1500, seed=8, years=2, defect_rate=0.02)
    s2 = generate_delivery(two, residents=1500, seed=8, years=2, defect_rate=0.02, workers=2)
    assert s1.rows == s2.rows
    for f in [*(f"{s}.parquet" for s in SOURCES), "_truth/defects.parquet", "addresses.parquet",
              "_truth/moves.parquet"]:
        assert (one / f).read_bytes() == (two / f).read_bytes(), f


def test_without_the_address_history_the_world_is_the_same(tmp_path: Path):
    """--no-addresses: a council without address history. People still moved, so the residents file (the
    extract-time snapshot) is byte for byte the one of the delivery with the history; only the history is gone."""
    with_history, without = tmp_path / "with", tmp_path / "without"
    generate_delivery(with_history, residents=1500, seed=8, years=2)
    generate_delivery(without, residents=1500, seed=8, years=2, addresses=False)
    assert not (without / "addresses.parquet").exists() and not (without / "_truth" / "moves.parquet").exists()
    for f in [*(f"{s}.parquet" for s in SOURCES), "_truth/defects.parquet"]:
        assert (with_history / f).read_bytes() == (without / f).read_bytes(), f
    moves = pl.read_parquet(with_history / "_truth" / "moves.parquet")
    assert moves.height > 50  # people really moved in two years of 1,500 residents


def test_no_valid_row_is_dated_after_the_extract_whatever_the_weekday(tmp_path: Path):
    """The simulation runs in Monday-aligned weeks; an extract mid-week must still cut every source at it."""
    end = date(2026, 6, 30)  # a Tuesday: the last simulated week runs past it
    out = tmp_path / "tue"
    generate_delivery(out, residents=3000, seed=4, years=2, end_date=end)
    for name, source in SOURCES.items():
        df = pl.read_parquet(out / f"{name}.parquet")
        for col in source.columns:
            if col.dtype == pl.Date:
                assert df.filter(pl.col(col.name) > end).is_empty(), (name, col.name)
