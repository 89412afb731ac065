"""``upstream train`` command-line errors: one clear line and exit code 2, never a traceback."""

from __future__ import annotations

import pytest

from upstream.cli import main
from upstream.settings import get_settings


@pytest.fixture
def empty_home(tmp_path, monkeypatch):
    monkeypatch.setenv("UPSTREAM_HOME", str(tmp_path / "home"))
    get_settings.cache_clear()
    yield tmp_path
    get_settings.cache_clear()


def test_missing_clean_data_is_a_one_line_error(empty_home, capsys):
    assert main(["train", "--target", "crisis", "--index-date", "2026-11-23"]) == 2
    err = capsys.readouterr().err
    assert "no clean data under" in err and "Traceback" not in err


def test_clean_dir_without_residents_is_rejected(empty_home, capsys):
    code = main(["train", "--index-date", "2026-11-23", "--clean", str(empty_home)])
    assert code == 2
    assert "not a clean data directory" in capsys.readouterr().err


def test_bad_date_and_target_are_usage_errors(empty_home, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["train", "--index-date", "23/11/2026"])
    assert exc.value.code == 2 and "not a YYYY-MM-DD date: '23/11/2026'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["train", "--index-date", "2026-11-23", "--target", "falls"])
