"""The realism report against published English figures (synthetic/reference/england.csv), at 12k residents.

The issue's tolerance (25%) is judged at 280k (bench/README.md "Issue 12 (session 3)" and "Issue 12 (session
3): reference figures by age band"). At this 12k fixture some shares rest on few people, so they are held to a
looser band worked out from their binomial noise:
- care-home residents 65+: about 2,000 people aged 65+, ~45 in a care home (SE about 15%): 40%;
- still at home after reablement: ~50 episodes (SE about 10-15%): 40%;
- care-home residents 85+: about 250 people aged 85+, ~30 in a care home (SE about 17%): 50%;
- living alone 85+: about 250 people, half alone (SE about 6% of the share): 25%;
- emergency admissions 65+: about 500 admissions a year among ~2,000 people (SE about 5%): 25%;
- elective admissions: about 1,700 a year (SE about 2.5%): 25%;
- deaths 75+: about 55 a year (SE about 14%): 40%;
- deaths 85+: about 20 a year (SE about 22%): 50%;
- deaths 0-17: about one a year, too few to judge at this size; the children's rate is checked below on both
  12k worlds' six years together, against what 1.5's rate would have given;
- emergency admissions by band (HES 2019/20, session 7): 150-600 admissions a year in each band, and a person
  admitted once is admitted again more often (SE about 5-10%): 40%;
- deaths by band (HMD England and Wales 2019, session 7): 13-35 a year at 18-64, 45-64, 65-74 and 75-84 (SE
  18-28%), too few to judge at this size: judged at 280k (bench/README.md).
"""

from __future__ import annotations

import math

import pytest

from synthetic.realism import TOLERANCE, band_bounds, realism_report, reference

#: Rates over many events even at 12k, held to the issue's 25%.
HEADLINE = [("emergency_admissions", "all"), ("ae_attendances", "all"), ("deaths", "all"),
            ("living_alone", "65+"), ("new_requests_for_support", "18+"), ("emergency_admissions", "65+"),
            ("living_alone", "85+"), ("elective_admissions", "all")]
#: Shares over a few dozen people, or deaths of a few dozen, at 12k; admissions by band.
SMALL_COUNT = [("care_home_resident", "65+"), ("still_at_home_91_days_after_reablement", "65+"), ("deaths", "75+"),
               *(("emergency_admissions", band) for band in ("0-17", "18-64", "45-64", "65-74", "75-84", "85+"))]
#: The smallest groups: about 30 care-home residents aged 85+, about 20 deaths a year at 85+.
SMALLEST = [("care_home_resident", "85+"), ("deaths", "85+")]
#: Judged at 280k only (bench/README.md): about one death a year at 0-17 in 12k residents, 13-35 in each of the
#: other bands.
AT_COUNTY_SCALE = [("deaths", band) for band in ("0-17", "18-64", "45-64", "65-74", "75-84")]
#: The age structure of the living on the extract date (generator 1.7), over about 11,000 people at 12k.
AGE_STRUCTURE = [("population_share", band) for band in ("0-14", "65+", "75+", "85+", "90+")]


@pytest.fixture(scope="module")
def report(delivery):
    out, _ = delivery
    return {(r["measure"], r["age_band"]): r for r in realism_report(out).iter_rows(named=True)}


@pytest.fixture(scope="module")
def alt_report(alt_delivery):
    out, _ = alt_delivery
    return {(r["measure"], r["age_band"]): r for r in realism_report(out).iter_rows(named=True)}


def test_every_reference_row_cites_a_publication_year_and_derivation():
    ref = reference()
    assert ref["publication"].str.len_chars().min() > 10 and ref["year"].null_count() == 0
    assert ref["note"].str.len_chars().min() > 20
    assert set(zip(ref["measure"], ref["age_band"], strict=True)) == (set(HEADLINE) | set(SMALL_COUNT) | set(SMALLEST)
                                                                      | set(AT_COUNTY_SCALE) | set(AGE_STRUCTURE))


def test_age_bands_are_read_from_the_reference_labels():
    assert band_bounds("all") == (0, math.inf)
    assert band_bounds("65+") == (65, math.inf)
    assert band_bounds("75-84") == (75, 85)  # 84-year-olds in, 85-year-olds out
    with pytest.raises(ValueError, match=r"england\.csv"):
        band_bounds("old")


def test_every_reference_row_has_a_generated_figure_beside_it(report):
    """A figure beside every row. Deaths at 0-17 are about one a year at 12k (Poisson: none in 37% of years), so
    zero is a legitimate figure there; every other row has hundreds of events or people."""
    for r in reference().iter_rows(named=True):
        key = (r["measure"], r["age_band"])
        row = report[key]
        assert row["england"] == r["value"] and row["generated"] is not None
        assert row["generated"] > 0 or (key in AT_COUNTY_SCALE and row["generated"] == 0), row
        assert row["ratio"] == pytest.approx(row["generated"] / r["value"])
        assert row["within_25pct"] == (abs(row["ratio"] - 1) <= TOLERANCE)


@pytest.mark.parametrize("key", HEADLINE)
def test_headline_rates_within_25_percent_of_england(report, key):
    row = report[key]
    assert abs(row["generated"] / row["england"] - 1) <= TOLERANCE, row
    assert row["within_25pct"] is True


@pytest.mark.parametrize("key", SMALL_COUNT)
def test_small_count_shares_near_england(report, key):
    row = report[key]
    assert abs(row["generated"] / row["england"] - 1) <= 0.40, row


@pytest.mark.parametrize("key", SMALLEST)
def test_care_homes_at_85_plus_near_england(report, alt_report, key):
    """About 160 people aged 85+ are alive at the extract in each 12k world, so each world's share has a
    standard error near 20%: the two worlds' ratios are averaged (both are calibrated to the same England
    figure) and held to 50%. Generator 1.6 at seed 11: care homes 85+ 1.60 (default) and 1.02 (alt); the
    default at 60k and 280k gives 0.99 and 1.17 (bench/README.md, issue 12 session 5)."""
    ratios = [r[key]["generated"] / r[key]["england"] for r in (report, alt_report)]
    assert abs(sum(ratios) / 2 - 1) <= 0.50, ratios


@pytest.mark.parametrize("key", AGE_STRUCTURE)
def test_age_structure_of_the_living_near_englands(report, alt_report, delivery, key):
    """Share of the living residents in a band on the extract date (ONS estimates and Census 2021), in both
    worlds: the issue's 25% plus three binomial standard errors of a share p of n people, sqrt((1-p)/(n p))
    relative (12k: about 260 people aged 85+, 12% relative; about 100 aged 90+, 30%). Generator 1.6 had 85+
    at 0.58 of England's at 280k and 90+ at 0.38."""
    import polars as pl

    from synthetic.realism import _valid

    out, _ = delivery
    died = _valid(out, "deaths")["nhs_number"]
    n = _valid(out, "residents").filter(~pl.col("nhs_number").is_in(died.implode())).height
    for r in (report, alt_report):
        p = r[key]["england"]
        bound = TOLERANCE + 3 * math.sqrt((1 - p) / (n * p))
        assert abs(r[key]["generated"] / p - 1) <= bound, (r[key], bound)


def test_admissions_rise_with_age_as_in_england(report):
    """Emergency admissions per person-year rise band by band from 18-64 to 85+, as in England, and the 65+
    rate sits between the 65-74 and 85+ rates (it is their person-year-weighted mean)."""
    rate = {band: report[("emergency_admissions", band)]["generated"] for band in ("18-64", "65-74", "75-84", "85+")}
    assert rate["18-64"] < rate["65-74"] < rate["75-84"] < rate["85+"]
    assert rate["65-74"] < report[("emergency_admissions", "65+")]["generated"] < rate["85+"]


def test_the_report_shows_unreferenced_figures_without_judging_them(report):
    """Bands with no citable figure (A&E attendances and electives by band, deaths at 65+ together, care homes at
    75-84): computed and shown, not judged."""
    for key in [("ae_attendances", "85+"), ("deaths", "65+"), ("elective_admissions", "65+"),
                ("care_home_resident", "75-84")]:
        assert report[key]["england"] is None and report[key]["within_25pct"] is None
        assert 0 < report[key]["generated"] < 2


def _child_deaths_and_person_years(out) -> tuple[int, float]:
    """Deaths under 18 and person-years under 18 over a delivery's whole span, from its valid rows."""
    import json
    from datetime import date, timedelta

    import polars as pl

    from synthetic.realism import _valid

    meta = json.loads((out / "_delivery.json").read_text())
    end = date.fromisoformat(meta["extract_date"]) + timedelta(days=1)
    start = end - timedelta(days=365 * int(meta["years"]))
    deaths = _valid(out, "deaths").group_by("nhs_number").agg(pl.col("date_of_death").min().alias("died"))
    people = _valid(out, "residents").join(deaths, on="nhs_number", how="left")
    # Time under 18: from the later of birth, registration and the start to the earliest of the 18th birthday,
    # death and the end.
    adult = pl.col("date_of_birth").dt.offset_by("18y")
    enter = pl.max_horizontal("date_of_birth", "registration_start", pl.lit(start))
    leave = pl.min_horizontal(adult, pl.col("died").fill_null(end), pl.lit(end))
    py = float(people.select(((leave - enter).dt.total_days().clip(0) / 365.0).sum()).item())
    n = people.filter(pl.col("died").is_not_null() & (pl.col("died") >= start) & (pl.col("died") < end)
                      & (pl.col("died") < adult)).height
    return n, py


def test_children_die_at_englands_rate_not_at_young_adults(delivery, alt_delivery):
    """Both 12k worlds' six years together: about 35,000 child person-years. At England's 0.00033 per
    person-year (england.csv, deaths 0-17) that is about 12 deaths; at generator 1.5's rates (default 0.0012,
    alt 0.0024 per person-year at 280k, bench/README.md) it was about 60. Poisson(12) exceeds 24 with chance
    under 0.1%, and Poisson(60) falls to 24 with chance far below that."""
    n, py = map(sum, zip(*(_child_deaths_and_person_years(d[0]) for d in (delivery, alt_delivery)), strict=True))
    assert 25_000 < py < 45_000
    assert n <= 24, (n, py, n / py)


def _hand_made_delivery(root, people: list[dict], spells: list[dict]):
    """A delivery of a few hand-written people (every other source empty), extract 2025-12-31, three years."""
    import json

    import polars as pl

    from expectations.contract import SOURCES

    root.mkdir()
    (root / "_delivery.json").write_text(json.dumps({"extract_date": "2025-12-31", "years": 3}))
    rows = {"residents": people, "hospital_spells": spells,
            "deaths": [{"nhs_number": p["nhs_number"], "date_of_death": p["date_of_death"]}
                       for p in people if p["date_of_death"]]}
    for name, spec in SOURCES.items():
        if name in ("residents", "hospital_spells", "deaths", "ae_attendances", "social_care_events"):
            schema = spec.schema
            frame = pl.DataFrame([{k: r.get(k) for k in schema} for r in rows.get(name, [])], schema=schema)
            frame.write_parquet(root / f"{name}.parquet")
    return root


def test_a_rare_rate_is_measured_over_enough_whole_years_and_a_common_one_over_the_last(tmp_path):
    """Ten children, one dying in the last year and one two years earlier, and one adult admitted 150 times in
    the last year. Years back from the extract 2025-12-31: [2025-01-01, 2026-01-01), [2024-01-02, 2025-01-01),
    [2023-01-02, 2024-01-02), 365 days each. Child deaths: one in the last year, fewer than MIN_EVENTS (100), so
    all three years are used: 2 deaths over person-years 8 + 181/365 (last year: eight alive, one dead on
    2025-07-01) + 9 + 9 + 180/365 (first year: the other dead on 2023-07-01) = 26 + 361/365. The adult's
    150 admissions are enough in the last year alone: 150 / 1. Deaths at 18-64: none in any year, all three."""
    from datetime import date, timedelta

    from synthetic.realism import MIN_EVENTS, generated_rates

    assert MIN_EVENTS == 100  # the worked figures below assume it

    def person(i: int, born: date, died: date | None = None) -> dict:
        return {"nhs_number": f"{9000000000 + i}", "date_of_birth": born, "sex": "2", "ethnic_category": "A",
                "lsoa11": "E01016000", "uprn": f"{100 + i}", "gp_practice": "G82001", "locality": "East",
                "registration_start": date(2010, 1, 1), "date_of_death": died}

    children = [person(i, date(2015, 6, 1)) for i in range(8)]
    children += [person(8, date(2015, 6, 1), date(2025, 7, 1)), person(9, date(2015, 6, 1), date(2023, 7, 1))]
    adult = person(10, date(1985, 3, 1))
    spells = [{"nhs_number": adult["nhs_number"], "spell_id": f"S{k}", "admission_date": date(2025, 1, 2)
               + timedelta(days=2 * k), "discharge_date": date(2025, 1, 3) + timedelta(days=2 * k),
               "admission_method": "21", "primary_diagnosis": "W19", "secondary_diagnoses": "",
               "discharge_destination": "19"} for k in range(150)]
    got = generated_rates(_hand_made_delivery(tmp_path / "d", [*children, adult], spells))

    child = got[("deaths", "0-17")]
    assert (child.events, child.years) == (2, 3)
    assert child.value == pytest.approx(2 / (26 + 361 / 365))
    admitted = got[("emergency_admissions", "18-64")]
    assert (admitted.events, admitted.years, admitted.value) == (150, 1, pytest.approx(150.0))
    none = got[("deaths", "18-64")]
    assert (none.events, none.years, none.value) == (0, 3, 0.0)
