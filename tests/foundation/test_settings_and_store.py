"""Settings, the small-number rule, the operational DB and CLI error handling."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from upstream.disclosure import suppress_count
from upstream.settings import DEV_PSEUDO_KEY, Settings


def test_home_is_absolute_and_derived_locations_follow_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    settings = Settings(home=Path("rel/home"))
    assert settings.home == (tmp_path / "rel" / "home").resolve()
    assert settings.tracking_uri == f"sqlite:///{tmp_path.resolve()}/rel/home/mlflow.db"
    assert settings.db_url == f"sqlite:///{tmp_path.resolve()}/rel/home/upstream.db"
    assert settings.reid_map_path.parent != settings.home  # re-identification map kept apart


def test_environment_overrides_including_nested(monkeypatch, tmp_path):
    monkeypatch.setenv("UPSTREAM_HOME", str(tmp_path))
    monkeypatch.setenv("UPSTREAM_GATE__CALIBRATION_SLOPE_MIN", "0.85")
    monkeypatch.setenv("UPSTREAM_LISTS__CAPACITY_PER_LOCALITY", "250")
    settings = Settings()
    assert settings.home == tmp_path.resolve()
    assert settings.gate.calibration_slope_min == 0.85
    assert settings.lists.capacity_per_locality == 250


def test_toml_config_file_is_read_but_may_not_hold_secrets(monkeypatch, tmp_path):
    config = tmp_path / "upstream.toml"
    config.write_text('target = "emergency_admission"\n[lists]\ncapacity_per_locality = 42\n')
    monkeypatch.setenv("UPSTREAM_CONFIG", str(config))
    settings = Settings()
    assert settings.target == "emergency_admission"
    assert settings.lists.capacity_per_locality == 42

    config.write_text('pseudo_key = "oops"\n')
    with pytest.raises(ValueError, match="UPSTREAM_PSEUDO_KEY"):
        Settings()

    # A database URL is fine in the file; one carrying a password is a secret and is refused.
    config.write_text('database_url = "postgresql+psycopg://upstream@db.example/upstream"\n')
    assert Settings().db_url == "postgresql+psycopg://upstream@db.example/upstream"
    config.write_text('database_url = "postgresql+psycopg://upstream:hunter2@db.example/upstream"\n')
    with pytest.raises(ValueError, match="UPSTREAM_DATABASE_URL"):
        Settings()


def test_missing_key_falls_back_loudly(monkeypatch):
    monkeypatch.delenv("UPSTREAM_PSEUDO_KEY", raising=False)
    with pytest.warns(UserWarning, match="DEVELOPMENT key"):
        assert Settings().pseudonymisation_key() == DEV_PSEUDO_KEY.encode()
    monkeypatch.setenv("UPSTREAM_PSEUDO_KEY", "s3cret")
    assert Settings().pseudonymisation_key() == b"s3cret"


@pytest.mark.parametrize(
    ("count", "shown"),
    [(0, 0), (1, None), (7, None), (8, 10), (12, 10), (13, 15), (15, 15), (1234, 1235)],
)
def test_small_number_suppression(count, shown):
    assert suppress_count(count) == shown


def test_store_creates_schema_in_wal_mode(tmp_path):
    from upstream.store import get_engine

    engine = get_engine(f"sqlite:///{tmp_path}/db/upstream.db")
    names = set(sa.inspect(engine).get_table_names())
    assert {"score_runs", "scores", "published_weeks", "risk_lists", "api_keys", "audit_log"} <= names
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"


def test_cli_lists_commands_and_reports_user_errors_without_traceback(capsys):
    from upstream.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    assert "synth" in capsys.readouterr().out
