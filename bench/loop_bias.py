"""Where does the evaluation's gap to the programme's true effect come from? (issue 11, session 2)

Generates one delivery with a programme (in this process, one worker, so the diagnostic hooks see every
chunk), and records for every OFFERED person, at the offer week:
  - the true acceptance probability (the programme's own rule) and the observed age and admissions it used;
  - P(crisis in 365 days) with and without the effect by the truth's conditional estimator
    (``crisis_probabilities``) and by plain simulation of whole households (``simulated_crisis_probabilities``),
    for acceptors AND decliners (a decliner's "with" arm has their household's acceptors treated: spill-over);
  - the crisis that really happened in the simulation (latent: admission, death, new long-term service),
    and then the crisis label the evaluation derives from the ingested delivery (models/labels.py).
Then it decomposes: truth estimator vs plain simulation; realised vs truth; label vs realised; and the IPW
estimator with the true propensity vs the fitted one, on the labels and on the noise-free true risks.

  uv run python bench/loop_bias.py --size 60000 --capacity 600 --dir /work/data-i11/bias
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import time
from datetime import timedelta
from pathlib import Path

import numpy as np
import polars as pl

import synthetic.chunk as chunk_module
from synthetic import programme as prog_module
from synthetic.simulate import TRUTH_STEPS, State, Static, advance
from synthetic.worlds import World


def conditional_crisis_probabilities(st: State, sx: Static, s: int, focal: np.ndarray, treated: np.ndarray, effect: float,
                         w: World, seed: list[int], replicates: int) -> tuple[np.ndarray, np.ndarray]:
    """The programme truth as it was computed until session 2: the conditional estimator of
    ``synthetic.simulate.truth_probabilities`` (every household member's crisis suppressed), kept here only to
    measure its bias against ``simulated_crisis_probabilities``."""
    out = []
    for members, rs, rx, mult, rng in prog_module.household_arms(st, sx, focal, treated, effect, seed, replicates):
        k = replicates
        log_none = np.zeros(len(members) * k)
        for j in range(TRUTH_STEPS):
            frac = 1.0 if j < TRUTH_STEPS - 1 else 1 / 7
            d = advance(rs, rx, s + j, rng, w, frac=frac, record=False, suppress="crisis", effect=mult)
            h = 1 - (1 - d.p_ea) * (1 - d.p_ce_not_via_ea) * (1 - d.p_death)
            log_none += np.log1p(-np.minimum(h, 1 - 1e-12))
        p = (-np.expm1(log_none)).reshape(k, len(members)).mean(axis=0)
        out.append(p[np.searchsorted(members, focal)])  # in the order of ``focal``
    return out[0], out[1]



RECORDS: list[dict] = []
_LAST: dict = {}
REPS = {"conditional": 8, "simulated": 16}


class DiagProgramme(prog_module.ChunkProgramme):
    """The programme with diagnostic hooks: truths for everyone offered, and what really happened."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.tracked: list[tuple[int, np.ndarray, np.ndarray, np.ndarray]] = []  # step, ids, none_at_start, crisis

    def on_offers(self, s, st, sx, chosen, accept, age, admissions, w) -> None:
        treated = chosen[accept]
        seed = [self.seed, 40, self.chunk, s]
        c1, c0 = conditional_crisis_probabilities(st, sx, s, chosen, treated, self.prog.effect, w, seed,
                                                  REPS["conditional"])
        m1, m0 = prog_module.simulated_crisis_probabilities(st, sx, s, chosen, treated, self.prog.effect, w,
                                                            seed, REPS["simulated"])
        hh_acceptors = np.bincount(sx.hh[treated], minlength=sx.n_hh)[sx.hh[chosen]]
        for k, i in enumerate(chosen):
            RECORDS.append({"chunk": self.chunk, "i": int(i), "step": s, "accepted": bool(accept[k]),
                            "age": float(age[k]), "admissions": int(admissions[k]),
                            "propensity": float(self.prog.acceptance_probability(age[k:k + 1],
                                                                                 admissions[k:k + 1])[0]),
                            "household_acceptors_other": int(hh_acceptors[k] - accept[k]),
                            "cond_with": float(c1[k]), "cond_without": float(c0[k]),
                            "sim_with": float(m1[k]), "sim_without": float(m0[k])})
        self.tracked.append((s, chosen.copy(), st.lts[chosen] == 0, np.zeros(len(chosen), dtype=bool)))

    def after_week(self, s: int, ea: np.ndarray) -> None:
        super().after_week(s, ea)
        d = _LAST["step"]
        for s0, ids, none0, crisis in self.tracked:
            if s0 <= s < s0 + TRUTH_STEPS - 1:  # 52 whole weeks: the 365th day is compared separately
                crisis |= d.ea[ids] | d.death[ids] | ((d.new_lts[ids] > 0) & none0)

    def actions(self, nhs):
        for s0, ids, _none0, crisis in self.tracked:
            for i, c in zip(ids, crisis, strict=True):
                _REALISED[(self.chunk, s0, int(i))] = (bool(c), str(nhs[i]))
        return super().actions(nhs)


_REALISED: dict[tuple[int, int, int], tuple[bool, str]] = {}


def _advance(*args, **kwargs):
    d = _ORIG_ADVANCE(*args, **kwargs)
    _LAST["step"] = d
    return d


_ORIG_ADVANCE = chunk_module.advance


def ipw(t: np.ndarray, y: np.ndarray, e: np.ndarray) -> tuple[float, float, float]:
    """(risk treated, weighted comparison risk, ratio) with ATT weights e / (1 - e)."""
    w = e / (1 - e)
    r1 = float(y[t].mean())
    r0 = float(np.average(y[~t], weights=w[~t]))
    return r1, r0, r1 / r0


def main() -> None:
    a = argparse.ArgumentParser()
    a.add_argument("--size", type=int, default=60000)
    a.add_argument("--seed", type=int, default=1)
    a.add_argument("--effect", type=float, default=0.3)
    a.add_argument("--capacity", type=float, default=600.0)
    a.add_argument("--dir", required=True)
    args = a.parse_args()
    chunk_module.ChunkProgramme = DiagProgramme
    chunk_module.advance = _advance

    import synthetic.generate as generate_module
    from expectations.ingest import ingest_delivery
    from loop.actions import import_actions, read_actions, week_monday
    from loop.evaluate import _design, _propensity, frames_at_weeks, offered_people
    from models.labels import build_labels
    from synthetic.generate import generate_delivery
    from upstream.settings import Settings

    base = Path(args.dir)
    shutil.rmtree(base, ignore_errors=True)
    raw, home = base / "raw", base / "home"
    started = time.perf_counter()
    # the diagnostic capacity: more offers per resident, so the paired comparisons are precise

    class _Declared:
        default_start = staticmethod(prog_module.Programme.default_start)

        def __new__(cls, **kw):
            return prog_module.Programme(capacity_per_100k=args.capacity, **kw)

    generate_module.Programme = _Declared
    generate_delivery(raw, residents=args.size, seed=args.seed, programme_effect=args.effect, workers=1,
                      defect_rate=0.01)
    print(f"generated in {time.perf_counter() - started:.0f} s", flush=True)
    truth = json.loads((raw / "_truth" / "programme.json").read_text())["crisis_12m"]
    settings = Settings(home=home)
    ingest_delivery(raw, home / "weeks" / "2026-W47" / "ingest", settings)
    import_actions(raw / "programme_actions.csv", settings)
    reid = pl.read_parquet(settings.reid_map_path).select("nhs_number", "person_id")

    rec = pl.DataFrame(RECORDS)
    realised = pl.DataFrame([{"chunk": k[0], "step": k[1], "i": k[2], "realised": v[0], "nhs_number": v[1]}
                             for k, v in _REALISED.items()])
    rec = rec.join(realised, on=["chunk", "step", "i"]).join(reid, on="nhs_number", how="left")
    people = offered_people(read_actions(settings, ("0000-W01", "9999-W53")))
    clean = sorted((home / "weeks").glob("*/ingest"))[-1] / "clean"
    frame, _ = frames_at_weeks(clean, people, pl.DataFrame(schema={"person_id": pl.String, "week": pl.String,
                                                                   "listed": pl.Boolean}),
                               np.random.default_rng(0))
    short = []
    for week in people["week"].unique().to_list():
        t = week_monday(week)
        lab = build_labels(clean, t, timedelta(days=364)).select(
            "person_id", pl.col("crisis").alias("label_364"))
        short.append(people.filter(pl.col("week") == week).join(lab, on="person_id", how="inner"))
    frame = frame.join(pl.concat(short).select("person_id", "label_364"), on="person_id", how="left")
    df = rec.join(frame.select("person_id", "crisis", "label_364", "accepted"), on="person_id", how="inner",
                  suffix="_eval")
    print(f"offered {len(rec)}, matched to the evaluation's frame {len(df)}; accepted in both agree: "
          f"{(df['accepted'] == df['accepted_eval']).all()}")
    t = df["accepted"].to_numpy()
    out: dict = {"size": args.size, "capacity_per_100k": args.capacity, "effect": args.effect,
                 "n_treated": int(t.sum()), "n_declined": int((~t).sum()),
                 "truth_json": {k: truth[k] for k in ("risk_treated", "risk_untreated", "risk_ratio")}}
    m = {c: df[c].to_numpy().astype(float) for c in ("cond_with", "cond_without", "sim_with", "sim_without",
                                                      "realised", "label_364", "crisis", "propensity")}
    out["acceptors"] = {c: float(m[c][t].mean()) for c in m if c != "propensity"}
    out["acceptors"]["se_of_a_mean"] = float(math.sqrt(m["crisis"][t].var() / t.sum()))
    out["decliners"] = {c: float(m[c][~t].mean()) for c in m if c != "propensity"}
    out["truth_rr"] = {"conditional": float(m["cond_with"][t].mean() / m["cond_without"][t].mean()),
                       "simulated": float(m["sim_with"][t].mean() / m["sim_without"][t].mean())}
    out["label_vs_realised"] = {
        "acceptors_label364_minus_realised": float((m["label_364"] - m["realised"])[t].mean()),
        "decliners_label364_minus_realised": float((m["label_364"] - m["realised"])[~t].mean()),
        "disagreements": int((m["label_364"] != m["realised"]).sum()),
    }
    x, _names = _design(frame.join(df.select("person_id"), on="person_id", how="semi").sort("person_id"))
    order = df.sort("person_id")
    t_sorted = order["accepted"].to_numpy()
    e_fit = _propensity(x, t_sorted)
    e_true = order["propensity"].to_numpy()
    est = {}
    for outcome in ("crisis", "realised", "sim_without", "cond_without"):
        y = order[outcome].to_numpy().astype(float)
        est[outcome] = {"true_propensity": ipw(t_sorted, y, e_true), "fitted_propensity": ipw(t_sorted, y, e_fit)}
    out["ipw"] = est
    out["target_untreated_risk_of_acceptors"] = {"conditional": float(m["cond_without"][t].mean()),
                                                 "simulated": float(m["sim_without"][t].mean())}
    mixed = order["household_acceptors_other"].to_numpy() > 0
    out["spillover"] = {
        "decliners_with_an_acceptor_in_household": int((~t_sorted & mixed).sum()),
        "their_sim_with_minus_without": float((order["sim_with"] - order["sim_without"]).to_numpy()[
            ~t_sorted & mixed].mean()) if (~t_sorted & mixed).any() else None,
    }
    out["seconds"] = time.perf_counter() - started
    out["load"] = os.getloadavg()
    print(json.dumps(out, indent=2))
    (base / "bias.json").write_text(json.dumps(out, indent=2))
    order.write_parquet(base / "offered.parquet")


if __name__ == "__main__":
    main()
