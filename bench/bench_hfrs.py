"""HFRS side by side: Upstream (polars) against comorbidipy.hfrs (pandas) on the same diagnosis rows.

Usage: .venv/bin/python bench/bench_hfrs.py [--spells 400000] [--people 150000] [--repeats 3]

Spells carry raw-format ICD-10 codes (W19, W19X, W19.9, w199, W19-) from the shipped HFRS and
falls lists, all admitted inside the 2-year HFRS window. comorbidipy gets the raw long table
(id, code); Upstream is timed on the same spells canonicalised as ingest does, on the raw spells
(HFRS canonicalises the three characters it reads itself), and with ingest's canonicalisation. Scores are asserted identical per person (1 decimal place, the
precision of every HFRS weight); the speed ratio is printed (best of --repeats).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

INDEX_DATE = date(2024, 6, 1)


def raw_spells(n_spells: int, n_people: int, seed: int):
    import numpy as np
    import polars as pl

    from features.codelists import FALLS_ICD10, hfrs_weights

    rng = np.random.default_rng(seed)
    code3 = np.array(sorted(hfrs_weights()) + sorted(FALLS_ICD10.codes()))

    def raw(k: int) -> np.ndarray:
        c = code3[rng.integers(0, len(code3), k)]
        fmt = rng.integers(0, 5, k)
        out = np.where(fmt == 1, np.char.add(c, "X"), c)
        out = np.where(fmt == 2, np.char.add(c, ".9"), out)
        out = np.where(fmt == 3, np.char.add(np.char.lower(c), "9"), out)
        return np.where(fmt == 4, np.char.add(c, "-"), out)

    n_secondary = rng.integers(0, 6, n_spells)
    flat = raw(int(n_secondary.sum()))
    bounds = np.concatenate([[0], np.cumsum(n_secondary)])
    secondary = [",".join(flat[bounds[i]:bounds[i + 1]]) for i in range(n_spells)]
    return pl.DataFrame({
        "person_id": np.char.add("p", rng.integers(0, n_people, n_spells).astype(str)),
        "spell_id": np.char.add("s", np.arange(n_spells).astype(str)),
        "admission_date": np.datetime64(INDEX_DATE) - rng.integers(1, 730, n_spells).astype("timedelta64[D]"),
        "primary_diagnosis": raw(n_spells),
        "secondary_diagnoses": secondary,
    }).with_columns(pl.col("admission_date").cast(pl.Date))


def canonical(raw):
    import polars as pl

    from expectations.identifiers import icd10_canonical_expr

    return raw.with_columns(
        icd10_canonical_expr("primary_diagnosis").alias("primary_diagnosis"),
        pl.col("secondary_diagnoses").str.split(",").list.eval(icd10_canonical_expr(pl.element()))
        .list.join(",").alias("secondary_diagnoses"),
    )


def best(fn, repeats: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return min(times), result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spells", type=int, default=400_000)
    parser.add_argument("--people", type=int, default=150_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    import pandas.core.common as common
    import pandas.errors as errors
    import polars as pl

    common.SettingWithCopyWarning = errors.SettingWithCopyWarning  # comorbidipy 0.5.0 vs pandas 2.x
    import warnings

    from comorbidipy import hfrs as comorbidipy_hfrs

    from features.build import hfrs_scores

    warnings.simplefilter("ignore", FutureWarning)
    raw = raw_spells(args.spells, args.people, seed=3)
    long = pl.concat([
        raw.select(pl.col("person_id").alias("id"), pl.col("primary_diagnosis").alias("code")),
        raw.select(pl.col("person_id").alias("id"), pl.col("secondary_diagnoses").str.split(",").alias("code"))
        .explode("code").filter(pl.col("code") != ""),
    ]).to_pandas()
    clean = canonical(raw)
    print(f"{args.spells} spells, {len(long)} diagnosis rows, {long['id'].nunique()} people")

    t_theirs, theirs = best(lambda: comorbidipy_hfrs(long, id="id", code="code"), args.repeats)
    t_ours, ours = best(lambda: hfrs_scores(clean.lazy(), INDEX_DATE).collect(), args.repeats)
    # Raw codes straight in: hfrs_scores canonicalises what HFRS reads (first 3 characters) itself.
    t_ours_raw, ours_raw = best(lambda: hfrs_scores(raw.lazy(), INDEX_DATE).collect(), args.repeats)
    # Ingest's full canonicalisation of every code, then HFRS.
    t_ours_ingest, _ = best(lambda: hfrs_scores(canonical(raw).lazy(), INDEX_DATE).collect(), args.repeats)

    reference = {str(k): round(float(v), 1) for k, v in zip(theirs["id"], theirs["hfrs"], strict=True)}
    assert len(reference) == len(long["id"].unique())
    for label, result in (("clean", ours), ("raw", ours_raw)):
        mine = dict(zip(result["person_id"], result["hfrs"], strict=True))
        mismatched = [p for p, v in reference.items() if round(mine.get(p, 0.0), 1) != v]
        assert not mismatched, f"{label}: {len(mismatched)} people differ, e.g. {mismatched[:3]}"
        assert all(p in reference for p in mine), f"{label}: scores people comorbidipy does not"
    print(f"identical HFRS for all {len(reference)} people, from clean and from raw codes")
    print(f"comorbidipy.hfrs (raw codes):              {t_theirs:7.3f} s")
    print(f"upstream hfrs_scores (clean codes):        {t_ours:7.3f} s  ratio {t_theirs / t_ours:5.1f}x faster")
    print(f"upstream hfrs_scores (raw codes):          {t_ours_raw:7.3f} s  ratio {t_theirs / t_ours_raw:5.1f}x faster")
    print(f"upstream ingest canonicalisation + hfrs:   {t_ours_ingest:7.3f} s  ratio {t_theirs / t_ours_ingest:5.1f}x faster")
    print(f"best of {args.repeats}; load average {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
