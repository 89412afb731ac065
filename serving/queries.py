"""Read-side queries over the operational DB, as the API and web pages call them.

The queries themselves live in ``pipelines.score_history``, the one module that reads the score tables and the
history store (a guard test fails on a direct read anywhere else); this module keeps the names the routes use.
Every query reaches ``scores`` and ``risk_lists`` through ``published_weeks``, so rows of a run that failed or
is still being written are never served (ARCHITECTURE: publishing is a pointer swap).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.engine import Connection

from pipelines.score_history import (
    ListFilter,
    band_counts,
    cohort_funnel,
    history_store,
    list_facets,
    list_offer_marks,
    list_rows,
    localities,
    locality_known,
    new_entries,
    published,
    recent_weeks,
    resident_history,
    score_histogram,
    section_counts,
)
from pipelines.score_history import ServedWeek as PublishedWeek

__all__ = [
    "ListFilter",
    "PublishedWeek",
    "band_counts",
    "cohort_funnel",
    "history_store",
    "list_facets",
    "list_rows",
    "localities",
    "locality_known",
    "new_entries",
    "offer_places",
    "published",
    "reasons_on_demand",
    "recent_weeks",
    "resident_history",
    "score_histogram",
    "section_counts",
]


def offer_places(conn: Connection, run_id: str, week: str, locality: str, settings: Any) -> list[dict]:
    """Per offer, the weekly places against the people suggested, with a place and waiting, over the WHOLE
    published list (not a filtered page): ``upstream.offers.offer_summary`` (suppressed) of the stored marks.
    Empty when the council's catalogue file cannot be read: the list itself must still be shown."""
    from upstream.errors import UpstreamError
    from upstream.offers import load_catalogue, offer_summary

    try:
        catalogue = load_catalogue(settings)
    except UpstreamError:
        return []
    return offer_summary(list_offer_marks(conn, run_id, week, locality), catalogue, locality)


def reasons_on_demand(engine: Any, settings: Any, person_id: str, scored: dict) -> Any:
    """Reasons of a resident the run did not explain (``scored``: their row of ``resident_history`` for one
    published week, which the caller may see), worked out now with the model version that scored that week
    (``pipelines.explain.explain_on_demand``: it says why when they cannot be given)."""
    from pipelines.explain import explain_on_demand

    with engine.connect() as conn:
        week = published(conn, scored["week"])
    return explain_on_demand(
        settings, person_id=person_id, locality=scored["locality"], index_date=scored["index_date"],
        score=scored["score"], model_name=week.model_name if week else None,
        model_version=week.model_version if week else None,
    )
