"""Imported once by the ingest pool's fork server, before it forks any worker (``expectations.ingest_pool``).

Why: every worker needs Great Expectations, whose import costs about 2.2 CPU s; imported here once, each
worker is forked with it already loaded. Forking is only safe from a process with one thread (a fork copies
locks another thread may hold, and only the forking thread survives). GX's import starts two kinds of
threads of its own, both switched off here by their libraries' own settings before they load:
- pyarrow's bundled jemalloc starts a background purging thread (``JE_ARROW_MALLOC_CONF``);
- numpy's OpenBLAS starts its thread pool (``OPENBLAS_NUM_THREADS``, ``OMP_NUM_THREADS``); ingest does no
  linear algebra.
Polars starts threads at import (jemalloc, a spill cleaner), so it is NOT imported here: workers import it
after the fork (0.1 s). ``ingest_pool`` checks that the fork server really has one thread before using it.

Each worker's polars gets one thread (``POLARS_MAX_THREADS``, read when polars is imported): the workers are
the parallelism (by default one per core), and two polars pools per core only wait on each other.
"""

from __future__ import annotations

import os

for _name, _value in (("JE_ARROW_MALLOC_CONF", "background_thread:false"), ("OPENBLAS_NUM_THREADS", "1"),
                      ("OMP_NUM_THREADS", "1"), ("MKL_NUM_THREADS", "1"), ("POLARS_MAX_THREADS", "1")):
    os.environ.setdefault(_name, _value)

import great_expectations  # noqa: E402, F401  (the point of this module)
