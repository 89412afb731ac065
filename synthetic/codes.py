"""Code pools the generator draws from, taken only from the shipped published lists (features.codelists).

Why here and not inline: every code the generator writes must come from a published list and be valid
(Verhoeff for SNOMED, ICD-shaped for ICD-10). Building the pools once, filtered through the same checks
ingest uses, means a valid row can never fail a check by accident.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np

from expectations.identifiers import snomed_is_valid
from features import codelists as cl

#: eFI deficits driven by the latent frailty threshold model, with how early each appears
#: (larger = appears at lower frailty). Falls, housebound and social vulnerability are event-driven.
THRESHOLD_DEFICITS: dict[str, float] = {
    "hypertension": 2.6, "arthritis": 1.9, "respiratory-disease": 1.6, "diabetes": 1.3, "hearing-loss": 1.3,
    "vision-problems": 1.3, "thyroid-disorders": 1.2, "chd": 1.1, "osteoporosis": 1.1, "sleep-disturbance": 1.1,
    "atrial-fibrillation": 1.0, "ckd": 1.0, "dizziness": 1.0, "anaemia": 0.95, "urinary-system-disease": 0.95,
    "foot-problems": 0.9, "dyspnoea": 0.9, "peptic-ulcer": 0.9, "heart-valve-disease": 0.8, "pvd": 0.8,
    "stroke-tia": 0.8, "heart-failure": 0.75, "urinary-incontinence": 0.8, "mobility-problems": 0.7,
    "fragility-fracture": 0.6, "hypotension": 0.7, "skin-ulcer": 0.55, "weight-loss": 0.6,
    "activity-limitation": 0.6, "care-requirement": 0.5, "parkinsons": 0.35, "cognitive-problems": 0.45,
}

#: Acute primary diagnoses (3-character, all in the HFRS list) for emergency admissions not due to a fall.
EA_PRIMARY = ("J18", "N39", "A41", "F05", "R55", "I63", "N17", "E86", "L03", "J22", "R29", "R26", "K59",
              "J69", "E87", "G40", "R41", "I95", "A09", "R40", "K92", "J96", "R50", "G45", "R11", "E16")
#: Injury primaries after a fall (HFRS list).
FALL_PRIMARY = ("S72", "S42", "S06", "S00", "S22", "S32", "S80", "S01", "S09", "S51", "R29", "R26")
ELECTIVE_PRIMARY = ("M19", "M15", "M81", "M48", "M41", "K26", "N20", "N28", "T83", "Z50", "M25", "M79")
DEATH_CAUSES = ("I63", "J18", "J69", "I67", "N17", "N18", "A41", "J96", "G20", "R54", "I69", "E86")
DEMENTIA_ICD = ("F03", "F00", "G30", "F01")
FALL_ICD = ("W19", "W01", "W18", "W10", "W06", "W05", "W00", "W08")


@dataclass(frozen=True)
class SnomedPool:
    """Codes of one list as an array, for vectorised draws."""

    name: str
    codes: np.ndarray

    def draw(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return self.codes[rng.integers(0, len(self.codes), n)]


def _pool(name: str, codes: frozenset[str] | list[str]) -> SnomedPool:
    valid = sorted(c for c in codes if snomed_is_valid(c))
    if not valid:
        raise ValueError(f"code list {name} has no valid SNOMED codes")
    return SnomedPool(name, np.array(valid, dtype=object))


@dataclass(frozen=True)
class Pools:
    deficits: tuple[SnomedPool, ...]  # index aligned with THRESHOLD_DEFICITS
    deficit_gamma: np.ndarray
    falls: SnomedPool
    dementia: SnomedPool
    housebound: SnomedPool
    carer: SnomedPool
    care_home: SnomedPool
    bereavement: SnomedPool
    lives_alone: SnomedPool
    ae_complaints: SnomedPool
    fracture: SnomedPool
    hfrs: tuple[str, ...]
    hfrs_codes: frozenset[str]
    flat_codes: np.ndarray  # all deficit codes, list after list
    flat_start: np.ndarray
    flat_size: np.ndarray

    def deficit_codes(self, rng: np.random.Generator, deficit: np.ndarray) -> np.ndarray:
        """One random code from each given deficit's list (vectorised over the flat code array)."""
        deficit = np.asarray(deficit, dtype=np.int64)
        pick = self.flat_start[deficit] + (rng.random(len(deficit)) * self.flat_size[deficit]).astype(np.int64)
        return self.flat_codes[pick]


_BEREAVEMENT = ("105441003", "135868008", "286141000000107", "33553000", "722228009", "739677000")
_LIVES_ALONE = ("105529008", "160726006", "419371000000105", "267076002")
_FALL_EVENTS = ("1912002", "217082002", "217154006", "161898004", "279992002", "298344006")


@cache
def pools() -> Pools:
    efi = cl.EFI_DEFICITS
    missing = set(THRESHOLD_DEFICITS) - set(efi)
    if missing:
        raise ValueError(f"eFI deficit lists missing: {sorted(missing)}")
    social = efi["social-vulnerability"].codes()
    falls = cl.FALLS_SNOMED.codes()
    complaints = (
        efi["dyspnoea"].codes() | efi["dizziness"].codes() | efi["hypotension"].codes()
        | efi["urinary-system-disease"].codes() | efi["skin-ulcer"].codes()
    )
    deficits = tuple(_pool(name, efi[name].codes()) for name in THRESHOLD_DEFICITS)
    size = np.array([len(p.codes) for p in deficits], dtype=np.int64)
    return Pools(
        deficits=deficits,
        flat_codes=np.concatenate([p.codes for p in deficits]),
        flat_start=np.concatenate([[0], np.cumsum(size)[:-1]]).astype(np.int64),
        flat_size=size,
        deficit_gamma=np.array(list(THRESHOLD_DEFICITS.values())),
        falls=_pool("falls", falls),
        dementia=_pool("dementia", cl.DEMENTIA_SNOMED.codes()),
        housebound=_pool("housebound", cl.HOUSEBOUND_SNOMED.codes()),
        carer=_pool("carer", cl.CARER_SNOMED.codes()),
        care_home=_pool("care_home", cl.CARE_HOME_SNOMED.codes()),
        bereavement=_pool("bereavement", [c for c in _BEREAVEMENT if c in social]),
        lives_alone=_pool("lives_alone", [c for c in _LIVES_ALONE if c in social]),
        ae_complaints=_pool("ae_complaints", complaints),
        fracture=_pool("fracture", efi["fragility-fracture"].codes()),
        hfrs=tuple(sorted(cl.hfrs_weights())),
        hfrs_codes=frozenset(cl.hfrs_weights()) | cl.FALLS_ICD10.codes(),
    )


def fall_event_codes() -> np.ndarray:
    """Fall codes a GP or A&E clerk would record for the fall itself (all in the published falls list)."""
    falls = cl.FALLS_SNOMED.codes()
    return np.array([c for c in _FALL_EVENTS if c in falls], dtype=object)


def check_icd_lists() -> None:
    """Fail loudly if a hard-coded ICD-10 choice is not in the shipped lists (never invent codes)."""
    known = pools().hfrs_codes
    for group in (EA_PRIMARY, FALL_PRIMARY, ELECTIVE_PRIMARY, DEATH_CAUSES, DEMENTIA_ICD, FALL_ICD):
        unknown = [c for c in group if c not in known]
        if unknown:
            raise ValueError(f"ICD-10 codes not in shipped lists: {unknown}")


def format_icd(codes: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Render 3-character ICD-10 codes in mixed real-world formats.

    Falls codes (W00-W19) get a 4th character 9 ("unspecified place"), which is valid for every code in
    that block; other codes only get the UK filler X or a case change, so no 4-character code is invented.
    """
    out = np.empty(len(codes), dtype=object)
    choice = rng.integers(0, 4, len(codes))
    for i, (code, c) in enumerate(zip(codes, choice, strict=True)):
        is_fall = code[0] == "W" and code[1:3].isdigit() and int(code[1:3]) <= 19
        if c == 0:
            out[i] = code
        elif c == 1:
            out[i] = code + "X"
        elif c == 2:
            out[i] = code + ".9" if is_fall else code.lower()
        else:
            out[i] = code.lower() + "9" if is_fall else code.lower() + "x"
    return out
