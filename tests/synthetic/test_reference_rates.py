"""The realism report against published English figures (synthetic/reference/england.csv), at 12k residents.

At 280k every figure referenced in session 2 is within 25% (bench/README.md "Issue 12 (session 2)"). At this 12k
fixture the counts behind two shares are small (about 2,000 people aged 65+, of whom ~55 live in a care home; ~50
reablement episodes after a discharge), so those two are held to 40%: a binomial standard error of 10-15% alone.

The 85+ rows (issue 12 session 3: care-home residents from Census 2011, living alone from Census 2001) are dated
references over the smallest age group, and at 280k the generator is outside 25% on three of the four (world, row)
pairs (bench/README.md "Issue 12 (session 3)"). They are judged by the report, not held here: this test keeps to
the headline rows.
"""

from __future__ import annotations

import pytest

from synthetic.realism import TOLERANCE, realism_report, reference

#: Rates over every person-year: many events even at 12k, held to the issue's 25%.
HEADLINE = [("emergency_admissions", "all"), ("ae_attendances", "all"), ("deaths", "all"),
            ("living_alone", "65+"), ("new_requests_for_support", "18+")]
#: Shares over a few dozen people at 12k.
SMALL_COUNT = [("care_home_resident", "65+"), ("still_at_home_91_days_after_reablement", "65+")]
#: Referenced and judged by the report, but not held by this test (dated figures; outside 25% at 280k).
AGE_BAND_REPORTED = [("care_home_resident", "85+"), ("living_alone", "85+")]


@pytest.fixture(scope="module")
def report(delivery):
    out, _ = delivery
    return {(r["measure"], r["age_band"]): r for r in realism_report(out).iter_rows(named=True)}


def test_every_reference_row_cites_a_publication_and_year():
    ref = reference()
    assert ref["publication"].str.len_chars().min() > 10 and ref["year"].null_count() == 0
    assert set(zip(ref["measure"], ref["age_band"], strict=True)) == set(HEADLINE) | set(SMALL_COUNT) | set(
        AGE_BAND_REPORTED)


@pytest.mark.parametrize("key", HEADLINE)
def test_headline_rates_within_25_percent_of_england(report, key):
    row = report[key]
    assert abs(row["generated"] / row["england"] - 1) <= TOLERANCE, row
    assert row["within_25pct"] is True


@pytest.mark.parametrize("key", SMALL_COUNT)
def test_small_count_shares_near_england(report, key):
    row = report[key]
    assert abs(row["generated"] / row["england"] - 1) <= 0.40, row


def test_the_report_shows_unreferenced_figures_without_judging_them(report):
    """Elective admissions and the by-age rates are computed and shown, with no verdict until a cited figure exists."""
    for key in [("elective_admissions", "all"), ("emergency_admissions", "85+"), ("deaths", "85+")]:
        assert report[key]["england"] is None and report[key]["within_25pct"] is None
        assert 0 < report[key]["generated"] < 2


@pytest.mark.parametrize("key", AGE_BAND_REPORTED)
def test_the_85_plus_references_are_judged_by_the_report(report, key):
    row = report[key]
    assert row["england"] is not None and row["within_25pct"] in (True, False)
    assert 0 < row["generated"] < 1
