"""Small synthetic deliveries shared by the generator tests (generated once per session)."""

from __future__ import annotations

from pathlib import Path

import pytest

from synthetic.generate import GenerationSummary, generate_delivery


@pytest.fixture(scope="session")
def delivery(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, GenerationSummary]:
    """12k residents, default world, 2% defects, parquet: the main statistical fixture."""
    out = tmp_path_factory.mktemp("synth") / "d"
    return out, generate_delivery(out, residents=12_000, seed=11, defect_rate=0.02)


@pytest.fixture(scope="session")
def alt_delivery(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, GenerationSummary]:
    out = tmp_path_factory.mktemp("synth_alt") / "d"
    return out, generate_delivery(out, residents=12_000, seed=11, world="alt")
