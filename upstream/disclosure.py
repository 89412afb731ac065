"""Small-number suppression for aggregate outputs (the OpenSAFELY / NHS Digital rule).

Counts of 1-7 could identify people, so they are suppressed; every other count is rounded to the
nearest 5 so that suppressed cells cannot be recovered by subtraction from totals.
"""

from __future__ import annotations

SUPPRESSION_THRESHOLD = 7
ROUNDING_BASE = 5


def suppress_count(n: int) -> int | None:
    """None for 1-7; 0 stays 0; otherwise n rounded to the nearest 5 (ties cannot occur for integers)."""
    if n < 0:
        raise ValueError("a count cannot be negative")
    if 1 <= n <= SUPPRESSION_THRESHOLD:
        return None
    return ROUNDING_BASE * round(n / ROUNDING_BASE)
