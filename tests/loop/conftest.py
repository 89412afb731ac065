"""A small synthetic delivery with a simulated programme, ingested into a temporary UPSTREAM_HOME.

Module-scoped fixtures: generating and ingesting takes a few seconds; every test gets its own database
copy where it writes (``fresh_home``) so tests stay independent.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from upstream.settings import Settings

RESIDENTS = 4000
EFFECT = 0.5
INGEST_WEEK = "2026-W47"


@pytest.fixture(scope="session")
def programme_delivery(tmp_path_factory) -> Path:
    from synthetic.generate import generate_delivery

    raw = tmp_path_factory.mktemp("loop") / "raw"
    generate_delivery(raw, residents=RESIDENTS, seed=7, programme_effect=EFFECT)
    return raw


@pytest.fixture(scope="session")
def ingested_home(programme_delivery, tmp_path_factory) -> Path:
    """A home with the delivery ingested (as the weekly run would) but no database yet."""
    from expectations.ingest import ingest_delivery

    home = tmp_path_factory.mktemp("home")
    ingest_delivery(programme_delivery, home / "weeks" / INGEST_WEEK / "ingest", Settings(home=home),
                    build_docs=False)
    return home


@pytest.fixture
def fresh_home(ingested_home, tmp_path) -> Settings:
    """A copy of the ingested home with an empty operational database, for one test."""
    home = tmp_path / "home"
    shutil.copytree(ingested_home, home)
    return Settings(home=home)
