"""HFRS cross-checked against an independent implementation, comorbidipy.hfrs.

comorbidipy is given the RAW codes (every format the contract allows: W19, W19X, W19.9, w199, W19-),
so its own normalisation (strip, first 3 characters, upper case) is exercised; Upstream is given the
same spells after ingest-style canonicalisation. Per-person scores must be identical (rounded to the
1 decimal place every HFRS weight has).
"""

from __future__ import annotations

import random
import warnings
from datetime import date, timedelta
from pathlib import Path

import pandas as pd
import polars as pl
import pytest

from expectations.identifiers import icd10_canonical_expr
from features.build import build_features
from features.codelists import FALLS_ICD10, hfrs_weights
from features.registry import FEATURES
from tests.features.conftest import write_clean

T = date(2024, 6, 1)


def comorbidipy_hfrs(long: pd.DataFrame) -> dict[str, float]:
    import pandas.core.common as common
    import pandas.errors as errors

    common.SettingWithCopyWarning = errors.SettingWithCopyWarning  # comorbidipy 0.5.0 vs pandas 2.x
    from comorbidipy import hfrs

    with warnings.catch_warnings():  # comorbidipy's own pandas FutureWarning, not ours
        warnings.simplefilter("ignore", FutureWarning)
        result = hfrs(long, id="id", code="code")
    return {str(k): round(float(v), 1) for k, v in zip(result["id"], result["hfrs"], strict=True)}


def _raw_variant(code3: str, rng: random.Random) -> str:
    return rng.choice([code3, f"{code3}X", f"{code3}.9", f"{code3.lower()}9", f"{code3}-", f" {code3}.0"])


def random_raw_spells(n_people: int, n_spells: int, seed: int) -> pl.DataFrame:
    """Spells with raw-format diagnosis codes from the shipped HFRS and falls lists, over 3 years."""
    rng = random.Random(seed)
    pool = sorted(hfrs_weights()) + sorted(FALLS_ICD10.codes())
    rows = []
    for i in range(n_spells):
        n_secondary = rng.choice([0, 0, 1, 2, 3, 6])
        rows.append({
            "person_id": f"p{rng.randrange(n_people):05d}",
            "spell_id": f"s{i}",
            "admission_date": T - timedelta(days=rng.randrange(-30, 3 * 365)),
            "primary_diagnosis": _raw_variant(rng.choice(pool), rng),
            "secondary_diagnoses": rng.choice([",", ", "]).join(
                _raw_variant(rng.choice(pool), rng) for _ in range(n_secondary)),
        })
    return pl.DataFrame(rows)


def canonicalise(raw: pl.DataFrame) -> pl.DataFrame:
    """What ingest does to ICD-10 columns: canonical codes, secondary list re-joined."""
    return raw.with_columns(
        icd10_canonical_expr("primary_diagnosis").alias("primary_diagnosis"),
        pl.col("secondary_diagnoses").str.split(",").list.eval(icd10_canonical_expr(pl.element()))
        .list.eval(pl.element().filter(pl.element() != "")).list.join(",").alias("secondary_diagnoses"),
    )


def raw_long_in_window(raw: pl.DataFrame, index_date: date) -> pd.DataFrame:
    days = FEATURES["hfrs"].window_days
    assert days is not None
    window = raw.filter(
        (pl.col("admission_date") < index_date) & (pl.col("admission_date") >= index_date - timedelta(days=days))
    )
    long = pl.concat([
        window.select(pl.col("person_id").alias("id"), pl.col("primary_diagnosis").alias("code")),
        window.select(pl.col("person_id").alias("id"), pl.col("secondary_diagnoses").str.split(",").alias("code"))
        .explode("code").filter(pl.col("code").str.strip_chars() != ""),
    ])
    return long.to_pandas()


def test_hfrs_identical_to_comorbidipy(tmp_path: Path) -> None:
    raw = random_raw_spells(n_people=1500, n_spells=6000, seed=7)
    people = raw["person_id"].unique().to_list()
    clean = write_clean(
        tmp_path / "clean",
        residents=[{"person_id": p} for p in people],
        hospital_spells=canonicalise(raw).to_dicts(),
    )
    ours = build_features(clean, T).select("person_id", "hfrs")
    theirs = comorbidipy_hfrs(raw_long_in_window(raw, T))
    assert len(theirs) > 1000  # most people have a spell in the 2-year window
    mine = dict(zip(ours["person_id"], ours["hfrs"], strict=True))
    differences = {p: (mine.get(p), s) for p, s in theirs.items() if round(mine.get(p, 0.0), 1) != s}
    assert not differences
    # people with no spell in the window score 0 in Upstream (comorbidipy never sees them)
    assert all(mine[p] == 0.0 for p in set(mine) - set(theirs))
    assert sum(v > 15 for v in theirs.values()) > 10  # the comparison covers high scores too


def test_hfrs_counts_each_code_once_per_person(tmp_path: Path) -> None:
    # two spells, both with G81 (4.4) in different positions and formats -> 4.4, not 8.8
    clean = write_clean(
        tmp_path / "clean",
        residents=[{"person_id": "x"}],
        hospital_spells=[
            {"person_id": "x", "admission_date": date(2024, 1, 1), "primary_diagnosis": "G81",
             "secondary_diagnoses": "G819"},
            {"person_id": "x", "admission_date": date(2023, 1, 1), "primary_diagnosis": "I10",
             "secondary_diagnoses": "Z000,G811"},
        ],
    )
    assert build_features(clean, T)["hfrs"].to_list() == [pytest.approx(4.4)]


def test_hfrs_and_fall_admissions_accept_any_icd10_format_in_the_clean_data(tmp_path: Path) -> None:
    # Codes as a warehouse writes them, not canonicalised: F00 7.1 + W19 3.2 + G81 4.4 = 14.7 (G81 twice
    # in different formats still counts once); the "w19.9" primary makes it an emergency fall admission.
    clean = write_clean(
        tmp_path / "clean",
        residents=[{"person_id": "x"}],
        hospital_spells=[
            {"person_id": "x", "admission_date": date(2024, 1, 1), "primary_diagnosis": "w19.9",
             "secondary_diagnoses": "f00, g81,G81.1"},
        ],
    )
    row = build_features(clean, T).to_dicts()[0]
    assert row["hfrs"] == pytest.approx(14.7)
    assert row["falls_admissions_12m"] == 1
