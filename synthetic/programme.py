"""A past council programme inside the synthetic delivery, with a known true effect (``--programme-effect``).

Why: an evaluation method can only be trusted on real data once it has recovered a known effect. Each week
of a declared period, a targeting rule with a fixed capacity chooses people from what is OBSERVED in the
delivery (age and emergency admissions in the last 52 weeks, plus a random tie-break); some accept, with a
probability that also depends only on those observed values (so "no unmeasured confounding" holds by
construction and can be stated); acceptors' weekly hazards of emergency admission and of every route into
care escalation are multiplied by ``1 - effect`` for 53 weeks (the 365 days of the crisis window).

The true average effect on the treated (ATT) is computed per acceptor at the acceptance week from the
latent state: P(crisis in 12 months) with the effect and without it, by plain simulation of the acceptor's
whole household (``simulated_crisis_probabilities``: why not the risk truth's conditional estimator is said
there), driven by the SAME random numbers in both arms, so the only difference between the arms is the
effect. ``effect = 0`` still runs the programme (the ATT is then exactly 0).

Hooks into the weekly simulation (synthetic/chunk.py): ``ChunkProgramme.before_week`` (choose, record,
return the hazard multiplier) and ``ChunkProgramme.after_week`` (count emergency admissions).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta

import numpy as np
import polars as pl

from synthetic.population import EPOCH
from synthetic.simulate import LTS_NONE, LTS_RESIDENTIAL, TRUTH_STEPS, WEEK_YEARS, State, Static, advance, expit, subset
from synthetic.worlds import World

#: Actions file written into the delivery: exactly the columns ``upstream actions import`` reads.
ACTIONS_FILE = "programme_actions.csv"
ACTION_COLUMNS = ("nhs_number", "week", "action", "offer", "reason")
TRUTH_FILE = "programme.json"
#: Replicate futures per acceptor. Plain simulation is noisier per person than the conditional estimator, but
#: the truth is one average over thousands of acceptors: 32 futures put its standard error near 0.001.
ATT_REPLICATES = 32


@dataclass(frozen=True)
class Programme:
    """The declared programme: who is targeted, how many, what is offered, how people respond."""

    effect: float  # relative reduction of the hazards (0 <= effect < 1)
    start: date  # Monday of the first programme week
    weeks: int = 26
    #: offers per week per 100,000 residents (the capacity of the team)
    capacity_per_100k: float = 200.0
    min_age: float = 65.0
    offer: str = "falls_prevention"  # an offer id of the service catalogue (upstream/service_catalogue.toml)
    effect_weeks: int = TRUTH_STEPS  # 12 months: 52 weeks + the 365th day
    #: targeting priority = admissions in 52 weeks + (age - min_age) / age_scale + Gumbel(tie_noise)
    age_scale: float = 15.0
    tie_noise: float = 0.7
    #: acceptance logit = base + age_per_10y * (age - 75) / 10 + per_admission * min(admissions, 4)
    accept_base: float = 0.2
    accept_age_per_10y: float = -0.35
    accept_per_admission: float = 0.3

    @staticmethod
    def default_start(end_date: date, weeks: int = 26) -> date:
        """The latest period whose 12-month outcomes have all closed by the extract date."""
        last = end_date - timedelta(days=365 + 7)
        first = last - timedelta(days=7 * (weeks - 1))
        return first - timedelta(days=first.weekday())

    def acceptance_probability(self, age: np.ndarray, admissions: np.ndarray) -> np.ndarray:
        """P(accept | offered): depends only on observed age and emergency admissions in the last 52 weeks."""
        return expit(self.accept_base + self.accept_age_per_10y * (age - 75) / 10
                     + self.accept_per_admission * np.minimum(admissions, 4))

    def declaration(self) -> dict:
        return {k: (v.isoformat() if isinstance(v, date) else v) for k, v in self.__dict__.items()}


def iso_week(d: date) -> str:
    year, week, _ = d.isocalendar()
    return f"{year}-W{week:02d}"


@dataclass
class ChunkProgramme:
    """The programme's state inside one simulated chunk."""

    prog: Programme
    first_step: int
    grid_start: int  # day number of step 0
    n: int
    seed: int
    chunk: int
    rng: np.random.Generator
    ea_weeks: np.ndarray = field(init=False)  # ring buffer: emergency admissions per week, last 52 weeks
    offered: np.ndarray = field(init=False)
    effect_until: np.ndarray = field(init=False)  # first step at which the effect is over (-1: never treated)
    rows: list[tuple[int, str, str, str, str]] = field(default_factory=list)  # pid, week, action, offer, reason
    p_with: list[np.ndarray] = field(default_factory=list)
    p_without: list[np.ndarray] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.ea_weeks = np.zeros((52, self.n), dtype=np.int16)
        self.offered = np.zeros(self.n, dtype=bool)
        self.effect_until = np.full(self.n, -1, dtype=np.int64)
        self.capacity = self.prog.capacity_per_100k * self.n / 100_000

    def before_week(self, s: int, st: State, sx: Static, reg_g: np.ndarray, w: World) -> np.ndarray | None:
        """Choose this week's offers (if a programme week), then return the hazard multiplier for step s."""
        if self.first_step <= s < self.first_step + self.prog.weeks:
            self._choose(s, st, sx, reg_g, w)
        on = self.effect_until > s
        if not on.any():
            return None
        return np.where(on, 1.0 - self.prog.effect, 1.0)

    def after_week(self, s: int, ea: np.ndarray) -> None:
        self.ea_weeks[s % 52] = ea

    def _choose(self, s: int, st: State, sx: Static, reg_g: np.ndarray, w: World) -> None:
        p = self.prog
        age = sx.age0 + s * WEEK_YEARS
        admissions = self.ea_weeks.sum(axis=0)
        # registered before the week starts, alive, old enough, living at home, never offered before
        eligible = (st.alive & (reg_g < s * 7) & (age >= p.min_age) & (st.lts < LTS_RESIDENTIAL)
                    & ~self.offered)
        cap = int(np.floor(self.capacity)) + int(self.rng.random() < self.capacity % 1)
        idx = np.flatnonzero(eligible)
        if cap == 0 or len(idx) == 0:
            return
        priority = (admissions[idx] + (age[idx] - p.min_age) / p.age_scale
                    + p.tie_noise * self.rng.gumbel(size=len(idx)))
        chosen = idx[np.argsort(-priority, kind="stable")[:cap]]
        accept = self.rng.random(len(chosen)) < p.acceptance_probability(age[chosen], admissions[chosen])
        self.offered[chosen] = True
        week = iso_week(EPOCH + timedelta(days=self.grid_start + s * 7))
        for i, a in zip(chosen, accept, strict=True):
            self.rows.append((int(i), week, "offered", p.offer, ""))
            self.rows.append((int(i), week, "accepted" if a else "declined", p.offer, ""))
        self.on_offers(s, st, sx, chosen, accept, age[chosen], admissions[chosen], w)
        treated = chosen[accept]
        if len(treated):
            p1, p0 = simulated_crisis_probabilities(st, sx, s, treated, treated, self.prog.effect, w,
                                                    [self.seed, 4, self.chunk, s], ATT_REPLICATES)
            self.p_with.append(p1)
            self.p_without.append(p0)
            self.effect_until[treated] = s + p.effect_weeks

    def on_offers(self, s: int, st: State, sx: Static, chosen: np.ndarray, accept: np.ndarray, age: np.ndarray,
                  admissions: np.ndarray, w: World) -> None:
        """Hook for diagnostics (bench/loop_bias.py): this week's offers, before anyone's future is drawn."""

    def actions(self, nhs: np.ndarray) -> pl.DataFrame:
        if not self.rows:
            return pl.DataFrame(schema=dict.fromkeys(ACTION_COLUMNS, pl.String))
        pid, week, action, offer, reason = zip(*self.rows, strict=True)
        return pl.DataFrame({"nhs_number": nhs[np.array(pid)].tolist(), "week": list(week),
                             "action": list(action), "offer": list(offer), "reason": list(reason)},
                            schema=dict.fromkeys(ACTION_COLUMNS, pl.String))

    def truth_sums(self) -> tuple[float, float, int]:
        """(sum of P(crisis) with the effect, sum without, number treated) over this chunk's acceptors."""
        if not self.p_with:
            return 0.0, 0.0, 0
        p1, p0 = np.concatenate(self.p_with), np.concatenate(self.p_without)
        return float(p1.sum()), float(p0.sum()), len(p1)


def household_arms(st: State, sx: Static, focal: np.ndarray, treated: np.ndarray, effect: float, seed: list[int],
                   replicates: int) -> Iterator[tuple[np.ndarray, State, Static, np.ndarray, np.random.Generator]]:
    """The set-up every programme-truth estimator shares: the households of ``focal`` people (``members``,
    sorted), tiled ``replicates`` times, once per arm (``treated`` get ``effect``, then nobody does), with each
    person's hazard multiplier and a generator seeded alike in both arms (the same random numbers)."""
    members = np.flatnonzero(np.isin(sx.hh, np.unique(sx.hh[focal])))
    sub_st, sub_sx = subset(st, sx, members)
    is_treated = np.isin(members, treated)
    for arm_effect in (effect, 0.0):
        mult = np.tile(np.where(is_treated, 1.0 - arm_effect, 1.0), replicates)
        yield members, sub_st.tile(replicates), sub_sx.tile(replicates), mult, np.random.default_rng(seed)


def simulated_crisis_probabilities(st: State, sx: Static, s: int, focal: np.ndarray, treated: np.ndarray,
                                   effect: float, w: World, seed: list[int],
                                   replicates: int) -> tuple[np.ndarray, np.ndarray]:
    """P(crisis within 365 days of step ``s``) for ``focal`` people if ``treated`` get the effect, and if nobody
    does, in the order of ``focal``: the share of ``replicates`` whole-household futures in which the person
    has a crisis as the labels define it (emergency admission, death, or a long-term service starting for
    someone with none at the start; models/labels.py). Both arms use the same random numbers, so the only
    difference between them is the effect (with ``effect = 0`` they are identical).

    Why plain simulation and not the conditional estimator of ``synthetic.simulate.truth_probabilities``:
    that one draws futures in which NOBODY in the household has a crisis, so a partner never dies or moves
    into care and the person is never bereaved or left living alone. For a frail couple it gives the same
    risk whatever the partner's health (0.725 against 0.795 by simulation with a frail partner, 0.720 with a
    robust one: tests/loop/test_programme.py), and over the acceptors of the 280k bench it put both arms'
    risks about 0.004 too low (bench/README.md, issue 11 session 2).
    """
    out = []
    for members, rs, rx, mult, rng in household_arms(st, sx, focal, treated, effect, seed, replicates):
        k = replicates
        none_at_start = rs.lts == LTS_NONE
        crisis = np.zeros(len(members) * k, dtype=bool)
        for j in range(TRUTH_STEPS):
            frac = 1.0 if j < TRUTH_STEPS - 1 else 1 / 7
            d = advance(rs, rx, s + j, rng, w, frac=frac, record=False, effect=mult)
            crisis |= d.ea | d.death | ((d.new_lts > 0) & none_at_start)
        out.append(crisis.reshape(k, len(members)).mean(axis=0)[np.searchsorted(members, focal)])
    return out[0], out[1]


def truth_summary(prog: Programme, sums: list[tuple[float, float, int]]) -> dict:
    """``_truth/programme.json``: the true ATT on crisis within 12 months, and the declared programme."""
    s1 = sum(x[0] for x in sums)
    s0 = sum(x[1] for x in sums)
    n = sum(x[2] for x in sums)
    rd = (s1 - s0) / n if n else None
    rr = (s1 / s0) if n and s0 > 0 else None
    return {"crisis_12m": {"risk_difference": rd, "risk_ratio": rr, "n_treated": n,
                           "risk_treated": s1 / n if n else None, "risk_untreated": s0 / n if n else None},
            "estimand": "average effect on the treated (acceptors) of the programme on P(crisis within 365 days "
                        "of the acceptance week), from counterfactual simulation with the same random numbers",
            "programme": prog.declaration()}
