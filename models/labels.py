"""Outcome labels (DESIGN §5) for one index date, from the clean (pseudonymised) data.

Why a separate module: labels look *forward* from the index date while features look back.
Keeping them apart makes the point-in-time rule easy to audit: nothing here is ever a model input.

Definitions, for people alive (no death before T in residents or deaths), born and registered
(``registration_start < T``) at T -- the same population as the feature table --
with the outcome window ``[T, T + 365 days)``:

- ``emergency_admission``: a hospital spell with an emergency admission method starting in the window.
- ``care_escalation``: a ``Long Term Support`` service (community, residential or nursing) starting in the
  window, for a person with no Long Term Support service open at T. Residential and nursing care are the
  CLD record of a care-home admission, so a care-home move counts once, whichever way it is recorded.
- ``crisis``: either of the above, or death in the window.
"""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import polars as pl

from expectations.cohort import (
    Clean,
    CleanRead,
    alive_and_registered_at,
    clean_directory,
    clean_for,
    death_date,
    of_people,
    registered_deaths,
    service_open_at,
)
from expectations.contract import EMERGENCY_ADMISSION_METHODS, LONG_TERM_SERVICE_TYPES, SERVICE_EVENT_TYPE
from upstream.errors import BadFileError, UpstreamError

OUTCOME_WINDOW = timedelta(days=365)
#: The sources the labels read AFTER the index date (up to the end of the outcome window); every other source
#: is only ever read before it (features, cohort).
FORWARD_SOURCES = ("hospital_spells", "social_care_events")
#: Each dated source's date column: the edges of the delivery (:func:`data_end`) and what a date can read.
EVENT_DATE_COLUMNS = {
    "hospital_spells": "admission_date",
    "gp_events": "event_date",
    "ae_attendances": "arrival_date",
    "social_care_events": "event_start_date",
    "deaths": "date_of_death",
}


def scan_source(clean_dir: Clean, source: str) -> pl.LazyFrame:
    """Lazy scan of one clean source (parquet, as written by ingest; or held in memory by a ``CleanRead``)."""
    if isinstance(clean_dir, CleanRead) and source in clean_dir.frames:
        return clean_dir.frames[source].lazy()
    path = clean_directory(clean_dir) / f"{source}.parquet"
    if not path.exists():
        raise BadFileError(str(path), "clean source file is missing (run `upstream ingest` first)")
    return pl.scan_parquet(path)


def eligible_people(clean_dir: Clean, index_date: date) -> pl.LazyFrame:
    """People alive and registered at T: the population both features and labels are defined on."""
    return (
        scan_source(clean_dir, "residents")
        .join(registered_deaths(scan_source(clean_dir, "deaths")), on="person_id", how="left")
        .with_columns(death_date().alias("_death"))
        .filter(alive_and_registered_at(index_date, pl.col("_death")))
        .select("person_id", "_death")
    )


def build_labels(clean_dir: Clean, index_date: date, window: timedelta = OUTCOME_WINDOW,
                 people: pl.Series | None = None) -> pl.DataFrame:
    """Outcome booleans per eligible person for the 12 months (or ``window``) from ``index_date``.

    ``window`` lets the outcome follow-up (loop/outcomes.py) use these same definitions at 91 days and 6 months.
    ``people`` (person ids) restricts the rows to those eligible people: every label reads the person's own
    records only, so their rows are the whole population's rows for them (training labels only the people it
    draws at a sampled date).
    """
    if not isinstance(index_date, date):
        raise UpstreamError(f"index_date must be a date, got {index_date!r}")
    start, end = index_date, index_date + window
    clean_dir = clean_for(clean_dir, people)

    def scan(source: str) -> pl.LazyFrame:
        return of_people(scan_source(clean_dir, source), people)

    eligible = of_people(eligible_people(clean_dir, index_date), people)

    emergency = (
        scan("hospital_spells")
        .filter(
            pl.col("admission_method").is_in(EMERGENCY_ADMISSION_METHODS)
            & (pl.col("admission_date") >= start)
            & (pl.col("admission_date") < end)
        )
        .select("person_id")
        .unique()
        .with_columns(pl.lit(True).alias("emergency_admission"))
    )

    social_care = scan("social_care_events")
    # A service starting ON T is in the outcome window, so it is new, not already open at T.
    open_at_t = (
        social_care.filter(service_open_at(start, LONG_TERM_SERVICE_TYPES, starting_on_t_is_open=False))
        .select("person_id")
        .unique()
    )
    new_service = (
        social_care.filter(
            (pl.col("event_type") == SERVICE_EVENT_TYPE)
            & pl.col("service_type").is_in(LONG_TERM_SERVICE_TYPES)
            & (pl.col("event_start_date") >= start)
            & (pl.col("event_start_date") < end)
        )
        .select("person_id")
        .unique()
        .join(open_at_t, on="person_id", how="anti")
        .with_columns(pl.lit(True).alias("care_escalation"))
    )

    return (
        eligible.join(emergency, on="person_id", how="left")
        .join(new_service, on="person_id", how="left")
        .with_columns(
            pl.col("emergency_admission").fill_null(False),
            pl.col("care_escalation").fill_null(False),
            (pl.col("_death").is_not_null() & (pl.col("_death") < end)).alias("_died"),
        )
        .with_columns((pl.col("emergency_admission") | pl.col("care_escalation") | pl.col("_died")).alias("crisis"))
        .select("person_id", "emergency_admission", "care_escalation", "crisis")
        .sort("person_id")
        .collect()
    )


def data_end(clean_dir: Path) -> date:
    """Last date with any recorded activity: the edge of what the delivery can tell us about outcomes."""
    ends = []
    for source, column in EVENT_DATE_COLUMNS.items():
        path = Path(clean_dir) / f"{source}.parquet"
        if path.exists():
            value = pl.scan_parquet(path).select(pl.col(column).max()).collect().item()
            if value is not None:
                ends.append(value)
    if not ends:
        raise UpstreamError(f"{clean_dir}: no dated events found, cannot place a test window")
    return max(ends)


def data_start(clean_dir: Path) -> date:
    """First date with recorded activity: features need history after it."""
    starts = []
    for source, column in {"hospital_spells": "admission_date", "gp_events": "event_date",
                           "ae_attendances": "arrival_date"}.items():
        path = Path(clean_dir) / f"{source}.parquet"
        if path.exists():
            value = pl.scan_parquet(path).select(pl.col(column).min()).collect().item()
            if value is not None:
                starts.append(value)
    if not starts:
        raise UpstreamError(f"{clean_dir}: no dated events found")
    return min(starts)
