"""Ingest on a hand-made delivery: exact quarantine reasons, clean conventions, summary, atomic output."""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path

import polars as pl
import pytest

from expectations.ingest import ingest_delivery
from tests.ingest.conftest import AS_OF, EXPECTED_REASONS, P0, P1, P8, ROWS_IN, write_delivery
from upstream.settings import Settings

KEY = b"test-key-not-secret"


def _pid(nhs: str) -> str:
    return hmac.new(KEY, nhs.encode(), hashlib.sha256).hexdigest()[:16]


@pytest.fixture(scope="module")
def module_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return Settings(home=tmp_path_factory.mktemp("home"), pseudo_key=KEY.decode())


@pytest.fixture(scope="module")
def ingested(module_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """One full ingest (with Data Docs) shared by the read-only tests below."""
    root = tmp_path_factory.mktemp("ingested")
    out = root / "out"
    return out, ingest_delivery(write_delivery(root / "raw"), out, module_settings)


def test_every_defect_is_quarantined_with_its_exact_reasons(ingested) -> None:
    out, _ = ingested
    for source, expected in EXPECTED_REASONS.items():
        quarantine = pl.read_parquet(out / "quarantine" / f"{source}.parquet")
        got = dict(zip(quarantine["row_index"].to_list(), quarantine["reason"].to_list(), strict=True))
        assert got == expected, source


def test_native_gx_expectations_reach_the_same_verdicts(delivery: Path, settings, tmp_path: Path) -> None:
    out = tmp_path / "native"
    ingest_delivery(delivery, out, settings, mode="native", build_docs=False)
    for source, expected in EXPECTED_REASONS.items():
        quarantine = pl.read_parquet(out / "quarantine" / f"{source}.parquet")
        assert dict(zip(quarantine["row_index"].to_list(), quarantine["reason"].to_list(), strict=True)) == expected


def test_chunked_validation_keeps_global_row_positions(delivery: Path, settings, tmp_path: Path) -> None:
    out = tmp_path / "chunked"
    ingest_delivery(delivery, out, settings, chunk_rows=3, build_docs=False)
    quarantine = pl.read_parquet(out / "quarantine" / "gp_events.parquet")
    assert dict(zip(quarantine["row_index"].to_list(), quarantine["reason"].to_list(), strict=True)) == (
        EXPECTED_REASONS["gp_events"]
    )


def test_counts_reconcile_and_summary_names_the_checks(ingested) -> None:
    out, summary = ingested
    on_disk = json.loads((out / "validation_summary.json").read_text())
    assert on_disk == json.loads(json.dumps(summary, default=str))
    for source, rows in ROWS_IN.items():
        entry = summary[source]
        assert entry["rows_in"] == rows
        assert entry["rows_quarantined"] == len(EXPECTED_REASONS[source])
        assert entry["rows_in"] == entry["rows_valid"] + entry["rows_quarantined"]
        assert pl.read_parquet(out / "clean" / f"{source}.parquet").height == entry["rows_valid"]
    by_token = {c.get("token"): c for c in summary["residents"]["checks"] if c["scope"] == "row"}
    assert by_token["age_0_115"]["unexpected_count"] == 3  # rows 4, 6, 9
    assert by_token["nhs_number_mod11"]["unexpected_count"] == 1
    assert by_token["in_value_set(sex)"]["level"] == "quarantine"
    assert by_token["lsoa11_format(lsoa11)"]["level"] == "ok" and by_token["lsoa11_format(lsoa11)"]["success"]
    assert by_token["age_0_115"]["success"] is False
    table = {(c["name"], c["column"]): c for c in summary["residents"]["checks"] if c["scope"] == "table"}
    # 1 of 10 registration_start values is null: above the 1% warn, below the 20% fail threshold.
    assert table[("null_rate", "registration_start")]["level"] == "warn"
    assert table[("null_rate", "nhs_number")]["level"] == "ok"
    spells = {c["name"]: c for c in summary["hospital_spells"]["checks"] if c["scope"] == "table"}
    assert spells["emergency_admission_share"]["value"] == pytest.approx(2 / 3, abs=1e-6)  # S1, S7 of S1, S2, S7


def test_clean_data_follows_the_conventions(ingested) -> None:
    out, _ = ingested
    residents = pl.read_parquet(out / "clean" / "residents.parquet")
    assert residents.columns[0] == "person_id" and "nhs_number" not in residents.columns
    assert sorted(residents["person_id"].to_list()) == sorted(_pid(n) for n in (P0, P1, P8))
    assert residents.schema["date_of_birth"] == pl.Date
    spells = pl.read_parquet(out / "clean" / "hospital_spells.parquet").sort("spell_id")
    assert spells["primary_diagnosis"].to_list() == ["W199", "W19", "R296"]  # w19.9, W19X, R29.6
    assert spells["secondary_diagnoses"].to_list() == ["I10,E119", "", "W19"]  # "I10, e11.9", null, "W19-"
    ae = pl.read_parquet(out / "clean" / "ae_attendances.parquet")
    assert ae.schema["admitted"] == pl.Boolean and ae["admitted"].to_list() == [True, False]
    events = pl.read_parquet(out / "clean" / "gp_events.parquet")
    assert set(events["person_id"]) <= set(residents["person_id"])


def test_no_nhs_number_in_analytical_output_and_reid_map_apart(ingested, module_settings) -> None:
    out, _ = ingested
    for path in (out / "clean").glob("*.parquet"):
        frame = pl.read_parquet(path)
        for column in frame.select(pl.col(pl.String)).columns:
            assert not frame[column].is_in([P0, P1, P8]).any(), (path.name, column)
    reid = pl.read_parquet(module_settings.reid_map_path)
    assert not module_settings.reid_map_path.is_relative_to(out)
    assert dict(zip(reid["nhs_number"], reid["person_id"], strict=True)) == {n: _pid(n) for n in (P0, P1, P8)}


def test_quarantine_keeps_original_values_as_read(ingested) -> None:
    out, _ = ingested
    spells = pl.read_parquet(out / "quarantine" / "hospital_spells.parquet")
    assert spells.filter(pl.col("row_index") == 6)["secondary_diagnoses"].item() == "I10,ABC"
    ae = pl.read_parquet(out / "quarantine" / "ae_attendances.parquet")
    assert ae.filter(pl.col("row_index") == 2)["admitted"].item() == "maybe"
    residents = pl.read_parquet(out / "quarantine" / "residents.parquet")
    assert residents.filter(pl.col("row_index") == 4)["date_of_birth"].item() == "1899-12-31"


def test_data_docs_and_suites_are_written(ingested, module_settings) -> None:
    out, _ = ingested
    index = out / "data_docs" / "index.html"
    assert index.exists() and "upstream_residents" in index.read_text()
    assert sorted(p.name for p in (out / "data_docs" / "expectations").glob("*.html")) == sorted(
        f"upstream_{s}.html" for s in ROWS_IN
    )
    suite = json.loads((module_settings.home / "gx" / "gx" / "expectations" / "upstream_residents.json").read_text())
    assert any(e["meta"]["token"] == "age_0_115" for e in suite["expectations"])
    assert sorted(p.name for p in out.iterdir()) == ["clean", "data_docs", "quarantine", "validation_summary.json"]


def test_as_of_comes_from_the_delivery_and_can_be_overridden(delivery: Path, settings, tmp_path: Path) -> None:
    from datetime import date

    summary = ingest_delivery(delivery, tmp_path / "o", settings, as_of=date(2025, 6, 1), build_docs=False)
    assert summary["residents"]["as_of"] == "2025-06-01"
    quarantine = pl.read_parquet(tmp_path / "o" / "quarantine" / "deaths.parquet")
    # Death dated 2025-12-01 is now in the future (row 0), as is row 2's 2025-12-02 (also a duplicate).
    assert dict(zip(quarantine["row_index"], quarantine["reason"], strict=True))[0] == (
        "date_not_after_as_of(date_of_death)"
    )
    assert ingest_delivery(delivery, tmp_path / "p", settings, build_docs=False)["deaths"]["as_of"] == (
        AS_OF.isoformat()
    )


def test_rerun_replaces_output_atomically(delivery: Path, settings, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "stale.txt").write_text("from an older run")
    ingest_delivery(delivery, out, settings, build_docs=False)
    assert not (out / "stale.txt").exists() and (out / "validation_summary.json").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".out")] == []


def test_a_different_pseudonymisation_key_is_refused_and_writes_nothing(delivery, tmp_path) -> None:
    from upstream.errors import UpstreamError

    home = tmp_path / "keyed_home"
    first = Settings(home=home, pseudo_key="the-original-key")
    ingest_delivery(delivery, tmp_path / "first", first, build_docs=False)
    before = pl.read_parquet(first.reid_map_path)
    # Same home (same re-identification map), another key: every person_id would silently change.
    other = Settings(home=home, pseudo_key="a-different-key")
    with pytest.raises(UpstreamError, match="pseudonymisation key differs"):
        ingest_delivery(delivery, tmp_path / "second", other, build_docs=False)
    assert not (tmp_path / "second").exists()
    assert pl.read_parquet(first.reid_map_path).equals(before)
    assert before.height == before["nhs_number"].n_unique() == 3


def test_a_week_s_data_docs_show_only_that_week_s_validation(delivery: Path, settings, tmp_path: Path) -> None:
    """One GX project serves every week; each week's Data Docs must render its own run's results only (GX's
    site builder otherwise renders every result the project ever stored)."""

    def runs_rendered(out: Path) -> set[str]:
        # validations/<suite>/<run name>/<run time>/<batch>.html
        return {p.relative_to(out / "data_docs" / "validations").parts[1]
                for p in (out / "data_docs" / "validations").rglob("*.html")}

    ingest_delivery(delivery, tmp_path / "week1", settings)
    ingest_delivery(delivery, tmp_path / "week2", settings)
    first, second = runs_rendered(tmp_path / "week1"), runs_rendered(tmp_path / "week2")
    assert len(first) == 1 and len(second) == 1 and first != second
    pages = sorted((tmp_path / "week2" / "data_docs" / "validations").rglob("*.html"))
    assert len(pages) == len(ROWS_IN)  # one page per source: the hand-made delivery is one chunk each
    index = (tmp_path / "week2" / "data_docs" / "index.html").read_text()
    assert next(iter(second)) in index and next(iter(first)) not in index
