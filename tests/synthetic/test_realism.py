"""Statistical properties of the default world against the issue's targets (England / Medway-like)."""

from __future__ import annotations

import re
from datetime import date, timedelta
from pathlib import Path

import polars as pl

from expectations.contract import (
    CLD_SERVICE_COMPONENTS,
    LONG_TERM_SERVICE_TYPES,
    REABLEMENT_SERVICE_TYPE,
)
from expectations.identifiers import snomed_is_valid
from features import codelists as cl
from synthetic import DEFAULT_YEARS
from tests.synthetic.checks import ICD_RE, canonical_icd

EXTRACT = date(2026, 11, 22)
YEARS = DEFAULT_YEARS


def valid(out: Path, source: str) -> pl.DataFrame:
    """Rows of one source that the generator did not corrupt."""
    defects = pl.read_parquet(out / "_truth" / "defects.parquet").filter(pl.col("source") == source)
    df = pl.read_parquet(out / f"{source}.parquet").with_row_index("_i")
    return df.filter(~pl.col("_i").is_in(defects["row_index"].implode())).drop("_i")


def test_residents_file_holds_plausible_people(delivery):
    """The age structure of the living is judged against England in test_reference_rates (population_share);
    the residents file also holds everyone who died during the six years."""
    out, _ = delivery
    r = valid(out, "residents")
    assert len(r) == 12_000
    assert r["date_of_birth"].min() >= date(1900, 1, 1)
    assert set(r["sex"].unique()) <= {"1", "2", "9"}
    assert 0.45 <= (r["sex"] == "2").mean() <= 0.55


def test_households_sizes_and_older_people_alone_or_in_couples(delivery):
    out, _ = delivery
    # Private households, as the census counts them: care homes (communal establishments) are left out.
    care_homes = pl.read_parquet(out / "_truth" / "moves.parquet").filter(pl.col("kind") == "care_home")["to_uprn"]
    r = valid(out, "residents").filter(~pl.col("uprn").is_in(care_homes.implode()))
    sizes = r.group_by("uprn").len()["len"]
    assert sizes.min() >= 1 and sizes.max() <= 5
    share = {k: (sizes == k).mean() for k in range(1, 6)}
    # England (census 2021): about 30% one-person, 34% two-person households
    assert 0.24 <= share[1] <= 0.36
    assert 0.28 <= share[2] <= 0.42
    assert share[5] > 0.01
    age = (pl.lit(EXTRACT) - pl.col("date_of_birth")).dt.total_days() / 365.25
    old = r.with_columns(age.alias("age")).join(r.group_by("uprn").len(), on="uprn").filter(pl.col("age") >= 65)
    alone_or_couple = old.filter(pl.col("len") <= 2).height / old.height
    assert alone_or_couple > 0.8
    assert old.filter(pl.col("len") == 1).height / old.height > 0.25


def test_places_practices_and_localities(delivery):
    out, _ = delivery
    r = valid(out, "residents")
    deciles = cl.imd_deciles()
    assert all(code in deciles for code in r["lsoa11"].unique().to_list())
    # Kent & Medway LSOAs only (Medway first)
    assert r["lsoa11"].n_unique() >= 5
    assert all(re.fullmatch(r"[A-Z]\d{5}", p) for p in r["gp_practice"].unique().to_list())
    counts = r["locality"].value_counts()
    assert set(counts["locality"]) == {"North", "South", "East", "West"}
    assert counts["count"].min() > 0.15 * len(r)
    # each household lives in one LSOA and is registered together
    assert r.group_by("uprn").agg(pl.col("lsoa11").n_unique())["lsoa11"].max() == 1


def test_event_rates_per_person_year_are_plausible(delivery):
    out, _ = delivery
    person_years = 12_000 * YEARS
    rates = {s: len(valid(out, s)) / person_years
             for s in ("gp_events", "hospital_spells", "ae_attendances", "social_care_events", "deaths")}
    assert 1.0 <= rates["gp_events"] <= 8.0  # coded events from the shipped lists only
    # England ~0.29 spells per person-year (HES 2023-24); emergency volume runs a little high here
    # because repeat admissions cluster in the same people.
    assert 0.08 <= rates["hospital_spells"] <= 0.42
    assert 0.15 <= rates["ae_attendances"] <= 0.6
    assert 0.02 <= rates["social_care_events"] <= 0.15
    assert 0.004 <= rates["deaths"] <= 0.014  # England ~0.9% a year; Medway is younger


def test_emergency_admission_prevalence_from_the_spells_file(delivery):
    """4-10% of residents have an emergency admission in a year (recomputed from raw spells).

    Worked from the reference table: England has 0.116 emergency admissions per person-year (HES 2019/20), and
    admitted people are often readmitted within the year (1.3-2 admissions each), so about 5-9% of people are
    admitted at all.
    """
    out, _ = delivery
    spells = valid(out, "hospital_spells")
    r = valid(out, "residents")
    for year in range(1, YEARS):  # skip the first (partial-history) year
        start = EXTRACT - timedelta(days=365 * (year + 1)) + timedelta(days=1)
        end = start + timedelta(days=365)
        emergency = spells.filter(pl.col("admission_method").str.starts_with("2")
                                  & pl.col("admission_date").is_between(start, end, closed="left"))
        alive = r.filter(pl.col("date_of_birth") < start)
        share = emergency["nhs_number"].n_unique() / len(alive)
        assert 0.04 <= share <= 0.10, (year, share)


def test_every_valid_snomed_code_is_published_and_passes_verhoeff(delivery):
    out, _ = delivery
    published = set().union(*(c.codes() for c in cl.ALL_SNOMED_LISTS))
    codes = set(valid(out, "gp_events")["snomed_code"].unique().to_list())
    ae = valid(out, "ae_attendances")
    codes |= set(ae["chief_complaint_snomed"].unique().to_list())
    codes |= set(ae["diagnosis_snomed"].drop_nulls().unique().to_list())
    assert codes <= published
    assert all(snomed_is_valid(c) for c in codes)
    # the GP record uses the concepts the features need
    gp = set(valid(out, "gp_events")["snomed_code"].to_list())
    for concept in (cl.FALLS_SNOMED, cl.DEMENTIA_SNOMED, cl.HOUSEBOUND_SNOMED, cl.CARER_SNOMED, cl.CARE_HOME_SNOMED):
        assert gp & concept.codes(), concept.name
    deficits_seen = sum(bool(gp & c.codes()) for c in cl.EFI_DEFICITS.values())
    assert deficits_seen >= 30


def test_every_valid_icd10_code_canonicalises_into_the_lists_in_mixed_formats(delivery):
    out, _ = delivery
    known = set(cl.hfrs_weights()) | cl.FALLS_ICD10.codes()
    spells = valid(out, "hospital_spells")
    raw = spells["primary_diagnosis"].to_list()
    raw += [c for v in spells["secondary_diagnoses"].to_list() if v for c in v.split(",")]
    raw += valid(out, "deaths")["underlying_cause_icd10"].to_list()
    for code in raw:
        canon = canonical_icd(code)
        assert ICD_RE.match(canon), code
        assert canon[:3] in known, code
    # real-world formats all present: W19, W19X, W19.9, w199
    assert any(re.fullmatch(r"[A-Z]\d\d", c) for c in raw)
    assert any(re.fullmatch(r"[A-Z]\d\dX", c) for c in raw)
    assert any(re.fullmatch(r"W\d\d\.9", c) for c in raw)
    assert any(re.fullmatch(r"w\d\d9", c) for c in raw)
    # falls codes in both primary and secondary positions
    prim = [canonical_icd(c)[:3] for c in spells["primary_diagnosis"].to_list()]
    assert any(c in cl.FALLS_ICD10.codes() for c in prim)
    sec = [canonical_icd(c)[:3] for v in spells["secondary_diagnoses"].to_list() if v for c in v.split(",")]
    assert any(c in cl.FALLS_ICD10.codes() for c in sec)


def test_deaths_match_residents_and_nothing_happens_after_death(delivery):
    out, _ = delivery
    r = valid(out, "residents")
    deaths = valid(out, "deaths")
    joined = r.filter(pl.col("date_of_death").is_not_null()).select("nhs_number", "date_of_death")
    assert joined.sort("nhs_number").equals(deaths.select("nhs_number", "date_of_death").sort("nhs_number"))
    dod = r.select("nhs_number", "date_of_death")
    for source, col in [("gp_events", "event_date"), ("hospital_spells", "admission_date"),
                        ("hospital_spells", "discharge_date"), ("ae_attendances", "arrival_date"),
                        ("social_care_events", "event_start_date"), ("social_care_events", "event_end_date")]:
        late = valid(out, source).join(dod, on="nhs_number").filter(pl.col(col) > pl.col("date_of_death"))
        assert late.is_empty(), source
    # bereavement exists: a death in a household where someone else lives on
    hh = r.group_by("uprn").agg(pl.col("date_of_death").is_not_null().sum().alias("dead"), pl.len())
    assert hh.filter((pl.col("dead") >= 1) & (pl.col("len") > pl.col("dead"))).height >= 10


def test_social_care_follows_the_cld_event_model(delivery):
    out, _ = delivery
    sc = valid(out, "social_care_events")
    assert set(sc["event_type"].unique()) == {"Request", "Assessment", "Service", "Review"}
    services = set(sc.filter(pl.col("event_type") == "Service")["service_type"].unique())
    assert {*LONG_TERM_SERVICE_TYPES, REABLEMENT_SERVICE_TYPE} <= services
    assert {"Telecare", "Equipment"} <= set(sc["service_component"].drop_nulls().unique())
    assert set(sc["service_component"].drop_nulls().unique()) <= set(CLD_SERVICE_COMPONENTS)
    assert sc.filter(pl.col("event_type") != "Service")["service_type"].null_count() == sc.filter(
        pl.col("event_type") != "Service").height
    assert sc.filter(pl.col("event_end_date") < pl.col("event_start_date")).is_empty()
    # a request usually comes before a person's first service
    first = sc.group_by("nhs_number", "event_type").agg(pl.col("event_start_date").min())
    wide = first.pivot(on="event_type", index="nhs_number", values="event_start_date")
    new_clients = wide.filter(pl.col("Request").is_not_null() & pl.col("Service").is_not_null())
    assert (new_clients["Request"] <= new_clients["Service"]).mean() > 0.6


def test_spells_discharge_after_admission_and_destinations(delivery):
    out, _ = delivery
    spells = valid(out, "hospital_spells")
    assert spells.filter(pl.col("discharge_date") < pl.col("admission_date")).is_empty()
    assert spells["spell_id"].is_unique().all()
    dest = set(spells["discharge_destination"].unique())
    assert {"19", "79", "85"} <= dest
    ae = valid(out, "ae_attendances")
    assert 0.1 <= (ae["arrival_mode"] == "1").mean() <= 0.6
    assert ae["admitted"].any() and not ae["admitted"].all()
