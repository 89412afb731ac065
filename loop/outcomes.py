"""Outcome follow-up of everyone ever listed, and ASCOF 2B (DESIGN §9).

Each weekly run follows every person on a published list (``risk_lists``) or with a recorded action:
emergency admission, care escalation and death at 91 days, 6 months and 12 months after the Monday of the
listing week, once that window has closed in the data (window end <= the last date in the delivery).
The definitions are those of the model labels (models/labels.py, one declaration): only the window differs.
A closed window is final, so each (person, week, window) is computed once; people who leave the area are
followed as far as the delivery records them (the contract has no de-registration date).

ASCOF 2B(1): of people aged 65+ discharged from hospital into reablement (a reablement service starting
within ``REABLEMENT_AFTER_DISCHARGE_DAYS`` of discharge), the share still at home 91 days after discharge
(alive, and no residential or nursing care started in between).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import polars as pl
import sqlalchemy as sa

from expectations.contract import CARE_HOME_SERVICE_TYPES, REABLEMENT_SERVICE_TYPE
from upstream.disclosure import show_count, show_suppressed, suppress_count
from upstream.settings import Settings
from upstream.store import actions, get_engine, listing_outcomes

#: window name -> length (the 12-month window is the model's label window)
WINDOWS: dict[str, timedelta] = {"91d": timedelta(days=91), "6m": timedelta(days=182), "12m": timedelta(days=365)}
OUTCOMES = ("emergency_admission", "care_escalation", "death")
ASCOF_MIN_AGE = 65
ASCOF_DAYS = 91
REABLEMENT_AFTER_DISCHARGE_DAYS = 7


def listings(settings: Settings) -> pl.DataFrame:
    """``person_id, week, locality``: first listing per person and week, from published lists and actions."""
    from pipelines.score_history import published_listings  # the one path to score history

    engine = get_engine(settings.db_url)
    listed = published_listings(engine)
    with engine.connect() as conn:
        acted = conn.execute(sa.select(actions.c.person_id, actions.c.week, actions.c.locality)).all()
    schema = {"person_id": pl.String, "week": pl.String, "locality": pl.String}
    frame = pl.concat([listed, pl.DataFrame(acted, schema=schema, orient="row")])
    return frame.with_columns(pl.col("locality").fill_null("Unknown")).unique(["person_id", "week"], keep="first")


def outcomes_for_week(clean_dir: Path, people: pl.DataFrame, t: date, window: timedelta) -> pl.DataFrame:
    """Outcomes of ``people`` (person_id, ...) in ``[t, t + window)``; people not alive and registered at t
    drop out (they cannot have been validly listed that week)."""
    from models.labels import build_labels, eligible_people

    labels = build_labels(clean_dir, t, window)
    death = (eligible_people(clean_dir, t).with_columns(
        (pl.col("_death").is_not_null() & (pl.col("_death") < t + window)).alias("death"))
        .select("person_id", "death").collect())
    return (people.join(labels, on="person_id", how="inner").join(death, on="person_id", how="inner")
            .select(*people.columns, *OUTCOMES))


#: The clean sources the labels read (models/labels.py): the follow-up narrows these to the people it follows.
LABEL_SOURCES = ("residents", "deaths", "hospital_spells", "social_care_events")


def followed_only(clean_dir: Path, person_ids: pl.DataFrame, out_dir: Path) -> Path:
    """The label sources cut down to ``person_ids`` (written to ``out_dir``, returned).

    Why: a year of weekly lists is ~150 (week, window) pairs, and each pair's labels scan every source for
    the whole population; listed people are a few percent of it. A person's labels read only their own rows,
    so they are the same from the narrowed sources (tested)."""
    ids = person_ids.select("person_id").unique().lazy()
    for source in LABEL_SOURCES:
        path = Path(clean_dir) / f"{source}.parquet"
        if path.exists():
            pl.scan_parquet(path).join(ids, on="person_id", how="semi").sink_parquet(out_dir / path.name)
    return out_dir


@dataclass
class FollowUpResult:
    listings: int
    new_rows: int
    pending: int  # (listing, window) pairs whose window has not closed yet


def follow_up(clean_dir: Path, settings: Settings, data_end: date | None = None) -> FollowUpResult:
    """Compute and store every closed, not yet stored window for every listing. One transaction."""
    result, new = outcomes_due(clean_dir, settings, data_end)
    store_outcomes(settings, new)
    return result


def outcomes_due(clean_dir: Path, settings: Settings, data_end: date | None = None) -> tuple[FollowUpResult, pl.DataFrame]:
    """Every closed, not yet stored window for every listing, computed but not stored: on a cluster this runs
    on a worker (it reads the store and the clean delivery) and the flow process stores the rows."""
    from loop.actions import week_monday
    from models.labels import data_end as last_date

    end = data_end or last_date(clean_dir)
    people = listings(settings)
    if people.is_empty():
        return FollowUpResult(0, 0, 0), pl.DataFrame()
    engine = get_engine(settings.db_url)
    with engine.connect() as conn:
        done = pl.DataFrame(conn.execute(sa.select(listing_outcomes.c.person_id, listing_outcomes.c.week,
                                                   listing_outcomes.c.window)).all(),
                            schema={"person_id": pl.String, "week": pl.String, "window": pl.String}, orient="row")
    pending = 0
    # split once (not one filter per week and window: a year of lists is ~150 week x window pairs)
    done_by = {key: part.select("person_id") for key, part in done.partition_by(["week", "window"], as_dict=True).items()}
    todo: list[tuple[date, timedelta, str, pl.DataFrame]] = []
    for (week,), here in sorted(people.partition_by("week", as_dict=True).items()):
        t = week_monday(week)
        for name, length in WINDOWS.items():
            if t + length > end:
                pending += len(here)
                continue
            stored = done_by.get((week, name))
            left = here if stored is None else here.join(stored, on="person_id", how="anti")
            if not left.is_empty():
                todo.append((t, length, name, left))
    rows: list[pl.DataFrame] = []
    if todo:
        settings.home.mkdir(parents=True, exist_ok=True)
        # inside the home, never the system temp dir: these are person-level (pseudonymised) rows
        with tempfile.TemporaryDirectory(prefix="follow-up-", dir=settings.home) as tmp:
            followed = pl.concat([left.select("person_id") for *_, left in todo]).unique()
            narrow = followed_only(clean_dir, followed, Path(tmp))
            rows = [outcomes_for_week(narrow, left, t, length).with_columns(pl.lit(name).alias("window"))
                    for t, length, name, left in todo]
    new = pl.concat(rows) if rows else pl.DataFrame()
    return FollowUpResult(listings=len(people), new_rows=len(new), pending=pending), new


def store_outcomes(settings: Settings, new: pl.DataFrame) -> None:
    """Store computed outcome rows (``outcomes_due``) in one transaction."""
    if not len(new):
        return
    now = datetime.now(UTC)
    records = [dict(r, computed_at=now) for r in new.iter_rows(named=True)]
    with get_engine(settings.db_url).begin() as conn:
        for start in range(0, len(records), 5000):
            conn.execute(listing_outcomes.insert(), records[start:start + 5000])




def outcome_summary(settings: Settings, localities: list[str] | None = None) -> list[dict[str, str]]:
    """Per locality, listing week and window: people followed and with each outcome, small numbers suppressed."""
    t = listing_outcomes
    q = sa.select(t.c.locality, t.c.week, t.c.window, sa.func.count().label("followed"),
                  *[sa.func.sum(sa.cast(t.c[o], sa.Integer)).label(o) for o in OUTCOMES]
                  ).group_by(t.c.locality, t.c.week, t.c.window).order_by(t.c.locality, t.c.week, t.c.window)
    if localities is not None:
        q = q.where(t.c.locality.in_(localities))
    with get_engine(settings.db_url).connect() as conn:
        rows = conn.execute(q).all()
    return [{"locality": r.locality, "week": r.week, "window": r.window, "followed": show_count(r.followed),
             **{o: show_count(int(getattr(r, o) or 0)) for o in OUTCOMES}} for r in rows]


def write_ascof_2b(clean_dir: Path, settings: Settings) -> Path:
    """The suppressed ASCOF 2B table as ``<home>/outcomes/ascof_2b.csv`` (aggregates only)."""
    out = settings.home / "outcomes"
    out.mkdir(parents=True, exist_ok=True)
    ascof_2b(clean_dir).write_csv(out / "ascof_2b.csv")
    return out / "ascof_2b.csv"


def ascof_2b(clean_dir: Path, data_end: date | None = None) -> pl.DataFrame:
    """ASCOF 2B(1) per locality and discharge month (only discharges whose 91 days have passed).

    Columns: locality, month, discharged_into_reablement, still_at_home, proportion (counts suppressed,
    proportion withheld when either count is suppressed).
    """
    from models.labels import data_end as last_date

    clean_dir = Path(clean_dir)
    end = data_end or last_date(clean_dir)
    residents = pl.scan_parquet(clean_dir / "residents.parquet").select("person_id", "date_of_birth", "locality")
    # a death in either the residents file or the death registrations counts (as in models/labels.py)
    deaths = (pl.concat([pl.scan_parquet(clean_dir / "residents.parquet").select("person_id", "date_of_death"),
                         pl.scan_parquet(clean_dir / "deaths.parquet").select("person_id", "date_of_death")])
              .group_by("person_id").agg(pl.col("date_of_death").min().alias("_dod")))
    sc = pl.scan_parquet(clean_dir / "social_care_events.parquet").filter(pl.col("event_type") == "Service")
    reab = sc.filter(pl.col("service_type") == REABLEMENT_SERVICE_TYPE).select(
        "person_id", pl.col("event_start_date").alias("reab_start"))
    homes = sc.filter(pl.col("service_type").is_in(CARE_HOME_SERVICE_TYPES)).select(
        "person_id", pl.col("event_start_date").alias("home_start"))
    discharges = (pl.scan_parquet(clean_dir / "hospital_spells.parquet")
                  .filter(pl.col("discharge_date").is_not_null())
                  .select("person_id", "spell_id", "discharge_date"))
    into_reab = (discharges.join(reab, on="person_id")
                 .filter((pl.col("reab_start") >= pl.col("discharge_date"))
                         & (pl.col("reab_start") <= pl.col("discharge_date") + timedelta(days=REABLEMENT_AFTER_DISCHARGE_DAYS)))
                 .select("person_id", "spell_id", "discharge_date").unique()
                 .join(residents, on="person_id")
                 .filter(((pl.col("discharge_date") - pl.col("date_of_birth")).dt.total_days() / 365.25) >= ASCOF_MIN_AGE)
                 .filter(pl.col("discharge_date") + timedelta(days=ASCOF_DAYS) <= end))
    moved = (into_reab.join(homes, on="person_id")
             .filter((pl.col("home_start") >= pl.col("discharge_date"))
                     & (pl.col("home_start") <= pl.col("discharge_date") + timedelta(days=ASCOF_DAYS)))
             .select("spell_id").unique().with_columns(pl.lit(True).alias("_moved")))
    per_spell = (into_reab.join(deaths, on="person_id", how="left").join(moved, on="spell_id", how="left")
                 .with_columns(((pl.col("_dod").is_null() | (pl.col("_dod") > pl.col("discharge_date")
                                                           + timedelta(days=ASCOF_DAYS)))
                                & pl.col("_moved").is_null()).alias("at_home"),
                               pl.col("discharge_date").dt.strftime("%Y-%m").alias("month"),
                               pl.col("locality").fill_null("Unknown"))
                 .collect())
    agg = per_spell.group_by("locality", "month").agg(pl.len().alias("n"), pl.col("at_home").sum().alias("k"))
    out = []
    for r in agg.sort("locality", "month").iter_rows(named=True):
        n, k = suppress_count(r["n"]), suppress_count(int(r["k"]))
        out.append({"locality": r["locality"], "month": r["month"],
                    "discharged_into_reablement": show_suppressed(n),
                    "still_at_home": show_suppressed(k),
                    # from the rounded counts: an exact proportion would give the suppressed detail back
                    "proportion": None if not n or k is None else round(k / n, 3)})
    return pl.DataFrame(out, schema={"locality": pl.String, "month": pl.String,
                                     "discharged_into_reablement": pl.String, "still_at_home": pl.String,
                                     "proportion": pl.Float64})
