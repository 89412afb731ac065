"""The feature registry: every feature Upstream computes, declared exactly once.

Each :class:`Feature` says what the column means, where it comes from, which published code
list and contract value set it uses, over what window and how events are aggregated, and how to
say it in plain English. ``features.build`` reads windows, code lists and value sets from here,
``features.docs`` renders the data dictionary from here, and lists/the API call
:func:`reason_text`, so the three can never disagree.

Windows are half-open, ``[T - window_days, T)``: only events strictly before the index date T
count. Month windows are in days: 3 months = 91, 6 months = 182, 12 months = 365,
24 months = 730 (HFRS uses 730 days, i.e. two years, as in Gilbert et al. 2018).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from expectations.contract import (  # the contract's value sets, named once there
    AMBULANCE_ARRIVAL_MODE,
    CARER_SUPPORT_SERVICE_TYPE,
    EMERGENCY_ADMISSION_METHODS,
    EQUIPMENT_COMPONENT,
    LONG_TERM_SERVICE_TYPES,
    REABLEMENT_SERVICE_TYPE,
    REQUEST_EVENT_TYPE,
    SERVICE_EVENT_TYPE,
    SOCIAL_ISOLATION_SUPPORT_REASON,
    TELECARE_COMPONENT,
)
from features.codelists import (
    CARE_HOME_SNOMED,
    CARER_SNOMED,
    DEMENTIA_SNOMED,
    EFI_DEFICIT_COUNT,
    EFI_DEFICITS,
    FALLS_ICD10,
    FALLS_SNOMED,
    HFRS_ICD10,
    HOUSEBOUND_SNOMED,
    NO_LONGER_HOUSEBOUND_SNOMED,
    CodeList,
)

DAYS_3M = 91
DAYS_6M = 182
DAYS_12M = 365
DAYS_24M = 730

#: eFI category upper bounds (Clegg 2016): fit <= 0.12 < mild <= 0.24 < moderate <= 0.36 < severe.
EFI_CATEGORY_BOUNDS: tuple[tuple[str, float], ...] = (("fit", 0.12), ("mild", 0.24), ("moderate", 0.36))
EFI_SEVERE = "severe"
#: HFRS bands (Gilbert 2018): < 5 low, 5-15 intermediate, > 15 high.
HFRS_LOW_BELOW = 5.0
HFRS_HIGH_ABOVE = 15.0

#: eFI deficits that are diseases (long-term conditions), plus dementia, for multimorbidity_count.
#: Symptom, function and social deficits (falls, housebound, care requirement, ...) are left out
#: so the count means "how many long-term conditions", not "how frail".
MULTIMORBIDITY_EFI_CONDITIONS: tuple[str, ...] = (
    "anaemia", "arthritis", "atrial-fibrillation", "chd", "ckd", "diabetes", "heart-failure",
    "heart-valve-disease", "hypertension", "osteoporosis", "parkinsons", "peptic-ulcer", "pvd",
    "respiratory-disease", "stroke-tia", "thyroid-disorders", "urinary-system-disease",
)


def _window_text(days: int | None) -> str:
    return {DAYS_3M: "3 months", DAYS_6M: "6 months", DAYS_12M: "12 months", DAYS_24M: "2 years"}.get(
        days or 0, f"{days} days"
    )


def _is_positive(value: Any) -> bool:
    return value is not None and not isinstance(value, str) and value > 0


def _is_true(value: Any) -> bool:
    # Models hand values over as numpy scalars or floats (1.0), not only Python bools.
    return not isinstance(value, str) and bool(value)


def _never(value: Any) -> bool:
    return False


@dataclass(frozen=True)
class Feature:
    """One column of the feature table, and everything needed to compute, document and explain it."""

    name: str
    group: str
    description: str
    source: str  # clean source file(s), or "derived"
    dtype: pl.DataType
    aggregation: str
    window_days: int | None = None
    codelist: CodeList | None = None
    #: Further code lists the definition uses (e.g. falls: SNOMED and ICD-10).
    extra_codelists: tuple[CodeList, ...] = ()
    #: Contract values the definition filters on (admission methods, service types, ...).
    value_set: tuple[str, ...] = ()
    model_input: bool = False
    #: The value for a person with nothing recorded in the source (no events: 0, False, 0.0). None keeps
    #: the column null, which means "unknown" (no IMD for the LSOA, never fell) rather than "none".
    if_none_recorded: int | float | bool | None = None
    #: ``str.format`` template with {value}, {s} (plural suffix) and {window}; None = never a reason.
    reason_template: str | None = None
    reason_if: Callable[[Any], bool] = field(default=_is_positive, repr=False, compare=False)

    @property
    def window_text(self) -> str:
        return _window_text(self.window_days)

    @property
    def codelists(self) -> tuple[CodeList, ...]:
        return ((self.codelist,) if self.codelist else ()) + self.extra_codelists

    def reason(self, value: Any) -> str | None:
        """Plain-English reason for lists and the API, or None when the value is unremarkable."""
        if hasattr(value, "item"):  # numpy scalar -> Python value
            value = value.item()
        if isinstance(value, float) and math.isnan(value):
            return None
        if self.reason_template is None or value is None or not self.reason_if(value):
            return None
        plural = "" if value == 1 else "s"
        # Floats are shown to at most 2 decimals: 90.80000000000001 must read "90.8" on a list.
        shown = (int(value) if value.is_integer() else round(value, 2)) if isinstance(value, float) else value
        return self.reason_template.format(value=shown, s=plural, window=self.window_text)


def _f(*args: Any, **kwargs: Any) -> Feature:
    return Feature(*args, **kwargs)


_COUNT = pl.Int32
_FLAG = pl.Boolean

_DEFINITIONS: list[Feature] = [
    # --- identity and demographics ---------------------------------------------------------
    _f("person_id", "Identity", "Pseudonymised person id (keyed HMAC of the NHS number).", "residents",
       pl.String, "as delivered"),
    _f("index_date", "Identity", "The index date T: features use only events strictly before it.", "derived",
       pl.Date, "constant"),
    _f("age", "Demographics", "Age in completed years at the index date.", "residents", pl.Int32,
       "date_of_birth to T", model_input=True, reason_template="aged {value}", reason_if=lambda v: v >= 80),
    _f("sex", "Demographics", "Sex as delivered: 1 male, 2 female, 9 not stated.", "residents", pl.String,
       "as delivered"),
    _f("female", "Demographics", "True when sex is 2 (female); the model input form of sex.", "residents",
       _FLAG, "sex == '2'", model_input=True),
    _f("imd_decile", "Demographics",
       "IMD 2019 decile of the LSOA 2011 of the address held at T (1 = most deprived); null if the LSOA is "
       "not in the IMD file or no address is held at T.", "residents, addresses", pl.Int32,
       "lookup lsoa11 at T", model_input=True,
       reason_template="lives in one of the most deprived areas (IMD decile {value})",
       reason_if=lambda v: v <= 2),
    _f("ethnic_group", "Demographics",
       "Ethnic group (White, Mixed, Asian, Black, Other, Not stated) from the NHS ethnic category. "
       "NOT a model input: kept for the fairness audit only, so the model cannot use ethnicity directly.",
       "residents", pl.String, "lookup ethnic_category"),
    _f("locality", "Demographics", "Locality (team patch) as delivered; used to cut lists, not a model input.",
       "residents", pl.String, "as delivered"),
    # --- falls -----------------------------------------------------------------------------
    _f("falls_gp_12m", "Falls", "Distinct dates with a GP falls code in the last 12 months.", "gp_events",
       _COUNT, "count distinct event_date", DAYS_12M, FALLS_SNOMED, if_none_recorded=0, model_input=True,
       reason_template="{value} fall{s} recorded by the GP in the last {window}"),
    _f("ae_falls_12m", "Falls",
       "A&E attendances in the last 12 months whose chief complaint or diagnosis is a falls code.",
       "ae_attendances", _COUNT, "count attendances", DAYS_12M, FALLS_SNOMED, if_none_recorded=0, model_input=True,
       reason_template="{value} A&E attendance{s} for a fall in the last {window}"),
    _f("falls_admissions_12m", "Falls",
       "Emergency admissions in the last 12 months with a W00-W19 fall code in any diagnosis position.",
       "hospital_spells", _COUNT, "count spells by admission_date", DAYS_12M, FALLS_ICD10,
       value_set=EMERGENCY_ADMISSION_METHODS, if_none_recorded=0, model_input=True,
       reason_template="{value} emergency admission{s} for a fall in the last {window}"),
    _f("falls_admissions_24m", "Falls",
       "Emergency admissions in the last 24 months with a W00-W19 fall code in any diagnosis position.",
       "hospital_spells", _COUNT, "count spells by admission_date", DAYS_24M, FALLS_ICD10,
       value_set=EMERGENCY_ADMISSION_METHODS, if_none_recorded=0, model_input=True,
       reason_template="{value} emergency admission{s} for a fall in the last {window}"),
    _f("falls_12m", "Falls",
       "Falls in the last 12 months from any source: the number of distinct dates with a GP falls code, "
       "an A&E attendance for a fall, or an emergency admission with W00-W19 in any position. A fall seen "
       "by A&E and admitted the same day counts once; records on different days count separately.",
       "gp_events, ae_attendances, hospital_spells", _COUNT, "count distinct dates", DAYS_12M, FALLS_SNOMED,
       extra_codelists=(FALLS_ICD10,), value_set=EMERGENCY_ADMISSION_METHODS, if_none_recorded=0, model_input=True,
       reason_template="{value} fall{s} in the last {window}"),
    _f("days_since_last_fall", "Falls",
       "Days from the most recent fall (any source, as in falls_12m, whole history before T) to T; "
       "null if no fall has ever been recorded.", "gp_events, ae_attendances, hospital_spells", pl.Int32,
       "T - max(fall date)", None, FALLS_SNOMED, extra_codelists=(FALLS_ICD10,),
       value_set=EMERGENCY_ADMISSION_METHODS, model_input=True,
       reason_template="last fall {value} days ago", reason_if=lambda v: v <= DAYS_6M),
    # --- frailty ---------------------------------------------------------------------------
    _f("efi", "Frailty",
       f"Electronic Frailty Index: deficits ever recorded before T divided by {EFI_DEFICIT_COUNT}. "
       f"{len(EFI_DEFICITS)} deficits come from the gm-sde eFI SNOMED sets. The 36th, polypharmacy, needs "
       "prescriptions, which the data contract does not carry: it is counted as absent for everyone and "
       f"the denominator stays {EFI_DEFICIT_COUNT}, so scores are comparable with the published cut-offs "
       "(and may be slightly low for people on many medicines).",
       "gp_events", pl.Float64, "deficits present / 36", None, model_input=True,
       reason_template="eFI {value:.2f}", reason_if=lambda v: v > EFI_CATEGORY_BOUNDS[0][1]),
    _f("efi_category", "Frailty", "eFI category: fit <= 0.12, mild <= 0.24, moderate <= 0.36, severe above.",
       "derived", pl.String, "cut efi", reason_template="eFI: {value} frailty",
       reason_if=lambda v: v in ("moderate", EFI_SEVERE)),
    _f("hfrs", "Frailty",
       "Hospital Frailty Risk Score (Gilbert 2018): sum of the weights of the distinct 3-character ICD-10 "
       "codes (109 codes) found in any diagnosis position of spells admitted in the last 2 years; each "
       "code counts once per person.", "hospital_spells", pl.Float64, "sum of weights of distinct codes",
       DAYS_24M, HFRS_ICD10, if_none_recorded=0.0, model_input=True, reason_template="Hospital Frailty Risk Score {value}",
       reason_if=lambda v: v >= HFRS_LOW_BELOW),
    _f("hfrs_band", "Frailty", "HFRS band: low < 5, intermediate 5-15, high > 15.", "derived", pl.String,
       "cut hfrs", DAYS_24M, reason_template="hospital frailty risk: {value}",
       reason_if=lambda v: v in ("intermediate", "high")),
    # --- bereavement -----------------------------------------------------------------------
    *[
        _f(f"bereaved_{label}", "Bereavement",
           f"Another resident died in the last {_window_text(days)} while living at the same UPRN as the person "
           "(both addresses as held on the day of the death; date of death from residents or deaths). "
           "GP bereavement codes are not used: no published bereavement code list is shipped.",
           "residents, deaths, addresses", _FLAG, "exists", days, if_none_recorded=False, model_input=True,
           reason_template="bereaved in the last {window}", reason_if=_is_true)
        for label, days in (("3m", DAYS_3M), ("6m", DAYS_6M), ("12m", DAYS_12M))
    ],
    # --- isolation -------------------------------------------------------------------------
    _f("household_size", "Isolation",
       "Residents alive and registered at T whose address held at T is the person's (including the person); "
       "null if no address is held at T.", "residents, addresses",
       _COUNT, "count residents at UPRN at T", model_input=True),
    _f("lives_alone", "Isolation",
       "The only resident alive and registered (registration_start < T) at T whose address held at T is "
       "this UPRN.", "residents, addresses", _FLAG, "household_size == 1 at T", model_input=True, reason_template="lives alone",
       reason_if=_is_true),
    _f("carer", "Isolation",
       "Is a carer: a GP carer code, or a social care 'Carer Support' service, ever recorded before T.",
       "gp_events, social_care_events", _FLAG, "exists", None, CARER_SNOMED,
       value_set=(CARER_SUPPORT_SERVICE_TYPE,), if_none_recorded=False, model_input=True, reason_template="is a carer",
       reason_if=_is_true),
    _f("housebound", "Isolation",
       "The latest housebound or no-longer-housebound GP code before T is a housebound code (same-day tie "
       "counts as housebound).", "gp_events", _FLAG, "latest code", None, HOUSEBOUND_SNOMED,
       extra_codelists=(NO_LONGER_HOUSEBOUND_SNOMED,), if_none_recorded=False, model_input=True, reason_template="housebound",
       reason_if=_is_true),
    _f("care_home_code", "Isolation", "A GP care-home code ever recorded before T.", "gp_events", _FLAG,
       "exists", None, CARE_HOME_SNOMED, if_none_recorded=False, model_input=True, reason_template="care home code recorded by GP",
       reason_if=_is_true),
    # --- utilisation -----------------------------------------------------------------------
    *[
        _f(f"emergency_admissions_{label}", "Utilisation",
           f"Emergency admissions (spells with an emergency admission method) in the last {_window_text(days)}.",
           "hospital_spells", _COUNT, "count spells by admission_date", days,
           value_set=EMERGENCY_ADMISSION_METHODS, if_none_recorded=0, model_input=True,
           reason_template="{value} emergency admission{s} in the last {window}")
        for label, days in (("3m", DAYS_3M), ("12m", DAYS_12M), ("24m", DAYS_24M))
    ],
    _f("bed_days_12m", "Utilisation",
       "Hospital bed days in the last 12 months: for every spell, the nights inside [T-365, T) between "
       "admission and discharge (a spell still open at T counts up to T; same-day spells count 0).",
       "hospital_spells", _COUNT, "sum of overlap days", DAYS_12M, if_none_recorded=0, model_input=True,
       reason_template="{value} day{s} in hospital in the last {window}"),
    *[
        _f(f"ae_attendances_{label}", "Utilisation", f"A&E attendances in the last {_window_text(days)}.",
           "ae_attendances", _COUNT, "count attendances", days, if_none_recorded=0, model_input=True,
           reason_template="{value} A&E attendance{s} in the last {window}")
        for label, days in (("3m", DAYS_3M), ("12m", DAYS_12M), ("24m", DAYS_24M))
    ],
    *[
        _f(f"ambulance_arrivals_{label}", "Utilisation",
           f"A&E attendances arriving by ambulance (arrival_mode 1) in the last {_window_text(days)}.",
           "ae_attendances", _COUNT, "count attendances", days, value_set=(AMBULANCE_ARRIVAL_MODE,),
           if_none_recorded=0, model_input=True, reason_template="{value} ambulance arrival{s} at A&E in the last {window}")
        for label, days in (("3m", DAYS_3M), ("12m", DAYS_12M), ("24m", DAYS_24M))
    ],
    _f("gp_contacts_12m", "Utilisation",
       "Distinct dates with any GP coded event in the last 12 months (a proxy for GP contacts).", "gp_events",
       _COUNT, "count distinct event_date", DAYS_12M, if_none_recorded=0, model_input=True),
    _f("utilisation_trend", "Utilisation",
       "Change in acute use: (emergency admissions + A&E attendances) per month in the last 3 months "
       "[T-91, T) minus the same per month in the prior 9 months [T-365, T-91), i.e. n_recent/3 - "
       "n_prior/9. Positive = rising.", "hospital_spells, ae_attendances", pl.Float64,
       "n_recent / 3 - n_prior / 9", DAYS_12M, value_set=EMERGENCY_ADMISSION_METHODS, if_none_recorded=0.0, model_input=True,
       reason_template="more hospital and A&E use in the last 3 months than before",
       reason_if=lambda v: v > 0),
    # --- social care -----------------------------------------------------------------------
    _f("in_long_term_care", "Social care",
       "A Long Term Support service (community, residential or nursing) open at T: started before T and "
       "not ended before T.", "social_care_events", _FLAG, "open at T", None,
       value_set=LONG_TERM_SERVICE_TYPES, reason_template="already receives long-term care",
       reason_if=_is_true, if_none_recorded=False, model_input=True),
    _f("reablement_12m", "Social care",
       "Reablement (Short Term Support: ST-Max) service episodes started in the last 12 months.",
       "social_care_events", _COUNT, "count services by start date", DAYS_12M,
       value_set=(REABLEMENT_SERVICE_TYPE,), if_none_recorded=0, model_input=True,
       reason_template="{value} reablement episode{s} in the last {window}"),
    _f("reablement_outcome", "Social care",
       "event_outcome of the most recent reablement episode started in the last 12 months, as delivered "
       "(null if none or not recorded). Text, so not a model input.", "social_care_events", pl.String,
       "latest", DAYS_12M, value_set=(REABLEMENT_SERVICE_TYPE,)),
    _f("telecare", "Social care", "A service with the Telecare component open at T.", "social_care_events",
       _FLAG, "open at T", None, value_set=(TELECARE_COMPONENT,), if_none_recorded=False, model_input=True,
       reason_template="has telecare", reason_if=_is_true),
    _f("equipment", "Social care", "A service with the Equipment component started in the last 12 months.",
       "social_care_events", _FLAG, "exists", DAYS_12M, value_set=(EQUIPMENT_COMPONENT,), if_none_recorded=False, model_input=True,
       reason_template="equipment provided in the last {window}", reason_if=_is_true),
    _f("requests_without_service_12m", "Social care",
       "Requests for support in the last 12 months not followed (on or after the request date, before T) "
       "by any service start.", "social_care_events", _COUNT, "count requests", DAYS_12M,
       value_set=(REQUEST_EVENT_TYPE, SERVICE_EVENT_TYPE), if_none_recorded=0, model_input=True,
       reason_template="{value} request{s} for care support with no service in the last {window}"),
    _f("social_isolation_support_12m", "Social care",
       "Any social care event in the last 12 months with primary support reason 'Social Support: Support "
       "for Social Isolation/Other'. Safeguarding is not a CLD primary support reason in the contract, so "
       "no safeguarding flag is derived.", "social_care_events", _FLAG, "exists", DAYS_12M,
       value_set=(SOCIAL_ISOLATION_SUPPORT_REASON,), if_none_recorded=False, model_input=True,
       reason_template="social care support for social isolation", reason_if=_is_true),
    # --- conditions ------------------------------------------------------------------------
    _f("dementia", "Conditions", "A dementia code (NHSD DEM_COD) ever recorded before T.", "gp_events", _FLAG,
       "exists", None, DEMENTIA_SNOMED, if_none_recorded=False, model_input=True, reason_template="dementia", reason_if=_is_true),
    _f("multimorbidity_count", "Conditions",
       "Number of distinct long-term conditions ever recorded before T: the eFI disease deficits ("
       + ", ".join(MULTIMORBIDITY_EFI_CONDITIONS) + ") plus dementia (DEM_COD).", "gp_events", _COUNT,
       "count distinct conditions", None, if_none_recorded=0, model_input=True,
       reason_template="{value} long-term conditions", reason_if=lambda v: v >= 4),
    *[
        _f(f"efi_{name.replace('-', '_')}", "Conditions",
           f"eFI deficit '{name}': a code from its gm-sde list ever recorded before T.", "gp_events", _FLAG,
           "exists", None, codelist, if_none_recorded=False, model_input=True,
           reason_template=f"{name.replace('-', ' ')} (eFI deficit)", reason_if=_is_true)
        for name, codelist in EFI_DEFICITS.items()
    ],
]

FEATURES: dict[str, Feature] = {f.name: f for f in _DEFINITIONS}
if len(FEATURES) != len(_DEFINITIONS):  # pragma: no cover - a declaration error, caught by tests
    raise ValueError("duplicate feature name in the registry")

#: Ordered model inputs (numeric or boolean). Ethnicity, sex code, locality and text columns are not.
MODEL_FEATURES: list[str] = [f.name for f in _DEFINITIONS if f.model_input]



def required_history_days(names: list[str] | None = None) -> int:
    """Days of history before T that the model inputs look back over (their longest declared window).

    Training index dates need at least this much data before them, so that a feature means the same at a
    training date as at the scoring date. "Ever recorded" features have no window: they still grow with the
    length of the delivery, which is why the training dates are also as close to the scoring date as the
    outcome windows allow.
    """
    chosen = [FEATURES[n] for n in (names or MODEL_FEATURES) if n in FEATURES]
    return max((f.window_days or 0) for f in chosen)


#: Column name of each eFI deficit flag, keyed by deficit name (as in features.codelists.EFI_DEFICITS).
EFI_DEFICIT_COLUMNS: dict[str, str] = {name: f"efi_{name.replace('-', '_')}" for name in EFI_DEFICITS}

#: Notes rendered into the data dictionary (choices the feature table depends on).
NOTES: tuple[str, ...] = (
    "Population: one row per resident alive at T (no date of death before T in residents or deaths), "
    "registered with a GP before T (registration_start < T) and born before T.",
    "Windows are half-open [T - days, T): an event on T itself is not counted, an event on T - 1 day is. "
    "3 months = 91 days, 6 months = 182, 12 months = 365, 24 months = 730.",
    "Counts are 0 and flags are False when a person has no matching event. Nullable model inputs: "
    "days_since_last_fall (null = no fall ever recorded), imd_decile (null = LSOA not in IMD 2019), and "
    "household_size / lives_alone (null if the UPRN is missing, which the contract does not allow, or no "
    "address is held at T).",
    "Addresses at T: household_size, lives_alone, bereaved_* and imd_decile use the address held at T: the "
    "address-history period that began before T and had not ended before T (a move ON T is not yet known, as "
    "with events on T). A person with no row in the optional addresses source has made no recorded move and "
    "keeps the residents file's address; a person whose history has no period covering T has an unknown "
    "household and deprivation (null). Without the addresses source, everyone's address is the residents "
    "file's, which is the address at the extract: a move after T (into a care home, out of a shared home, to "
    "another area) then changes these features at T, which is outcome leakage when the move is itself an "
    "outcome (bench/README.md, Issue 12 session 3, measures how much).",
    "Ethnicity is not a model input: it is kept in the table for the fairness audit only.",
    "Polypharmacy (the 36th eFI deficit) is not available: the contract carries no prescriptions. It is "
    "counted as absent and the eFI denominator stays 36.",
    "No safeguarding flag: the contract's CLD primary support reasons contain no safeguarding reason.",
    "No GP bereavement codes: no published bereavement code list is shipped; bereavement comes from "
    "household (UPRN) deaths only.",
)


def reason_text(feature_name: str, value: Any) -> str | None:
    """Plain-English reason for a feature value, or None if the feature is unknown or unremarkable."""
    feature = FEATURES.get(feature_name)
    return feature.reason(value) if feature else None
