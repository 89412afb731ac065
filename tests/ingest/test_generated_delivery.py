"""On generator deliveries with known defects: quarantine == ``_truth/defects.parquet``, exactly.

No false positives, no misses, per source; each quarantined row's reason names the check that the
recorded defect kind corresponds to (``DEFECT_CHECKS``), and counts reconcile.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from expectations import checks as C
from expectations.ingest import ingest_delivery
from synthetic import generate
from upstream.settings import Settings

#: Defect kind written by the generator -> the checks allowed to catch it (column must match too).
DEFECT_CHECKS: dict[str, set[str]] = {
    "bad_nhs_number": {C.NHS_MOD11},
    "future_date": {C.NOT_FUTURE},
    "date_before_1900": {C.NOT_TOO_EARLY},
    "discharge_before_admission": {C.DISCHARGE_AFTER_ADMISSION, C.END_AFTER_START},
    "malformed_code": {C.SNOMED_VALID, C.ICD10_FORMAT, C.ICD10_LIST_FORMAT},
    "unknown_code": {C.VALUE_SET},
    "duplicate_row": {C.DUPLICATE},
    "unknown_person": {C.PERSON_IN_RESIDENTS},
    "null_required": {C.NOT_NULL},
    "overlapping_spell": {C.SPELL_INSIDE_ANOTHER},
    "second_open_spell": {C.SECOND_OPEN_SPELL},
    "open_spell_with_destination": {C.DESTINATION_IFF_DISCHARGED},
    "discharge_after_extract": {C.NOT_FUTURE},
    "overlapping_address": {C.ADDRESS_OVERLAP},
    "second_current_address": {C.SECOND_CURRENT_ADDRESS},
    "to_before_from": {C.TO_AFTER_FROM},
    "unknown_lsoa": {C.LSOA11_KNOWN},
}


def _expected_tokens(source: str, defect: str, column: str | None) -> set[str]:
    """Reason tokens that would show this defect was caught by the right check (on the right column)."""
    tokens = set()
    for check in C.row_checks(source):
        if check.name not in DEFECT_CHECKS[defect]:
            continue
        if column is None or check.column is None or check.column == column or check.token == check.name:
            tokens.add(check.token)
    return tokens


def _compare(raw: Path, out: Path, summary: dict) -> None:
    truth = pl.read_parquet(raw / "_truth" / "defects.parquet")
    assert set(truth["defect"].unique()) <= set(DEFECT_CHECKS), "a defect kind without a mapped check"
    problems: list[str] = []
    people = set(pl.read_parquet(out / "clean" / "residents.parquet")["person_id"])
    assert len(people) == summary["residents"]["rows_valid"], "clean residents: one row per person"
    for source, entry in summary.items():
        assert entry["rows_in"] == entry["rows_valid"] + entry["rows_quarantined"], source
        quarantine = pl.read_parquet(out / "quarantine" / f"{source}.parquet")
        clean = pl.read_parquet(out / "clean" / f"{source}.parquet")
        assert clean.height == entry["rows_valid"] and quarantine.height == entry["rows_quarantined"]
        assert set(clean["person_id"]) <= people, f"{source}: clean event for a person not in clean residents"
        defects = truth.filter(pl.col("source") == source)
        expected_rows = set(defects["row_index"].to_list())
        got_rows = set(quarantine["row_index"].to_list())
        if got_rows - expected_rows:
            extra = quarantine.filter(pl.col("row_index").is_in(sorted(got_rows - expected_rows)))
            problems.append(f"{source}: {len(extra)} false positives, e.g. {extra.head(3).to_dicts()}")
        if expected_rows - got_rows:
            missed = defects.filter(pl.col("row_index").is_in(sorted(expected_rows - got_rows)))
            problems.append(f"{source}: {len(missed)} missed, e.g. {missed.head(3).to_dicts()}")
        reasons = dict(zip(quarantine["row_index"].to_list(), quarantine["reason"].to_list(), strict=True))
        for row in defects.iter_rows(named=True):
            if row["row_index"] not in reasons:
                continue
            tokens = set(reasons[row["row_index"]].split("; "))
            wanted = _expected_tokens(source, row["defect"], row.get("column"))
            if not tokens & wanted:
                problems.append(f"{source} row {row['row_index']}: defect {row['defect']}({row.get('column')}) "
                                f"but reason {reasons[row['row_index']]!r}")
    assert not problems, "\n".join(problems[:30])


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    raw = tmp_path_factory.mktemp("gen") / "raw"
    generate.generate_delivery(raw, residents=3000, seed=11, defect_rate=0.02)
    return raw


def test_quarantine_matches_generator_truth_exactly(generated: Path, tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home", pseudo_key="k")
    out = tmp_path / "out"
    summary = ingest_delivery(generated, out, settings, build_docs=False)
    _compare(generated, out, summary)
    assert sum(e["rows_quarantined"] for e in summary.values()) == pl.read_parquet(
        generated / "_truth" / "defects.parquet"
    )["row_index"].len() - _same_row_twice(generated)


def test_second_delivery_compared_with_the_first(generated: Path, tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home", pseudo_key="k")
    first = ingest_delivery(generated, tmp_path / "first", settings, build_docs=False)
    second = ingest_delivery(generated, tmp_path / "second", settings, previous_summary=first, build_docs=False)
    for entry in second.values():
        table = {(c["name"], c["column"]): c for c in entry["checks"] if c["scope"] == "table"}
        assert table[("row_count_change", None)]["value"] == 0 and table[("row_count_change", None)]["level"] == "ok"
        assert all(c["value"] == 0 for (name, _), c in table.items() if name == "null_rate_change")
    # Same key, same people: the re-identification map does not grow.
    reid = pl.read_parquet(settings.reid_map_path)
    assert reid.height == first["residents"]["rows_valid"] == reid["person_id"].n_unique()


def _same_row_twice(raw: Path) -> int:
    """Rows carrying two recorded defects count once in the quarantine."""
    truth = pl.read_parquet(raw / "_truth" / "defects.parquet")
    return truth.height - truth.select("source", "row_index").unique().height


def test_csv_delivery_gives_the_same_result(tmp_path: Path) -> None:
    raw = tmp_path / "raw_csv"
    generate.generate_delivery(raw, residents=800, seed=5, defect_rate=0.02, fmt="csv")
    out = tmp_path / "out"
    summary = ingest_delivery(raw, out, Settings(home=tmp_path / "home", pseudo_key="k"), build_docs=False)
    _compare(raw, out, summary)
