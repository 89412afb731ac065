"""The one disclosure-control function, proved on purpose-built tiny groups: nothing shown gives a count back.

Method: enumerate every small group (n people, e events, f false negatives), compute exactly what a reader is
shown, and group the true counts by what is shown. A count is *derivable* when every true group that shows
the same output has the same value of that count. Zero is shown exactly by the rule (0 stays 0), so only
non-zero counts must never be derivable.
"""

from __future__ import annotations

from collections import defaultdict

import pytest

from upstream.disclosure import (
    disclose_rate,
    disclose_ratio,
    disclose_statistic,
    group_disclosable,
    ratio_digits,
    show_count,
    suppress_count,
)

MAX_N = 60


@pytest.mark.parametrize(("n", "shown"), [(0, 0), (1, None), (7, None), (8, 10), (12, 10), (13, 15), (5538, 5540)])
def test_rule(n, shown):
    assert suppress_count(n) == shown
    assert show_count(n) == ("<8" if shown is None else str(shown))


def test_no_count_is_derivable_from_a_fairness_row():
    """The model card's fairness row (size, events, event rate, FNR) for every group up to 60 people."""
    from models.card import _fairness_row

    seen: dict[tuple, set[tuple[int, int, int]]] = defaultdict(set)
    for n in range(1, MAX_N + 1):
        for e in range(n + 1):
            for fn in range(e + 1):
                row = {"dimension": "sex", "group": "X", "n": n, "events": e, "event_rate": e / n,
                       "observed_expected": None, "auroc": None, "gate_reference_auroc": None, "fpr": None,
                       "fnr": fn / e if e else None}
                shown = _fairness_row(row)
                seen[shown].add((n, e, fn))
    probes = failures = 0
    for shown, truths in seen.items():
        for position, name in enumerate(("n", "events", "false negatives")):
            values = {t[position] for t in truths}
            probes += 1
            if len(values) == 1 and values != {0}:
                failures += 1
                print(f"{name} derivable from {shown}: {values}")
    print(f"fairness-row derivability: {len(seen)} distinct outputs from {sum(map(len, seen.values()))} groups, "
          f"{probes} probes, {failures} failures")
    assert probes > 500 and failures == 0


def test_rate_is_withheld_when_any_count_it_needs_is_suppressed():
    assert disclose_rate(1, 6) is None  # the issue's "<8" group with a rate of 0.167
    assert disclose_rate(5, 7) is None  # FNR 0.714 = 5/7
    assert disclose_rate(5, 40) is None  # events 1-7
    assert disclose_rate(35, 40) is None  # non-events 5: n - events would give them back
    assert disclose_rate(10, 40) == 0.25  # 10/40 from rounded counts: 10 / 40
    assert disclose_rate(12, 41) == 0.25  # rounded: 10 / 40, not 12/41 = 0.293


def test_issue_example_test_rate_times_n_gives_only_the_rounded_count():
    shown_n, shown_rate = suppress_count(5538), disclose_rate(809, 5538)
    assert shown_n == 5540
    assert shown_rate == 0.1462  # 810 / 5540, to 4 decimals ...
    assert round(shown_n * shown_rate) == 810  # ... so rate x n gives the rounded count, never the exact 809


def test_ratio_precision_keeps_the_numerator_hidden():
    assert ratio_digits(5) is None and ratio_digits(49) is None  # even 1 decimal would pin the numerator
    assert ratio_digits(50) == 1 and ratio_digits(809) == 2 and ratio_digits(5538) == 3
    # Over 809 events a 2-decimal sensitivity leaves >= 5 candidate numerators.
    shown = disclose_ratio(400 / 809, 809)
    candidates = [tp for tp in range(810) if round(tp / 809, 2) == shown]
    assert len(candidates) >= 5


def test_group_statistics_need_every_count_shown():
    assert not group_disclosable(100, 3) and not group_disclosable(100, 95) and not group_disclosable(6, 0)
    assert disclose_statistic(0.81234, 100, 3) is None
    assert disclose_statistic(0.81234, 100, 30) == 0.81
