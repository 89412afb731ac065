"""Serving fixtures: one scored database per session, keys for every role, the real app.

``scored`` is the single place that decides where the scored DB comes from. Today it is the
hand-made DB in ``scored_db.py`` (written through ``upstream.store``); when the weekly flow lands,
this fixture can run the flow on a small synthetic delivery instead and build ``Truth`` from its output.
"""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from serving.app import create_app
from serving.keys import create_key, revoke_key
from tests.serving.scored_db import Truth, write_hand_scored_db
from upstream.settings import Settings
from upstream.store import get_engine


@pytest.fixture(scope="session")
def serving_settings(tmp_path_factory) -> Settings:
    home = tmp_path_factory.mktemp("serving_home")
    return Settings(home=home, pseudo_key="test-key-not-secret")


@pytest.fixture(scope="session")
def scored(serving_settings) -> Truth:
    return write_hand_scored_db(serving_settings)


@pytest.fixture(scope="session")
def keys(serving_settings, scored) -> dict[str, str]:
    """Raw keys by name: north, south, both (North+South), analyst, admin, revoked."""
    engine = get_engine(serving_settings.db_url)
    made = {
        "north": create_key(engine, "locality", ["North"], "north team"),
        "south": create_key(engine, "locality", ["South"], "south team"),
        "both": create_key(engine, "locality", ["North", "South"]),
        "analyst": create_key(engine, "analyst", []),
        "admin": create_key(engine, "admin", []),
        "revoked": create_key(engine, "locality", ["North"], "left the team"),
    }
    assert revoke_key(engine, made["revoked"].split("_")[1])
    return made


@pytest.fixture(scope="session")
def app(serving_settings, scored):
    return create_app(serving_settings)


@pytest.fixture(scope="session")
def client(app) -> TestClient:
    with TestClient(app) as c:
        yield c


def auth(key: str) -> dict[str, str]:
    return {"X-API-Key": key}
