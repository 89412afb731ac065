"""Impossible spell histories: the cross-row rules, worked out by hand on small histories."""

from __future__ import annotations

from datetime import date as D

import polars as pl

from expectations import checks as C

HISTORY = [c for c in C.row_checks("hospital_spells") if c.name in C.HISTORY_CHECKS]


def _verdicts(rows: list[tuple], row_ok: list[bool] | None = None) -> list[set[str]]:
    frame = pl.DataFrame(rows, schema={"nhs_number": pl.String, "admission_date": pl.Date,
                                       "discharge_date": pl.Date}, orient="row")
    ok = pl.Series(row_ok if row_ok is not None else [True] * len(rows))
    flags = C.spell_history_flags(frame, HISTORY, ok)
    by_flag = {c.flag_column: c.name for c in HISTORY}
    return [{by_flag[k] for k, v in r.items() if not v} for r in flags.iter_rows(named=True)]


def test_same_day_transfer_and_back_to_back_stays_are_fine() -> None:
    rows = [("A", D(2025, 1, 1), D(2025, 1, 5)),   # first hospital
            ("A", D(2025, 1, 5), D(2025, 1, 9)),   # transferred the day of discharge
            ("A", D(2025, 2, 1), None),             # one open spell
            ("B", D(2025, 1, 2), D(2025, 1, 3))]   # another person at the same time
    assert _verdicts(rows) == [set(), set(), set(), set()]


def test_inside_another_and_second_open_are_named_once() -> None:
    rows = [("A", D(2025, 3, 1), None),             # 0 open since March
            ("A", D(2025, 1, 1), D(2025, 1, 10)),  # 1 fine (earlier)
            ("A", D(2025, 1, 9), D(2025, 1, 9)),   # 2 starts inside row 1
            ("A", D(2025, 4, 1), None),             # 3 second open spell (only that reason)
            ("A", D(2025, 5, 1), D(2025, 5, 2))]   # 4 admitted while row 0 is still open
    assert _verdicts(rows) == [set(), set(), {C.SPELL_INSIDE_ANOTHER}, {C.SECOND_OPEN_SPELL},
                               {C.SPELL_INSIDE_ANOTHER}]


def test_rows_failing_a_row_check_neither_fail_nor_condemn_others() -> None:
    # A corrupted copy (say a malformed code) of a long stay, listed first, must not make the genuine one look
    # nested; and it is not given a history reason of its own.
    rows = [("A", D(2025, 1, 1), D(2025, 1, 30)), ("A", D(2025, 1, 1), D(2025, 1, 30))]
    assert _verdicts(rows, row_ok=[False, True]) == [set(), set()]


def test_destination_iff_discharged_both_ways() -> None:
    check = next(c for c in C.row_checks("hospital_spells") if c.name == C.DESTINATION_IFF_DISCHARGED)
    frame = pl.DataFrame({"discharge_date": [D(2025, 1, 2), None, None, D(2025, 1, 2)],
                          "discharge_destination": ["19", None, "19", None]})
    got = frame.select(C.check_exprs([check], as_of=D(2026, 1, 1), earliest=D(1900, 1, 1), max_age_years=115,
                                     raw_names={}, valid_people=None)).to_series().to_list()
    assert got == [True, True, False, False]
