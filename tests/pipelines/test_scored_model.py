"""The score run records the model version that actually scored, even if the champion alias moves mid-run.

Real MLflow (sqlite in tmp) with two registered versions; the alias is moved by a real second training run.
"""

from __future__ import annotations

from datetime import date

import polars as pl
import pytest
import sqlalchemy as sa

from tests.models.conftest import make_frame
from upstream.errors import UpstreamError
from upstream.settings import GateSettings, Settings
from upstream.store import get_engine, score_runs

#: Any model is promoted: each training run below moves the champion alias to its new version.
LENIENT = GateSettings(min_auroc_gain=-1.0, calibration_slope_min=-100, calibration_slope_max=100,
                       max_subgroup_auroc_gap=1.0, observed_expected_min=0.0, observed_expected_max=100.0,
                       age_band_observed_expected_min=0.0, age_band_observed_expected_max=100.0)


def _train(settings: Settings, seed: int) -> str:
    from models.train import train_on_frames

    train = make_frame(1500, seed, date(2023, 1, 2)).drop("_true_p")
    test = make_frame(1500, seed + 1, date(2024, 1, 1)).drop("_true_p")
    result = train_on_frames(train, test, "crisis", settings, n_boot=20)
    assert result.alias == "champion", result.gate_reasons
    return result.version


def _features(path, seed: int, locality: str):
    frame = make_frame(50, seed, date(2026, 11, 23)).drop("_true_p", "crisis", "emergency_admission",
                                                          "care_escalation")
    frame = frame.with_columns(pl.lit(locality).alias("locality"), pl.lit(False).alias("in_long_term_care"))
    frame.write_parquet(path)
    return path


def test_run_records_the_version_that_scored(tmp_path):
    from models.registry import champion_ref
    from pipelines.champion import score_partition
    from pipelines.flows import store_scores_task

    home = tmp_path / "home"
    settings = Settings(home=home, gate=LENIENT)
    first = _train(settings, 31)
    north = score_partition(_features(tmp_path / "north.parquet", 40, "North"), settings)

    second = _train(settings, 33)  # the champion alias moves while the week is being scored
    assert (first, second) == ("1", "2")
    assert champion_ref(settings).version == second

    run = store_scores_task.fn([north], date(2026, 11, 23), settings)
    with get_engine(settings.db_url).connect() as conn:
        recorded = conn.execute(
            sa.select(score_runs.c.model_name, score_runs.c.model_version).where(score_runs.c.run_id == run.run_id)
        ).one()
    assert tuple(recorded) == ("upstream-crisis", first)  # not "2": version 2 scored nobody

    # A partition scored after the move used version 2: one run must not mix two models.
    south = score_partition(_features(tmp_path / "south.parquet", 41, "South"), settings)
    with pytest.raises(UpstreamError, match=r"different model versions \(1, 2\)"):
        store_scores_task.fn([north, south], date(2026, 11, 23), settings)
    with get_engine(settings.db_url).connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(score_runs)).scalar_one() == 1
