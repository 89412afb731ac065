"""Synthetic linked health and social care deliveries with known ground truth (``upstream synth``)."""

from __future__ import annotations

import os


def default_workers() -> int:
    """Simulation processes to use by default: the output is identical whatever the number, so use the
    machine's cores, at most 4 (each worker holds a chunk in memory: about 0.4-1.6 GiB, bench/README.md)."""
    return max(1, min(4, os.cpu_count() or 1))

#: Default length of a delivery. Training needs, before the test year: a validation year, a fitting year and
#: the features' longest window (2 years) before the fitting date (models.train.choose_method_dates): about
#: 5.1 years; 6 leaves room for several quarterly fitting dates.
DEFAULT_YEARS = 6
