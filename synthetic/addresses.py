"""Address history of one chunk: who lived where, and from when (the optional ``addresses`` source, DESIGN §3).

Three kinds of move, so that the extract's address snapshot differs from the address held at an earlier index
date in the ways real data does:

- house moves: a whole household (everyone then living at home) moves to a new UPRN in the same locality, at
  an annual rate that falls with the age of its oldest member at home (:data:`HOUSE_MOVE_RATES`);
- care-home moves: a person moves into a care home on the day their residential or nursing long-term service
  starts (the service rows the simulation already wrote) and back home if it ends while they are alive;
- a move after a death: a person aged 65+ left alone at home by a death in the household moves (downsizing,
  nearer family) with probability :data:`WIDOWED_MOVE_PROBABILITY` within :data:`WIDOWED_MOVE_WITHIN_DAYS`.
  A death alone already dissolves the household from that day (the dead are not living residents), which the
  features see through the date of death.

Why after the simulation, on its own random stream (seed, 6, chunk): the latent model, every other source and
their injected defects stay exactly as they were (moves are whole households or follow care events the model
already made, so the model's notion of who lives together is unchanged). Only the residents file's ``uprn``
and ``lsoa11`` become the address at the extract (or at death), as a real snapshot would be.

Dates are integer days since 1970-01-01, as in ``synthetic.population``.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

import numpy as np
import polars as pl

from expectations.contract import CARE_HOME_SERVICE_TYPES, SERVICE_EVENT_TYPE
from synthetic.population import Population

#: Annual probability that a household moves, by the age of its oldest member living at home (lower bounds).
#: Calibrated to the English Housing Survey 2021-22 household moves fact sheet (DLUHC, July 2023): 22% of
#: households had lived in their home under 3 years (about 8% a year); among owner occupiers 24% of households
#: with a reference person aged 16-54 against 7% aged 55+ (about 9% and 2.4% a year); private renters, mostly
#: younger, move far more (50% under 3 years). The split into these four bands is our assumption, chosen so
#: the generated total is about 8% of households a year.
HOUSE_MOVE_RATES: tuple[tuple[int, float], ...] = ((0, 0.16), (35, 0.08), (55, 0.03), (75, 0.025))
#: Assumption (no published English rate found): a person aged 65+ left living alone by a death in the household
#: moves within two years with this probability.
WIDOWED_MOVE_PROBABILITY = 0.12
WIDOWED_MOVE_MIN_AGE = 65
WIDOWED_MOVE_WITHIN_DAYS = 730
#: About 14,600 registered care homes with about 455,000 beds in England (CQC care directory, 2023): about 31
#: beds per home and one home per 3,900 residents. Approximate; used only to size the synthetic care homes.
RESIDENTS_PER_CARE_HOME = 3_900
#: Share of house moves to an area of similar deprivation (IMD decile within one); the rest go anywhere in the
#: locality. An assumption: most moves in England are short and to similar areas.
SIMILAR_AREA_SHARE = 0.7
HOUSE_MOVE_UPRN_BASE = 200_000_000_000
CARE_HOME_UPRN_BASE = 300_000_000_000
MOVE_KINDS = ("house_move", "after_bereavement", "care_home", "care_home_exit")
NEVER = 10**9  # a day after everything (alive at the extract, stay still open)


def house_move_rate(oldest_age: float) -> float:
    """Annual move probability for a household whose oldest member at home is ``oldest_age`` years old."""
    return next(value for low, value in reversed(HOUSE_MOVE_RATES) if oldest_age >= low)


@dataclass(frozen=True)
class Places:
    """Per locality: its LSOAs with their IMD deciles, and its care homes (uprn, lsoa), the same in every chunk."""

    lsoas: dict[str, np.ndarray]
    deciles: dict[str, np.ndarray]
    care_homes: dict[str, list[tuple[str, str]]]


_PLACES: dict[tuple, Places] = {}


def places(pop: Population, seed: int) -> Places:
    """The county's places, derived once per population (every chunk must agree on the care homes)."""
    key = (len(pop), seed, pop.nhs[0], pop.lsoa[0], pop.lsoa[-1])
    if key not in _PLACES:
        first = np.flatnonzero(np.diff(pop.household, prepend=-1) != 0)
        frame = pl.DataFrame({"locality": pop.locality[first].tolist(), "lsoa": pop.lsoa[first].tolist(),
                              "imd": pop.imd[first]}).unique().sort("locality", "lsoa")
        lsoas, deciles, homes = {}, {}, {}
        for number, (locality, part) in enumerate(frame.group_by("locality", maintain_order=True)):
            name = str(locality[0])
            lsoas[name] = part["lsoa"].to_numpy()
            deciles[name] = part["imd"].to_numpy()
            people = int((pop.locality == name).sum())
            count = max(1, round(people / RESIDENTS_PER_CARE_HOME))
            where = np.random.default_rng([seed, 7, number]).integers(0, len(lsoas[name]), count)
            homes[name] = [(str(CARE_HOME_UPRN_BASE + number * 1_000_000 + k), str(lsoas[name][w]))
                           for k, w in enumerate(where)]
        _PLACES.clear()  # one population at a time: a process never needs two
        _PLACES[key] = Places(lsoas, deciles, homes)
    return _PLACES[key]


@dataclass
class ChunkAddresses:
    """What :func:`address_history` returns: the source rows, the snapshot, and the moves (truth)."""

    addresses: pl.DataFrame  # the contract's addresses source (nhs_number, uprn, lsoa11, from_date, to_date)
    current_uprn: np.ndarray  # per person: address at the extract (or at death), for the residents file
    current_lsoa: np.ndarray
    moves: pl.DataFrame  # nhs_number, move_date, kind, from_uprn, to_uprn


def _care_home_stays(sc: pl.DataFrame, nhs: np.ndarray) -> dict[int, list[tuple[int, int]]]:
    """Per person (index in the chunk): merged residential/nursing service periods [start, end) in days."""
    index = {n: i for i, n in enumerate(nhs.tolist())}
    rows = (
        sc.filter((pl.col("event_type") == SERVICE_EVENT_TYPE) & pl.col("service_type").is_in(CARE_HOME_SERVICE_TYPES))
        .select("nhs_number", pl.col("event_start_date").cast(pl.Int64).alias("start"),
                pl.col("event_end_date").cast(pl.Int64).fill_null(NEVER).alias("end"))
        .sort("nhs_number", "start")
    )
    stays: dict[int, list[tuple[int, int]]] = {}
    for person, start, end in rows.iter_rows():
        merged = stays.setdefault(index[person], [])
        if merged and start <= merged[-1][1]:  # contiguous or overlapping (residential -> nursing): one stay
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return stays


def address_history(pop: Population, lo: int, hi: int, seed: int, chunk: int, grid_start: int, end_day: int,
                    death_day: np.ndarray, sc: pl.DataFrame) -> ChunkAddresses:
    """Every person's address periods for residents ``lo:hi`` (whole households), from their registration.

    ``death_day`` is in days since 1970 (``NEVER`` if alive at the extract); ``sc`` is the chunk's written
    social care table, whose residential and nursing services are the care-home stays.
    """
    rng = np.random.default_rng([seed, 6, chunk])
    place = places(pop, seed)
    nhs = pop.nhs[lo:hi]
    n = hi - lo
    hh_global = pop.household[lo:hi]
    starts = np.flatnonzero(np.diff(hh_global, prepend=-1) != 0)
    ends = np.append(starts[1:], n)
    # plain Python values: the loops below read them one at a time
    dob, reg = pop.dob[lo:hi].tolist(), pop.reg[lo:hi].tolist()
    death_day = death_day.tolist()
    locality = pop.locality[lo:hi]
    stays = _care_home_stays(sc, nhs)
    home_of = {i: place.care_homes[locality[i]][int(rng.integers(0, len(place.care_homes[locality[i]])))]
               for i in stays}

    def in_care_home(i: int, day: int) -> bool:
        return any(s <= day < e for s, e in stays.get(i, ()))

    def at_home(i: int, day: int) -> bool:
        """Living at the household's address on ``day``: registered before it, alive, not in a care home."""
        return reg[i] < day < death_day[i] and not in_care_home(i, day)

    # Household moves: one draw per household and simulated year, at the rate of the oldest member at home.
    n_years = -(-(end_day - grid_start) // 365)
    draws = rng.random((len(starts), n_years))
    offsets = rng.random((len(starts), n_years))
    widowed_draws = rng.random(n)
    moves: dict[int, list[tuple[int, str]]] = {h: [] for h in range(len(starts))}
    for h, (a, b) in enumerate(zip(starts, ends, strict=True)):
        for y in range(n_years):
            year_start = grid_start + 365 * y
            length = min(365, end_day - year_start)
            home = [i for i in range(a, b) if at_home(i, year_start)]
            if not home or length <= 0:
                continue
            oldest = max((year_start - dob[i]) / 365.25 for i in home)
            p = 1 - (1 - house_move_rate(oldest)) ** (length / 365)
            if draws[h, y] < p:
                moves[h].append((year_start + int(offsets[h, y] * length), "house_move"))
        # A death at home that leaves one person aged 65+ alone there: they may move on.
        for i in range(a, b):
            died = int(death_day[i])
            if died >= NEVER or died > end_day or not (reg[i] < died and not in_care_home(i, died)):
                continue
            left = [j for j in range(a, b) if j != i and at_home(j, died)]
            if len(left) == 1 and (died - dob[left[0]]) / 365.25 >= WIDOWED_MOVE_MIN_AGE \
                    and widowed_draws[i] < WIDOWED_MOVE_PROBABILITY:
                day = died + 1 + int(rng.integers(0, WIDOWED_MOVE_WITHIN_DAYS))
                if day <= end_day:
                    moves[h].append((day, "after_bereavement"))

    rows: list[tuple[str, str, str, int, int | None]] = []
    move_rows: list[tuple[str, int, str, str, str]] = []
    current_uprn = np.empty(n, dtype=object)
    current_lsoa = np.empty(n, dtype=object)
    for h, (a, b) in enumerate(zip(starts, ends, strict=True)):
        # The household's address timeline: (first day, uprn, lsoa, kind of the move that began it).
        name = locality[a]
        lsoas, deciles = place.lsoas[name], place.deciles[name]
        timeline = [(-NEVER, str(pop.uprn[lo + a]), str(pop.lsoa[lo + a]), "")]
        for number, (day, kind) in enumerate(sorted(moves[h])):
            if not any(at_home(i, day) for i in range(a, b)):
                continue  # nobody left at home to move
            current = timeline[-1][2]
            similar = np.flatnonzero(np.abs(deciles - deciles[lsoas == current][0]) <= 1) \
                if current in lsoas else np.arange(len(lsoas))
            pool = similar if rng.random() < SIMILAR_AREA_SHARE and len(similar) else np.arange(len(lsoas))
            lsoa = str(lsoas[pool[int(rng.integers(0, len(pool)))]])
            timeline.append((day, str(HOUSE_MOVE_UPRN_BASE + int(hh_global[a]) * 100 + number), lsoa, kind))
        days = [t[0] for t in timeline]
        for i in range(a, b):
            stop = min(int(death_day[i]), end_day + 1)
            breaks = {int(reg[i])}
            breaks |= {d for d in days if reg[i] < d < stop}
            for s, e in stays.get(i, ()):
                breaks |= {x for x in (s, e) if reg[i] < x < stop}
            periods: list[list] = []
            for day in sorted(breaks):
                if in_care_home(i, day):
                    uprn, lsoa = home_of[i]
                    kind = "care_home"
                else:
                    _, uprn, lsoa, kind = timeline[bisect.bisect_right(days, day) - 1]
                    if periods and periods[-1][1] == home_of.get(i, ("",))[0]:
                        kind = "care_home_exit"
                if periods and periods[-1][1] == uprn:
                    continue
                if periods:
                    periods[-1][4] = day
                    move_rows.append((str(nhs[i]), day, kind, periods[-1][1], uprn))
                periods.append([str(nhs[i]), uprn, lsoa, day, None])
            rows.extend(tuple(p) for p in periods)
            current_uprn[i], current_lsoa[i] = periods[-1][1], periods[-1][2]

    addresses = pl.DataFrame(rows, schema={"nhs_number": pl.String, "uprn": pl.String, "lsoa11": pl.String,
                                           "from_date": pl.Int32, "to_date": pl.Int32}, orient="row")
    addresses = addresses.with_columns(pl.col("from_date").cast(pl.Date), pl.col("to_date").cast(pl.Date))
    moves_frame = pl.DataFrame(move_rows, schema={"nhs_number": pl.String, "move_date": pl.Int32, "kind": pl.String,
                                                  "from_uprn": pl.String, "to_uprn": pl.String}, orient="row")
    return ChunkAddresses(addresses, current_uprn, current_lsoa,
                          moves_frame.with_columns(pl.col("move_date").cast(pl.Date)))
