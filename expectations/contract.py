"""The raw data contract (DESIGN.md §3), declared once.

A council's warehouse delivers one file per source. This module says which columns each
source must have, their types, which may be null, and which value sets apply. The synthetic
generator writes to it, ingest parses against it, and the Great Expectations suites are
built from it, so the three can never disagree about what a valid delivery is.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import polars as pl

#: A locality (team patch) name. Declared once: ingest checks delivered names against it, and serving uses it
#: to bound the locality path parameter and key scopes, so every delivered locality can be served. No "/":
#: the name is one URL path segment.
LOCALITY_NAME_RE = r"^[A-Za-z0-9][A-Za-z0-9 '&.,()-]{0,79}$"

ColumnKind = Literal[
    "nhs_number",  # 10 digits, Modulus 11 check digit; pseudonymised to person_id at ingest
    "date",
    "snomed",  # SNOMED CT concept id: 6-18 digits, Verhoeff check digit
    "icd10",  # one ICD-10 code in any real-world format (W19, W19X, W19.9, w199)
    "icd10_list",  # comma-separated ICD-10 codes, may be empty
    "lsoa11",
    "ods_practice",
    "code",  # a short code from a value set
    "text",
    "locality_name",  # a team patch name; also a URL path segment and a key scope in serving
    "float",
    "bool",
]


@dataclass(frozen=True)
class Column:
    name: str
    dtype: pl.DataType
    kind: ColumnKind
    description: str
    required: bool = True
    allowed: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Source:
    name: str
    description: str
    columns: tuple[Column, ...]
    #: Columns that identify a logical row; an exact repeat of all columns is always a duplicate.
    key: tuple[str, ...] = ()
    #: Has a person column that must exist in ``residents`` (referential integrity).
    person_linked: bool = True
    extra_checks: tuple[str, ...] = field(default=())

    def column(self, name: str) -> Column:
        return next(c for c in self.columns if c.name == name)

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def schema(self) -> dict[str, pl.DataType]:
        return {c.name: c.dtype for c in self.columns}


SEX_CODES = ("1", "2", "9")
#: NHS Data Dictionary ethnic category codes, plus 99 (not known).
ETHNIC_CATEGORIES = (*"ABCDEFGHJKLMNPRSZ", "99")
ETHNIC_GROUPS = {
    **dict.fromkeys("ABC", "White"),
    **dict.fromkeys("DEFG", "Mixed"),
    **dict.fromkeys("HJKL", "Asian"),
    **dict.fromkeys("MNP", "Black"),
    **dict.fromkeys("RS", "Other"),
    "Z": "Not stated",
    "99": "Not stated",
}
ELECTIVE_ADMISSION_METHODS = ("11", "12", "13")
EMERGENCY_ADMISSION_METHODS = ("21", "22", "23", "24", "25", "28", "2A", "2B", "2C", "2D")
OTHER_ADMISSION_METHODS = ("31", "32", "81", "82", "83", "99")
ADMISSION_METHODS = ELECTIVE_ADMISSION_METHODS + EMERGENCY_ADMISSION_METHODS + OTHER_ADMISSION_METHODS
AMBULANCE_ARRIVAL_MODE = "1"
ARRIVAL_MODES = (AMBULANCE_ARRIVAL_MODE, "2")  # 1 ambulance, 2 other
REQUEST_EVENT_TYPE = "Request"
SERVICE_EVENT_TYPE = "Service"
CLD_EVENT_TYPES = (REQUEST_EVENT_TYPE, "Assessment", SERVICE_EVENT_TYPE, "Review")
LONG_TERM_SERVICE_TYPES = (
    "Long Term Support: Nursing Care",
    "Long Term Support: Residential Care",
    "Long Term Support: Community",
)
CARE_HOME_SERVICE_TYPES = LONG_TERM_SERVICE_TYPES[:2]
REABLEMENT_SERVICE_TYPE = "Short Term Support: ST-Max"
CARER_SUPPORT_SERVICE_TYPE = "Carer Support"
CLD_SERVICE_TYPES = (
    *LONG_TERM_SERVICE_TYPES,
    REABLEMENT_SERVICE_TYPE,
    "Short Term Support: Other Short Term",
    CARER_SUPPORT_SERVICE_TYPE,
)
TELECARE_COMPONENT = "Telecare"
EQUIPMENT_COMPONENT = "Equipment"
CLD_SERVICE_COMPONENTS = (
    TELECARE_COMPONENT,
    EQUIPMENT_COMPONENT,
    "Home Support",
    "Day Care",
    "Direct Payment",
    "Meals",
    "Professional Support",
)
SOCIAL_ISOLATION_SUPPORT_REASON = "Social Support: Support for Social Isolation/Other"
#: Adult social care primary support reasons (SALT / CLD).
CLD_SUPPORT_REASONS = (
    "Physical Support: Access & Mobility Only",
    "Physical Support: Personal Care Support",
    "Sensory Support: Support for Visual Impairment",
    "Sensory Support: Support for Hearing Impairment",
    "Sensory Support: Support for Dual Impairment",
    "Support with Memory & Cognition",
    "Learning Disability Support",
    "Mental Health Support",
    "Social Support: Substance Misuse Support",
    "Social Support: Asylum Seeker Support",
    SOCIAL_ISOLATION_SUPPORT_REASON,
)


def _nhs(description: str = "NHS number of the person") -> Column:
    return Column("nhs_number", pl.String, "nhs_number", description)


RESIDENTS = Source(
    "residents",
    "Master person index: one row per person known to the council or ICS.",
    (
        _nhs(),
        Column("date_of_birth", pl.Date, "date", "Date of birth"),
        Column("sex", pl.String, "code", "1 male, 2 female, 9 not stated", allowed=SEX_CODES),
        Column("ethnic_category", pl.String, "code", "NHS ethnic category A-Z or 99", allowed=ETHNIC_CATEGORIES),
        Column("lsoa11", pl.String, "lsoa11", "LSOA 2011 of residence (E01...)"),
        Column("uprn", pl.String, "text", "Household property id"),
        Column("gp_practice", pl.String, "ods_practice", "ODS code of the registered practice"),
        Column("locality", pl.String, "locality_name", "Locality (team patch) name"),
        Column("registration_start", pl.Date, "date", "Start of current GP registration"),
        Column("date_of_death", pl.Date, "date", "Date of death, null if alive", required=False),
    ),
    key=("nhs_number",),
    person_linked=False,
)

GP_EVENTS = Source(
    "gp_events",
    "Primary care coded events (SNOMED CT).",
    (
        _nhs(),
        Column("event_date", pl.Date, "date", "Date the code was recorded"),
        Column("snomed_code", pl.String, "snomed", "SNOMED CT concept id"),
        Column("value", pl.Float64, "float", "Numeric value, if any", required=False),
    ),
)

HOSPITAL_SPELLS = Source(
    "hospital_spells",
    "Admitted patient care spells (SUS/HES-like).",
    (
        _nhs(),
        Column("spell_id", pl.String, "text", "Spell identifier"),
        Column("admission_date", pl.Date, "date", "Admission date"),
        Column("discharge_date", pl.Date, "date", "Discharge date, null if still in hospital", required=False),
        Column("admission_method", pl.String, "code", "2-character admission method", allowed=ADMISSION_METHODS),
        Column("primary_diagnosis", pl.String, "icd10", "Primary diagnosis, ICD-10"),
        Column("secondary_diagnoses", pl.String, "icd10_list", "Comma-separated ICD-10 codes", required=False),
        Column("discharge_destination", pl.String, "code",
               "2-character discharge destination; null while still in hospital", required=False),
    ),
    key=("spell_id",),
    extra_checks=("discharge_on_or_after_admission", "destination_iff_discharged", "spell_history"),
)

AE_ATTENDANCES = Source(
    "ae_attendances",
    "A&E attendances (ECDS-like).",
    (
        _nhs(),
        Column("arrival_date", pl.Date, "date", "Arrival date"),
        Column("arrival_mode", pl.String, "code", "1 ambulance, 2 other", allowed=ARRIVAL_MODES),
        Column("chief_complaint_snomed", pl.String, "snomed", "Chief complaint, SNOMED CT"),
        Column("diagnosis_snomed", pl.String, "snomed", "Diagnosis, SNOMED CT", required=False),
        Column("admitted", pl.Boolean, "bool", "Admitted from A&E"),
    ),
)

SOCIAL_CARE_EVENTS = Source(
    "social_care_events",
    "Adult social care Client Level Data (CLD) events.",
    (
        _nhs(),
        Column("event_type", pl.String, "code", "Request, Assessment, Service or Review", allowed=CLD_EVENT_TYPES),
        Column("event_start_date", pl.Date, "date", "Event start"),
        Column("event_end_date", pl.Date, "date", "Event end, null if open", required=False),
        Column("service_type", pl.String, "code", "CLD service type (services only)", required=False,
               allowed=CLD_SERVICE_TYPES),
        Column("service_component", pl.String, "code", "CLD service component", required=False,
               allowed=CLD_SERVICE_COMPONENTS),
        Column("primary_support_reason", pl.String, "code", "CLD primary support reason", required=False,
               allowed=CLD_SUPPORT_REASONS),
        Column("event_outcome", pl.String, "text", "CLD event outcome", required=False),
        Column("unit_cost", pl.Float64, "float", "Unit cost, GBP", required=False),
    ),
    extra_checks=("end_on_or_after_start",),
)

DEATHS = Source(
    "deaths",
    "Death registrations.",
    (
        _nhs(),
        Column("date_of_death", pl.Date, "date", "Date of death"),
        Column("underlying_cause_icd10", pl.String, "icd10", "Underlying cause of death, ICD-10"),
    ),
    key=("nhs_number",),
)

SOURCES: dict[str, Source] = {
    s.name: s for s in (RESIDENTS, GP_EVENTS, HOSPITAL_SPELLS, AE_ATTENDANCES, SOCIAL_CARE_EVENTS, DEATHS)
}

#: Optional sources (DESIGN §3): validated, quarantined and pseudonymised like the others when the delivery has
#: them; a delivery without them is complete. Kept out of ``SOURCES`` so nothing requires or generates them.
OPT_OUTS = Source(
    "opt_outs",
    "People who have opted out of the use of their data (DESIGN §7): one NHS number per row. They are removed "
    "from every list and person-level output and only counted.",
    (_nhs("NHS number of a person who opted out"),),
    key=("nhs_number",),
)
ADDRESSES = Source(
    "addresses",
    "Address history (DESIGN §3): one row per period a person lived at an address. The period runs from "
    "from_date (the day they moved in) to to_date (the day they moved out, which is the next period's "
    "from_date; null while current). When delivered, household features and deprivation use the address "
    "held at the index date instead of the residents file's current (extract-time) address, so a move "
    "after T (into a care home, out of a shared home) cannot change a feature at T.",
    (
        _nhs(),
        Column("uprn", pl.String, "text", "Household property id (UPRN) of the address"),
        Column("lsoa11", pl.String, "lsoa11", "LSOA 2011 of the address (E01...)"),
        Column("from_date", pl.Date, "date", "First day at this address (moved in)"),
        Column("to_date", pl.Date, "date", "Day moved out (the next address's from_date); null while current",
               required=False),
    ),
    extra_checks=("to_on_or_after_from", "lsoa_known", "address_history"),
)
OPTIONAL_SOURCES: dict[str, Source] = {s.name: s for s in (OPT_OUTS, ADDRESSES)}

def clean_schema(source: str) -> dict[str, pl.DataType]:
    """A source as ingest writes it: the contract's columns with nhs_number replaced by person_id (first).

    The one statement of the clean shape, read by features, the list cohort and the test writers."""
    schema: dict[str, pl.DataType] = {"person_id": pl.String}
    declared = SOURCES.get(source) or OPTIONAL_SOURCES[source]
    schema.update({k: v for k, v in declared.schema.items() if k != "nhs_number"})
    return schema
