"""The latent health model: one weekly step, used both to generate the data and to compute the truth.

Why one function for both: the true 12-month probability of an outcome given a person's latent state at T
is defined by the same dynamics that write the data. ``advance`` is that single definition. The generator
calls it once per week with recording on; the truth calculation copies the state at T, replicates it
K times (households kept together, so bereavement stays coupled) and runs it forward 53 steps.

Truth estimator: see ``truth_probabilities`` (conditional Monte Carlo: unbiased, bounded, low variance).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from functools import lru_cache

import numpy as np

from synthetic.worlds import World

WEEK_YEARS = 7 / 365
LTS_NONE, LTS_COMMUNITY, LTS_RESIDENTIAL, LTS_NURSING = 0, 1, 2, 3
REABLEMENT_WEEKS = 6
TRUTH_STEPS = 53  # 52 weeks + the 365th day (a 1-day step)


def expit(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def frailty_curve(age: np.ndarray) -> np.ndarray:
    """Mean chronic frailty (about an eFI) of the living at each age: the cross-section baseline draws from."""
    return 0.012 + 0.17 * expit((np.asarray(age, dtype=float) - 75) / 9)


def dementia_prevalence(age: np.ndarray) -> np.ndarray:
    """Share of the living with dementia at each age (England-like: about 2% at 70, 11% at 80, 35% at 90)."""
    age = np.asarray(age, dtype=float)
    return (age >= 60) * 0.6 * expit((age - 88) / 5.5)


@dataclass(frozen=True)
class FrailtyModel:
    """Chronic frailty by age, consistent with who survives: f = R(age) x exp(frailty_dep x dep + z).

    Why (generator 1.4): rates by age band must not trend over the simulated years. In 1.3 everyone's frailty
    grew by a fixed yearly amount plus permanent jumps, so each age band grew frailer every year. Here z is a
    person's own log-noise (normal at birth), fixed for life, and R(age) is one curve for everybody; deaths
    remove people with high z (the death hazard's frailty term), so the living at age a have z distributed as
    the birth distribution times survival S(a | z, dep). The baseline draws each person's z from exactly that
    distribution at their age, and R is set so the mean frailty of the living at each age is the 1.3 curve
    (``frailty_curve``). Then the living at age a look the same in every simulated year: stationary.
    """

    ages: np.ndarray  # grid of ages (years)
    log_r: np.ndarray  # log R(age) on ``ages``
    z: np.ndarray  # grid of z
    cdf: np.ndarray  # [age, deprivation decile, z]: CDF of z among the living
    survival: np.ndarray  # [age, deprivation decile]: share of a birth cohort still alive (generator 1.8)

    def growth(self, age: np.ndarray, years: float) -> np.ndarray:
        """Factor by which chronic frailty grows from ``age`` over ``years`` (1 before birth and past the grid)."""
        return np.exp(np.interp(age + years, self.ages, self.log_r) - np.interp(age, self.ages, self.log_r))

    def baseline(self, age: np.ndarray, dep: np.ndarray, frailty_dep: float, u: np.ndarray) -> np.ndarray:
        """Chronic frailty of living people at ``age`` (the unborn: at birth), from uniforms ``u``."""
        i = np.clip(np.rint(np.asarray(age) / (self.ages[1] - self.ages[0])), 0, len(self.ages) - 1).astype(np.int64)
        k = np.clip(np.rint(np.asarray(dep) * (DEP_DECILES - 1)), 0, DEP_DECILES - 1).astype(np.int64)
        rows = self.cdf[i, k]
        j = np.clip((rows < u[:, None]).sum(axis=1), 1, len(self.z) - 1)
        lo, hi = rows[np.arange(len(u)), j - 1], rows[np.arange(len(u)), j]
        frac = np.clip((u - lo) / np.maximum(hi - lo, 1e-300), 0, 1)
        z = self.z[j - 1] + frac * (self.z[j] - self.z[j - 1])
        return np.clip(np.exp(np.interp(age, self.ages, self.log_r) + frailty_dep * dep + z), 0, 0.9)


DEP_DECILES = 10


@lru_cache(maxsize=8)
def frailty_model(w: World) -> FrailtyModel:
    """Build ``FrailtyModel`` for a world by integrating survival over age on a grid (deterministic, ~0.1 s)."""
    ages = np.arange(0.0, 110.25, 0.25)
    dt = ages[1] - ages[0]
    sd = w.frailty_noise_sd
    z = np.linspace(-sd * sd / 2 - 5 * sd, -sd * sd / 2 + 5 * sd, 201)
    prior = np.exp(-0.5 * ((z + sd * sd / 2) / sd) ** 2)
    prior /= prior.sum()
    dep = np.linspace(0.0, 1.0, DEP_DECILES)[:, None]
    m = np.exp(w.frailty_dep * dep + z[None, :])  # [decile, z]
    mean_m_at_birth = float((prior * m).sum() / DEP_DECILES)
    curve = frailty_curve(ages)
    dem_factor = 1 + dementia_prevalence(ages) * np.expm1(w.death_dem)
    log_s = np.zeros_like(m)
    log_r = np.empty(len(ages))
    cdf = np.empty((len(ages), DEP_DECILES, len(z)))
    survival = np.empty((len(ages), DEP_DECILES))
    for i, a in enumerate(ages):
        survival[i] = (prior * np.exp(log_s)).sum(axis=1)
        living = prior * np.exp(log_s - log_s.max(axis=1, keepdims=True))
        log_r[i] = np.log(curve[i] * mean_m_at_birth / float((living * m).sum() / living.sum()))
        c = np.cumsum(living, axis=1)
        cdf[i] = c / c[:, -1:]
        f = np.clip(np.exp(log_r[i]) * m, 0, 0.9)
        h = np.exp(w.death_base + w.death_f * f + death_age_term(w, a) + w.death_dep * dep)
        log_s -= h * dem_factor[i] * memory_death_factor(w, f, a, dep) * dt
    return FrailtyModel(ages=ages, log_r=log_r, z=z, cdf=cdf, survival=survival)


def death_age_term(w: World, age: np.ndarray | float) -> np.ndarray:
    """The death hazard's own age terms (log scale): the slope per decade over 50 and the children's offset.

    Why one function: the survival integral of ``frailty_model`` and the weekly step must use the same hazard,
    or the frailty of the living drifts year by year (generator 1.4). Why a children's offset (generator 1.6):
    without it children died at the 18-49 rate, 0.0012 per person-year against England's 0.00033
    (synthetic/reference/england.csv, deaths 0-17), because frailty, the only other age-linked term, is flat
    under 50. Why a slope below 50 and one over 85 (generator 1.8): see ``World.death_young`` and
    ``World.death_oldest``.
    """
    age = np.asarray(age, dtype=float)
    young = w.death_young * (np.clip(age, 18.0, 50.0) - 50.0) / 10 * (age >= 18)
    oldest = w.death_oldest * np.maximum(age - 85.0, 0.0) / 10
    return w.death_age * np.maximum(age - 50.0, 0.0) / 10 + young + oldest + w.death_child * (age < 18)


def ea_age_term(w: World, age: np.ndarray | float) -> np.ndarray:
    """The emergency-admission hazard's own age terms (log scale): the slope per decade over 50 and the children's
    offset (generator 1.8: England's children are admitted about as often as adults of 18-64, 0.076 and 0.081 per
    person-year, HES 2019/20 in synthetic/reference/england.csv; without it the generator's were 0.73-0.87 x)."""
    age = np.asarray(age, dtype=float)
    return w.ea_age * np.maximum(age - 50.0, 0.0) / 10 + w.ea_child * (age < 18)


#: Share of people living alone by age, roughly as the population builds them (for ``memory_death_factor``).
_ALONE_AGES = np.array([0.0, 17.9, 18.0, 65.0, 75.0, 85.0, 95.0])
_ALONE_SHARE = np.array([0.0, 0.0, 0.15, 0.2, 0.35, 0.55, 0.6])


def memory_death_factor(w: World, f: np.ndarray, age: float, dep: np.ndarray) -> np.ndarray:
    """Expected factor by which recent admissions and falls raise the death hazard, at frailty ``f`` and ``age``.

    Why (generator 1.5): the death hazard has terms for the memory of recent admissions (``death_adm`` and,
    through acquired frailty, ``death_f x adm_jump``) that grow with frailty. Leaving them out of the survival
    integral made deaths select the frail faster than the frailty trajectory assumed, so the 85+ grew healthier
    every simulated year (1.4 at 280k: 85+ admissions 1.59 -> 1.24 per person-year over six years). The memory
    is approximated by its mean, the yearly rate times its mean lifetime (half-life / ln 2), with the admission
    rate's own main terms: frailty, age, deprivation, the mean of the propensity u, living alone and dementia
    by age, falls admitted, and the memory's feedback on itself.
    """
    age_s = max(age - 50.0, 0.0) / 10
    lifetime = w.memory_half_life_weeks / np.log(2) * WEEK_YEARS
    alone = float(np.interp(age, _ALONE_AGES, _ALONE_SHARE))
    dem = float(dementia_prevalence(np.array(age)))
    mix = ((1 + alone * np.expm1(w.ea_alone)) * (1 + dem * np.expm1(w.ea_dem))
           * np.exp(0.5 * (w.ea_u * w.u_sd) ** 2))
    other = np.exp(w.ea_base + w.ea_f * f + ea_age_term(w, age) + w.ea_dep * dep) * mix
    falls = np.exp(w.fall_base + w.fall_f * f + w.fall_age * age_s + w.fall_dep * dep
                   + w.fall_dem * dem)
    fall_admitted = falls * expit(w.fall_admit_base + w.fall_admit_f * f + w.fall_admit_age * age_s)
    memory = (other + fall_admitted) * lifetime
    for _ in range(3):  # recent admissions raise the admission rate itself: (1 + memory) ** ea_adm
        memory = (other * (1 + memory) ** w.ea_adm + fall_admitted) * lifetime
    fall_memory = falls * lifetime
    return ((1 + memory) ** (w.death_adm + w.death_f * w.adm_jump)
            * (1 + fall_memory) ** (w.death_f * w.fall_jump))


def acquired_frailty(st: State, w: World) -> np.ndarray:
    """Frailty from recent falls, admissions and bereavements: it fades as their memory does (recovery)."""
    return (w.fall_jump * np.log1p(st.fall_mem) + w.adm_jump * np.log1p(st.adm_mem)
            + w.ber_jump * np.log1p(st.ber_mem))


def step_prob(log_rate: np.ndarray, frac: float) -> np.ndarray:
    """Probability of at least one event in a step from an annual log-rate."""
    return -np.expm1(-np.exp(log_rate) * WEEK_YEARS * frac)


@dataclass
class Static:
    """Per-person values that do not change over the simulation."""

    age0: np.ndarray  # age in years at the grid start (negative before birth)
    dep: np.ndarray  # deprivation 0 (decile 10) .. 1 (decile 1)
    u: np.ndarray  # service-use propensity
    hh: np.ndarray  # local household index
    n_hh: int
    reg_step: np.ndarray  # first step at which the person is registered

    def tile(self, k: int) -> Static:
        n = len(self.age0)
        return Static(
            age0=np.tile(self.age0, k), dep=np.tile(self.dep, k), u=np.tile(self.u, k),
            hh=(np.tile(self.hh, k) + np.repeat(np.arange(k) * self.n_hh, n)), n_hh=self.n_hh * k,
            reg_step=np.tile(self.reg_step, k),
        )


@dataclass
class State:
    """Latent state at the start of a week."""

    f: np.ndarray
    dem: np.ndarray
    alive: np.ndarray
    lts: np.ndarray  # LTS_* code
    reab_end: np.ndarray  # step at which the current reablement episode ends, -1 if none
    fall_mem: np.ndarray
    adm_mem: np.ndarray
    ber_mem: np.ndarray

    def copy(self) -> State:
        return State(**{f.name: getattr(self, f.name).copy() for f in fields(self)})

    def tile(self, k: int) -> State:
        return State(**{f.name: np.tile(getattr(self, f.name), k) for f in fields(self)})


def subset(st: State, sx: Static, idx: np.ndarray) -> tuple[State, Static]:
    """The people ``idx`` (whole households only), with households renumbered 0..H-1."""
    uniq, hh = np.unique(sx.hh[idx], return_inverse=True)
    return (State(**{f.name: getattr(st, f.name)[idx] for f in fields(st)}),
            Static(age0=sx.age0[idx], dep=sx.dep[idx], u=sx.u[idx], hh=hh.astype(np.int64), n_hh=len(uniq),
                   reg_step=sx.reg_step[idx]))


@dataclass
class Step:
    """What happened in one week (all boolean masks are for active people only)."""

    active: np.ndarray
    alone: np.ndarray
    fall: np.ndarray
    fall_admit: np.ndarray
    ea: np.ndarray
    death: np.ndarray
    request: np.ndarray
    req_outcome: np.ndarray  # 0 none, 1 telecare/equipment, 2 reablement, 3 long-term support
    reab_done: np.ndarray
    reab_to_lts: np.ndarray
    carehome_from_ea: np.ndarray
    reab_from_ea: np.ndarray
    new_lts: np.ndarray  # LTS_* type of a new long-term service (0 if none)
    escalate: np.ndarray  # community -> care home type (0 if none)
    dem_onset: np.ndarray
    bereaved: np.ndarray
    elective: np.ndarray
    ae_only: np.ndarray
    gp_contacts: np.ndarray
    p_ea: np.ndarray
    p_ce: np.ndarray
    p_ce_not_via_ea: np.ndarray
    p_death: np.ndarray


def advance(st: State, sx: Static, s: int, rng: np.random.Generator, w: World, frac: float = 1.0,
            record: bool = True, burn_in: bool = False, suppress: str | None = None,
            effect: np.ndarray | None = None) -> Step:
    """Move the state on one week (in place) and return what happened.

    ``effect`` (per person, 1 = none) multiplies the weekly hazards of emergency admission and of every
    route into care escalation: the hook through which a simulated programme acts (synthetic/programme.py).

    ``burn_in`` (weeks before the data window) only lets recent falls and admissions accumulate, so the
    window starts with people's recent history already in their state; nobody dies or changes service.
    """
    n = len(st.f)
    age = sx.age0 + s * WEEK_YEARS
    age_s = np.maximum(age - 50.0, 0.0) / 10.0
    active = st.alive & (s >= sx.reg_step)
    adult = age >= 18
    old = age >= 65
    community = st.alive & (st.lts < LTS_RESIDENTIAL)
    living_here = np.bincount(sx.hh, weights=community, minlength=sx.n_hh)[sx.hh]
    alone = adult & community & (living_here == 1)
    # hazards see chronic frailty plus what recent shocks added (st.f is the chronic part)
    f, dep, dem = np.clip(st.f + acquired_frailty(st, w), 0, 0.95), sx.dep, st.dem
    # Recent events raise hazards with diminishing returns (generator 1.4): on the log scale each term is
    # log(1 + memory), so one recent admission counts about as before but five do not multiply the hazard by
    # e^(5 x 0.75). A linear memory made admissions feed on themselves: bursts of a dozen admissions, death
    # rates at 85+ swinging by half from one simulated year to the next, and deaths selecting the frail far
    # faster than their frailty alone says (which the frailty trajectory has to match).
    fall_r, adm_r, ber_r = np.log1p(st.fall_mem), np.log1p(st.adm_mem), np.log1p(st.ber_mem)
    demf = dem.astype(float)
    alonef = alone.astype(float)

    p_fall = step_prob(w.fall_base + w.fall_f * f + w.fall_age * age_s + w.fall_dem * demf + w.fall_dep * dep
                       + w.fall_mem * fall_r, frac)
    q_admit = expit(w.fall_admit_base + w.fall_admit_f * f + w.fall_admit_age * age_s)
    p_ea_other = step_prob(
        w.ea_base + w.ea_f * f + ea_age_term(w, age) + w.ea_dep * dep + w.ea_fall * fall_r
        + w.ea_adm * adm_r + w.ea_ber * ber_r + w.ea_alone * alonef + w.ea_dem * demf + w.ea_u * sx.u,
        frac)
    if effect is not None:
        q_admit, p_ea_other = q_admit * effect, p_ea_other * effect
    p_ea = 1 - (1 - p_fall * q_admit) * (1 - p_ea_other)
    p_death = step_prob(w.death_base + w.death_f * f + death_age_term(w, age) + w.death_dep * dep
                        + w.death_adm * adm_r + w.death_dem * demf, frac)
    in_none = (st.lts == LTS_NONE) & (st.reab_end < 0)
    p_req = in_none * adult * step_prob(
        w.req_base + w.req_f * f + w.req_age * age_s + w.req_alone * alonef + w.req_fall * fall_r
        + w.req_adm * adm_r + w.req_ber * ber_r + w.req_dem * demf + w.req_dep * dep, frac)
    p_direct = np.clip(w.lts_direct_base + w.lts_direct_f * f + w.lts_direct_alone * alonef, 0, 0.5)
    reab_ending = st.reab_end == s
    p_reab_lts = reab_ending * np.clip(w.reab_to_lts_base + w.reab_to_lts_f * f, 0, 0.8)
    no_lts = st.lts == LTS_NONE
    p_carehome = old * no_lts * expit(w.carehome_from_ea_base + w.carehome_from_ea_f * f
                                      + w.carehome_from_ea_dem * demf + w.carehome_from_ea_alone * alonef
                                      + w.carehome_from_ea_age * age_s)
    if effect is not None:
        p_direct, p_reab_lts, p_carehome = p_direct * effect, p_reab_lts * effect, p_carehome * effect
    p_ce_not_via_ea = np.where(active, 1 - (1 - p_req * p_direct) * (1 - p_reab_lts), 0.0)
    p_ce = np.where(active, 1 - (1 - p_ce_not_via_ea) * (1 - p_ea * p_carehome), 0.0)

    r = rng.random((10, n))
    # ``suppress`` draws the week *conditional on* the named outcome not happening (see truth_probabilities).
    no_ea = suppress in ("ea", "crisis")
    no_ce = suppress in ("ce", "crisis")
    p_home_fall = p_fall * (1 - q_admit) / (1 - p_fall * q_admit)  # P(fall, not admitted | no admission)
    if no_ea:
        fall = active & (r[0] < p_home_fall)
        fall_admit = np.zeros(n, dtype=bool)
        ea = fall_admit
    else:
        fall = active & (r[0] < p_fall)
        fall_admit = fall & (r[1] < q_admit)
        ea = (fall_admit | (r[2] < p_ea_other)) & active
    if no_ce and not no_ea:
        # condition on "no care-home move from hospital": thin admissions, redraw falls for the thinned
        keep = (1 - p_carehome) / (1 - p_ea * p_carehome)
        thinned = ea & (r[9] >= keep)
        ea = ea & ~thinned
        fall_admit = fall_admit & ~thinned
        fall = np.where(thinned, rng.random(n) < p_home_fall, fall)
    death = active & (r[3] < p_death) & (suppress != "crisis")
    if no_ce:
        request = active & (r[4] < p_req * (1 - p_direct) / (1 - p_req * p_direct))
        u_out = p_direct + r[5] * (1 - p_direct)
    else:
        request = active & (r[4] < p_req)
        u_out = r[5]
    cut_reab = p_direct + w.reablement_share
    req_outcome = np.where(u_out < p_direct, 3, np.where(u_out < cut_reab, 2,
                                                         np.where(u_out < cut_reab + w.telecare_share, 1, 0)))
    req_outcome = np.where(request, req_outcome, 0)
    reab_done = active & reab_ending
    reab_to_lts = reab_done & (r[6] < p_reab_lts) & (not no_ce)
    carehome_from_ea = ea & (r[7] < p_carehome) & (not no_ce)
    offer_reab = w.reab_from_ea * expit((w.reab_from_ea_frailty - f) / 0.04)  # rehabilitation potential
    reab_from_ea = ea & old & no_lts & ~carehome_from_ea & (st.reab_end < 0) & (r[8] < offer_reab)

    # Types of new long-term services; a care-home move from hospital takes precedence.
    r2 = rng.random((6 if record else 4, n))
    carehome_type = np.where(r2[0] < 0.35 + 0.8 * np.maximum(f - 0.25, 0), LTS_NURSING, LTS_RESIDENTIAL)
    direct_type = np.where((dem | (f > 0.3)) & (r2[1] < w.lts_direct_care_home), carehome_type, LTS_COMMUNITY)
    new_lts = np.where(carehome_from_ea, carehome_type,
                       np.where(request & (req_outcome == 3), direct_type,
                                np.where(reab_to_lts, LTS_COMMUNITY, LTS_NONE)))
    p_escalate = (st.lts == LTS_COMMUNITY) * step_prob(
        w.escalate_base + w.escalate_f * f + w.escalate_dem * demf + w.escalate_age * age_s, frac,
    ) * (1.0 if effect is None else effect)
    escalate = np.where(active & (r2[2] < p_escalate) & (new_lts == LTS_NONE), carehome_type, 0)
    p_dem = step_prob(w.dem_base + w.dem_age * age_s + w.dem_f * f, frac)
    dem_onset = active & ~dem & (r2[3] < p_dem)
    if record:
        el = active & (r2[4] < step_prob(w.el_base + w.el_age * age_s + w.el_f * f, frac))
        ae_only = active & (r2[5] < step_prob(w.ae_base + w.ae_f * f + w.ae_dep * dep + w.ae_u * sx.u
                                              + w.ae_age * age_s, frac))
        gp_rate = np.exp(w.gp_base + w.gp_f * f + w.gp_u * sx.u + w.gp_age * age_s) * WEEK_YEARS * frac
        gp_contacts = np.where(active, rng.poisson(gp_rate), 0)
    else:
        el = ae_only = np.zeros(n, dtype=bool)
        gp_contacts = np.zeros(n, dtype=np.int64)

    # --- update the state ---------------------------------------------------------------------------
    decay = 0.5 ** (frac / w.memory_half_life_weeks)
    if burn_in:
        # Nobody leaves the population before the window. 1.4-1.7 renewed the memories of someone who would have
        # died here (a newcomer of the same age with no recent history), because with a linear memory admissions
        # fed on themselves (the frailest 85+ reached 5 remembered admissions after 130 weeks). Generator 1.8
        # keeps them: with the saturating memory (log1p, since 1.4) the renewal left the window's first years
        # short of memory and their admissions climbed towards the steady state (85+ remembered admissions 0.34 in
        # the first year, 0.38 from the third; admissions 0.573 -> 0.639 per person-year; without it 0.397 and
        # 0.636, 400,000 residents, latent model). The others in the household of someone who would have died
        # here are bereaved, so bereavement is remembered at the start too (1.7: none, 0.015 -> 0.027 at 85+).
        st.fall_mem = st.fall_mem * decay + fall
        st.adm_mem = st.adm_mem * decay + ea
        died_here = np.bincount(sx.hh, weights=death, minlength=sx.n_hh)[sx.hh]
        st.ber_mem = st.ber_mem * decay + (active & ~death & ((died_here - death) > 0))
        return Step(active=active, alone=alone, fall=fall, fall_admit=fall_admit, ea=ea, death=death & False,
                    request=request & False, req_outcome=req_outcome * 0, reab_done=reab_done & False,
                    reab_to_lts=reab_to_lts & False, carehome_from_ea=carehome_from_ea & False,
                    reab_from_ea=reab_from_ea & False, new_lts=new_lts * 0, escalate=escalate * 0,
                    dem_onset=dem_onset & False, bereaved=np.zeros(n, dtype=bool), elective=el, ae_only=ae_only,
                    gp_contacts=gp_contacts, p_ea=p_ea, p_ce=p_ce, p_ce_not_via_ea=p_ce_not_via_ea,
                    p_death=p_death)
    died_here = np.bincount(sx.hh, weights=death, minlength=sx.n_hh)[sx.hh]
    bereaved = active & ~death & ((died_here - death) > 0)
    st.fall_mem = st.fall_mem * decay + fall
    st.adm_mem = st.adm_mem * decay + ea
    st.ber_mem = st.ber_mem * decay + bereaved
    st.f = np.clip(st.f * frailty_model(w).growth(age, WEEK_YEARS * frac), 0, 0.95)
    st.dem = dem | dem_onset
    st.lts = np.where(new_lts > 0, new_lts, np.where(escalate > 0, escalate, st.lts)).astype(np.int8)
    new_reab = (request & (req_outcome == 2)) | reab_from_ea
    st.reab_end = np.where(reab_done | (new_lts > 0), -1, st.reab_end)
    st.reab_end = np.where(new_reab & (new_lts == 0), s + REABLEMENT_WEEKS, st.reab_end).astype(np.int32)
    st.alive = st.alive & ~death
    return Step(
        active=active, alone=alone, fall=fall, fall_admit=fall_admit, ea=ea, death=death, request=request,
        req_outcome=req_outcome, reab_done=reab_done, reab_to_lts=reab_to_lts, carehome_from_ea=carehome_from_ea,
        reab_from_ea=reab_from_ea & (new_lts == 0), new_lts=new_lts, escalate=escalate, dem_onset=dem_onset,
        bereaved=bereaved, elective=el, ae_only=ae_only, gp_contacts=gp_contacts, p_ea=np.where(active, p_ea, 0.0),
        p_ce=p_ce, p_ce_not_via_ea=p_ce_not_via_ea, p_death=np.where(active, p_death, 0.0),
    )


#: Replicate futures per outcome. Care escalation gets more: its main route (request -> reablement ->
#: long-term support) is a two-stage path that the conditional estimator only partly averages out.
TRUTH_REPLICATES = {"ea": 4, "ce": 12, "crisis": 4}
#: For households of young, well people with no recent shocks, whose futures barely vary.
QUIET_REPLICATES = {"ea": 1, "ce": 2, "crisis": 1}


def truth_by_household(st: State, sx: Static, s0: int, rng: np.random.Generator,
                       w: World) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``truth_probabilities`` with fewer replicates for quiet households (same expectation, less work)."""
    age = sx.age0 + s0 * WEEK_YEARS
    busy_person = ((age >= 50) | (st.f > 0.06) | (st.lts > 0) | (st.reab_end >= 0) | st.dem
                   | (st.fall_mem + st.adm_mem + st.ber_mem > 0.05))
    busy = np.bincount(sx.hh, weights=busy_person, minlength=sx.n_hh)[sx.hh] > 0
    out = [np.zeros(len(st.f)) for _ in range(3)]
    for mask, reps in ((busy, TRUTH_REPLICATES), (~busy, QUIET_REPLICATES)):
        idx = np.flatnonzero(mask)
        if len(idx) == 0:
            continue
        sub_st, sub_sx = subset(st, sx, idx)
        for k, p in enumerate(truth_probabilities(sub_st, sub_sx, s0, rng, w, reps)):
            out[k][idx] = p
    return out[0], out[1], out[2]


def truth_probabilities(st: State, sx: Static, s0: int, rng: np.random.Generator, w: World,
                        replicates: dict[str, int] | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """True P(emergency admission), P(care escalation), P(crisis) in [T, T + 365 days) from the state at T.

    For each outcome, K replicate futures are drawn *conditional on that outcome not happening yet*
    (``suppress``), and each contributes 1 - prod_t (1 - h_t), h_t being the outcome's probability in week t
    given that future. Because the probability of a path with no outcome factorises into
    prod_t (1 - h_t) x P(the rest of the week | no outcome), this is exactly P(outcome) in expectation,
    always inside [0, 1], and its only noise comes from the other shocks (falls at home, bereavement,
    dementia onset, frailty steps). ``st`` is the state at the start of step ``s0`` (= T); it is not modified.
    """
    n = len(st.f)
    out = []
    for outcome in ("ea", "ce", "crisis"):
        k_reps = (replicates or TRUTH_REPLICATES)[outcome]
        rs = st.tile(k_reps)
        rx = sx.tile(k_reps)
        log_none = np.zeros(n * k_reps)
        for k in range(TRUTH_STEPS):
            frac = 1.0 if k < TRUTH_STEPS - 1 else 1 / 7
            d = advance(rs, rx, s0 + k, rng, w, frac=frac, record=False, suppress=outcome)
            if outcome == "ea":
                h = d.p_ea
            elif outcome == "ce":
                h = d.p_ce
            else:  # a care-home move from hospital is itself an emergency admission
                h = 1 - (1 - d.p_ea) * (1 - d.p_ce_not_via_ea) * (1 - d.p_death)
            log_none += np.log1p(-np.minimum(h, 1 - 1e-12))
        out.append((-np.expm1(log_none)).reshape(k_reps, n).mean(axis=0))
    return out[0], out[1], out[2]
