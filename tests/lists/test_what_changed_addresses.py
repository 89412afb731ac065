"""What changed reads the address held at T and at the comparison date C, never the extract's snapshot.

T = Mon 23 Nov 2026, C = Mon 16 Nov 2026. A hand-written world (one clean delivery, extracted after every
move: the residents file shows each person's LATEST address, as a real snapshot would). The feature tables
at T and at C are the real ones (``features.build``), the model a hand-written linear one, so the expected
words follow from the tables below by hand:

- ``a1`` and ``a2`` are a couple at ``U-couple``; ``a1`` moves into the care home ``U-care`` (``c01``..``c20``
  live there, no recorded move).
- ``s1``, ``s2``, ``s3`` share ``U-shared``; ``s3`` moves out to a flat of their own, ``U-flat``.
- ``m`` moves from the least deprived LSOA (Solihull 017A, IMD 2019 decile 10) to the most deprived
  (Sandwell 030C, decile 1).
- ``y`` moves in with ``x``, who lived alone at ``U-x``.
- ``p`` dies at ``U-widow`` on 19 Nov 2026 (inside [C, T)); ``w`` lived with ``p`` and moves out to ``U-new``;
  ``n`` moves from ``U-elsewhere`` (alone) into ``U-widow``.

Every mover moves on ``move_day``. Weights: lives alone +0.3, bereaved in 3 months +0.6, each household member
+0.01, each IMD decile -0.05 (more deprived, higher risk).
"""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from expectations.contract import clean_schema
from features.build import build_features
from pipelines.what_changed import change_events, what_changed
from tests.features.conftest import write_clean

T = date(2026, 11, 23)
C = date(2026, 11, 16)
DEATH = date(2026, 11, 19)
LONG_AGO = date(2000, 1, 1)
DEPRIVED, AFFLUENT = "E01010003", "E01010108"  # IMD 2019 deciles 1 and 10 (shipped IMD file)
HOME_LSOA = "E01016012"  # decile 4
CARE_HOME = [f"c{k:02d}" for k in range(1, 21)]
WEIGHTS = {"lives_alone": 0.3, "bereaved_3m": 0.6, "household_size": 0.01, "imd_decile": -0.05}
NO_CHANGE = "No change in the records since 16 Nov 2026 raised the risk"

#: person -> (address before the move, address after it); people not here never move.
MOVES = {
    "a1": (("U-couple", HOME_LSOA), ("U-care", HOME_LSOA)),
    "s3": (("U-shared", HOME_LSOA), ("U-flat", HOME_LSOA)),
    "m": (("U-m1", AFFLUENT), ("U-m2", DEPRIVED)),
    "y": (("U-y", HOME_LSOA), ("U-x", HOME_LSOA)),
    "w": (("U-widow", HOME_LSOA), ("U-new", HOME_LSOA)),
    "n": (("U-elsewhere", HOME_LSOA), ("U-widow", HOME_LSOA)),
}
STAYS = {"a2": "U-couple", "s1": "U-shared", "s2": "U-shared", "x": "U-x", "p": "U-widow",
         **dict.fromkeys(CARE_HOME, "U-care")}


class LinearExplainer:
    """contribution = weight x value (null = 0)."""

    def __init__(self) -> None:
        self.feature_names = list(WEIGHTS)

    def contributions_of(self, features: pl.DataFrame) -> np.ndarray:
        return np.column_stack([features[n].cast(pl.Float64).fill_null(0.0).to_numpy() * w
                                for n, w in WEIGHTS.items()])


def _world(directory: Path, move_day: date | None, *, with_history: bool = True) -> Path:
    moved = move_day is not None
    residents = [{"person_id": pid, "uprn": (after if moved else before)[0], "lsoa11": (after if moved else before)[1]}
                 for pid, (before, after) in MOVES.items()]
    residents += [{"person_id": pid, "uprn": uprn, "lsoa11": HOME_LSOA} for pid, uprn in STAYS.items()]
    for row in residents:
        if row["person_id"] == "p":
            row["date_of_death"] = DEATH
    history = [(pid, uprn, HOME_LSOA, LONG_AGO, None) for pid, uprn in STAYS.items() if pid not in CARE_HOME]
    for pid, (before, after) in MOVES.items():
        history.append((pid, *before, LONG_AGO, move_day))
        if moved:
            history.append((pid, *after, move_day, None))
    write_clean(directory, residents=residents,
                deaths=[{"person_id": "p", "date_of_death": DEATH, "underlying_cause_icd10": "I219"}])
    if with_history:
        pl.DataFrame([dict(zip(["person_id", "uprn", "lsoa11", "from_date", "to_date"], r, strict=True))
                      for r in history], schema=clean_schema("addresses"), orient="row").write_parquet(
            directory / "addresses.parquet")
    return directory


def _what_changed(tmp: Path, move_day: date | None, *, with_history: bool = True) -> dict[str, str]:
    name = "never" if move_day is None else move_day.isoformat()
    clean = _world(tmp / f"{name}-{with_history}", move_day, with_history=with_history)
    now, before = build_features(clean, T), build_features(clean, C)
    return what_changed(now, before, now.select("person_id"), clean, T, C, LinearExplainer())


def test_nothing_changes_when_nobody_moves(tmp_path: Path) -> None:
    got = _what_changed(tmp_path, None)
    # p's death on 19 Nov: w shared U-widow that day and is left alone; nobody else's features moved
    assert got.pop("w") == "now lives alone (household bereavement in November 2026)"
    assert set(got.values()) == {NO_CHANGE}


@pytest.mark.parametrize("days_after", [0, 1, 200])
def test_a_move_on_or_after_t_changes_nothing_in_what_changed_at_t(tmp_path: Path, days_after: int) -> None:
    """Into a care home, out of a shared home, to another area, in with someone, away from a death: on T itself
    (not yet history) or later, what changed at T is exactly that of the world where nobody moved."""
    assert _what_changed(tmp_path, T + timedelta(days=days_after)) == _what_changed(tmp_path, None)


def test_a_move_between_the_two_weeks_is_said_as_the_change_it_is(tmp_path: Path) -> None:
    got = _what_changed(tmp_path, date(2026, 11, 20))
    moved = "moved to a new address on 20 Nov 2026"
    assert got["a1"] == moved  # household 2 -> 21: +0.19
    assert got["a2"] == "now lives alone (a household member moved out in November 2026)"  # +0.3 - 0.01
    assert got["s3"] == f"now lives alone ({moved})"  # lives alone +0.3, household 3 -> 1 -0.02
    assert got["s1"] == got["s2"] == NO_CHANGE  # household 3 -> 2 lowers the hand-written risk
    assert got["m"] == moved  # decile 10 -> 1: +0.45
    assert got["x"] == "someone moved into the household in November 2026"  # alone -> 2: +0.01 (lives_alone -0.3)
    assert got["y"] == moved  # alone at U-y -> 2 at U-x: +0.01
    assert got["c01"] == "someone moved into the household in November 2026"  # 20 -> 21
    # w: alone (p died 19 Nov, w still at U-widow) and bereaved, then moved out on the 20th
    assert got["w"] == f"now lives alone (household bereavement in November 2026; {moved})"
    # n moved into U-widow after p's death: not bereaved, alone before and after: nothing raised the risk
    assert got["n"] == NO_CHANGE


def test_without_the_history_the_snapshot_leaks_a_later_move(tmp_path: Path) -> None:
    """What the history fixes: from the extract's snapshot alone, n (who moves in after T) is told of a
    stranger's death, and w (who moves out after T) loses their own bereavement."""
    got = _what_changed(tmp_path, T + timedelta(days=200), with_history=False)
    # the snapshot puts n at U-widow with p (alive at C, dead at T): bereaved and left alone
    assert got["n"] == "now lives alone (household bereavement in November 2026)"
    assert got["w"] == NO_CHANGE  # the snapshot puts w at U-new, alone, at C and at T
    assert _what_changed(tmp_path, T + timedelta(days=200))["n"] == NO_CHANGE


def test_household_events_window_is_half_open(tmp_path: Path) -> None:
    """A move on C is inside [C, T) (the new address is held from the next day); a move on T is not yet."""
    events = {}
    for day in (C, T):
        clean = _world(tmp_path / day.isoformat(), day)
        found = change_events(clean, pl.DataFrame({"person_id": ["s3", "a2"], "start": [C, C], "end": [T, T]}))
        events[day] = found.filter(pl.col("kind") == "household").select("person_id", "date", "detail").rows()
    assert events[C] == [("a2", C, "a household member moved out"), ("s3", C, "moved to a new address")]
    assert events[T] == []
