"""``upstream keys`` end to end, in a subprocess as a user would run it."""

from __future__ import annotations

import os
import subprocess
import sys

import sqlalchemy as sa

from serving.keys import authenticate
from upstream.store import api_keys, get_engine


def _upstream(home, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "UPSTREAM_HOME": str(home), "UPSTREAM_PSEUDO_KEY": "test-key-not-secret"}
    return subprocess.run([sys.executable, "-m", "upstream.cli", *args], env=env, capture_output=True, text=True)


def test_keys_create_list_revoke(tmp_path):
    created = _upstream(tmp_path, "keys", "create", "--role", "locality", "--locality", "North",
                        "--locality", "South", "--label", "duty team")
    assert created.returncode == 0, created.stderr
    key = created.stdout.splitlines()[0]
    assert key.startswith("ups_")
    key_id = key.split("_")[1]
    engine = get_engine(f"sqlite:///{tmp_path / 'upstream.db'}")
    principal = authenticate(engine, key)
    assert principal is not None and principal.role == "locality" and principal.localities == ("North", "South")
    with engine.connect() as conn:
        stored = conn.execute(sa.select(api_keys.c.key_hash).where(api_keys.c.key_id == key_id)).scalar_one()
    assert key.split("_", 2)[2] not in stored  # only a hash is kept

    listed = _upstream(tmp_path, "keys", "list")
    assert listed.returncode == 0
    line = next(line for line in listed.stdout.splitlines() if line.startswith(key_id))
    assert "locality" in line and "active" in line and "North, South" in line and "duty team" in line
    assert key.split("_", 2)[2] not in listed.stdout  # the secret is never shown again

    revoked = _upstream(tmp_path, "keys", "revoke", key_id)
    assert revoked.returncode == 0
    assert authenticate(engine, key) is None
    assert "revoked" in _upstream(tmp_path, "keys", "list").stdout
    again = _upstream(tmp_path, "keys", "revoke", key_id)
    assert again.returncode == 2 and "no active key" in again.stderr


def test_keys_create_rejects_bad_scope(tmp_path):
    analyst_with_locality = _upstream(tmp_path, "keys", "create", "--role", "analyst", "--locality", "North")
    assert analyst_with_locality.returncode == 2
    assert "Traceback" not in analyst_with_locality.stderr
    locality_without = _upstream(tmp_path, "keys", "create", "--role", "locality")
    assert locality_without.returncode == 2 and "at least one --locality" in locality_without.stderr
