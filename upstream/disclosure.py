"""Statistical disclosure control: the ONE home of the small-number rule for every published aggregate.

The rule (DESIGN §7, the OpenSAFELY / NHS Digital rule): counts of 1-7 could identify people, so they are
suppressed; every other count is rounded to the nearest 5 so that suppressed cells cannot be recovered by
subtraction from totals. Summaries, funnels, charts, model cards, fairness and calibration tables and
evaluation reports all go through the functions below, so a change of rule is a change here only.

Numbers derived from counts must not give a count back:

* a rate whose numerator and denominator are known (event rate, FNR, FPR, a funnel share) is computed
  from the *rounded* counts (:func:`disclose_rate`), so rate x shown total gives only the rounded count;
  it is withheld when the numerator, the denominator or their difference (e.g. non-events) is suppressed;
* a ratio whose numerator is not at hand (PPV, sensitivity read back from MLflow) is shown only to the
  precision at which the implied numerator stays at least as uncertain as rounding to 5 would leave it
  (:func:`disclose_ratio`);
* a discrimination or calibration statistic of a group (AUROC, slope, O/E) is shown to 2 decimals, and
  only when the group's size, events and non-events are all shown (:func:`disclose_statistic`).
"""

from __future__ import annotations

import math

SUPPRESSION_THRESHOLD = 7
ROUNDING_BASE = 5
#: How a suppressed count is displayed in tables, charts and files meant for readers.
SUPPRESSED = "<8"
#: Decimals for group statistics (AUROC, calibration slope, O/E): enough for a reader, too few to invert.
STATISTIC_DIGITS = 2
#: One-line statement of the rule, for API responses and file footers.
RULE_TEXT = (
    "counts of 1-7 suppressed (shown as <8 or null), others rounded to the nearest 5; rates are computed from "
    "the rounded counts and withheld when a count they depend on is suppressed"
)


def suppress_count(n: int) -> int | None:
    """None for 1-7; 0 stays 0; otherwise n rounded to the nearest 5 (ties cannot occur for integers)."""
    if n < 0:
        raise ValueError("a count cannot be negative")
    if 1 <= n <= SUPPRESSION_THRESHOLD:
        return None
    return ROUNDING_BASE * round(n / ROUNDING_BASE)


def is_suppressed(n: int) -> bool:
    return suppress_count(n) is None


def show_count(n: int) -> str:
    """The count as text for a reader: ``"<8"`` or the rounded number."""
    return show_suppressed(suppress_count(int(n)))


def show_suppressed(value: int | None) -> str:
    """An already suppressed count (None = 1-7, as stored) as text for a reader."""
    return SUPPRESSED if value is None else str(value)


def disclose_rate(numerator: int, denominator: int) -> float | None:
    """numerator/denominator from the rounded counts; None when either count or their difference is suppressed.

    Why the difference: with n and the rate shown, a suppressed complement (non-events 1-7) would be
    given back by n - events. The rate has enough decimals (at least 3) that rate x shown denominator
    gives back the rounded numerator, never a different, "exact-looking" number."""
    numerator, denominator = int(numerator), int(denominator)
    if not 0 <= numerator <= denominator:
        raise ValueError("a rate needs 0 <= numerator <= denominator")
    shown_num, shown_den = suppress_count(numerator), suppress_count(denominator)
    if shown_num is None or shown_den is None or is_suppressed(denominator - numerator) or shown_den == 0:
        return None
    return round(shown_num / shown_den, max(3, math.ceil(math.log10(shown_den))))


def ratio_digits(denominator: int) -> int | None:
    """Decimals at which a ratio over ``denominator`` pins its numerator no better than rounding to 5 would.

    A ratio shown to d decimals leaves the numerator in an interval of width denominator x 10^-d; that
    width must be at least ``ROUNDING_BASE``. None when even 1 decimal is too precise (tiny denominators)."""
    if is_suppressed(int(denominator)) or denominator <= 0:
        return None
    digits = math.floor(math.log10(denominator / ROUNDING_BASE))
    return None if digits < 1 else min(digits, 3)


def disclose_ratio(value: float | None, denominator: int) -> float | None:
    """A ratio whose numerator is unknown here, rounded so that the numerator cannot be recovered."""
    if value is None or not math.isfinite(value):
        return None
    digits = ratio_digits(int(denominator))
    return None if digits is None else round(float(value), digits)


def group_disclosable(n: int, events: int) -> bool:
    """Whether a group's size, event count and non-event count may all be shown (none is 1-7)."""
    return not (is_suppressed(int(n)) or is_suppressed(int(events)) or is_suppressed(int(n) - int(events)))


def disclose_statistic(value: float | None, n: int, events: int) -> float | None:
    """A group statistic (AUROC, slope, O/E) to 2 decimals, or None when the group's counts are suppressed."""
    if value is None or not math.isfinite(value) or not group_disclosable(n, events):
        return None
    return round(float(value), STATISTIC_DIGITS)


def disclose_counts(values: list[int]) -> list[int | None]:
    """A chart's or table's counts, each through the rule (None = suppressed)."""
    return [suppress_count(int(v)) for v in values]
