"""Ground-truth worlds: every parameter of the latent health model, declared in one dataclass per world.

Why a dataclass per world: the models engineer must be able to show the pipeline *learns* the risk drivers
rather than having them hard-wired. ``alt`` changes which drivers dominate (isolation, bereavement and
deprivation up; frailty and falls down) while keeping the data shapes identical.

Rates are annual, on the log scale (log-hazard = intercept + sum of coefficient x driver). Drivers:
``f`` latent frailty (about an eFI, 0-1), ``age_s`` = max(age - 50, 0) / 10, ``dep`` deprivation
(0 = IMD decile 10, 1 = decile 1), ``fall_mem``/``adm_mem``/``ber_mem`` decaying counts of recent falls,
emergency admissions and bereavements, ``alone`` living alone (adults), ``dem`` dementia, ``u`` a person
frailty-independent propensity for using services (partly visible through GP and A&E contact rates).
"""

from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class World:
    name: str
    # --- frailty: baseline and progression -------------------------------------------------------
    frailty_noise_sd: float = 0.45  # log-normal spread of baseline frailty at a given age
    frailty_dep: float = 0.35  # deprivation multiplies baseline frailty by exp(frailty_dep * dep)
    # Generator 1.4: chronic frailty follows each person's age trajectory (simulate.frailty_trajectory), so the
    # frailty of the living at a given age stays the same year after year; falls, admissions and bereavement
    # add frailty that fades with their memory (recovery), instead of the fixed yearly growth and permanent
    # jumps of 1.3, under which the old grew frailer every simulated year (bench/README.md, issue 12 session 3).
    fall_jump: float = 0.012
    adm_jump: float = 0.015
    ber_jump: float = 0.01
    memory_half_life_weeks: float = 26.0
    u_sd: float = 0.4
    # --- falls -----------------------------------------------------------------------------------
    fall_base: float = -3.6
    fall_f: float = 7.0
    fall_age: float = 0.30
    fall_dem: float = 0.6
    fall_dep: float = 0.2
    fall_mem: float = 0.5
    fall_admit_base: float = -2.9  # logit of P(admitted | fall); generator 1.3: calibrated, see ea_base
    fall_admit_f: float = 5.0
    fall_admit_age: float = 0.25
    # --- emergency admission (not fall-related) ---------------------------------------------------
    # Re-weighted in generator 1.1 so that, as in real linked data, much of the risk beyond age is *recorded*:
    # deprivation, living alone, bereavement and prior admissions, not only the latent propensity u.
    # Generator 1.3: intercepts moved so the realism report (synthetic/realism.py) is within 25% of England.
    # Generator 1.5: the age slope beyond frailty is now slightly negative and the intercept higher, so the
    # rate at 65+ matches England's (0.25 per person-year, england.csv) with the all-ages rate unchanged: 1.4
    # had 0.39 at 65+ (1.24 at 85+) and too few admissions under 65 (bench/README.md, issue 12 session 3).
    # Generator 1.7: -0.12 (was -0.08). With England's age mix at 65+ (more people 85+, population.OldAges) 1.6's
    # slope gave 1.23 x England's 65+ rate at 60k and 1.10 x its all-ages rate.
    ea_base: float = -3.74
    ea_f: float = 6.0
    ea_age: float = -0.12
    #: Generator 1.8: children's log admission hazard relative to adults' (simulate.ea_age_term): England admits
    #: 0.076 children and 0.081 adults of 18-64 per person-year (HES 2019/20, england.csv); 1.7 gave 0.87 x at 0-17.
    ea_child: float = 0.2
    ea_dep: float = 1.3
    ea_fall: float = 0.6
    ea_adm: float = 0.75
    ea_ber: float = 1.0
    ea_alone: float = 0.9
    ea_dem: float = 0.3
    ea_u: float = 0.5
    # --- elective admissions and non-admitted A&E --------------------------------------------------
    # Generator 1.6: +0.45 (was -2.6), so elective admissions and day cases are about 0.15 per person-year as in
    # England (synthetic/reference/england.csv; 1.5 gave 0.094, 0.64 of it). Drawn electives that fall inside
    # another stay are postponed, so the intercept sits a little above log(0.15).
    el_base: float = -2.15
    el_age: float = 0.25
    el_f: float = 2.0
    ae_base: float = -1.6
    ae_f: float = 3.0
    ae_dep: float = 0.4
    ae_u: float = 1.2
    ae_age: float = 0.05
    gp_base: float = 1.0
    gp_f: float = 5.0
    gp_u: float = 1.0
    gp_age: float = 0.1
    # --- death ------------------------------------------------------------------------------------
    # generator 1.4: +0.75 with the saturating memory of admissions (deaths near England's again).
    # Generator 1.6: the age slope over 50 is 0.55 per decade (was 0.75) with the intercept 0.4 higher (was -6.9):
    # 1.5 had 0.21 deaths per person-year at 85+ against England's 0.155 (england.csv then, from ONS life tables;
    # 0.142 crude since 1.8),
    # and the change leaves 65-74 where it was (about 0.017). Only part of a cut at 85+ reaches the crude rate:
    # fewer deaths leave frailer survivors (the frailty trajectory keeps the mean, so the spread widens) and more
    # people over 90; a first try at 0.65 and -6.7 moved 85+ only from 0.208 to 0.198 over six years at 280k.
    # Generator 1.8: the slope over 50 0.45 a decade (was 0.55) and the intercept -6.4 (was -6.5), with the slopes
    # below 50 and over 85 (death_young, death_oldest). England's deaths by band (HMD England and Wales 2019,
    # england.csv): 1.7 gave 0.9 x at 45-64, 1.14 x at 65-74, 1.24 x at 75-84 and 1.22 x at 85+ (280k; 85+ against
    # the crude 0.142); a lower intercept alone took 45-64 to 0.79 x, -6.51 with 0.48 to 0.66-0.83 x (60k).
    death_base: float = -6.4
    death_f: float = 9.0
    death_age: float = 0.45
    #: Generator 1.8: the death hazard falls below 50 by this much per decade, to 18 (simulate.death_age_term). 1.7
    #: was flat from 18 to 50, so a 25-year-old died as often as a 49-year-old: 1.15 x England's 18-64 rate (2.4 x
    #: at 18-44). England's rate at 18-50 grows 0.55-0.75 a decade on the log scale (HMD E&W 2019, england.csv); 0.7
    #: took 18-64 to 0.76 x, because the generator's rate over 50 rises more slowly than England's (0.5: 0.69-0.84 x).
    death_young: float = 0.4
    #: Generator 1.8: the death hazard rises this much more per decade over 85. Frailty, the other age-linked term,
    #: levels off in the late 80s, so the generator's rate grew more slowly than England's past 90 and, with
    #: 1.8's rates at 75-84, too many people lived past 90: 1.39 x England's 90+ share of the population at 60k
    #: (default; 1.23 x alt) with the 85+ crude death rate at England's.
    death_oldest: float = 0.35
    #: Generator 1.6: children's log death hazard relative to the flat 18-49 level (simulate.death_age_term):
    #: England's 0-17 rate is 0.00033 per person-year (england.csv), about a quarter of young adults'.
    death_child: float = -1.95  # generator 1.8: with death_base and death_young (1.7: -1.83)
    death_dep: float = 0.3
    death_adm: float = 0.4
    death_dem: float = 0.5
    #: Generator 1.7: this world's death rate at 65+ as a Gompertz curve, m70 x exp(gompertz x (age - 70)),
    #: fitted (weighted by deaths) to the simulated deaths by single year of age 60-98 over six years at 280k
    #: (generator 1.6, bench/README.md, issue 12 session 6). It shapes the ages drawn at 65+ so that the older
    #: population is stationary (population.OldAges); re-fit after changing the death terms.
    #: Generator 1.8: re-fitted (maximum likelihood, deaths by single year 60-98 over six years of the latent model at
    #: 400,000 residents, rate at the year's middle) for 1.8's death terms.
    old_age_m70: float = 0.0133
    old_age_gompertz: float = 0.1193
    # --- dementia onset ---------------------------------------------------------------------------
    # Generator 1.4: onset high enough to keep simulate.dementia_prevalence (the baseline's curve) as people
    # age and those with dementia die sooner; 1.3's (-8.6, 1.1) let prevalence at 75-84 fall by half in 5 years.
    dem_base: float = -8.67
    dem_age: float = 1.5
    dem_f: float = 3.0
    dem_diagnosed: float = 0.65
    # --- social care (CLD pathway) ----------------------------------------------------------------
    req_base: float = -4.55  # generator 1.4: +0.25 with the saturating memory of admissions
    req_f: float = 8.0
    req_age: float = 0.25
    req_alone: float = 0.8
    req_fall: float = 0.6
    req_adm: float = 0.6
    req_ber: float = 0.5
    req_dem: float = 0.9
    req_dep: float = 0.2
    # Generator 1.4: routes into long-term support a third of 1.3's. Support ends only at death here, and with
    # 1.3's inflows the stock, once built up, would reach 17% of people 65+ (6.7% in care homes against
    # England's 2.5%); 1.3 matched the care-home figure only because its baseline held a third of that stock,
    # which then grew year after year. The baseline now starts at the steady state (``lts_seed_*``).
    lts_direct_base: float = 0.013  # P(request -> long-term support) = base + slope * f, capped
    lts_direct_f: float = 0.13
    lts_direct_alone: float = 0.017
    #: Share of direct long-term support that is a care home (for people with dementia or frailty > 0.3);
    #: generator 1.3 lowered it from 0.5, 1.4 to 0.25, so care-home residence at 65+ matches Census 2021.
    lts_direct_care_home: float = 0.25
    reablement_share: float = 0.30
    telecare_share: float = 0.22
    reab_to_lts_base: float = 0.027
    reab_to_lts_f: float = 0.27
    # Generator 1.6: -0.4 (was -10.45), as escalate_base: with fewer deaths at 85+ residents stay longer, and
    # with 1.5's inflows the care-home share at 85+ rose to 0.174-0.177 (england.csv 0.143) and kept rising
    # year by year at 60k from the 1.5 steady state the seeds hold; at -0.2 it still rose (65+: 1.22 x England).
    # Lowering the inflows by the length-of-stay gain brings the steady state back to the seeds.
    # Generator 1.7: -0.1 again, with the care-home seeds (lts_seed_care_home) x 0.85 and escalate_base -0.15, so
    # the steady state and the seeds move together: with more people 85+ the care-home share of the 65+ was 1.28 x
    # England's at 60k (1.6's too-young 65+ had hidden a 75-84 share of 2.6%), and 1.16 x at 85+.
    # Generator 1.8: -12.43 with the age term 1.4 (was -10.95 and 1.1). England's care-home residents are 2.5% of
    # people 65+ and 14.3% of people 85+, so about 1.5% at 75-84 (england.csv); 1.7 had 2.4-3.0% there and the 65+
    # share 1.23 x England's at 60k. The steeper age term alone (-12.0) kept 85; with 1.8's fewer deaths at 75+
    # residents stay longer, and the 85+ stock then rose from 0.158 to 0.201 in six years (400,000 residents,
    # latent model), so the inflows are lower by a third (-0.43).
    carehome_from_ea_base: float = -12.43  # logit, people 65+ (generator 1.5: with the age term below)
    carehome_from_ea_f: float = 9.0
    carehome_from_ea_dem: float = 1.4
    carehome_from_ea_alone: float = 0.8
    #: Generator 1.5: care-home moves rise with age beyond what frailty and dementia explain (per decade over
    #: 50), so residence is concentrated at 85+ as in England (1 in 7 aged 85+, 0.5-2% at 65-84; england.csv).
    carehome_from_ea_age: float = 1.4
    reab_from_ea: float = 0.12
    #: Reablement is offered to people with rehabilitation potential: the offer fades out around this frailty.
    reab_from_ea_frailty: float = 0.25
    #: Community LTS -> care home, log annual rate (1.5: with escalate_age; 1.6: -0.4; 1.7: -0.15; 1.8: -9.08 with
    #: escalate_age 1.4, as carehome_from_ea_base).
    escalate_base: float = -9.08
    escalate_f: float = 5.0
    escalate_dem: float = 1.2
    escalate_age: float = 1.4  # generator 1.5: per decade over 50, as carehome_from_ea_age (1.8: 1.4)
    # --- who already has long-term support at the start (generator 1.4; re-measured for 1.5) -------------
    #: The steady state of the routes above, by age (5-year bands, mid-points): share of adults with long-term
    #: support, and the share of those in a care home. Measured by running this world's latent model for 35
    #: years and reading people who started under 60 (bench/README.md, issue 12 session 3; 85+ a little
    #: lower, because after 35 years nearly every old person there lives alone, which raises their requests),
    #: so the stock neither grows nor shrinks over the simulated years. Re-measure after changing the routes.
    #: Generator 1.5 re-measured them for its care-home routes (35 years, 100,000 people, same method), then
    #: set the 85+ care-home shares so that the 85+ stock stays flat year by year in generated deliveries
    #: (checked at 40k and 280k: care-home share of the living by band at each year end, bench/README.md).
    #: Generator 1.8: a point at 97.5 (the shares at 92.5 held for everyone older, but the steady state keeps
    #: rising with age), and the shares at 65+ re-measured for 1.7's age mix (OldAges) and 1.8's death and
    #: care-home terms: six simulated years of this world's latent model at 400,000 residents give the stock by
    #: 5-year band at each year-end (from 1.7's seeds: 85-89 care homes 0.116 -> 0.096, 90-94 0.188 -> 0.226, 95+
    #: 0.248 -> 0.369); the shares were set to where it went and the run repeated until the 85+ stock stayed
    #: within noise of flat (eight rounds; /work/data-s7-gen/seeds.py, bench/README.md, issue 12 session 7).
    lts_seed_ages: tuple[float, ...] = (27.5, 32.5, 37.5, 42.5, 47.5, 52.5, 57.5, 62.5, 67.5, 72.5, 77.5, 82.5, 87.5,
                                        92.5, 97.5)
    lts_seed_any: tuple[float, ...] = (0.0035, 0.0076, 0.0073, 0.0088, 0.0143, 0.0213, 0.0231, 0.0234, 0.034, 0.050,
                                       0.081, 0.146, 0.244, 0.414, 0.66)
    #: Share of those with long-term support at the start who are in a care home. Generator 1.7: 1.6's shares x 0.85
    #: with lower care-home inflows (the 65+ care-home share was 1.28 x England's at 60k); 1.8: 65+ as above.
    lts_seed_care_home: tuple[float, ...] = (0.0425, 0.0425, 0.0425, 0.0425, 0.0425, 0.0638, 0.0425, 0.0578, 0.0285,
                                             0.0441, 0.0868, 0.148, 0.366, 0.60, 0.93)


DEFAULT = World(name="default")

#: Isolation, bereavement and deprivation dominate; frailty and falls matter much less.
ALT = replace(
    DEFAULT,
    name="alt",
    fall_base=-3.9,
    fall_f=4.0,
    fall_admit_base=-3.5,
    fall_admit_f=2.0,
    # Generator 1.8: -0.2 (was -4.2) and the age slope 0.16 (was 0.09, 1.5; 1.4: 0.22, which gave 0.36 per
    # person-year at 65+ against England's 0.25), with a children's offset: against HES 2019/20 by band
    # (england.csv) 1.7 gave 0.73 x at 0-17, 1.24 x at 45-64, 1.22 x at 65-74 and 0.78 x at 85+ (280k); children's
    # offset 0.55 (+0.3 gave 0.78 x at 0-17, 400,000 residents, latent model).
    ea_base=-4.4,
    ea_f=2.5,
    ea_age=0.21,  # 0.16, then +0.05 with 1.8's fewer people living alone (population._ALONE_BY_OLD_BAND, AdultAges)
    ea_child=0.55,
    ea_dep=1.9,
    ea_fall=0.05,
    ea_adm=0.3,
    ea_ber=1.8,
    ea_alone=1.7,
    ea_u=0.3,
    ea_dem=0.1,
    req_f=4.0,
    req_alone=1.8,
    req_ber=1.5,
    req_fall=0.1,
    # generator 1.4: requests near England's (the default's -4.55 gave 1.46x here). Generator 1.8: -0.1 (was -4.85):
    # 1.8 has more adults living alone (AdultAges), alt's strong driver of requests, 1.24 x England's at 60k.
    req_base=-4.95,
    req_dep=0.9,
    lts_direct_f=0.1,
    lts_direct_alone=0.067,
    carehome_from_ea_f=4.0,
    carehome_from_ea_alone=2.0,
    death_f=6.0,
    death_dep=0.9,
    # The weaker frailty effect on death is partly offset in the intercept (deaths near England's). Generator 1.4:
    # +0.85 with the saturating memory of admissions (1.3: -7.5, which then left deaths at 0.76x England's).
    # Generator 1.6: +0.2 (1.5: -6.65) with a slope over 50 of 0.6 per decade (1.5: 0.75). The alt world's
    # weaker frailty term leaves less of the 85+ rate to the frailty spread, so the same cut goes further than
    # in the default: at the default's 0.55 its 85+ rate fell to 0.116 against England's 0.155 (then), at 0.65 it
    # stayed at 0.176 over six years (280k).
    # Generator 1.8: -0.28 (1.7: -6.45) with a slope of 0.65 (was 0.6): against HMD E&W 2019 by band (england.csv)
    # 1.7 gave 1.26 x at 45-64, 1.30 x at 65-74, 1.33 x at 75-84 and 0.98 x at 85+ (280k).
    death_base=-6.73,
    death_age=0.65,
    old_age_m70=0.0137,  # alt's own fit (its frailty term on death is weaker, its 85+ rate lower); 1.8: re-fitted
    old_age_gompertz=0.1203,
    # Generator 1.6: alt's children die at twice the default's rate before this offset (its deprivation term
    # on death is three times the default's), so the offset is larger for the same England rate.
    death_child=-2.02,  # generator 1.8: +0.28 with death_base (1.7: -2.3)
    # generator 1.4: alt's care-home routes lower again (its steady state was 4.3% of people 65+ in care homes)
    lts_direct_care_home=0.13,  # generator 1.8: 0.13 (was 0.15), with the two inflows below
    # Generator 1.6: -0.2 each (1.5: -11.8 and -8.3), as the default's -0.4 and for the same reason: with fewer
    # deaths at 85+ residents stay longer, and alt's care-home share at 85+ rose from 0.118 to 0.149 over six
    # years at 280k with 1.5's inflows.
    # Generator 1.8: -13.42 and -9.92 with the age terms 1.5 (1.7: -12.0 and -8.5 with 1.2): at the steady state of
    # 1.7's inflows the 65+ care-home share was 0.030, 1.2 x England's (1.28 x at 60k); lower at 65-84 by the steeper
    # age term as in the default, and lower at 85+ too, where 1.8's deaths leave residents longer.
    carehome_from_ea_base=-13.42,
    carehome_from_ea_age=1.5,
    escalate_base=-9.92,
    escalate_age=1.5,
    # Generator 1.8: alt's support at 65+ rose in every band over the six years from 1.7's seeds (65+ any 0.115 ->
    # 0.148, care homes 0.023 -> 0.030, 400,000 residents); re-measured as the default's (eight rounds).
    lts_seed_any=(0.0085, 0.0074, 0.0099, 0.0118, 0.0328, 0.0548, 0.0458, 0.0475, 0.069, 0.103, 0.168, 0.307, 0.452,
                  0.693, 0.95),
    # Generator 1.7: 85+ shares x 1.25 (1.6: 0.28, 0.56). With more people over 90 (population.OldAges) alt's 85+
    # care-home share rose from 0.107 to 0.138 over six years at 280k from 1.6's seeds, and its 85+ emergency
    # admissions fell with it (-5.6 z: a move into a care home ends living alone, alt's strong driver). 1.8: as above.
    lts_seed_care_home=(0.02, 0.02, 0.02, 0.02, 0.02, 0.022, 0.02, 0.02, 0.0094, 0.0165, 0.0353, 0.110, 0.241, 0.513,
                        0.80),
)

WORLDS: dict[str, World] = {w.name: w for w in (DEFAULT, ALT)}
