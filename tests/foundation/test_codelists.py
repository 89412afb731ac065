"""The shipped code lists are the published ones, complete and well-formed."""

from __future__ import annotations

from pathlib import Path

import pytest

from expectations.identifiers import snomed_is_valid
from features import codelists


def test_hfrs_has_109_codes_summing_to_published_total():
    weights = codelists.hfrs_weights()
    assert len(weights) == 109
    assert round(sum(weights.values()), 1) == 173.2  # Gilbert et al. 2018 supplementary table
    assert weights["F00"] == 7.1 and weights["W19"] == 3.2


def test_hfrs_agrees_with_second_independent_transcription():
    points = Path(__file__).parents[2].parent / "shared/reference/jamesvanoppen_hfrs/points.tsv"
    if not points.exists():
        pytest.skip("shared/reference not beside the checkout")
    rows = [line.split("\t") for line in points.read_text(encoding="utf-8").splitlines()[1:] if line.strip()]
    other = {row[0].strip(): float(row[-1]) for row in rows}
    assert other == codelists.hfrs_weights()


def test_efi_has_35_coded_deficits_of_36():
    assert len(codelists.EFI_DEFICITS) == 35
    assert codelists.EFI_DEFICIT_COUNT == 36
    assert {"falls", "housebound", "diabetes", "heart-failure"} <= set(codelists.EFI_DEFICITS)


def test_every_snomed_code_is_a_well_formed_concept_id():
    for code_list in codelists.ALL_SNOMED_LISTS:
        codes = code_list.codes()
        assert codes, code_list.name
        bad = [c for c in codes if not snomed_is_valid(c)]
        assert not bad, f"{code_list.name}: {bad[:5]}"


def test_falls_icd10_is_w00_to_w19():
    assert codelists.FALLS_ICD10.codes() == {f"W{n:02d}" for n in range(20)}


def test_imd_deciles_cover_england():
    deciles = codelists.imd_deciles()
    assert len(deciles) == 32844
    assert set(deciles.values()) == set(range(1, 11))
    assert all(code.startswith("E01") for code in deciles)


def test_every_code_list_file_has_recorded_provenance():
    sources = (codelists.CODELIST_DIR / "SOURCES.md").read_text()
    for path in codelists.CODELIST_DIR.rglob("*.csv*"):
        stem = "efi/<deficit>.csv" if path.parent.name == "efi" else path.name
        assert stem in sources, path
