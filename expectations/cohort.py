"""Who may be on a rising-risk list at index date T: the cohort exclusions of DESIGN §6, declared once.

A list exists so that a locality team can prevent, reduce or delay need. People already in crisis or
already known to services (in hospital, in a care home, with an open long-term service or a reablement
episode in progress, in their last year of life) or who opted out are not *rising* risk, and listing
them wastes the team's capacity. Each rule below is ONE declaration (reason id, words, predicate); the
weekly lists, the published funnel, the data dictionary, the tests and the training population all read
:data:`COHORT_RULES` and :func:`cohort_at`, so they cannot disagree.

Conventions, all at the index date T (a date, the scoring day):
- only records dated strictly before T count as history (as in the feature table), EXCEPT that a service
  starting ON T is already open at T: a placement that starts on the scoring day is known to services;
- a service is open at T when it started on or before T and has no end date before T;
- a spell is an inpatient stay at T when it was admitted before T and not discharged before T;
- the population is the feature table's: residents alive at T, born and registered before T.
Rules are checked in order and a person gets the FIRST reason that holds, so the funnel adds up:
residents = in cohort + each exclusion.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import polars as pl

from expectations.contract import (
    CARE_HOME_SERVICE_TYPES,
    LONG_TERM_SERVICE_TYPES,
    REABLEMENT_SERVICE_TYPE,
    SERVICE_EVENT_TYPE,
    clean_schema,
)
from features.codelists import CARE_HOME_SNOMED, PALLIATIVE_CARE_SNOMED
from upstream.errors import BadFileError, UpstreamError
from upstream.settings import CohortSettings

PERSON = "person_id"
#: The earliest death date in the deaths source, per person (joined onto residents by :func:`registered_deaths`).
REGISTERED_DEATH = "_registered_death"
#: A GP care-home code counts if recorded in the 12 months before T (people move out of care homes).
CARE_HOME_CODE_WINDOW_DAYS = 365
#: A palliative / end-of-life code counts if recorded in the 12 months before T ("last year of life").
END_OF_LIFE_CODE_WINDOW_DAYS = 365
log = logging.getLogger(__name__)
#: The optional opt-out source (DESIGN §3, §7): one pseudonymised person per row after ingest.
OPT_OUTS_SOURCE = "opt_outs"
#: The column that holds a person's first exclusion reason (null = in the cohort).
REASON_COLUMN = "exclusion_reason"


@dataclass(frozen=True)
class CleanRead:
    """A delivery's clean output with some sources already read into memory: ``frames`` (source -> rows, in the
    clean shape), the event sources holding only ``people``'s records (None: everyone's). Every other source is
    still scanned from ``directory``.

    Why: training builds the cohort, labels and features at five sampled dates; scanning every clean file
    again for each build read the county's 30M GP events 15 times (59 s of CPU at 1.9M, bench/README issue 15
    session 6). Read once (:func:`models.train.read_for_dates`), each date's build runs on memory, through the
    same readers (:func:`scan_clean`), so its rows are the ones the files give.
    """

    directory: Path
    frames: dict[str, pl.DataFrame]
    people: pl.Series | None = None

    def holds(self, people: pl.Series | None) -> bool:
        """Its frames hold every record of ``people`` (None: everyone)."""
        if self.people is None:
            return True
        return people is not None and bool(people.is_in(self.people.implode()).all())


#: Where a delivery's clean output is: its directory, or a :class:`CleanRead` of it.
Clean = Path | CleanRead


def clean_directory(clean: Clean) -> Path:
    """The clean output's directory."""
    return clean.directory if isinstance(clean, CleanRead) else Path(clean)


def clean_for(clean: Clean, people: pl.Series | None) -> Clean:
    """``clean`` when it holds every record of ``people``, else its directory (the files hold everyone's)."""
    return clean if not isinstance(clean, CleanRead) or clean.holds(people) else clean.directory


def has_clean_source(clean: Clean, source: str) -> bool:
    """The delivery has ``source`` (read into memory or on disk)."""
    if isinstance(clean, CleanRead) and source in clean.frames:
        return True
    return (clean_directory(clean) / f"{source}.parquet").exists()


@dataclass(frozen=True)
class CohortSources:
    """The clean sources the rules read (lazy), one row per record, keyed by ``person_id``."""

    residents: pl.LazyFrame
    deaths: pl.LazyFrame
    gp_events: pl.LazyFrame
    hospital_spells: pl.LazyFrame
    social_care_events: pl.LazyFrame
    opt_outs: pl.LazyFrame

    @classmethod
    def from_clean_dir(cls, clean_dir: Clean) -> CohortSources:
        """Scan ingest's clean output; a missing optional source (even opt-outs) reads as empty."""
        if not clean_directory(clean_dir).is_dir():
            raise UpstreamError(f"clean data directory not found: {clean_directory(clean_dir)}")
        return cls(**{name: scan_clean(clean_dir, name) for name in cls.__dataclass_fields__})

    def restricted_to(self, people: pl.Series) -> CohortSources:
        """The same sources holding only ``people``'s records. Every rule reads a person's own records only, so
        each of them gets exactly the whole population's row; training draws 200k of a county's 1.5M per date
        and judging everyone else only to drop their rows was wasted work."""
        return CohortSources(**{name: of_people(getattr(self, name), people) for name in self.__dataclass_fields__})


def of_people(frame: pl.LazyFrame, people: pl.Series | None) -> pl.LazyFrame:
    """``frame``'s rows for ``people`` (person ids), or all of them when ``people`` is None.

    One restriction for a sampled training date's features, labels and cohort: each reads a person's own
    records, so the people drawn get exactly the rows the whole population's build gives them."""
    return frame if people is None else frame.filter(pl.col(PERSON).is_in(people.implode()))


def _clean_schema(source: str) -> dict[str, pl.DataType]:
    return {PERSON: pl.String} if source == OPT_OUTS_SOURCE else clean_schema(source)


def scan_clean(clean_dir: Clean, source: str) -> pl.LazyFrame:
    """Lazy scan of one clean source, checked against the clean shape; the one reader of ingest's output.

    Features, labels and this cohort all read through it. A missing optional source reads as empty (with a
    warning for contract sources); residents are required. A source a :class:`CleanRead` holds is read from
    memory (it was read through here)."""
    if isinstance(clean_dir, CleanRead) and source in clean_dir.frames:
        return clean_dir.frames[source].lazy()
    path = clean_directory(clean_dir) / f"{source}.parquet"
    schema = _clean_schema(source)
    if not path.exists():
        if source == "residents":
            raise BadFileError(str(path), "file not found: residents is required", None)
        if source != OPT_OUTS_SOURCE:
            log.warning("%s not found: treating %s as empty", path, source)
        return pl.LazyFrame(schema=schema)
    try:
        found = pl.read_parquet_schema(path)
    except Exception as exc:
        raise BadFileError(str(path), f"not a readable parquet file ({exc.__class__.__name__})", None) from exc
    for column, dtype in schema.items():
        if column not in found:
            raise BadFileError(str(path), "column missing from clean data", column)
        if found[column] != dtype and found[column] != pl.Null:
            raise BadFileError(str(path), f"expected {dtype}, found {found[column]}", column)
    return pl.scan_parquet(path).select(list(schema)).cast(schema)  # type: ignore[arg-type]



# --- the population and "open at T": predicates shared by features, labels and this cohort -------------


def registered_deaths(deaths: pl.LazyFrame) -> pl.LazyFrame:
    """person_id and the first date of death registered for them (column :data:`REGISTERED_DEATH`)."""
    return deaths.group_by(PERSON).agg(pl.col("date_of_death").min().alias(REGISTERED_DEATH))


def death_date() -> pl.Expr:
    """A resident's date of death: the earlier of the residents record and a death registration."""
    return pl.min_horizontal("date_of_death", REGISTERED_DEATH)


def alive_and_registered_at(T: date, died: pl.Expr | None = None) -> pl.Expr:
    """Eligible at T: not dead before T, born and registered with a practice before T.

    The population of the feature table, the outcome labels and the lists; ``died`` defaults to
    :func:`death_date` on residents joined to :func:`registered_deaths`.
    """
    died = death_date() if died is None else died
    return (died.is_null() | (died >= T)) & (pl.col("registration_start") < T) & (pl.col("date_of_birth") < T)


def service_open_at(
    T: date, service_types: tuple[str, ...] | None = None, *, starting_on_t_is_open: bool
) -> pl.Expr:
    """A social care *service* (of ``service_types``; any when None) open at T: not ended before T.

    ``starting_on_t_is_open`` is the one choice callers make, and why they differ: a list excludes someone
    whose placement starts ON the scoring day (already known to services), while features use only history
    before T and an outcome window starts AT T, so for them a service starting on T is not yet open.
    """
    start = pl.col("event_start_date")
    started = start <= T if starting_on_t_is_open else start < T
    open_service = (
        (pl.col("event_type") == SERVICE_EVENT_TYPE)
        & started
        & (pl.col("event_end_date").is_null() | (pl.col("event_end_date") >= T))
    )
    if service_types is not None:
        open_service = open_service & pl.col("service_type").is_in(list(service_types))
    return open_service


def age_at(T: date) -> pl.Expr:
    """Completed years at T: the one reckoning of age (feature table, cohort's minimum age). A 29 February
    birthday passes on 1 March in a common year."""
    dob = pl.col("date_of_birth")
    birthday_passed = (dob.dt.month().cast(pl.Int32) * 100 + dob.dt.day().cast(pl.Int32)) <= (T.month * 100 + T.day)
    return (pl.lit(T.year) - dob.dt.year().cast(pl.Int32) - (~birthday_passed).cast(pl.Int32)).cast(pl.Int32)


def population_at(sources: CohortSources, T: date) -> pl.LazyFrame:
    """Residents alive at T (no death before T in residents or deaths), born and registered before T.

    Columns: person_id, locality ("Unknown" when blank), gp_practice, age.
    """
    return (
        sources.residents.join(registered_deaths(sources.deaths), on=PERSON, how="left")
        .filter(alive_and_registered_at(T))
        .select(
            PERSON,
            pl.col("locality").fill_null("Unknown"),
            "gp_practice",
            age_at(T).alias("age"),
        )
    )


def _open_services(sources: CohortSources, T: date, service_types: tuple[str, ...]) -> pl.LazyFrame:
    """People with a service of one of ``service_types`` open at T (started on or before T, not ended before T)."""
    return sources.social_care_events.filter(
        service_open_at(T, service_types, starting_on_t_is_open=True)
    ).select(PERSON)


def _gp_code_in_window(sources: CohortSources, T: date, codes: frozenset[str], days: int) -> pl.LazyFrame:
    """People with one of ``codes`` recorded in [T - days, T)."""
    return sources.gp_events.filter(
        (pl.col("event_date") < T)
        & (pl.col("event_date") >= T - timedelta(days=days))
        & pl.col("snomed_code").is_in(sorted(codes))
    ).select(PERSON)


# --- the rules, in order ----------------------------------------------------------------------------

RuleMatch = Callable[[CohortSources, date, CohortSettings, pl.LazyFrame], pl.LazyFrame]


def _under_min_age(sources: CohortSources, T: date, cohort: CohortSettings, people: pl.LazyFrame) -> pl.LazyFrame:
    return people.filter(pl.col("age") < cohort.min_age).select(PERSON)


def _inpatient(sources: CohortSources, T: date, cohort: CohortSettings, people: pl.LazyFrame) -> pl.LazyFrame:
    return sources.hospital_spells.filter(
        (pl.col("admission_date") < T) & (pl.col("discharge_date").is_null() | (pl.col("discharge_date") >= T))
    ).select(PERSON)


def _care_home(sources: CohortSources, T: date, cohort: CohortSettings, people: pl.LazyFrame) -> pl.LazyFrame:
    return pl.concat(
        [
            _open_services(sources, T, CARE_HOME_SERVICE_TYPES),
            _gp_code_in_window(sources, T, CARE_HOME_SNOMED.codes(), CARE_HOME_CODE_WINDOW_DAYS),
        ]
    )


def _open_service(sources: CohortSources, T: date, cohort: CohortSettings, people: pl.LazyFrame) -> pl.LazyFrame:
    return _open_services(sources, T, (*LONG_TERM_SERVICE_TYPES, REABLEMENT_SERVICE_TYPE))


def _last_year_of_life(
    sources: CohortSources, T: date, cohort: CohortSettings, people: pl.LazyFrame
) -> pl.LazyFrame:
    return _gp_code_in_window(sources, T, PALLIATIVE_CARE_SNOMED.codes(), END_OF_LIFE_CODE_WINDOW_DAYS)


def _opted_out(sources: CohortSources, T: date, cohort: CohortSettings, people: pl.LazyFrame) -> pl.LazyFrame:
    return sources.opt_outs.select(PERSON)


@dataclass(frozen=True)
class CohortRule:
    """One exclusion: its reason id (stored, filtered on), its words (funnel, docs) and its predicate."""

    reason: str
    label: str
    #: Plain English; ``{min_age}`` is filled from the settings.
    description: str
    matches: RuleMatch

    def describe(self, cohort: CohortSettings) -> str:
        return self.description.format(min_age=cohort.min_age)

    def title(self, cohort: CohortSettings) -> str:
        return self.label.format(min_age=cohort.min_age)


COHORT_RULES: tuple[CohortRule, ...] = (
    CohortRule(
        "under_min_age", "Under {min_age}",
        "Younger than {min_age} at T (completed years): the lists serve adult social care.",
        _under_min_age,
    ),
    CohortRule(
        "inpatient", "In hospital",
        "An inpatient at T: a hospital spell admitted before T with no discharge before T.",
        _inpatient,
    ),
    CohortRule(
        "care_home", "Lives in a care home",
        "Lives in a care home: a residential or nursing long-term service open at T (started on or before "
        "T, not ended before T), or a GP care-home code (NHSD CAREHOME_COD) recorded in the 12 months before T.",
        _care_home,
    ),
    CohortRule(
        "open_long_term_service_or_reablement", "Already has long-term care or reablement",
        "Already known to adult social care: any long-term support service (community, residential or "
        "nursing) or a reablement episode (Short Term Support: ST-Max) open at T, started on or before T.",
        _open_service,
    ),
    CohortRule(
        "last_year_of_life", "Palliative or end-of-life care",
        "Recorded as in the last year of life: a GP palliative or end-of-life care code (gm-sde "
        "palliative-and-end-of-life-care, from clinicalcodes.org res176) in the 12 months before T. These "
        "codes are under-recorded in practice, so this catches only people whose GP coded it.",
        _last_year_of_life,
    ),
    CohortRule(
        "opted_out", "Opted out",
        "Opted out of the use of their data (the delivery's opt_outs file): counted here, never shown.",
        _opted_out,
    ),
)
COHORT_REASONS: tuple[str, ...] = tuple(rule.reason for rule in COHORT_RULES)
RULES_BY_REASON: dict[str, CohortRule] = {rule.reason: rule for rule in COHORT_RULES}


def cohort_at_lazy(sources: CohortSources, T: date, cohort: CohortSettings) -> pl.LazyFrame:
    """The plan of :func:`cohort_at` (not yet run)."""
    people = population_at(sources, T)
    flagged = people
    for rule in COHORT_RULES:
        hits = rule.matches(sources, T, cohort, people).unique().with_columns(pl.lit(True).alias(f"_{rule.reason}"))
        flagged = flagged.join(hits, on=PERSON, how="left")
    reason: pl.Expr = pl.lit(None, dtype=pl.String)
    for rule in reversed(COHORT_RULES):  # built inside-out so the FIRST rule that holds wins
        reason = pl.when(pl.col(f"_{rule.reason}").fill_null(False)).then(pl.lit(rule.reason)).otherwise(reason)
    return flagged.select(PERSON, "locality", "gp_practice", "age", reason.alias(REASON_COLUMN))


def cohort_at(clean: Clean | CohortSources, T: date, cohort: CohortSettings,
              people: pl.Series | None = None) -> pl.DataFrame:
    """One row per resident alive and registered at T: person_id, locality, gp_practice, age, and
    ``exclusion_reason``, the first rule of :data:`COHORT_RULES` that holds (null = in the list cohort).

    ``people`` (person ids) restricts the rows to those people (:meth:`CohortSources.restricted_to`)."""
    sources = clean if isinstance(clean, CohortSources) else CohortSources.from_clean_dir(clean_for(clean, people))
    if people is not None:
        sources = sources.restricted_to(people)
    return cohort_at_lazy(sources, T, cohort).collect().sort(PERSON)


def opted_out_people(clean_dir: Path) -> list[str]:
    """Everyone in the delivery's opt-out file (absent = nobody): never scored, listed or shown (DESIGN §7),
    and removed from every stored week when the week is published.

    Read through :func:`scan_clean`, the one reader of ingest's output (as the cohort's own opt-out rule)."""
    found = scan_clean(Path(clean_dir), OPT_OUTS_SOURCE).select(PERSON).unique().sort(PERSON).collect()
    return found[PERSON].to_list()


def in_cohort(cohort_frame: pl.DataFrame) -> pl.DataFrame:
    """The people of a :func:`cohort_at` frame who may be listed."""
    return cohort_frame.filter(pl.col(REASON_COLUMN).is_null())


def funnel_counts(cohort_frame: pl.DataFrame) -> pl.DataFrame:
    """Raw (unsuppressed) funnel per locality: residents, one column per reason in order, in_cohort.

    Internal: publish it only through a small-number-suppressed view.
    """
    aggregations = [pl.len().alias("residents")]
    aggregations += [(pl.col(REASON_COLUMN) == reason).sum().alias(reason) for reason in COHORT_REASONS]
    aggregations.append(pl.col(REASON_COLUMN).is_null().sum().alias("in_cohort"))
    return cohort_frame.group_by("locality").agg(aggregations).sort("locality")
