"""Simulate one chunk of households week by week and turn what happened into the six contract tables.

A chunk is a contiguous run of whole households (so bereavement and living alone stay inside it) with its
own random stream seeded from (seed, chunk), which makes output independent of how many chunks run before.
Internal tables carry ``pid`` (index in the chunk) and ``day`` (days since the simulation grid start);
they become NHS numbers and dates at the end.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta

import numpy as np
import polars as pl

from expectations.contract import (
    EMERGENCY_ADMISSION_METHODS,
    LONG_TERM_SERVICE_TYPES,
    REABLEMENT_SERVICE_TYPE,
    SOURCES,
)
from synthetic import codes as C
from synthetic.addresses import NEVER, address_history
from synthetic.population import Population, to_days
from synthetic.programme import ChunkProgramme, Programme
from synthetic.simulate import (
    LTS_COMMUNITY,
    LTS_NONE,
    LTS_NURSING,
    LTS_RESIDENTIAL,
    State,
    Static,
    Step,
    advance,
    dementia_prevalence,
    frailty_model,
    truth_by_household,
    truth_probabilities,
)
from synthetic.worlds import World

LTS_SERVICE = {
    LTS_COMMUNITY: LONG_TERM_SERVICE_TYPES[2],
    LTS_RESIDENTIAL: LONG_TERM_SERVICE_TYPES[1],
    LTS_NURSING: LONG_TERM_SERVICE_TYPES[0],
}
LTS_WEEKLY_COST = {LTS_COMMUNITY: 320.0, LTS_RESIDENTIAL: 850.0, LTS_NURSING: 1050.0}
#: Weeks before the window in which recent falls and admissions build up (5 half-lives of their memory: the
#: first simulated year starts at their steady level, not below it).
BURN_IN_WEEKS = 130
OTHER_EA_METHODS = ("22", "22", "22", "23", "24", "28", "2A", "2B", "2C", "2D")
NO_SERVICES = "No Services Provided - Universal Services/Signposted to Other Services"
TRUTH_COLUMNS = ("nhs_number", "index_date", "eligible", "p_emergency_admission", "p_care_escalation", "p_crisis",
                 "y_emergency_admission", "y_care_escalation", "y_crisis")


@dataclass
class Rows:
    """Column lists for one internal table, appended to week by week."""

    cols: dict[str, list] = field(default_factory=dict)

    def add(self, **arrays: object) -> None:
        for k, v in arrays.items():
            self.cols.setdefault(k, []).append(np.asarray(v) if not np.isscalar(v) else v)

    def frame(self, schema: dict[str, pl.DataType]) -> pl.DataFrame:
        if not self.cols:
            return pl.DataFrame(schema=schema)
        data = {}
        for k in schema:
            parts = self.cols[k]
            data[k] = np.concatenate(parts) if parts else np.array([])
        return pl.DataFrame({k: pl.Series(k, data[k].tolist() if data[k].dtype == object else data[k],
                                          dtype=schema[k], strict=False) for k in schema})


@dataclass
class ChunkResult:
    tables: dict[str, pl.DataFrame]
    truth: dict[date, pl.DataFrame]
    living_nhs: np.ndarray  # residents alive at the extract with no deaths row (for deaths defects)
    programme_actions: pl.DataFrame | None = None  # synthetic/programme.py, when a programme is simulated
    programme_truth: tuple[float, float, int] = (0.0, 0.0, 0)
    moves: pl.DataFrame | None = None  # synthetic/addresses.py: every move (truth of the addresses source)


def _support_reason(rng: np.random.Generator, age: np.ndarray, dem: np.ndarray, alone: np.ndarray) -> np.ndarray:
    n = len(age)
    r = rng.random(n)
    out = np.where(r < 0.72, "Physical Support: Personal Care Support",
                   np.where(r < 0.9, "Physical Support: Access & Mobility Only",
                            "Sensory Support: Support for Visual Impairment")).astype(object)
    young = age < 65
    yr = rng.random(n)
    out[young & (yr < 0.35)] = "Learning Disability Support"
    out[young & (yr >= 0.35) & (yr < 0.65)] = "Mental Health Support"
    out[alone & (rng.random(n) < 0.15)] = "Social Support: Support for Social Isolation/Other"
    out[dem] = "Support with Memory & Cognition"
    return out


@dataclass
class ChunkSim:
    """Everything one chunk's simulation carries from week to week: the latent state, the per-person service
    and recording state the contract tables need, and the rows written so far.

    Why a class: each source (hospital, A&E, GP record, social care, deaths) is written by its own function
    below, and they share this state; the order they run in each week is fixed by ``simulate_chunk`` (it is
    the order the random stream is drawn in, so the same seed gives the same delivery, byte for byte).
    """

    rng: np.random.Generator
    world: World
    n: int
    age0: np.ndarray
    end_g: int
    st: State
    sx: Static
    present: np.ndarray  # deficit d recorded for person i
    thr: np.ndarray  # deficit thresholds on frailty
    hb_thr: np.ndarray
    first_day: np.ndarray
    death_day: np.ndarray
    lts_start: np.ndarray
    lts_type: np.ndarray
    hb_coded: np.ndarray = field(init=False)
    dem_coded: np.ndarray = field(init=False)
    carer_coded: np.ndarray = field(init=False)
    reab_start: np.ndarray = field(init=False)
    tele_open: np.ndarray = field(init=False)
    tele_start: np.ndarray = field(init=False)
    in_hospital_until: np.ndarray = field(init=False)  # discharge day of the last spell
    last_spell_part: np.ndarray = field(init=False)  # where the last spell's row is in ``spells`` (week, row)
    last_spell_pos: np.ndarray = field(init=False)
    gp: Rows = field(default_factory=Rows)
    spells: Rows = field(default_factory=Rows)
    ae: Rows = field(default_factory=Rows)
    sc: Rows = field(default_factory=Rows)
    deaths: Rows = field(default_factory=Rows)
    spell_no: int = 0
    fall_codes: np.ndarray = field(default_factory=C.fall_event_codes)  # SNOMED codes for the fall itself

    def __post_init__(self) -> None:
        n = self.n
        self.hb_coded = np.zeros(n, dtype=bool)
        self.dem_coded = np.zeros(n, dtype=bool)
        self.carer_coded = np.zeros(n, dtype=bool)
        self.reab_start = np.full(n, -1, dtype=np.int64)
        self.tele_open = np.zeros(n, dtype=bool)
        self.tele_start = np.zeros(n, dtype=np.int64)
        self.in_hospital_until = np.full(n, np.iinfo(np.int64).min // 4, dtype=np.int64)
        self.last_spell_part = np.full(n, -1, dtype=np.int64)
        self.last_spell_pos = np.zeros(n, dtype=np.int64)

    def on_day(self, base: int, ids: np.ndarray, lo_off: int = 0, hi_off: int = 7) -> np.ndarray:
        """A day in the week starting ``base`` (never after the person's death)."""
        days = base + self.rng.integers(lo_off, hi_off, len(ids))
        return np.minimum(days, self.death_day[ids])

    def next_spell_ids(self, chunk: int, count: int) -> list[str]:
        ids = [f"S{chunk:05d}{self.spell_no + k:07d}" for k in range(count)]
        self.spell_no += count
        return ids


def _seed_share(age: np.ndarray, among: np.ndarray, weight: np.ndarray, ages: np.ndarray,
                shares: tuple[float, ...]) -> np.ndarray:
    """P(in a state at the start) for the people ``among``: the world's steady-state share at their age, more
    likely with a higher ``weight``, which is normalised within 5-year bands so each band gets its share."""
    band = np.floor(np.maximum(age, 0) / 5).astype(np.int64)
    total = np.bincount(band[among], weights=weight[among], minlength=band.max() + 1)
    count = np.bincount(band[among], minlength=band.max() + 1)
    mean_w = np.where(count > 0, total / np.maximum(count, 1), 1.0)
    return among * np.clip(np.interp(age, ages, shares) * weight / mean_w[band], 0, 1)


def _baseline(pop: Population, lo: int, hi: int, seed: int, chunk: int, world: World, grid_start: int,
              end_day: int) -> ChunkSim:
    """The latent state at the grid start, and the codes already on the GP record then."""
    P = C.pools()
    rng = np.random.default_rng([seed, 1, chunk])
    n = hi - lo
    hh_global = pop.household[lo:hi]
    hh = (hh_global - hh_global[0]).astype(np.int64)
    n_hh = int(hh[-1]) + 1
    dob = pop.dob[lo:hi]
    age0 = (grid_start - dob) / 365.25
    dep = (10 - pop.imd[lo:hi]) / 9.0
    reg_g = pop.reg[lo:hi] - grid_start  # registration day on the grid (negative: before it)
    reg_step = (-(-reg_g // 7)).astype(np.int64)  # negative: registered before the grid starts
    w = world

    f0 = frailty_model(w).baseline(age0, dep, w.frailty_dep, rng.random(n))
    dem0 = rng.random(n) < dementia_prevalence(age0)
    u = rng.normal(0, w.u_sd, n)
    lts0 = np.zeros(n, dtype=np.int8)
    ages = np.asarray(w.lts_seed_ages)
    adult = age0 >= 18
    has_lts0 = rng.random(n) < _seed_share(age0, adult, np.exp(14 * f0 + 1.5 * dem0), ages, w.lts_seed_any)
    needs_home = np.where(dem0 | (f0 > 0.25), 3.0, 1.0)
    care_home0 = rng.random(n) < _seed_share(age0, has_lts0, needs_home, ages, w.lts_seed_care_home)
    lts0[has_lts0] = LTS_COMMUNITY
    lts0[care_home0] = np.where(rng.random(int(care_home0.sum())) < 0.45, LTS_NURSING, LTS_RESIDENTIAL)
    st = State(f=f0, dem=dem0, alive=np.ones(n, dtype=bool), lts=lts0, reab_end=np.full(n, -1, dtype=np.int32),
               fall_mem=np.zeros(n), adm_mem=np.zeros(n), ber_mem=np.zeros(n))
    sx = Static(age0=age0, dep=dep, u=u, hh=hh, n_hh=n_hh, reg_step=reg_step)

    # Deficit thresholds: deficit d is present once frailty exceeds thr[:, d] (P = f ** (1/gamma_d)).
    thr = rng.random((n, len(P.deficits))) ** P.deficit_gamma[None, :]
    present = thr < f0[:, None]
    hb_thr = rng.uniform(0.28, 0.55, n)
    death_day = np.full(n, np.iinfo(np.int64).max // 4, dtype=np.int64)
    lts_start = np.where(lts0 > 0, -rng.integers(30, 1500, n), 0).astype(np.int64)
    sim = ChunkSim(rng=rng, world=w, n=n, age0=age0, end_g=end_day - grid_start, st=st, sx=sx, present=present,
                   thr=thr, hb_thr=hb_thr, first_day=np.maximum(reg_g, 0), death_day=death_day,
                   lts_start=lts_start, lts_type=lts0.astype(np.int64).copy())

    # Codes already on the record: recorded in the first 26 weeks of registration inside the window.
    gp, first_day = sim.gp, sim.first_day
    pi, di = np.nonzero(present)
    gp.add(pid=pi, day=first_day[pi] + rng.integers(0, 182, len(pi)), code=P.deficit_codes(rng, di))
    dem_known = dem0 & (rng.random(n) < w.dem_diagnosed)
    idx = np.flatnonzero(dem_known)
    gp.add(pid=idx, day=first_day[idx] + rng.integers(0, 182, len(idx)), code=P.dementia.draw(rng, len(idx)))
    sim.dem_coded |= dem_known
    idx = np.flatnonzero(care_home0)
    gp.add(pid=idx, day=first_day[idx] + rng.integers(0, 182, len(idx)), code=P.care_home.draw(rng, len(idx)))
    return sim


def _truth_at(sim: ChunkSim, s: int, t: date, seed: int, chunk: int,
              replicates: dict[str, int] | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """True 12-month probabilities from the state at the start of step ``s`` (= T)."""
    st, sx, w = sim.st, sim.sx, sim.world
    trng = np.random.default_rng([seed, 2, chunk, to_days(t)])
    p_ea, p_ce, p_cr = (truth_probabilities(st, sx, s, trng, w, replicates) if replicates is not None
                        else truth_by_household(st, sx, s, trng, w))
    # In hospital at T with a care-home placement already decided (at admission, before T): the
    # residential/nursing service starts at discharge, inside the window, so the outcome is certain.
    # The latent state already has lts > 0, which alone would give p = 0 (DESIGN §5 counts the start).
    pending = (st.alive & (sim.lts_type >= LTS_RESIDENTIAL) & (sim.lts_start >= s * 7)
               & (sim.lts_start < s * 7 + 365))
    return p_ea, np.where(pending, 1.0, p_ce), np.where(pending, 1.0, p_cr)


def _emergency_spells_and_ae(sim: ChunkSim, d: Step, base: int, age: np.ndarray, f_before: np.ndarray,
                             chunk: int) -> None:
    """Emergency admissions (hospital_spells) and the A&E attendances that led to them."""
    rng, P = sim.rng, C.pools()
    ea_ids = np.flatnonzero(d.ea)
    if len(ea_ids):
        adm = sim.on_day(base, ea_ids)
        # Someone still in hospital cannot be admitted again: the latent admission is part of the current
        # stay (a deterioration on the ward). A care-home placement or reablement it triggers starts at
        # that stay's discharge. Admission on the previous discharge day is allowed (a same-day transfer).
        inside = adm < sim.in_hospital_until[ea_ids]
        stay_end = sim.in_hospital_until[ea_ids[inside]]
        for i, day_dis, flag in zip(ea_ids[inside], stay_end, d.carehome_from_ea[ea_ids[inside]], strict=True):
            if flag:
                sim.lts_start[i], sim.lts_type[i] = day_dis, d.new_lts[i]
                if sim.last_spell_part[i] >= 0:  # that stay now ends in a care home
                    sim.spells.cols["dest"][sim.last_spell_part[i]][sim.last_spell_pos[i]] = "85"
        rf_in = ea_ids[inside & d.reab_from_ea[ea_ids]]
        sim.reab_start[rf_in] = sim.in_hospital_until[rf_in]
        ea_ids, adm = ea_ids[~inside], adm[~inside]
    if not len(ea_ids):
        return
    fall_ea = d.fall_admit[ea_ids]
    via_ae = rng.random(len(ea_ids)) < np.where(fall_ea, 0.9, 0.75)
    method = np.where(via_ae, "21", np.array(OTHER_EA_METHODS, dtype=object)[
        rng.integers(0, len(OTHER_EA_METHODS), len(ea_ids))])
    mean_los = 1.5 + 30 * f_before[ea_ids] + 3 * (age[ea_ids] >= 75)
    los = rng.geometric(1 / mean_los)
    dis = adm + los
    sim.in_hospital_until[ea_ids] = dis
    chome = d.carehome_from_ea[ea_ids]
    dest = np.where(chome, "85", np.where(rng.random(len(ea_ids)) < 0.05, "29", "19")).astype(object)
    w_primary = rng.random(len(ea_ids)) < 0.25
    primary3 = np.where(
        fall_ea,
        np.where(w_primary, np.array(C.FALL_ICD, dtype=object)[rng.integers(0, len(C.FALL_ICD), len(ea_ids))],
                 np.array(C.FALL_PRIMARY, dtype=object)[rng.integers(0, len(C.FALL_PRIMARY), len(ea_ids))]),
        np.array(C.EA_PRIMARY, dtype=object)[rng.integers(0, len(C.EA_PRIMARY), len(ea_ids))])
    sec = _secondaries(rng, primary3, f_before[ea_ids], sim.st.dem[ea_ids], fall_ea & ~w_primary)
    ids = sim.next_spell_ids(chunk, len(ea_ids))
    sim.spells.add(pid=ea_ids, spell_id=np.array(ids, dtype=object), adm=adm, dis=dis, method=method,
                   primary=C.format_icd(primary3, rng), secondary=sec, dest=dest)
    sim.last_spell_part[ea_ids] = len(sim.spells.cols["dest"]) - 1
    sim.last_spell_pos[ea_ids] = np.arange(len(ea_ids))
    va = ea_ids[via_ae]
    old = age[va] >= 65
    mode = np.where(rng.random(len(va)) < np.where(fall_ea[via_ae], 0.75, 0.3 + 0.4 * old), "1", "2")
    fall_codes = sim.fall_codes
    complaint = np.where(fall_ea[via_ae], fall_codes[rng.integers(0, len(fall_codes), len(va))],
                         P.ae_complaints.draw(rng, len(va)))
    diag = np.where(fall_ea[via_ae] & (rng.random(len(va)) < 0.5), P.fracture.draw(rng, len(va)), None)
    sim.ae.add(pid=va, day=adm[via_ae], mode=mode.astype(object), complaint=complaint, diagnosis=diag,
               admitted=np.ones(len(va), dtype=bool))
    # Care-home moves from hospital start a long-term service at discharge.
    for i, day_dis, flag in zip(ea_ids, dis, chome, strict=True):
        if flag:
            sim.lts_start[i] = day_dis
            sim.lts_type[i] = d.new_lts[i]
    rf = ea_ids[d.reab_from_ea[ea_ids]]
    sim.reab_start[rf] = dis[d.reab_from_ea[ea_ids]]


def _elective_spells(sim: ChunkSim, d: Step, base: int, f_before: np.ndarray, chunk: int) -> None:
    """Elective admissions and day cases (hospital_spells), never during another stay."""
    rng = sim.rng
    el_ids = np.flatnonzero(d.elective)
    if len(el_ids):
        adm = sim.on_day(base, el_ids)
        # An elective admission drawn while the person is in hospital does not happen (postponed).
        free = adm >= sim.in_hospital_until[el_ids]
        el_ids, adm = el_ids[free], adm[free]
        # two electives the same week for one person: keep the first
        first = np.unique(el_ids, return_index=True)[1]
        el_ids, adm = el_ids[first], adm[first]
    if not len(el_ids):
        return
    el_dis = adm + rng.integers(0, 4, len(el_ids))
    sim.in_hospital_until[el_ids] = el_dis
    prim = np.array(C.ELECTIVE_PRIMARY, dtype=object)[rng.integers(0, len(C.ELECTIVE_PRIMARY), len(el_ids))]
    ids = sim.next_spell_ids(chunk, len(el_ids))
    sim.last_spell_part[el_ids] = len(sim.spells.cols.get("dest", []))
    sim.last_spell_pos[el_ids] = np.arange(len(el_ids))
    sim.spells.add(pid=el_ids, spell_id=np.array(ids, dtype=object), adm=adm, dis=el_dis,
                   method=np.array(["11", "12", "13"], dtype=object)[rng.integers(0, 3, len(el_ids))],
                   primary=C.format_icd(prim, rng),
                   secondary=_secondaries(rng, prim, f_before[el_ids] * 0.5, sim.st.dem[el_ids],
                                          np.zeros(len(el_ids), dtype=bool)),
                   dest=np.full(len(el_ids), "19", dtype=object))


def _falls_at_home(sim: ChunkSim, d: Step, base: int) -> None:
    """Falls without an admission: some reach A&E (not admitted), some the GP record."""
    rng, P = sim.rng, C.pools()
    home_fall = np.flatnonzero(d.fall & ~d.fall_admit)
    if not len(home_fall):
        return
    fall_codes = sim.fall_codes
    day = sim.on_day(base, home_fall)
    to_ae = rng.random(len(home_fall)) < 0.4
    va = home_fall[to_ae]
    sim.ae.add(pid=va, day=day[to_ae], mode=np.where(rng.random(len(va)) < 0.55, "1", "2").astype(object),
               complaint=fall_codes[rng.integers(0, len(fall_codes), len(va))],
               diagnosis=np.where(rng.random(len(va)) < 0.25, P.fracture.draw(rng, len(va)), None),
               admitted=np.zeros(len(va), dtype=bool))
    to_gp = rng.random(len(home_fall)) < 0.55
    sim.gp.add(pid=home_fall[to_gp], day=day[to_gp] + 0, code=P.falls.draw(rng, int(to_gp.sum())))


def _ae_not_admitted(sim: ChunkSim, d: Step, base: int, age: np.ndarray) -> None:
    """Other A&E attendances that end without an admission (ae_attendances)."""
    rng, P = sim.rng, C.pools()
    ae_ids = np.flatnonzero(d.ae_only)
    if not len(ae_ids):
        return
    old = age[ae_ids] >= 65
    sim.ae.add(pid=ae_ids, day=sim.on_day(base, ae_ids),
               mode=np.where(rng.random(len(ae_ids)) < 0.12 + 0.3 * old, "1", "2").astype(object),
               complaint=P.ae_complaints.draw(rng, len(ae_ids)),
               diagnosis=np.where(rng.random(len(ae_ids)) < 0.4, P.ae_complaints.draw(rng, len(ae_ids)), None),
               admitted=np.zeros(len(ae_ids), dtype=bool))


def _gp_record(sim: ChunkSim, d: Step, base: int, age: np.ndarray) -> None:
    """What the GP record gains this week: new deficits, contacts, dementia, housebound, carer, bereavement."""
    rng, P, st, w, n = sim.rng, C.pools(), sim.st, sim.world, sim.n
    gp, present = sim.gp, sim.present
    new_def = (~present) & (sim.thr < st.f[:, None]) & d.active[:, None]
    pi, di = np.nonzero(new_def)
    if len(pi):
        present |= new_def
        gp.add(pid=pi, day=sim.on_day(base, pi), code=P.deficit_codes(rng, di))
    contacts = np.repeat(np.arange(n), d.gp_contacts)
    if len(contacts):
        has_any = present[contacts].any(axis=1)
        contacts = contacts[has_any]
        pick = np.argmax(present[contacts] * rng.random((len(contacts), present.shape[1])), axis=1)
        gp.add(pid=contacts, day=sim.on_day(base, contacts), code=P.deficit_codes(rng, pick))
        lonely = contacts[d.alone[contacts] & (age[contacts] >= 65) & (rng.random(len(contacts)) < 0.05)]
        gp.add(pid=lonely, day=sim.on_day(base, lonely), code=P.lives_alone.draw(rng, len(lonely)))
    dem_new = np.flatnonzero((d.dem_onset & (rng.random(n) < w.dem_diagnosed))
                             | (st.dem & ~sim.dem_coded & d.active & (rng.random(n) < 0.01)))
    sim.dem_coded[dem_new] = True
    gp.add(pid=dem_new, day=sim.on_day(base, dem_new), code=P.dementia.draw(rng, len(dem_new)))
    hb = np.flatnonzero(d.active & ~sim.hb_coded & (st.f > sim.hb_thr))
    sim.hb_coded[hb] = True
    gp.add(pid=hb, day=sim.on_day(base, hb), code=P.housebound.draw(rng, len(hb)))
    hh, n_hh = sim.sx.hh, sim.sx.n_hh
    needs_care = (st.alive & (st.dem | (st.f > 0.3))).astype(float)
    others = np.bincount(hh, weights=needs_care, minlength=n_hh)[hh] - needs_care
    carer = np.flatnonzero(d.active & (age >= 18) & ~sim.carer_coded & (others > 0) & (rng.random(n) < 0.02))
    sim.carer_coded[carer] = True
    gp.add(pid=carer, day=sim.on_day(base, carer), code=P.carer.draw(rng, len(carer)))
    ber = np.flatnonzero(d.bereaved & (rng.random(n) < 0.35))
    gp.add(pid=ber, day=sim.on_day(base, ber, 3, 7), code=P.bereavement.draw(rng, len(ber)))


def _social_care(sim: ChunkSim, d: Step, base: int, age: np.ndarray, lts_before: np.ndarray) -> None:
    """Adult social care (CLD): requests, assessments, telecare, reablement, long-term services, escalation."""
    rng, P, st = sim.rng, C.pools(), sim.st
    sc, lts_start, lts_type, reab_start = sim.sc, sim.lts_start, sim.lts_type, sim.reab_start
    req = np.flatnonzero(d.request)
    if len(req):
        rday = sim.on_day(base, req, 0, 4)
        aday = np.minimum(rday + rng.integers(0, 3, len(req)), sim.death_day[req])
        outcome = d.req_outcome[req]
        reason = _support_reason(rng, age[req], st.dem[req], d.alone[req])
        assessed = (outcome > 0) | (rng.random(len(req)) < 0.6)
        sc.add(pid=req, type=np.full(len(req), "Request", dtype=object), start=rday, end=rday,
               service=np.full(len(req), None, dtype=object), component=np.full(len(req), None, dtype=object),
               reason=reason, outcome=np.where(assessed, "Progress to Assessment", NO_SERVICES).astype(object),
               cost=np.full(len(req), np.nan))
        a = assessed
        a_out = np.array([NO_SERVICES, "Provision of Equipment/Telecare", "Short Term Support (ST-Max)",
                          "Long Term Support"], dtype=object)[outcome[a]]
        sc.add(pid=req[a], type=np.full(int(a.sum()), "Assessment", dtype=object), start=aday[a], end=aday[a],
               service=np.full(int(a.sum()), None, dtype=object),
               component=np.full(int(a.sum()), None, dtype=object), reason=reason[a], outcome=a_out,
               cost=np.full(int(a.sum()), np.nan))
        tele = (outcome == 1)
        for i, day_a, rsn in zip(req[tele], aday[tele], reason[tele], strict=True):
            if rng.random() < 0.6:
                if not sim.tele_open[i]:
                    sim.tele_open[i], sim.tele_start[i] = True, day_a
            else:
                sc.add(pid=[i], type=["Service"], start=[day_a], end=[day_a],
                       service=["Short Term Support: Other Short Term"], component=["Equipment"], reason=[rsn],
                       outcome=["Equipment provided"], cost=[float(rng.integers(60, 400))])
        rb = req[outcome == 2]
        reab_start[rb] = aday[outcome == 2]
        lt = outcome == 3
        lts_start[req[lt]] = aday[lt]
        lts_type[req[lt]] = d.new_lts[req[lt]]

    done = np.flatnonzero(d.reab_done)
    if len(done):
        day = sim.on_day(base, done)
        start = np.minimum(np.where(reab_start[done] >= 0, reab_start[done], day - 42), day)
        to_lts = d.reab_to_lts[done]
        sc.add(pid=done, type=np.full(len(done), "Service", dtype=object), start=start, end=day,
               service=np.full(len(done), REABLEMENT_SERVICE_TYPE, dtype=object),
               component=np.full(len(done), "Home Support", dtype=object),
               reason=_support_reason(rng, age[done], st.dem[done], d.alone[done]),
               outcome=np.where(to_lts, "Long Term Support", np.where(
                   rng.random(len(done)) < 0.7, "No Services Provided - No identified needs",
                   "Ongoing Low Level Support")).astype(object),
               cost=np.full(len(done), 400.0))
        reab_start[done] = -1
        lts_start[done[to_lts]] = day[to_lts]
        lts_type[done[to_lts]] = LTS_COMMUNITY

    superseded = np.flatnonzero((d.new_lts > 0) & (reab_start >= 0) & ~d.reab_done)
    for i in superseded:
        sc.add(pid=[i], type=["Service"], start=[min(reab_start[i], lts_start[i])], end=[lts_start[i]],
               service=[REABLEMENT_SERVICE_TYPE], component=["Home Support"],
               reason=["Physical Support: Personal Care Support"], outcome=["Long Term Support"], cost=[400.0])
        reab_start[i] = -1
    esc = np.flatnonzero(d.escalate > 0)
    for i in esc:
        day = int(min(base + rng.integers(0, 7), sim.death_day[i]))
        _close_lts(sc, rng, i, lts_start[i], day, lts_type[i], age[i], bool(st.dem[i]), bool(d.alone[i]), sim.end_g)
        lts_start[i], lts_type[i] = day, int(d.escalate[i])
    new_home = np.flatnonzero(((d.new_lts >= LTS_RESIDENTIAL) & (lts_before == LTS_NONE)) | (d.escalate > 0))
    gp_home = new_home[rng.random(len(new_home)) < 0.8]
    sim.gp.add(pid=gp_home, day=np.minimum(lts_start[gp_home] + rng.integers(0, 14, len(gp_home)),
                                           sim.death_day[gp_home]), code=P.care_home.draw(rng, len(gp_home)))


def _deaths(sim: ChunkSim, dead: np.ndarray, age: np.ndarray) -> None:
    """Deaths: close every open service, then write the deaths rows with a cause."""
    rng, st, sc = sim.rng, sim.st, sim.sc
    for i in dead:
        dd = int(sim.death_day[i])
        if sim.lts_type[i] != LTS_NONE:
            _close_lts(sc, rng, i, min(sim.lts_start[i], dd), dd, sim.lts_type[i], age[i], bool(st.dem[i]), False,
                       sim.end_g)
            sim.lts_type[i] = LTS_NONE
        if sim.reab_start[i] >= 0:
            sc.add(pid=[i], type=["Service"], start=[min(sim.reab_start[i], dd)], end=[dd],
                   service=[REABLEMENT_SERVICE_TYPE], component=["Home Support"],
                   reason=["Physical Support: Personal Care Support"], outcome=["Early Cessation of Service"],
                   cost=[400.0])
            sim.reab_start[i] = -1
        if sim.tele_open[i]:
            _close_tele(sc, i, sim.tele_start[i], dd)
            sim.tele_open[i] = False
    if len(dead):
        cause = np.where(st.dem[dead] & (rng.random(len(dead)) < 0.6),
                         np.array(C.DEMENTIA_ICD, dtype=object)[rng.integers(0, len(C.DEMENTIA_ICD), len(dead))],
                         np.array(C.DEATH_CAUSES, dtype=object)[rng.integers(0, len(C.DEATH_CAUSES), len(dead))])
        sim.deaths.add(pid=dead, day=sim.death_day[dead], cause=C.format_icd(cause, rng))


def _still_open_at_extract(sim: ChunkSim) -> None:
    """Services still open at the extract: written with a null end date."""
    rng, st, sc = sim.rng, sim.st, sim.sc
    for i in np.flatnonzero(sim.lts_type != LTS_NONE):
        _close_lts(sc, rng, i, sim.lts_start[i], None, sim.lts_type[i], sim.age0[i] + 3, bool(st.dem[i]), False,
                   sim.end_g)
    for i in np.flatnonzero(sim.reab_start >= 0):
        sc.add(pid=[i], type=["Service"], start=[sim.reab_start[i]], end=[None], service=[REABLEMENT_SERVICE_TYPE],
               component=["Home Support"], reason=["Physical Support: Personal Care Support"], outcome=[None],
               cost=[400.0])
    for i in np.flatnonzero(sim.tele_open):
        _close_tele(sc, i, sim.tele_start[i], None)


def simulate_chunk(pop: Population, lo: int, hi: int, chunk: int, seed: int, world: World, grid_start: int,
                   end_day: int, truth_dates: list[date], replicates: dict[str, int] | None = None,
                   programme: Programme | None = None) -> ChunkResult:
    """Run the weekly model for residents ``lo:hi`` and build their tables and truth.

    Each week: the latent step (``advance``), then one writer per source, always in this order (it is the
    order the chunk's random stream is drawn in).
    """
    sim = _baseline(pop, lo, hi, seed, chunk, world, grid_start, end_day)
    st, sx, rng, n = sim.st, sim.sx, sim.rng, sim.n
    reg_g = pop.reg[lo:hi] - grid_start
    n_steps = sim.end_g // 7 + 1

    for s in range(-BURN_IN_WEEKS, 0):
        advance(st, sx, s, rng, world, record=False, burn_in=True)

    truth_steps = {(to_days(t) - grid_start) // 7: t for t in truth_dates}
    truth_p: dict[date, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    prog = None if programme is None else ChunkProgramme(
        programme, (to_days(programme.start) - grid_start) // 7, grid_start, n, seed, chunk,
        np.random.default_rng([seed, 5, chunk]))
    for s in range(n_steps):
        if s in truth_steps:
            truth_p[truth_steps[s]] = _truth_at(sim, s, truth_steps[s], seed, chunk, replicates)
        f_before = st.f
        lts_before = st.lts.copy()
        effect = None if prog is None else prog.before_week(s, st, sx, reg_g, world)
        d = advance(st, sx, s, rng, world, effect=effect)
        if prog is not None:
            prog.after_week(s, d.ea)
        base = s * 7
        age = sim.age0 + s * 7 / 365

        # deaths first: everything else that week happens on or before the death day
        dead = np.flatnonzero(d.death)
        sim.death_day[dead] = base + rng.integers(0, 7, len(dead))

        _emergency_spells_and_ae(sim, d, base, age, f_before, chunk)
        _elective_spells(sim, d, base, f_before, chunk)
        _falls_at_home(sim, d, base)
        _ae_not_admitted(sim, d, base, age)
        _gp_record(sim, d, base, age)
        _social_care(sim, d, base, age, lts_before)
        _deaths(sim, dead, age)

    _still_open_at_extract(sim)
    result = _build(pop, lo, hi, grid_start, sim.end_g, sim.death_day, sim.gp, sim.spells, sim.ae, sim.sc,
                    sim.deaths, truth_p, reg_g)
    if prog is not None:
        result.programme_actions = prog.actions(pop.nhs[lo:hi])
        result.programme_truth = prog.truth_sums()
    _add_address_history(result, pop, lo, hi, seed, chunk, grid_start, end_day, sim.death_day <= sim.end_g,
                         sim.death_day + grid_start)
    return result


def _add_address_history(result: ChunkResult, pop: Population, lo: int, hi: int, seed: int, chunk: int,
                         grid_start: int, end_day: int, dead: np.ndarray, death_day: np.ndarray) -> None:
    """The addresses source and its moves (synthetic/addresses.py, own random stream); the residents file's
    uprn and lsoa11 become each person's address at the extract (or at death), as a real snapshot is."""
    history = address_history(pop, lo, hi, seed, chunk, grid_start, end_day, np.where(dead, death_day, NEVER),
                              result.tables["social_care_events"])
    result.tables["residents"] = result.tables["residents"].with_columns(
        pl.Series("lsoa11", history.current_lsoa.tolist(), dtype=pl.String),
        pl.Series("uprn", history.current_uprn.tolist(), dtype=pl.String),
    )
    result.tables["addresses"] = history.addresses
    result.moves = history.moves


def _secondaries(rng: np.random.Generator, primary: np.ndarray, f: np.ndarray, dem: np.ndarray,
                 add_fall: np.ndarray) -> np.ndarray:
    """Comma-separated secondary diagnoses: more (and higher-HFRS) codes for frailer people."""
    hfrs = C.pools().hfrs
    counts = np.minimum(rng.poisson(0.4 + 12 * f), 6)
    out = np.empty(len(primary), dtype=object)
    for i in range(len(primary)):
        chosen = [hfrs[j] for j in rng.choice(len(hfrs), counts[i], replace=False)] if counts[i] else []
        if dem[i] and rng.random() < 0.8:
            chosen.append(C.DEMENTIA_ICD[rng.integers(0, len(C.DEMENTIA_ICD))])
        if add_fall[i]:
            chosen.insert(0, C.FALL_ICD[rng.integers(0, len(C.FALL_ICD))])
        chosen = [c for c in dict.fromkeys(chosen) if c != primary[i]]
        out[i] = ",".join(C.format_icd(np.array(chosen, dtype=object), rng)) if chosen else ""
    return out


def _close_lts(sc: Rows, rng: np.random.Generator, i: int, start: int, end: int | None, kind: int, age: float,
               dem: bool, alone: bool, end_g: int) -> None:
    """Write one long-term service episode and its annual reviews."""
    reason = _support_reason(rng, np.array([age]), np.array([dem]), np.array([alone]))[0]
    cost = LTS_WEEKLY_COST[int(kind)] * float(rng.uniform(0.85, 1.2))
    sc.add(pid=[i], type=["Service"], start=[int(start)], end=[end], service=[LTS_SERVICE[int(kind)]],
           component=["Home Support" if kind == LTS_COMMUNITY else None], reason=[reason],
           outcome=["Service Ended" if end is not None else None], cost=[round(cost, 2)])
    review = int(start) + 365
    last = end_g if end is None else min(end - 1, end_g)
    while review <= last:
        if review >= 0:
            sc.add(pid=[i], type=["Review"], start=[review], end=[review], service=[None], component=[None],
                   reason=[reason],
                   outcome=["No change in Long Term Support" if rng.random() < 0.8 else "Change in Long Term Support"],
                   cost=[np.nan])
        review += 365


def _close_tele(sc: Rows, i: int, start: int, end: int | None) -> None:
    sc.add(pid=[i], type=["Service"], start=[int(start)], end=[end], service=["Short Term Support: Other Short Term"],
           component=["Telecare"], reason=["Physical Support: Access & Mobility Only"],
           outcome=["Service Ended" if end is not None else None], cost=[5.5])


def _build(pop: Population, lo: int, hi: int, grid_start: int, end_g: int, death_day: np.ndarray, gp: Rows,
           spells: Rows, ae: Rows, sc: Rows, deaths: Rows, truth_p: dict, reg_g: np.ndarray) -> ChunkResult:
    """Internal rows -> contract tables (valid rows only), plus the truth for each index date."""
    nhs = pop.nhs[lo:hi]
    dead_by_end = death_day <= end_g
    dd = np.where(dead_by_end, death_day, end_g)
    i64 = pl.Int64

    def to_date(col: str) -> pl.Expr:
        return (pl.col(col) + grid_start).cast(pl.Int32).cast(pl.Date)

    def person(df: pl.DataFrame) -> pl.DataFrame:
        return df.with_columns(pl.Series("nhs_number", nhs[df["pid"].to_numpy()].tolist(), dtype=pl.String))

    limit = pl.Series("limit", dd)

    g = gp.frame({"pid": i64, "day": i64, "code": pl.String})
    g = g.filter((pl.col("day") <= limit.gather(g["pid"])) & (pl.col("day") >= 0))
    g = person(g.unique(maintain_order=True).sort("pid", "day", "code"))
    gp_df = g.select("nhs_number", to_date("day").alias("event_date"), pl.col("code").alias("snomed_code"),
                     pl.lit(None, dtype=pl.Float64).alias("value"))

    s = spells.frame({"pid": i64, "spell_id": pl.String, "adm": i64, "dis": i64, "method": pl.String,
                      "primary": pl.String, "secondary": pl.String, "dest": pl.String})
    pd_ = limit.gather(s["pid"])
    died_in = s["dis"] >= pd_
    s = s.with_columns(
        pl.when(died_in & pl.Series(dead_by_end[s["pid"].to_numpy()])).then(pl.lit("79")).otherwise("dest").alias("dest"),
        pl.when(pl.Series(dead_by_end[s["pid"].to_numpy()]) & died_in).then(pd_).otherwise("dis").alias("dis"),
    )
    # the last simulated week can run past a mid-week extract date: nothing after the extract is delivered
    s = s.filter(pl.col("adm") <= end_g)
    # still in hospital at the extract: an open spell has neither a discharge date nor a destination
    still_in = pl.col("dis") > end_g
    s = s.with_columns(pl.when(still_in).then(None).otherwise("dest").alias("dest"),
                       pl.when(still_in).then(None).otherwise("dis").alias("dis"))
    s = person(s.sort("pid", "adm", "spell_id"))
    spells_df = s.select("nhs_number", "spell_id", to_date("adm").alias("admission_date"),
                         to_date("dis").alias("discharge_date"), pl.col("method").alias("admission_method"),
                         pl.col("primary").alias("primary_diagnosis"), pl.col("secondary").alias("secondary_diagnoses"),
                         pl.col("dest").alias("discharge_destination"))

    a = ae.frame({"pid": i64, "day": i64, "mode": pl.String, "complaint": pl.String, "diagnosis": pl.String,
                  "admitted": pl.Boolean})
    a = person(a.filter(pl.col("day") <= end_g).unique(maintain_order=True).sort("pid", "day", "complaint"))
    ae_df = a.select("nhs_number", to_date("day").alias("arrival_date"), pl.col("mode").alias("arrival_mode"),
                     pl.col("complaint").alias("chief_complaint_snomed"),
                     pl.col("diagnosis").alias("diagnosis_snomed"), "admitted")

    c = sc.frame({"pid": i64, "type": pl.String, "start": i64, "end": i64, "service": pl.String,
                  "component": pl.String, "reason": pl.String, "outcome": pl.String, "cost": pl.Float64})
    lim = limit.gather(c["pid"])
    c = c.with_columns(pl.min_horizontal("start", lim).alias("start"))
    c = c.with_columns(
        pl.when(pl.col("end").is_not_null()).then(pl.min_horizontal(pl.max_horizontal("end", "start"), lim))
        .otherwise(None).alias("end"),
        pl.col("cost").fill_nan(None),
    )
    c = c.with_columns(pl.when(pl.col("end") > end_g).then(None).otherwise("end").alias("end"))
    c = c.filter(pl.col("start") <= end_g)
    c = person(c.unique(maintain_order=True).sort("pid", "start", "type", "service", nulls_last=True))
    sc_df = c.select("nhs_number", pl.col("type").alias("event_type"), to_date("start").alias("event_start_date"),
                     to_date("end").alias("event_end_date"), pl.col("service").alias("service_type"),
                     pl.col("component").alias("service_component"),
                     pl.col("reason").alias("primary_support_reason"), pl.col("outcome").alias("event_outcome"),
                     pl.col("cost").alias("unit_cost"))

    dth = deaths.frame({"pid": i64, "day": i64, "cause": pl.String})
    dth = person(dth.filter(pl.col("day") <= end_g).sort("pid"))
    deaths_df = dth.select("nhs_number", to_date("day").alias("date_of_death"),
                           pl.col("cause").alias("underlying_cause_icd10"))

    dod = np.where(dead_by_end, death_day + grid_start, -10**6)
    residents_df = pl.DataFrame({
        "nhs_number": pl.Series(nhs.tolist(), dtype=pl.String),
        "date_of_birth": pl.Series(pop.dob[lo:hi].astype(np.int32)).cast(pl.Date),
        "sex": pl.Series(pop.sex[lo:hi].tolist(), dtype=pl.String),
        "ethnic_category": pl.Series(pop.ethnic[lo:hi].tolist(), dtype=pl.String),
        "lsoa11": pl.Series(pop.lsoa[lo:hi].tolist(), dtype=pl.String),
        "uprn": pl.Series(pop.uprn[lo:hi].tolist(), dtype=pl.String),
        "gp_practice": pl.Series(pop.practice[lo:hi].tolist(), dtype=pl.String),
        "locality": pl.Series(pop.locality[lo:hi].tolist(), dtype=pl.String),
        "registration_start": pl.Series(pop.reg[lo:hi].astype(np.int32)).cast(pl.Date),
        "date_of_death": pl.Series(np.where(dod > -10**6, dod, 0).astype(np.int32)).cast(pl.Date),
    }).with_columns(pl.when(pl.Series(dead_by_end)).then(pl.col("date_of_death")).otherwise(None).alias("date_of_death"))

    tables = {"residents": residents_df, "gp_events": gp_df, "hospital_spells": spells_df, "ae_attendances": ae_df,
              "social_care_events": sc_df, "deaths": deaths_df}
    for name, df in tables.items():
        assert df.columns == SOURCES[name].names, (name, df.columns)
        tables[name] = df.cast(SOURCES[name].schema)  # type: ignore[arg-type]

    truth = {t: _truth_frame(t, p, residents_df, spells_df, sc_df) for t, p in truth_p.items()}
    living = residents_df.filter(pl.col("date_of_death").is_null())["nhs_number"].to_numpy()
    return ChunkResult(tables=tables, truth=truth, living_nhs=living)


def _truth_frame(t: date, p: tuple[np.ndarray, np.ndarray, np.ndarray], residents: pl.DataFrame,
                 spells: pl.DataFrame, sc: pl.DataFrame) -> pl.DataFrame:
    """Truth for index date T: true probabilities and what the written data says happened (DESIGN §5)."""
    end = t + timedelta(days=365)
    ea = spells.filter(pl.col("admission_method").is_in(EMERGENCY_ADMISSION_METHODS)
                       & pl.col("admission_date").is_between(t, end, closed="left"))["nhs_number"].unique()
    lts = sc.filter((pl.col("event_type") == "Service") & pl.col("service_type").is_in(LONG_TERM_SERVICE_TYPES))
    open_at_t = lts.filter((pl.col("event_start_date") < t)
                           & (pl.col("event_end_date").is_null() | (pl.col("event_end_date") >= t)))["nhs_number"]
    new = lts.filter(pl.col("event_start_date").is_between(t, end, closed="left"))["nhs_number"]
    ce = new.filter(~new.is_in(open_at_t.implode())).unique()
    died = residents["date_of_death"].is_between(t, end, closed="left").fill_null(False)
    return residents.select(
        "nhs_number",
        pl.lit(t).alias("index_date"),
        ((pl.col("registration_start") < t) & (pl.col("date_of_birth") < t)
         & (pl.col("date_of_death").is_null() | (pl.col("date_of_death") >= t))).alias("eligible"),
        pl.Series("p_emergency_admission", p[0]),
        pl.Series("p_care_escalation", p[1]),
        pl.Series("p_crisis", p[2]),
        pl.col("nhs_number").is_in(ea.implode()).alias("y_emergency_admission"),
        pl.col("nhs_number").is_in(ce.implode()).alias("y_care_escalation"),
    ).with_columns(
        (pl.col("y_emergency_admission") | pl.col("y_care_escalation") | pl.Series(died)).alias("y_crisis")
    ).select(TRUTH_COLUMNS)
