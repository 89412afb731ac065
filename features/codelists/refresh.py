"""Maintainer tool: re-copy the published code lists from ``../shared/reference`` into the project.

Run from the project root: ``python -m features.codelists.refresh ../shared/reference``.
Nothing here is clinical judgement: every code comes verbatim from a published list whose
provenance is recorded in ``features/codelists/SOURCES.md``. Codes are never invented.
"""

from __future__ import annotations

import csv
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).parent


def _tsv_to_csv(src: Path, dst: Path) -> int:
    """gm-sde files are headerless ``code<TAB>term``; normalise to ``code,term`` and drop repeats."""
    seen: dict[str, str] = {}
    for line in src.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        code, _, term = line.partition("\t")
        seen.setdefault(code.strip(), term.strip())
    dst.parent.mkdir(parents=True, exist_ok=True)
    with dst.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["code", "term"])
        for code in sorted(seen):
            writer.writerow([code, seen[code]])
    return len(seen)


def refresh(reference: Path) -> None:
    gm = reference / "gm-sde_clinical-code-sets"
    for folder in sorted([*gm.glob("conditions/efi-*"), *gm.glob("patient/efi-*")]):
        name = folder.name.removeprefix("efi-")
        _tsv_to_csv(folder / "1" / f"{folder.name}.snomed.txt", HERE / "efi" / f"{name}.csv")
    for group, name in [("patient", "falls"), ("patient", "carer"), ("patient", "palliative-and-end-of-life-care")]:
        _tsv_to_csv(gm / group / name / "1" / f"{name}.snomed.txt", HERE / f"{name.replace('-', '_')}_snomed.csv")
    copies = {
        "opensafely_polypharmacy-deprescribing-dementia/nhsd-primary-care-domain-refsets-dem_cod.csv":
            "dementia_snomed.csv",
        "opensafely_nhs-covid-vaccination-coverage/opensafely-housebound.csv": "housebound_snomed.csv",
        "opensafely_nhs-covid-vaccination-coverage/opensafely-no-longer-housebound.csv":
            "no_longer_housebound_snomed.csv",
        "opensafely_disparities-comparison/nhsd-primary-care-domain-refsets-carehome_cod.csv":
            "care_home_snomed.csv",
        "comorbidipy_hfrs/hfrs_mapping_from_comorbidipy_mapping_py.csv": "hfrs_icd10_weights.csv",
        "falls_icd10/icd10_falls_W00-W19.csv": "falls_icd10.csv",
    }
    for src, dst in copies.items():
        shutil.copyfile(reference / src, HERE / dst)
    with (reference / "energy_flex_IMD2019/File_1_-_IMD2019_Index_of_Multiple_Deprivation.csv.gz").open("rb") as fh:
        (HERE / "imd2019_lsoa11_deciles.csv.gz").write_bytes(fh.read())


if __name__ == "__main__":
    refresh(Path(sys.argv[1] if len(sys.argv) > 1 else "../shared/reference"))
