"""Hand-made labelled feature frames with a known risk model, and a throw-away MLflow home."""

from __future__ import annotations

from datetime import date

import numpy as np
import polars as pl
import pytest

from upstream.settings import Settings

ETHNIC = ["White", "Asian", "Black", "Mixed", "Other"]


def true_logit(age, efi, hfrs, admissions, falls, lives_alone, strength: float = 1.0):
    """The world's true risk model on the logit scale (used to draw the outcomes)."""
    return strength * (-4.2 + 0.035 * age + 4.0 * efi + 0.08 * hfrs + 0.5 * admissions + 0.4 * falls
                       + 0.6 * lives_alone)


def make_frame(n: int, seed: int, index_date: date, strength: float = 1.0) -> pl.DataFrame:
    """A feature frame in the feature table's shape (a subset of its columns) with drawn outcomes."""
    rng = np.random.default_rng(seed)
    age = rng.integers(18, 100, n)
    efi = np.clip(rng.beta(2, 12, n) + (age - 18) / 400, 0, 1)
    hfrs = np.where(rng.random(n) < 0.2, rng.gamma(2, 4, n), 0.0)
    admissions = rng.poisson(0.2 + (age > 75) * 0.4, n)
    falls = rng.poisson(0.1 + (age > 80) * 0.5, n)
    lives_alone = rng.random(n) < 0.25
    z = true_logit(age, efi, hfrs, admissions, falls, lives_alone, strength)
    p = 1 / (1 + np.exp(-z))
    y = rng.random(n) < p
    return pl.DataFrame({
        "person_id": [f"{seed:04d}{i:012x}" for i in range(n)],
        "index_date": [index_date] * n,
        "age": age.astype(np.int32),
        "sex": rng.choice(["1", "2"], n),
        "female": rng.random(n) < 0.5,
        "imd_decile": rng.integers(1, 11, n).astype(np.int32),
        "ethnic_group": rng.choice(ETHNIC, n, p=[0.8, 0.08, 0.05, 0.04, 0.03]),
        "efi": efi,
        "hfrs": hfrs,
        "emergency_admissions_12m": admissions.astype(np.int32),
        "falls_12m": falls.astype(np.int32),
        "lives_alone": lives_alone,
        "crisis": y,
        "emergency_admission": y,
        "care_escalation": np.zeros(n, dtype=bool),
        "_true_p": p,
    })


@pytest.fixture
def settings(tmp_path, monkeypatch) -> Settings:
    """Settings whose home (MLflow sqlite store + artifacts) is a fresh temporary directory."""
    return Settings(home=tmp_path / "home", pseudo_key="test-key-not-secret")
