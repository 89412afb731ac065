"""Published clinical code lists shipped with Upstream, each loaded from one CSV with its provenance.

This module is the single place a code list is named. Feature declarations, the synthetic
generator, the expectation suites and the generated data dictionary all import from here,
so a code list can never drift between the thing that computes a feature and the thing that
documents or checks it. Provenance of every file: ``SOURCES.md`` beside this module.
"""

from __future__ import annotations

import csv
import gzip
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Literal

CODELIST_DIR = Path(__file__).parent

CodeSystem = Literal["snomedct", "icd10"]


@dataclass(frozen=True)
class CodeList:
    """A published code list: where it lives, which terminology, where it came from."""

    name: str
    system: CodeSystem
    filename: str
    source: str
    code_column: str = "code"
    term_column: str = "term"

    @property
    def path(self) -> Path:
        return CODELIST_DIR / self.filename

    def terms(self) -> dict[str, str]:
        """Code -> term, in file order; codes are stripped strings."""
        return _read_terms(self.path, self.code_column, self.term_column)

    def codes(self) -> frozenset[str]:
        return frozenset(self.terms())

    @property
    def version(self) -> str:
        """Content fingerprint, so model runs can record exactly which lists they used."""
        import hashlib

        return hashlib.sha256(self.path.read_bytes()).hexdigest()[:12]


@cache
def _read_terms(path: Path, code_column: str, term_column: str) -> dict[str, str]:
    with path.open(encoding="utf-8-sig", newline="") as fh:
        return {row[code_column].strip(): row[term_column].strip() for row in csv.DictReader(fh)}


_GM_SDE = "gm-sde eFI SNOMED set (Clegg 2016), UoM-Data-Science-Platforms/gm-sde@6cf10afc"

#: The 35 coded eFI deficits, keyed by deficit name. The 36th (polypharmacy) is not a code list.
EFI_DEFICITS: dict[str, CodeList] = {
    p.stem: CodeList(f"efi_{p.stem.replace('-', '_')}", "snomedct", f"efi/{p.name}", _GM_SDE)
    for p in sorted((CODELIST_DIR / "efi").glob("*.csv"))
}
EFI_DEFICIT_COUNT = 36  # Clegg 2016: 36 deficits, polypharmacy included

FALLS_SNOMED = CodeList(
    "falls_snomed", "snomedct", "falls_snomed.csv",
    "gm-sde falls (opensafely/falls 2020-07-09 + NHSD falls_cod 20200812)",
)
DEMENTIA_SNOMED = CodeList("dementia_snomed", "snomedct", "dementia_snomed.csv", "NHSD PCD refset DEM_COD 20241205")
HOUSEBOUND_SNOMED = CodeList("housebound_snomed", "snomedct", "housebound_snomed.csv", "opensafely/housebound 5bc77310")
NO_LONGER_HOUSEBOUND_SNOMED = CodeList(
    "no_longer_housebound_snomed", "snomedct", "no_longer_housebound_snomed.csv",
    "opensafely/no-longer-housebound 29a88ca6",
)
CARER_SNOMED = CodeList("carer_snomed", "snomedct", "carer_snomed.csv", "PRIMIS carer v1.5.3 (via gm-sde)")
CARE_HOME_SNOMED = CodeList("care_home_snomed", "snomedct", "care_home_snomed.csv", "NHSD PCD refset CAREHOME_COD 20250912")
#: Used by the list cohort (expectations.cohort, "last year of life"), not by any model feature.
PALLIATIVE_CARE_SNOMED = CodeList(
    "palliative_and_end_of_life_care_snomed", "snomedct", "palliative_and_end_of_life_care_snomed.csv",
    "gm-sde palliative and end of life care (clinicalcodes.org res176 Read codes, mapped to SNOMED CT)",
)
FALLS_ICD10 = CodeList(
    "falls_icd10", "icd10", "falls_icd10.csv", "WHO ICD-10 W00-W19 (falls external cause)",
    code_column="icd10_3char", term_column="who_icd10_title",
)
HFRS_ICD10 = CodeList(
    "hfrs_icd10", "icd10", "hfrs_icd10_weights.csv",
    "Gilbert et al. Lancet 2018 HFRS, via vvcb/comorbidipy mapping.py@c676a806 (= jamesvanoppen/hfrs points.tsv)",
    code_column="icd10_3char", term_column="hfrs_weight",
)


def hfrs_weights() -> dict[str, float]:
    """Three-character ICD-10 code -> HFRS points (109 codes)."""
    return {code: float(weight) for code, weight in HFRS_ICD10.terms().items()}


@cache
def imd_deciles() -> dict[str, int]:
    """LSOA 2011 code -> IMD 2019 decile (1 = most deprived)."""
    with gzip.open(CODELIST_DIR / "imd2019_lsoa11_deciles.csv.gz", "rt", encoding="utf-8-sig") as fh:
        reader = csv.reader(fh)
        next(reader)
        return {row[0]: int(row[5]) for row in reader}


ALL_SNOMED_LISTS: tuple[CodeList, ...] = (
    *EFI_DEFICITS.values(), FALLS_SNOMED, DEMENTIA_SNOMED, HOUSEBOUND_SNOMED,
    NO_LONGER_HOUSEBOUND_SNOMED, CARER_SNOMED, CARE_HOME_SNOMED, PALLIATIVE_CARE_SNOMED,
)
