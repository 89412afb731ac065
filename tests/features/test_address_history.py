"""Point in time for addresses: household features and deprivation use the address held at T.

Tiny hand-written worlds. Each mover lives at one address and moves on ``move_day`` (the residents file, an
extract-time snapshot, then shows the NEW address, as a real one would). The expected values are counted by
hand from the tables below:

- ``a1`` and ``a2`` are a couple at ``U-couple``; ``a1`` moves into the care home ``U-care``, where 20 other
  people (``c01``..``c20``, no recorded move) live.
- ``s1``, ``s2``, ``s3`` share ``U-shared``; ``s3`` moves out to a flat of their own, ``U-flat``.
- ``m`` moves from a most deprived LSOA (Sandwell 030C, IMD 2019 decile 1) to a least deprived one
  (Solihull 017A, decile 10).
- ``w`` lived with ``p`` at ``U-widow``; ``p`` died at home on T - 30; ``w`` moved out to ``U-new`` on T - 10.
  ``n`` moved into ``U-widow`` on T - 5, after the death.
"""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import polars as pl
import pytest

from expectations.contract import clean_schema
from features.build import build_features
from tests.features.conftest import write_clean

T = date(2024, 6, 1)
LONG_AGO = date(2000, 1, 1)
DEPRIVED, AFFLUENT = "E01010003", "E01010108"  # IMD 2019 deciles 1 and 10 (shipped IMD file)
HOME_LSOA = "E01016012"
CARE_HOME = [f"c{k:02d}" for k in range(1, 21)]


def _world(directory: Path, move_day: date | None, *, with_history: bool = True) -> Path:
    """The movers move on ``move_day`` (None: nobody moves). Residents show each person's current address."""
    moved = move_day is not None
    current = {
        "a1": ("U-care" if moved else "U-couple", HOME_LSOA), "a2": ("U-couple", HOME_LSOA),
        "s1": ("U-shared", HOME_LSOA), "s2": ("U-shared", HOME_LSOA),
        "s3": ("U-flat" if moved else "U-shared", HOME_LSOA),
        "m": ("U-m2" if moved else "U-m1", AFFLUENT if moved else DEPRIVED),
        "w": ("U-new", HOME_LSOA), "p": ("U-widow", HOME_LSOA), "n": ("U-widow", HOME_LSOA),
        **{c: ("U-care", HOME_LSOA) for c in CARE_HOME},
    }
    residents = [{"person_id": pid, "uprn": uprn, "lsoa11": lsoa} for pid, (uprn, lsoa) in current.items()]
    for row in residents:
        if row["person_id"] == "p":
            row["date_of_death"] = T - timedelta(days=30)
    history = [
        # the bereavement story: fixed, before T
        ("w", "U-widow", HOME_LSOA, LONG_AGO, T - timedelta(days=10)),
        ("w", "U-new", HOME_LSOA, T - timedelta(days=10), None),
        ("p", "U-widow", HOME_LSOA, LONG_AGO, None),
        ("n", "U-elsewhere", HOME_LSOA, LONG_AGO, T - timedelta(days=5)),
        ("n", "U-widow", HOME_LSOA, T - timedelta(days=5), None),
        ("a2", "U-couple", HOME_LSOA, LONG_AGO, None),
    ]
    first = {"a1": ("U-couple", HOME_LSOA), "s3": ("U-shared", HOME_LSOA), "m": ("U-m1", DEPRIVED)}
    for pid, (uprn, lsoa) in first.items():
        history.append((pid, uprn, lsoa, LONG_AGO, move_day))
        if moved:
            history.append((pid, *current[pid], move_day, None))
    write_clean(directory, residents=residents,
                deaths=[{"person_id": "p", "date_of_death": T - timedelta(days=30), "underlying_cause_icd10": "I219"}])
    if with_history:
        pl.DataFrame([dict(zip(["person_id", "uprn", "lsoa11", "from_date", "to_date"], r, strict=True))
                      for r in history], schema=clean_schema("addresses"), orient="row").write_parquet(
            directory / "addresses.parquet")
    return directory


def _features(tmp: Path, move_day: date | None, *, with_history: bool = True) -> pl.DataFrame:
    name = "never" if move_day is None else move_day.isoformat()
    return build_features(_world(tmp / f"{name}-{with_history}", move_day, with_history=with_history), T)


def _row(table: pl.DataFrame, pid: str) -> dict:
    return table.filter(pl.col("person_id") == pid).row(0, named=True)


@pytest.mark.parametrize("days_after", [0, 1, 200])
def test_a_move_on_or_after_t_changes_no_feature_at_t(tmp_path: Path, days_after: int) -> None:
    """Into a care home, out of a shared home, to another LSOA: on T itself (not yet known before T) or later,
    the whole feature table at T is the one of a world where nobody moved."""
    never = _features(tmp_path, None)
    moved = _features(tmp_path, T + timedelta(days=days_after))
    assert moved.equals(never)
    # ...and the values at T are the pre-move ones, counted by hand
    assert (_row(moved, "a1")["household_size"], _row(moved, "a1")["lives_alone"]) == (2, False)
    assert (_row(moved, "a2")["household_size"], _row(moved, "a2")["lives_alone"]) == (2, False)
    assert [_row(moved, s)["household_size"] for s in ("s1", "s2", "s3")] == [3, 3, 3]
    assert _row(moved, "m")["imd_decile"] == 1
    assert _row(moved, "c01")["household_size"] == 20  # the care home without a1


def test_a_move_before_t_changes_the_features_to_the_hand_counted_values(tmp_path: Path) -> None:
    moved = _features(tmp_path, T - timedelta(days=1))
    assert (_row(moved, "a1")["household_size"], _row(moved, "a1")["lives_alone"]) == (21, False)
    assert (_row(moved, "a2")["household_size"], _row(moved, "a2")["lives_alone"]) == (1, True)
    assert [_row(moved, s)["household_size"] for s in ("s1", "s2", "s3")] == [2, 2, 1]
    assert _row(moved, "s3")["lives_alone"] is True
    assert _row(moved, "m")["imd_decile"] == 10
    assert _row(moved, "c01")["household_size"] == 21


def test_without_the_history_the_snapshot_leaks_the_move_after_t(tmp_path: Path) -> None:
    """What the address history fixes: from the extract's snapshot alone, a move after T shows at T."""
    snapshot = _features(tmp_path, T + timedelta(days=200), with_history=False)
    assert _row(snapshot, "a2")["lives_alone"] is True  # partner's later care-home move leaks back to T
    assert _row(snapshot, "a1")["household_size"] == 21
    assert _row(snapshot, "m")["imd_decile"] == 10
    assert _row(snapshot, "w")["bereaved_3m"] is False  # moved out after the death: the snapshot loses it
    assert _row(snapshot, "n")["bereaved_3m"] is True  # moved in after the death: a stranger's death counts


def test_bereavement_follows_who_lived_there_on_the_day_of_the_death(tmp_path: Path) -> None:
    table = _features(tmp_path, None)
    w, n = _row(table, "w"), _row(table, "n")
    assert (w["bereaved_3m"], w["bereaved_12m"]) == (True, True)  # shared U-widow on T - 30, moved out T - 10
    assert (w["household_size"], w["lives_alone"]) == (1, True)  # U-new at T
    assert (n["bereaved_3m"], n["bereaved_12m"]) == (False, False)  # moved in T - 5, after the death
    assert (n["household_size"], n["lives_alone"]) == (1, True)  # p died: n is the only one left at U-widow
    assert "p" not in table["person_id"].to_list()


def test_no_address_held_at_t_is_unknown_not_a_guess(tmp_path: Path) -> None:
    """A person with a history that does not cover T (first address after T) has an unknown household and
    deprivation at T, rather than borrowing an address they did not yet have."""
    directory = _world(tmp_path / "gap", None)
    history = pl.read_parquet(directory / "addresses.parquet")
    late = pl.DataFrame([{"person_id": "a2", "uprn": "U-couple", "lsoa11": HOME_LSOA,
                          "from_date": T + timedelta(days=3), "to_date": None}], schema=clean_schema("addresses"))
    pl.concat([history.filter(pl.col("person_id") != "a2"), late]).write_parquet(directory / "addresses.parquet")
    table = build_features(directory, T)
    a2 = _row(table, "a2")
    assert (a2["household_size"], a2["lives_alone"], a2["imd_decile"]) == (None, None, None)
    assert _row(table, "a1")["household_size"] == 1  # a2 was not at U-couple at T


def test_unvalidated_overlapping_periods_take_the_latest_move_in(tmp_path: Path) -> None:
    """Ingest quarantines overlapping periods; if clean data still had two covering T, the later move-in wins
    (one row per person, never two households at once)."""
    directory = _world(tmp_path / "overlap", None)
    history = pl.read_parquet(directory / "addresses.parquet")
    extra = pl.DataFrame([{"person_id": "m", "uprn": "U-m2", "lsoa11": AFFLUENT,
                           "from_date": T - timedelta(days=100), "to_date": None}], schema=clean_schema("addresses"))
    pl.concat([extra, history]).write_parquet(directory / "addresses.parquet")
    table = build_features(directory, T)
    assert table.height == table["person_id"].n_unique()
    assert (_row(table, "m")["imd_decile"], _row(table, "m")["household_size"]) == (10, 1)


@pytest.mark.parametrize("move_day", [None, T - timedelta(days=1), T])
def test_features_for_some_people_count_their_whole_households(tmp_path: Path, move_day: date | None) -> None:
    """Training builds a sampled date's features for the people drawn only (``people=``), working out other
    people's addresses only where they may share a drawn person's home. Each person alone, and the movers
    together, must get exactly their row of the whole table: household size counts everyone at the home at T,
    bereavement the deaths of whoever lived there on the day."""
    directory = _world(tmp_path / f"w-{move_day}", move_day)
    full = build_features(directory, T)
    groups = [[pid] for pid in full["person_id"].to_list()] + [["a1", "s3", "m", "w"], ["c01", "a2", "n"]]
    for group in groups:
        some = pl.Series("person_id", group)
        assert build_features(directory, T, people=some).equals(
            full.filter(pl.col("person_id").is_in(some.implode()))), group


def test_a_co_residents_later_overlapping_move_in_elsewhere_is_not_counted_for_a_person_drawn_alone(
    tmp_path: Path,
) -> None:
    """a2 holds the U-couple period at T, but an (unvalidated) overlapping later move-in to the care home wins:
    a2 lives in the care home at T. Drawn alone, a1 must still live alone (hand count: 1), and a care-home
    resident drawn alone shares a home of 21 (20 + a2). Filtering the periods by home before choosing each
    person's address would count a2 at U-couple."""
    directory = _world(tmp_path / "overlap-couple", None)
    history = pl.read_parquet(directory / "addresses.parquet")
    extra = pl.DataFrame([{"person_id": "a2", "uprn": "U-care", "lsoa11": HOME_LSOA,
                           "from_date": T - timedelta(days=100), "to_date": None}], schema=clean_schema("addresses"))
    pl.concat([history, extra]).write_parquet(directory / "addresses.parquet")
    a1 = build_features(directory, T, people=pl.Series("person_id", ["a1"]))
    c01 = build_features(directory, T, people=pl.Series("person_id", ["c01"]))
    assert (a1["household_size"].item(), a1["lives_alone"].item()) == (1, True)
    assert c01["household_size"].item() == 21
    full = build_features(directory, T)
    assert _row(full, "a1")["household_size"] == 1 and _row(full, "c01")["household_size"] == 21
