"""``upstream actions import``: every row validated, reasons per line, all or nothing, re-import harmless."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
import sqlalchemy as sa

from expectations.identifiers import nhs_check_digit
from loop.actions import import_actions, read_actions
from upstream.errors import BadFileError
from upstream.store import actions, get_engine


def _residents(raw: Path, n: int) -> list[str]:
    return pl.read_parquet(raw / "residents.parquet")["nhs_number"].head(n).to_list()


def _csv(path: Path, rows: list[tuple[str, str, str, str, str]]) -> Path:
    pl.DataFrame(rows, schema=["nhs_number", "week", "action", "offer", "reason"], orient="row").write_csv(path)
    return path


def _count(settings) -> int:
    with get_engine(settings.db_url).connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(actions)).scalar_one()


def test_good_file_is_imported_pseudonymised_and_reimport_adds_nothing(programme_delivery, fresh_home, tmp_path):
    a, b = _residents(programme_delivery, 2)
    f = _csv(tmp_path / "ok.csv", [(a, "2025-W30", "contacted", "", ""), (a, "2025-W30", "offered", "telecare", ""),
                                   (a, "2025-W30", "accepted", "telecare", ""),
                                   (b, "2025-W31", "not_appropriate", "", "already in a care home")])
    result = import_actions(f, fresh_home)
    assert (result.rows_in, result.rows_new) == (4, 4)
    stored = read_actions(fresh_home)
    assert len(stored) == 4
    assert a not in stored["person_id"].to_list()  # pseudonymised, never the NHS number
    assert stored["person_id"].str.len_chars().unique().to_list() == [16]
    assert stored.filter(pl.col("action") == "not_appropriate")["reason"].to_list() == ["already in a care home"]
    assert set(stored["source"]) == {"import:ok.csv"}
    again = import_actions(f, fresh_home)
    assert again.rows_new == 0 and _count(fresh_home) == 4


def test_bad_rows_are_reported_with_reasons_and_nothing_is_imported(programme_delivery, fresh_home, tmp_path):
    a, b = _residents(programme_delivery, 2)
    wrong_check = a[:9] + str((int(a[9]) + 1) % 10)
    nine = "999000001"
    stranger = nine + str(nhs_check_digit(nine))  # a valid NHS number that is not a resident
    rows = [
        (a, "2025-W30", "offered", "telecare", ""),           # line 2: good
        (wrong_check, "2025-W30", "contacted", "", ""),       # line 3
        (stranger, "2025-W30", "contacted", "", ""),          # line 4
        (b, "2025-30", "contacted", "", ""),                  # line 5
        (b, "2025-W30", "phoned", "", ""),                    # line 6
        (b, "2025-W30", "accepted", "", ""),                  # line 7
        (b, "2025-W30", "offered", "yoga", ""),               # line 8
        (b, "2025-W30", "not_appropriate", "", ""),           # line 9
        ("", "2025-W30", "contacted", "", ""),                # line 10
        (b, "2025-W60", "contacted", "", ""),                 # line 11: no week 60
    ]
    f = _csv(tmp_path / "bad.csv", rows)
    with pytest.raises(BadFileError) as err:
        import_actions(f, fresh_home)
    message = str(err.value)
    assert "9 of 10 rows rejected, nothing imported" in message
    assert _count(fresh_home) == 0  # the good row was not committed either
    report = Path(message.rsplit("reasons: ", 1)[1])
    assert report.parent.parent == fresh_home.restricted_dir  # rejected rows hold NHS numbers
    got = dict(pl.read_csv(report, infer_schema=False).select("line", "rejected_reason").iter_rows())
    assert got == {
        "3": "nhs_number is not a valid NHS number",
        "4": "nhs_number is not a resident in the latest delivery",
        "5": "week is not an ISO week (YYYY-Www)",
        "6": "action is not one of contacted, offered, accepted, declined, not_appropriate",
        "7": "offer is required for offered/accepted/declined",
        "8": "offer is not in the service catalogue (befriending, bereavement_support, carers_assessment, "
             "dementia_support, falls_prevention, reablement, telecare)",
        "9": "reason is required for not_appropriate",
        "10": "nhs_number is empty",
        "11": "week is not an ISO week (YYYY-Www)",
    }


def test_missing_column_names_the_file_and_column(fresh_home, tmp_path):
    f = tmp_path / "cols.csv"
    f.write_text("nhs_number,week,action\n")
    with pytest.raises(BadFileError, match=r"cols.csv: missing column\(s\) offer, reason"):
        import_actions(f, fresh_home)


def test_cli_bad_file_is_one_line_and_exit_2(programme_delivery, fresh_home, tmp_path):
    (a,) = _residents(programme_delivery, 1)
    f = _csv(tmp_path / "cli.csv", [(a, "2025-W30", "offered", "", "")])
    proc = subprocess.run([sys.executable, "-m", "upstream.cli", "actions", "import", "--file", str(f)],
                          env={"UPSTREAM_HOME": str(fresh_home.home), "UPSTREAM_PSEUDO_KEY": "test-key-not-secret",
                               "PATH": "/usr/bin:/bin"}, capture_output=True, text=True, check=False)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "line 2: offer is required for offered/accepted/declined" in proc.stderr
