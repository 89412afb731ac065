"""Table-level thresholds (warn / fail) and suites built from the contract."""

from __future__ import annotations

from pathlib import Path

import pytest

from expectations.checks import row_checks
from expectations.contract import SOURCES
from expectations.ingest import ingest_delivery
from expectations.suites import build_suite
from upstream.errors import UpstreamError
from upstream.settings import IngestSettings, Settings


def _table(summary: dict, source: str, name: str) -> dict:
    return next(c for c in summary[source]["checks"] if c["scope"] == "table" and c["name"] == name)


def test_row_count_change_warns_between_thresholds(delivery: Path, settings, tmp_path: Path) -> None:
    previous = {"residents": {"rows_in": 9}, "gp_events": {"rows_in": 10}}  # +11% and 0%
    summary = ingest_delivery(delivery, tmp_path / "o", settings, previous_summary=previous, build_docs=False)
    assert _table(summary, "residents", "row_count_change")["level"] == "warn"
    assert _table(summary, "gp_events", "row_count_change")["level"] == "ok"
    assert _table(summary, "deaths", "row_count_change")["level"] == "skipped"


def test_emergency_share_warns_outside_range_and_fails_far_outside(delivery: Path, tmp_path: Path) -> None:
    # Valid spells: S1 (21), S2 (11), S7 (22) -> emergency share 2/3.
    warn = Settings(home=tmp_path / "h1", pseudo_key="k", ingest=IngestSettings(emergency_share_max=0.6))
    summary = ingest_delivery(delivery, tmp_path / "o1", warn, build_docs=False)  # 2/3 > 0.6, below fail max 0.95
    assert _table(summary, "hospital_spells", "emergency_admission_share")["level"] == "warn"
    fail = Settings(
        home=tmp_path / "h2", pseudo_key="k",
        ingest=IngestSettings(emergency_share_max=0.2, emergency_share_fail_max=0.6),
    )
    with pytest.raises(UpstreamError, match="emergency_admission_share"):  # 2/3 > fail max 0.6
        ingest_delivery(delivery, tmp_path / "o2", fail, build_docs=False)
    assert not (tmp_path / "o2").exists()


def test_optional_null_rate_is_judged_against_the_previous_delivery(delivery: Path, settings, tmp_path) -> None:
    # residents.date_of_death is null in all 10 rows now; say it was null in only half last time.
    previous = {"residents": {"rows_in": 10, "null_rates": {"date_of_death": 0.5}}}
    with pytest.raises(UpstreamError, match=r"null_rate_change\(date_of_death\)"):
        ingest_delivery(delivery, tmp_path / "o", settings, previous_summary=previous, build_docs=False)
    previous["residents"]["null_rates"]["date_of_death"] = 1.0
    summary = ingest_delivery(delivery, tmp_path / "o", settings, previous_summary=previous, build_docs=False)
    entry = next(c for c in summary["residents"]["checks"] if c["column"] == "date_of_death" and c["scope"] == "table")
    assert entry["level"] == "ok" and entry["value"] == 0.0


@pytest.mark.parametrize("source", list(SOURCES))
def test_suite_has_one_expectation_per_contract_check(source: str) -> None:
    suite = build_suite(source)
    tokens = [e.meta["token"] for e in suite.expectations]
    assert tokens == [c.token for c in row_checks(source)]
    contract = SOURCES[source]
    for column in contract.columns:
        if column.required:
            assert f"not_null({column.name})" in tokens
        if column.allowed:
            assert f"in_value_set({column.name})" in tokens
    assert ("person_in_residents" in tokens) == contract.person_linked


def test_native_suite_uses_gx_value_sets_from_the_contract() -> None:
    from datetime import date

    suite = build_suite("hospital_spells", "native", as_of=date(2026, 1, 1))
    in_set = next(e for e in suite.expectations if e.meta["token"] == "in_value_set(admission_method)")
    assert set(in_set.value_set) == set(SOURCES["hospital_spells"].column("admission_method").allowed)
    assert "2D" in in_set.value_set and "99" in in_set.value_set
    pair = next(e for e in suite.expectations if e.meta["token"] == "discharge_on_or_after_admission")
    assert pair.column_A == "discharge_date" and pair.column_B == "admission_date" and pair.or_equal
