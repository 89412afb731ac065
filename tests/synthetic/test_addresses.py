"""The generator's address history: consistent periods, care-home moves that follow the care-home services,
and house moves at the configured rates (within noise), all counted from the written files.

Uses the shared 12k-resident, 6-year delivery (tests/synthetic/conftest.py); only rows the generator did not
corrupt are read (``valid``).
"""

from __future__ import annotations

import json
import math
from datetime import date, timedelta

import polars as pl

from expectations.contract import CARE_HOME_SERVICE_TYPES
from synthetic.addresses import HOUSE_MOVE_RATES
from tests.synthetic.checks import _england_lsoa11
from tests.synthetic.test_realism import valid


def _periods(out) -> pl.DataFrame:
    return valid(out, "addresses").sort("nhs_number", "from_date")


def test_every_persons_address_periods_are_consistent(delivery):
    out, _ = delivery
    periods = _periods(out)
    residents = valid(out, "residents")
    assert set(periods["nhs_number"]) == set(residents["nhs_number"])  # everyone has an address history
    chained = periods.with_columns(
        pl.col("from_date").shift(-1).over("nhs_number").alias("next_from"),
        pl.col("from_date").rank("ordinal").over("nhs_number").alias("k"),
        pl.len().over("nhs_number").alias("n"),
    )
    last = chained.filter(pl.col("k") == pl.col("n"))
    earlier = chained.filter(pl.col("k") < pl.col("n"))
    assert last["to_date"].null_count() == last.height  # exactly one current address: the last
    assert earlier["to_date"].null_count() == 0
    assert (earlier["to_date"] == earlier["next_from"]).all()  # moved out the day the next address begins
    assert (chained.filter(pl.col("to_date").is_not_null()).select(pl.col("to_date") > pl.col("from_date"))
            .to_series().all())
    assert set(periods["lsoa11"]) <= _england_lsoa11()
    people = residents.join(chained.filter(pl.col("k") == 1).select("nhs_number", pl.col("from_date").alias("first")),
                            on="nhs_number").join(
        last.select("nhs_number", pl.col("uprn").alias("last_uprn"), pl.col("lsoa11").alias("last_lsoa")),
        on="nhs_number")
    assert (people["first"] == people["registration_start"]).all()  # known from registration
    # the residents file is a snapshot: the address held at the extract (or at death)
    assert (people["uprn"] == people["last_uprn"]).all() and (people["lsoa11"] == people["last_lsoa"]).all()
    moved_after_death = periods.join(residents.select("nhs_number", "date_of_death"), on="nhs_number").filter(
        pl.col("date_of_death").is_not_null() & (pl.col("from_date") >= pl.col("date_of_death")))
    assert moved_after_death.is_empty()


def test_care_home_moves_follow_the_care_home_services(delivery):
    out, _ = delivery
    periods = _periods(out)
    residents = valid(out, "residents").select("nhs_number", "registration_start", "date_of_death")
    moves = pl.read_parquet(out / "_truth" / "moves.parquet")
    homes = set(moves.filter(pl.col("kind") == "care_home")["to_uprn"])
    assert homes and homes.isdisjoint(set(moves.filter(pl.col("kind") == "house_move")["to_uprn"]))
    services = valid(out, "social_care_events").filter(
        (pl.col("event_type") == "Service") & pl.col("service_type").is_in(CARE_HOME_SERVICE_TYPES)
    ).join(residents, on="nhs_number")
    # a placement that began after registration and before death: the person lives in a care home from that day
    started = services.filter((pl.col("event_start_date") > pl.col("registration_start"))
                              & (pl.col("date_of_death").is_null()
                                 | (pl.col("event_start_date") < pl.col("date_of_death"))))
    assert started.height > 20
    at_start = started.join(periods, on="nhs_number").filter(
        (pl.col("from_date") <= pl.col("event_start_date"))
        & (pl.col("to_date").is_null() | (pl.col("to_date") > pl.col("event_start_date"))))
    assert at_start.height == started.height
    assert set(at_start["uprn"]) <= homes
    # and nobody lives in a care home without a residential or nursing service open when they move in
    in_home = periods.filter(pl.col("uprn").is_in(sorted(homes)))
    covered = in_home.join(services, on="nhs_number").filter(
        (pl.col("event_start_date") <= pl.col("from_date"))
        & (pl.col("event_end_date").is_null() | (pl.col("event_end_date") > pl.col("from_date"))))
    assert covered.select("nhs_number", "from_date").n_unique() == in_home.height


def _rate(age: float) -> float:
    return next(rate for low, rate in reversed(HOUSE_MOVE_RATES) if age >= low)


def test_households_move_at_the_configured_rates(delivery):
    """Households whose members all lived at home throughout (registered before the window, alive at the
    extract, never in a care home): their moves against the rate of their oldest member's age band, integrated
    month by month over the window. Each band within 4 Poisson standard deviations (+2)."""
    out, _ = delivery
    meta = json.loads((out / "_delivery.json").read_text())
    extract = date.fromisoformat(meta["extract_date"])
    window_start = extract - timedelta(days=365 * meta["years"])
    periods = _periods(out)
    residents = valid(out, "residents")
    care = set(pl.read_parquet(out / "_truth" / "moves.parquet").filter(pl.col("kind") == "care_home")["to_uprn"])
    first = periods.group_by("nhs_number").agg(pl.col("uprn").first().alias("home"),
                                               pl.col("uprn").is_in(sorted(care)).any().alias("care"),
                                               pl.col("from_date").slice(1).alias("moves"))
    people = residents.join(first, on="nhs_number")
    households = people.group_by("home").agg(
        ((pl.col("registration_start") < window_start) & pl.col("date_of_death").is_null() & ~pl.col("care"))
        .all().alias("stable"),
        pl.col("date_of_birth").min().alias("oldest_born"),
        pl.col("moves").list.explode(keep_nulls=False, empty_as_null=False).unique().alias("moves"),
    ).filter(pl.col("stable"))
    assert households.height > 2000
    observed: dict[float, int] = {}
    expected: dict[float, float] = {}
    for born, moves in households.select("oldest_born", "moves").iter_rows():
        day = window_start
        while day < extract:
            step = min(30, (extract - day).days)
            rate = _rate((day - born).days / 365.25)
            expected[rate] = expected.get(rate, 0.0) + rate * step / 365
            day += timedelta(days=step)
        for moved in moves:
            rate = _rate((moved - born).days / 365.25)
            observed[rate] = observed.get(rate, 0) + 1
    for rate, want in expected.items():
        got = observed.get(rate, 0)
        assert abs(got - want) <= 4 * math.sqrt(want) + 2, (rate, got, want)
    total_years = households.height * (extract - window_start).days / 365
    assert 0.04 <= sum(observed.values()) / total_years <= 0.12  # about 8% of households a year (EHS 2021-22)
