"""The resident population: households, ages, places, practices, registrations, NHS numbers.

Built up front for the whole population as flat numpy arrays (a few hundred MB at 1.9M), because
households, LSOAs and practices tie people together; the event simulation then runs chunk by chunk.
Dates are integer days since 1970-01-01 throughout, converted to dates only when files are written.
"""

from __future__ import annotations

import csv
import gzip
from dataclasses import dataclass
from datetime import date
from statistics import NormalDist

import numpy as np

from expectations.contract import ETHNIC_CATEGORIES
from features.codelists import CODELIST_DIR
from synthetic.simulate import frailty_model
from synthetic.worlds import DEFAULT, World

EPOCH = date(1970, 1, 1)
LOCALITIES = ("North", "South", "East", "West")
MEDWAY_LAD = "E06000035"
KENT_LADS = tuple(f"E07000{n}" for n in range(105, 117))
PEOPLE_PER_LSOA = 1700
PEOPLE_PER_PRACTICE = 6000

# Household types: (share of households). Ages are at the extract date.
_HH_TYPES = ("older_single", "older_couple", "adult_single", "adult_couple", "family", "shared")
# Generator 1.3: fewer older people living alone, more older couples (Census 2021: 30% of 65+ live alone,
# synthetic/reference/england.csv); widowhood during the simulation adds to those living alone.
_HH_SHARES_14 = np.array([0.115, 0.13, 0.160, 0.180, 0.310, 0.105])
# 65+ age bands and the share of each band's people who live alone (below). Generator 1.7: the band weights are
# no longer fixed numbers but follow the world's survivorship (OldAges), and ages within a band follow it
# too instead of being uniform; the oldest band runs to 105 (was 101).
_OLD_BANDS = np.array([65, 70, 75, 80, 85, 90])
_OLD_WIDTH = np.array([5, 5, 5, 5, 5, 16])
OLD_MAX_AGE = 105.0
#: The weights of generator 1.3-1.6, kept because the number of older singles (_SINGLES_KEPT) was calibrated
#: against them; 1.7 keeps the share alone in each band (_ALONE_BY_OLD_BAND) over its own band weights.
_OLD_WEIGHTS_16 = np.array([0.27, 0.26, 0.20, 0.13, 0.09, 0.05])
# Generator 1.4: older people who live alone are older than those in couples, as widowhood makes them. The
# share alone in each band rises with the cumulative death rate of partners from 65 (about 1 - 0.88 x
# exp(-cumulative hazard), English death rates by age); 1.3 gave singles and couples one age mix, so every
# older band lived alone more often each simulated year as couples were widowed, and nothing made up for it
# (85+: 25% to 41% in five years; bench/README.md, issue 12 session 3). Older singles now also continue the
# density of adult singles across 65 instead of doubling it there.
_ALONE_BY_OLD_BAND_14 = np.array([0.146, 0.205, 0.315, 0.466, 0.66, 0.86])
# Generator 1.5: fewer of the oldest live alone. 1.4's 85+ shares put about 70% of the household population aged
# 85+ alone at the extract date (63% of all people 85+), against 59% in Census 2011 (england.csv, living alone
# 85+). The shares still rise with age, as widowhood makes them: a dip at 85+ (0.42 after 0.466 at 80-84, tried)
# made 75-84 live alone less in the early simulated years than at the extract, and their admissions rose 4
# standard errors over six years. The 65-84 bands keep 1.4's numbers of single people, because their ages
# follow widowhood and moving them breaks stationarity too (65-74 admissions trended up in the alt world when
# singles were re-spread): the older-single households shrink by what 85+ loses, and older couples take the
# same number of people. The rest of the 85+ excess is widowhood at the generator's death rates at 85+.
_ALONE_BY_OLD_BAND_15 = np.array([0.146, 0.205, 0.315, 0.466, 0.56, 0.66])
# Generator 1.8: the share alone rises more slowly with age, as widowhood does at 1.8's death rates. The share
# drawn alone must rise with extract age at the rate couples are widowed (people are simulated from six years
# younger, couples intact); with 1.8's fewer deaths at 65-84 (England's, HMD 2019) 1.5's shares made the living
# alone at 65-74 fall from 0.236 to 0.201 over the six years and at 75-84 from 0.455 to 0.410, and rise at 85+
# (400,000 residents, latent model, both worlds), and alt's admissions at 65+ fell 3-4 standard errors at 280k.
# Set from the measured drift of each band (two rounds).
_ALONE_BY_OLD_BAND = np.array([0.146, 0.173, 0.255, 0.360, 0.43, 0.62])
_SINGLES_KEPT = (_ALONE_BY_OLD_BAND_15 * _OLD_WEIGHTS_16).sum() / (_ALONE_BY_OLD_BAND_14 * _OLD_WEIGHTS_16).sum()
_HH_SHARES_15 = _HH_SHARES_14 + np.array([-1.0, 0.5, 0, 0, 0, 0]) * _HH_SHARES_14[0] * (1 - _SINGLES_KEPT)
_HH_SHARES_15 = _HH_SHARES_15 / _HH_SHARES_15.sum()
#: Generator 1.7: older people per household drawn, relative to 1.6 (older-single households count one person,
#: older couples two). 1.6 had 15.4% of living residents aged 65+ at the extract date against England's 18.4%
#: (Census 2021, synthetic/reference/england.csv); with the survivorship shape more of the people drawn old die
#: during the window, so more are drawn. Measured at 60k and 280k (bench/README.md, issue 12 session 6).
OLD_PEOPLE_FACTOR = 1.20
#: Generator 1.7: yearly growth of the cohorts reaching old age. England's older population is not stationary:
#: people aged 65+ in England and Wales rose from 9.2 million (Census 2011) to 11.1 million (Census 2021; ONS,
#: Profile of the older population living in England and Wales in 2021), ln(11.1 / 9.2) / 10 = 0.0188 a year.
#: A population whose cohorts grow at rate r keeps a fixed age mix, l(x) exp(-r x) (a stable population), so
#: rates by age band still do not drift; with r = 0 (stationary) 85+ would be 14.7% of the 65+ for the default
#: world's death rates against England's 13.6% (2.5% of 18.4%, synthetic/reference/england.csv), 11.4% with it.
OLD_COHORT_GROWTH = 0.0188


def survivorship(age: np.ndarray, m70: float, gompertz: float) -> np.ndarray:
    """l(x) from 50 under a Gompertz death rate m70 x exp(gompertz x (age - 70)): the world's old-age life table."""
    return np.exp(-(m70 / gompertz) * (np.exp(gompertz * (age - 70)) - np.exp(gompertz * (50 - 70))))


@dataclass(frozen=True)
class OldAges:
    """Ages at the extract date of people drawn aged 65+, shaped so the older population stays stationary.

    Why: people are drawn with their age at the extract date and simulated from the window start, ``years``
    earlier. For the age mix of the living to be the same every simulated year, the density of extract age a
    must be that of a stable population at the window start's age, l(a - years) exp(-r (a - years)): cohorts
    growing at r = OLD_COHORT_GROWTH a year, l(x)/l(x - years) of those drawn surviving to the extract. 1.3-1.6
    drew fixed band weights with ages uniform in each band: steps in density at 75, 80, 85 and 90 moved down
    through the age bands over the simulated years, so the mix of ages inside a band changed (the 65-74 drifts
    of 1.6: deaths +2.6 z), and the oldest were too few (85+ 1.4% of living residents against England's 2.2-2.5%).
    """

    grid: np.ndarray  # ages 65..105
    years: float  # from the window start to the extract date
    cdf_by_band: tuple[np.ndarray, ...]
    weights: np.ndarray  # share of old people in each of _OLD_BANDS
    first_band_density_at_65: float  # density (per year) at 65 of an age drawn in the 65-70 band

    @classmethod
    def for_window(cls, years: float, m70: float, gompertz: float) -> OldAges:
        grid = np.linspace(65.0, OLD_MAX_AGE, 4001)
        density = survivorship(grid - years, m70, gompertz) * np.exp(-OLD_COHORT_GROWTH * (grid - years))
        weights, cdfs = [], []
        for lo, width in zip(_OLD_BANDS, _OLD_WIDTH, strict=True):
            inside = (grid >= lo) & (grid <= lo + width)
            mass = np.cumsum(density[inside])
            weights.append(mass[-1])
            cdfs.append(mass / mass[-1])
        w = np.array(weights)
        first = (grid >= _OLD_BANDS[0]) & (grid <= _OLD_BANDS[0] + _OLD_WIDTH[0])
        at65 = float(density[0] / _trapezoid(density[first], grid[first]))
        return cls(grid=grid, years=years, cdf_by_band=tuple(cdfs), weights=w / w.sum(),
                   first_band_density_at_65=at65)

    def draw(self, rng: np.random.Generator, n: int, weights: np.ndarray | None = None) -> np.ndarray:
        band = rng.choice(len(_OLD_BANDS), n, p=self.weights if weights is None else weights)
        out = np.empty(n)
        for b in np.unique(band):
            lo, width = _OLD_BANDS[b], _OLD_WIDTH[b]
            inside = self.grid[(self.grid >= lo) & (self.grid <= lo + width)]
            pick = band == b
            out[pick] = np.interp(rng.random(int(pick.sum())), self.cdf_by_band[b], inside)
        return out


#: Generator 1.8: adults aged 18-64 per household drawn, relative to 1.7, and families with children. 1.7 had
#: 0.241 of living residents aged 0-17 and 0.586 aged 18-64 on the extract date at 280k (England: 0-14 0.174,
#: synthetic/reference/england.csv, so about 0.21 at 0-17; 18-64 about 0.60, Census 2021), and its 0-14 share was
#: 1.23 x England's: more adults in couples and singles, fewer families. Measured at 60k and 280k (bench/README.md,
#: issue 12 session 7). Families 0.95 (0.85 first) and shared households larger (sizes 2/3/4 at 0.2/0.5/0.3, 1.3-1.7
#: 0.4/0.4/0.2) and more common when young: with 0.85 two-person households were 45% at 12k (England 34%, Census 2021).
ADULT_PEOPLE_FACTOR = 1.07
FAMILY_FACTOR = 0.95
#: Generator 1.8: the density of adults is higher at the ages of parents (England's is: more people are 30-55
#: than 20-29 or 60-64, Census 2021), by this much at most, with smooth edges (``_parent_bump``); without it the
#: parents of 1.7's number of children would be nearly everyone aged 35-45.
PARENT_AGES_EXTRA = 0.15
ADULT_MIN_AGE = 18.0
#: Extract age at which the older households' densities begin (population.OldAges).
OLD_MIN_AGE = 65.0
#: Adults per family (two parents in 78%) and children per family; members of a shared household and the chance
#: that one of them is an older person (drawn with OldAges): the household draw below uses the same numbers.
_FAMILY_TWO_PARENTS = 0.78
_FAMILY_KIDS, _FAMILY_KIDS_P = (1, 2, 3), (0.42, 0.42, 0.16)
_SHARED_SIZES, _SHARED_SIZES_P = (2, 3, 4), (0.2, 0.5, 0.3)
_SHARED_OLD_MEMBER = 0.4
#: Generator 1.8: the share of adults drawn alone rises by this much a year of extract age from 40 to 65 (where it
#: meets the older singles' share). People are simulated from six years younger and couples are widowed (or a
#: partner moves into care) as they go: with one share at every age the living alone at 45-64 rose from 0.135 to
#: 0.145 over the six years (400,000 residents, latent model, both worlds) and alt's 45-64 admissions, which
#: living alone drives, rose 4.7 standard errors at 280k.
_SINGLES_WIDOWED_A_YEAR = 0.002
#: Share of 18-year-olds who are neither alone nor in a family that live in a shared household (the rest are
#: couples); it falls smoothly to the older members' share by 40 (AdultAges).
_YOUNG_SHARING = 0.95
#: A mother's age at her eldest child's birth (England's mean age of mothers at first birth is about 29):
#: mean, spread and range. Generator 1.8 draws children first and mothers from them, so every child was born
#: when the mother was 18-45 and the children's ages are uniform (1.7 capped them at the mother's age - 18).
_MOTHER_AT_BIRTH_MEAN, _MOTHER_AT_BIRTH_SD, _MOTHER_AT_BIRTH_RANGE = 29.5, 6.5, (18.0, 45.0)


def _smoothstep(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    t = np.clip((x - lo) / (hi - lo), 0.0, 1.0)
    return t * t * (3 - 2 * t)


def _parent_bump(age: np.ndarray) -> np.ndarray:
    """1 at the ages of most parents (30-44), 0 below 22 and from 56, smooth in between."""
    return _smoothstep(age, 22.0, 30.0) * (1 - _smoothstep(age, 44.0, 56.0))


def _mothers_density(age: np.ndarray) -> np.ndarray:
    """Density of a family's mother's extract age: the eldest of its children (each uniform 0-18) plus her age at
    that birth (``_birth_age``), integrated numerically. Smooth, about 20-63, highest near 40."""
    x = np.linspace(0.0, 18.0, 721)
    eldest = sum(p * k * (x / 18.0) ** (k - 1) / 18.0 for k, p in zip(_FAMILY_KIDS, _FAMILY_KIDS_P, strict=True))
    lo, hi = _MOTHER_AT_BIRTH_RANGE
    z = (age[:, None] - x[None, :] - _MOTHER_AT_BIRTH_MEAN) / _MOTHER_AT_BIRTH_SD
    inside = (age[:, None] - x[None, :] >= lo) & (age[:, None] - x[None, :] <= hi)
    birth = np.where(inside, np.exp(-0.5 * z * z), 0.0)
    return ((eldest[None, :] * birth)[:, 1:] + (eldest[None, :] * birth)[:, :-1]).sum(axis=1) / 2 * (x[1] - x[0])


def _birth_age(rng: np.random.Generator) -> float:
    """A mother's age at her eldest child's birth: normal, truncated to the range (inverse CDF)."""
    unit = NormalDist()
    lo, hi = ((b - _MOTHER_AT_BIRTH_MEAN) / _MOTHER_AT_BIRTH_SD for b in _MOTHER_AT_BIRTH_RANGE)
    u = unit.cdf(lo) + rng.random() * (unit.cdf(hi) - unit.cdf(lo))
    return _MOTHER_AT_BIRTH_MEAN + _MOTHER_AT_BIRTH_SD * unit.inv_cdf(u)


@dataclass(frozen=True)
class AdultAges:
    """Extract ages of adults under 65 by household type, drawn so that every density is smooth and meets the
    older households' densities at 65 without a step.

    Why (generator 1.8): people are simulated from the window start, ``years`` younger than drawn, so every step
    in the density by extract age moves through the age bands over the simulated years and changes the mix of
    ages inside a band. 1.3-1.7 drew adults uniform over fixed ranges (parents 24-52, shared households 18-58,
    singles and couples to 65) and the older households from 65 at their own density: the density fell by a
    third at 52 and again at 58 and rose by 70% at 64-65, and the 45-64 rates drifted (deaths -3.1 z, alt
    emergency admissions -5.9 z at 280k; bench/README.md, issue 12 session 6).

    Here the total density of adults at extract age a is T65 exp(beta (65 - a)), a little higher at parents' ages
    (PARENT_AGES_EXTRA): T65 is the older households' density at 65 (singles, couples counted twice, older members
    of shared households) and beta is solved so the adults number ADULT_PEOPLE_FACTOR x 1.7's. Singles meet the
    older people's share alone at 65 (living alone does not step there) and are fewer at younger ages, by
    widowhood (_SINGLES_WIDOWED_A_YEAR). Members of shared households meet their older members' density at 65 and
    are more common when young. Mothers' ages follow from their children's (``_mothers_density``). Couples, whose
    partner is the anchor's age + N(2, 3) at every age, fill the rest, so the couple anchors' density at 65 equals
    the older couples'.
    """

    grid: np.ndarray  # extract ages 18..65
    density: dict[str, np.ndarray]  # anchor (or member) density on ``grid`` per type, people per household unit
    households: dict[str, float]  # households of each type per household unit

    @classmethod
    def for_old(cls, old: OldAges, old_single: float, old_couple: float, single_weights: np.ndarray,
                couple_weights: np.ndarray, shared: float, adults_target: float, families: float) -> AdultAges:
        grid = np.linspace(ADULT_MIN_AGE, OLD_MIN_AGE, 4701)
        at65 = old.first_band_density_at_65
        single65 = old_single * single_weights[0] * at65
        couple65 = old_couple * couple_weights[0] * at65
        mothers = _mothers_density(grid)
        mothers = families * mothers / _trapezoid(mothers, grid)
        family_adults = mothers * (1 + _FAMILY_TWO_PARENTS)
        members = float(np.dot(_SHARED_SIZES, _SHARED_SIZES_P)) - _SHARED_OLD_MEMBER
        young = 1 - _smoothstep(grid, ADULT_MIN_AGE, 40.0)
        # The number of shared households sets their older members' density at 65, which is part of the total
        # there, and follows from the adults left to share: a fixed point, found in a few rounds.
        n_shared = shared
        for _ in range(50):
            shared65 = n_shared * _SHARED_OLD_MEMBER * old.weights[0] * at65
            total65 = single65 + 2 * couple65 + shared65
            beta = _solve_growth(grid, adults_target / total65, 1 + PARENT_AGES_EXTRA * _parent_bump(grid))
            total = total65 * np.exp(beta * (OLD_MIN_AGE - grid)) * (1 + PARENT_AGES_EXTRA * _parent_bump(grid))
            single = total * (single65 / total65 - _SINGLES_WIDOWED_A_YEAR * (OLD_MIN_AGE - np.maximum(grid, 40.0)))
            rest = total - single - family_adults
            if rest.min() < 0:
                raise ValueError("singles and families do not fit under the total adult density")
            # The rest are couples and members of shared households. Sharing is most common when young
            # (students, flatmates) and at 65 meets the older members' density.
            share = shared65 / rest[-1] + (_YOUNG_SHARING - shared65 / rest[-1]) * young
            n_shared = _trapezoid(rest * share, grid) / members
        shared_members = rest * share
        couple = rest * (1 - share) / 2
        density = {"single": single, "couple": couple, "family": mothers, "shared": shared_members}
        households = {"single": _trapezoid(single, grid), "couple": _trapezoid(couple, grid), "family": families,
                      "shared": n_shared}
        return cls(grid=grid, density=density, households=households)

    def draw(self, rng: np.random.Generator, kind: str, n: int) -> np.ndarray:
        d = self.density[kind]
        cdf = np.concatenate([[0.0], np.cumsum((d[1:] + d[:-1]) / 2 * np.diff(self.grid))])
        return np.interp(rng.random(n) * cdf[-1], cdf, self.grid)


def _trapezoid(y: np.ndarray, x: np.ndarray) -> float:
    return float(((y[1:] + y[:-1]) / 2 * np.diff(x)).sum())


def _solve_growth(grid: np.ndarray, ratio: float, shape: np.ndarray) -> float:
    """beta with the integral of exp(beta (65 - a)) x shape over ``grid`` equal to ``ratio`` (bisection; the integral
    rises with beta)."""
    lo, hi = -0.2, 0.2
    for _ in range(100):
        mid = (lo + hi) / 2
        if _trapezoid(np.exp(mid * (OLD_MIN_AGE - grid)) * shape, grid) < ratio:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


@dataclass(frozen=True)
class HouseholdMix:
    """Household-type shares, the band weights of older singles and couples, and the adult age densities."""

    shares: np.ndarray
    single_weights: np.ndarray
    couple_weights: np.ndarray
    adults: AdultAges

    @classmethod
    def for_old_ages(cls, old: OldAges) -> HouseholdMix:
        # Older people who live alone: 1.5's number per household drawn (the same _SINGLES_KEPT calibration),
        # spread over the bands by the share alone in each; couples take the rest of each band's people.
        alone = _ALONE_BY_OLD_BAND * old.weights
        single_person_share = alone.sum()
        old_people = (_HH_SHARES_15[0] + 2 * _HH_SHARES_15[1]) * OLD_PEOPLE_FACTOR
        shares = _HH_SHARES_15.copy()
        shares[0] = single_person_share * old_people
        shares[1] = (1 - single_person_share) * old_people / 2
        shares = shares / shares.sum()  # generator 1.7's shares, the reference for the adult numbers below
        single_weights = alone / alone.sum()
        couple_weights = np.clip(old.weights - single_person_share * single_weights, 0, None)
        couple_weights = couple_weights / couple_weights.sum()
        adults_17 = (shares[2] + 2 * shares[3] + (1 + _FAMILY_TWO_PARENTS) * shares[4]
                     + (float(np.dot(_SHARED_SIZES, _SHARED_SIZES_P)) - _SHARED_OLD_MEMBER) * shares[5])
        adults = AdultAges.for_old(old, shares[0], shares[1], single_weights, couple_weights, shares[5],
                                   ADULT_PEOPLE_FACTOR * adults_17, FAMILY_FACTOR * shares[4])
        h = adults.households
        shares = np.array([shares[0], shares[1], h["single"], h["couple"], h["family"], h["shared"]])
        return cls(shares=shares / shares.sum(), single_weights=single_weights, couple_weights=couple_weights,
                   adults=adults)


# Ethnic category shares (Medway-like, 2021 census shape); older households are mostly White British.
_ETHNIC_P = {
    "A": 0.78, "B": 0.006, "C": 0.045, "D": 0.006, "E": 0.003, "F": 0.004, "G": 0.006, "H": 0.022,
    "J": 0.006, "K": 0.004, "L": 0.009, "M": 0.035, "N": 0.012, "P": 0.003, "R": 0.003, "S": 0.012,
    "Z": 0.02, "99": 0.014,
}


def to_days(d: date) -> int:
    return (d - EPOCH).days


@dataclass
class Population:
    """One entry per resident, ordered by household."""

    nhs: np.ndarray  # str
    dob: np.ndarray  # int days
    sex: np.ndarray  # str '1','2','9'
    ethnic: np.ndarray  # str
    lsoa: np.ndarray  # str
    imd: np.ndarray  # int 1-10
    uprn: np.ndarray  # str
    household: np.ndarray  # int, global household id, non-decreasing
    practice: np.ndarray  # str
    locality: np.ndarray  # str
    reg: np.ndarray  # int days
    spare_nhs: np.ndarray  # valid NHS numbers not given to anyone (for defects)

    def __len__(self) -> int:
        return len(self.nhs)


def _lsoa_pool() -> tuple[list[str], list[str], dict[str, int]]:
    """Kent & Medway LSOAs with IMD 2019 deciles, read from the shipped IMD file."""
    medway: list[str] = []
    kent: list[str] = []
    deciles: dict[str, int] = {}
    with gzip.open(CODELIST_DIR / "imd2019_lsoa11_deciles.csv.gz", "rt", encoding="utf-8-sig") as fh:
        reader = csv.reader(fh)
        next(reader)
        for row in reader:
            if row[2] == MEDWAY_LAD:
                medway.append(row[0])
            elif row[2] in KENT_LADS:
                kent.append(row[0])
            else:
                continue
            deciles[row[0]] = int(row[5])
    return sorted(medway), sorted(kent), deciles


def nhs_numbers(count: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` distinct valid NHS numbers (Modulus 11), in a shuffled but reproducible order."""
    need = int(count * 1.12) + 64
    offset = int(rng.integers(0, 10_000_000))
    base = (400_000_000 + (np.arange(need, dtype=np.int64) * 7919 + offset) % 290_000_000).astype(np.int64)
    digits = np.stack([(base // 10 ** (8 - i)) % 10 for i in range(9)], axis=1)
    total = (digits * np.arange(10, 1, -1)).sum(axis=1)
    check = 11 - total % 11
    check = np.where(check == 11, 0, check)
    ok = check != 10
    numbers = base[ok] * 10 + check[ok]
    if len(numbers) < count:
        raise ValueError("not enough NHS numbers")
    return np.array([str(n) for n in numbers[:count]], dtype=object)


def build_population(residents: int, seed: int, end_date: date, window_start: int,
                     world: World = DEFAULT) -> Population:
    """Households first, then people in them, then places, practices and registrations.

    ``world`` gives the old-age survivorship that shapes the ages of older people (OldAges).
    """
    rng = np.random.default_rng([seed, 0])
    old = OldAges.for_window((to_days(end_date) - window_start) / 365.0, world.old_age_m70, world.old_age_gompertz)
    mix = HouseholdMix.for_old_ages(old)
    ages: list[np.ndarray] = []
    sexes: list[np.ndarray] = []
    hh_of: list[np.ndarray] = []
    h = 0
    total = 0
    while total < residents:
        batch = max(64, int((residents - total) / 2.3) + 16)
        types = rng.choice(len(_HH_TYPES), batch, p=mix.shares)
        for t in types:
            if total >= residents:
                break
            if t == 0:
                a = old.draw(rng, 1, mix.single_weights)
                s = np.array(["2" if rng.random() < 0.64 else "1"])
            elif t == 1:
                # Generator 1.8: no cap at 96 (1.3-1.7 piled the couples drawn older at 96, and those people, aged 90
                # at the window start, made the 95+ grow 2.6-fold over the six simulated years at 400,000)
                a = _couple(rng, old.draw(rng, 1, mix.couple_weights)[0])
                s = np.array(["1", "2"])
            elif t == 2:
                a = mix.adults.draw(rng, "single", 1)
                s = np.array(["1" if rng.random() < 0.52 else "2"])
            elif t == 3:
                a = _couple(rng, mix.adults.draw(rng, "couple", 1)[0])
                s = np.array(["1", "2"])
            elif t == 4:
                kids = rng.choice(_FAMILY_KIDS, p=_FAMILY_KIDS_P)
                kid_ages = rng.random(kids) * 18
                a0 = kid_ages.max() + _birth_age(rng)
                two = rng.random() < _FAMILY_TWO_PARENTS
                adults = list(_couple(rng, a0)) if two else [a0]
                a = np.concatenate([np.array(adults), kid_ages])
                s = np.array((["1", "2"] if two else ["2" if rng.random() < 0.85 else "1"])
                             + ["1" if rng.random() < 0.51 else "2" for _ in range(kids)])
            else:
                size = rng.choice(_SHARED_SIZES, p=_SHARED_SIZES_P)
                a = mix.adults.draw(rng, "shared", size)
                if rng.random() < _SHARED_OLD_MEMBER:
                    a[0] = old.draw(rng, 1)[0]
                s = np.array(["1" if rng.random() < 0.5 else "2" for _ in range(size)])
            a = a[: residents - total]
            s = s[: len(a)]
            ages.append(a)
            sexes.append(s)
            hh_of.append(np.full(len(a), h))
            h += 1
            total += len(a)
    age = np.concatenate(ages)
    sex = np.concatenate(sexes).astype(object)
    household = np.concatenate(hh_of)
    n_hh = h
    n = len(age)
    sex[rng.random(n) < 0.001] = "9"
    end = to_days(end_date)
    dob = (end - np.floor(age * 365.25)).astype(np.int64)
    # Babies are born at least 8 days before the extract, so their registration is never in the future.
    dob = np.minimum(dob, end - 8)

    # Places: LSOAs (Medway first, then Kent), four localities, practices within localities.
    medway, kent, deciles = _lsoa_pool()
    # a multiple of four, so the four localities get the same number of LSOAs
    n_lsoa = int(min(4 * max(1, round(residents / PEOPLE_PER_LSOA / 4)), len(medway) + len(kent)))
    if n_lsoa <= len(medway):
        # A systematic sample along Medway's LSOAs ordered by IMD decile: a small world keeps the county's
        # deprivation mix. (A simple random draw of 8 LSOAs for 12k residents could land mean decile 6.6 against
        # Medway's ~4.6, and deprivation drives admissions and deaths: rates 30% below the county's.)
        by_decile = sorted(medway, key=lambda code: (deciles[code], code))
        step = len(by_decile) / n_lsoa
        start = float(rng.random()) * step
        chosen = sorted(by_decile[int(start + k * step)] for k in range(n_lsoa))
    else:
        chosen = sorted(medway + rng.choice(kent, n_lsoa - len(medway), replace=False).tolist())
    oldest = np.zeros(n_hh)
    np.maximum.at(oldest, household, age)
    lsoa_dep = (10 - np.array([deciles[x] for x in chosen], dtype=np.float64)) / 9.0
    hh_lsoa = _places_of_survivors(rng, oldest - old.years, lsoa_dep, world)
    lsoa_locality = (np.arange(n_lsoa) * len(LOCALITIES)) // n_lsoa
    loc_people = np.bincount(lsoa_locality[hh_lsoa[household]], minlength=len(LOCALITIES))
    practice_codes: list[str] = []
    lsoa_practices: list[list[int]] = [[] for _ in range(n_lsoa)]
    numbers = sorted(rng.choice(np.arange(1, 999), min(998, max(4, residents // 2000)), replace=False).tolist())
    k = 0
    for loc in range(len(LOCALITIES)):
        loc_lsoas = np.flatnonzero(lsoa_locality == loc)
        n_pr = int(max(1, round(loc_people[loc] / PEOPLE_PER_PRACTICE)))
        first = len(practice_codes)
        for _ in range(n_pr):
            num = numbers[k % len(numbers)]
            practice_codes.append(f"G8{2 + k // len(numbers)}{num:03d}")
            k += 1
        for j, lsoa_idx in enumerate(loc_lsoas):
            lsoa_practices[lsoa_idx] = list(range(first, first + n_pr))
            # main practice first
            main = first + (j % n_pr)
            lsoa_practices[lsoa_idx].remove(main)
            lsoa_practices[lsoa_idx].insert(0, main)
    hh_practice = np.empty(n_hh, dtype=np.int64)
    switch = rng.random(n_hh) < 0.15
    for i in range(n_hh):
        options = lsoa_practices[hh_lsoa[i]]
        hh_practice[i] = options[0] if not switch[i] or len(options) == 1 else options[rng.integers(1, len(options))]

    lsoa_arr = np.array(chosen, dtype=object)
    p_lsoa = lsoa_arr[hh_lsoa[household]]
    imd = np.array([deciles[x] for x in chosen], dtype=np.int64)[hh_lsoa[household]]
    practice = np.array(practice_codes, dtype=object)[hh_practice[household]]
    locality = np.array(LOCALITIES, dtype=object)[lsoa_locality[hh_lsoa[household]]]

    # Ethnicity mostly shared within a household; older households are more often White British.
    cats = list(_ETHNIC_P)
    probs = np.array(list(_ETHNIC_P.values()))
    probs = probs / probs.sum()
    hh_eth = rng.choice(len(cats), n_hh, p=probs)
    hh_old = np.zeros(n_hh, dtype=bool)
    hh_old[household[age >= 65]] = True
    hh_eth = np.where(hh_old & (rng.random(n_hh) < 0.6), 0, hh_eth)
    person_eth = np.where(rng.random(n) < 0.05, rng.choice(len(cats), n, p=probs), hh_eth[household])
    ethnic = np.array(cats, dtype=object)[person_eth]
    assert set(ethnic.tolist()) <= set(ETHNIC_CATEGORIES)

    uprn_base = 100_000_000_000 + int(rng.integers(0, 1_000_000)) * 1000
    uprn = np.array([str(uprn_base + int(x) * 7) for x in range(n_hh)], dtype=object)[household]

    # Registration: most long before the window; 5% of households move in during it (on a Monday);
    # babies register on the Monday after birth.
    grid_start = grid_start_day(window_start)
    n_weeks = (end - grid_start) // 7
    mover = rng.random(n_hh) < 0.05
    move_day = grid_start + 7 * rng.integers(1, max(2, n_weeks - 1), n_hh)
    earliest = np.maximum(dob, end - 40 * 365)
    before = earliest + (rng.random(n) * np.maximum(window_start - earliest, 1)).astype(np.int64)
    monday_after_birth = dob + (7 - (dob + 3) % 7)
    reg = np.where(dob >= window_start - 7, monday_after_birth, before)
    reg = np.where(mover[household], np.maximum(move_day[household], np.where(dob >= move_day[household] - 7,
                                                                           monday_after_birth, 0)), reg)
    reg = np.maximum(reg, dob)

    pool = nhs_numbers(n + n // 4 + 6000, rng)
    return Population(
        nhs=pool[:n], dob=dob, sex=sex, ethnic=ethnic, lsoa=p_lsoa, imd=imd, uprn=uprn, household=household,
        practice=practice, locality=locality, reg=reg.astype(np.int64), spare_nhs=pool[n:],
    )


def _places_of_survivors(rng: np.random.Generator, age_at_start: np.ndarray, lsoa_dep: np.ndarray,
                         world: World) -> np.ndarray:
    """An LSOA for each household, the older ones less often in deprived LSOAs, as the survivors of their cohort are.

    Why (generator 1.8): deprivation raises the death hazard, directly (``World.death_dep``) and through frailty
    (``frailty_dep``), so among people who reached an old age fewer live in deprived places than among the young.
    1.3-1.7 gave every household the same chance of every LSOA, so deaths over the six simulated years made the
    old less deprived year by year (mean deprivation at 85+ 0.502 -> 0.474 default, 0.525 -> 0.474 alt, 400,000
    residents, latent model) and their admissions drifted (alt 85+ -3.6 standard errors at 280k). A household
    whose oldest member is aged x at the window start takes LSOA l with weight S(x | deprivation of l), the share
    of a birth cohort alive at x in the world's own survival integral (``simulate.frailty_model``).
    """
    survival = frailty_model(world).survival
    step = frailty_model(world).ages[1] - frailty_model(world).ages[0]
    decile = np.clip(np.rint(lsoa_dep * 9), 0, 9).astype(np.int64)
    whole_years = np.clip(np.floor(age_at_start), 0, None).astype(np.int64)
    out = np.empty(len(age_at_start), dtype=np.int64)
    for x in np.unique(whole_years):
        pick = np.flatnonzero(whole_years == x)
        row = int(min(round((x + 0.5) / step), len(survival) - 1))
        weights = survival[row, decile]
        out[pick] = rng.choice(len(lsoa_dep), len(pick), p=weights / weights.sum())
    return out


def _couple(rng: np.random.Generator, anchor: float) -> np.ndarray:
    """A couple: the anchor and a partner about two years older, at any age (generator 1.8: no clip at 65, which
    piled partners at 64.9 and 65.0); a partner drawn under 18 is reflected above it."""
    partner = anchor + rng.normal(2, 3)
    partner = 2 * ADULT_MIN_AGE - partner if partner < ADULT_MIN_AGE else min(partner, OLD_MAX_AGE)
    return np.array([partner, anchor])


def grid_start_day(window_start: int) -> int:
    """First Monday on or after the window start: simulation steps are Monday-aligned weeks."""
    return window_start + (7 - (window_start + 3) % 7) % 7
