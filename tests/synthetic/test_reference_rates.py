"""The realism report against published English figures (synthetic/reference/england.csv), at 12k residents."""

from __future__ import annotations

import pytest

from synthetic.realism import TOLERANCE, realism_report, reference

#: Within 25% at 280k (bench/README.md "Issue 12") and at this 12k fixture.
CALIBRATED = [("ae_attendances", "all"), ("deaths", "all"), ("living_alone", "65+")]
#: Not yet within 25% at 280k: expected to fail; care-home share (1.36 at 280k) can land inside at 12k by
#: chance, so not strict.
NOT_YET = [("emergency_admissions", "all"), ("care_home_resident", "65+"), ("new_requests_for_support", "18+"),
           ("still_at_home_91_days_after_reablement", "65+")]


@pytest.fixture(scope="module")
def report(delivery):
    out, _ = delivery
    return {(r["measure"], r["age_band"]): r for r in realism_report(out).iter_rows(named=True)}


def test_every_reference_row_cites_a_publication_and_year():
    ref = reference()
    assert ref.height == len(CALIBRATED) + len(NOT_YET)
    assert ref["publication"].str.len_chars().min() > 10 and ref["year"].null_count() == 0
    assert set(zip(ref["measure"], ref["age_band"], strict=True)) == set(CALIBRATED) | set(NOT_YET)


@pytest.mark.parametrize("key", CALIBRATED)
def test_headline_rates_within_25_percent_of_england(report, key):
    row = report[key]
    assert abs(row["generated"] / row["england"] - 1) <= TOLERANCE, row


@pytest.mark.xfail(strict=False, reason="generator not yet calibrated to this figure (issue 12 item 1)")
@pytest.mark.parametrize("key", NOT_YET)
def test_rates_not_yet_calibrated(report, key):
    row = report[key]
    assert abs(row["generated"] / row["england"] - 1) <= TOLERANCE, row
