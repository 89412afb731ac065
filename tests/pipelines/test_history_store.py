"""A year of score history: weeks move from the database to the parquet history store when a week is
published, retention removes exactly the weeks past the setting, opt-outs reach the history store, and a
failed run or a failed move leaves no history rows.

Weeks are published through the real write path (``start_score_run``, ``write_scores``, ``publish_week``,
``settle_history``); every expected value is worked out by hand from the scores written below.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

import polars as pl
import pytest
import sqlalchemy as sa

from pipelines.history_store import BUCKETS, HistoryStore, block_of, bucket_of
from pipelines.score_history import (
    PublishedWeek,
    band_counts,
    history_store,
    load_run_scores,
    localities,
    locality_known,
    new_run_id,
    publish_week,
    published_week,
    resident_history,
    score_histogram,
    settle_history,
    stage_history,
    start_score_run,
    write_scores,
)
from upstream.retention import enforce_retention
from upstream.settings import Settings
from upstream.store import LIST_ROW_COLUMNS, get_engine, scores

# ISO weeks and their Mondays (checked on a calendar: 2026-09-07 is the Monday of ISO week 37).
WEEKS = {
    "2026-W37": date(2026, 9, 7),
    "2026-W38": date(2026, 9, 14),
    "2026-W39": date(2026, 9, 21),
    "2026-W40": date(2026, 9, 28),
    "2026-W41": date(2026, 10, 5),
    "2026-W42": date(2026, 10, 12),
    "2026-W43": date(2026, 10, 19),
    "2026-W44": date(2026, 10, 26),
}
STAYER = "aa00000000000001"  # scored every week; score 0.10, 0.11, ... 0.17
LEAVER = "0b00000000000002"  # scored W37-W39 only (moved away), in South
OPTED = "ff00000000000003"  # scored every week; opts out in the last week's delivery
EVERYONE_ELSE = [f"{i:02x}{i:014x}" for i in range(40, 60)]  # 20 residents, low, North


def _week_rows(k: int, week: str) -> pl.DataFrame:
    rows = [(STAYER, "North", round(0.10 + 0.01 * k, 2), "high" if k >= 4 else "moderate"),
            (OPTED, "North", 0.5, "high")]
    if week <= "2026-W39":
        rows.append((LEAVER, "South", 0.3, "moderate"))
    rows += [(p, "North", 0.05, "low") for p in EVERYONE_ELSE]
    return pl.DataFrame(
        {"person_id": [r[0] for r in rows], "locality": [r[1] for r in rows], "score": [r[2] for r in rows],
         "band": [r[3] for r in rows], "in_long_term_care": [False] * len(rows),
         "reasons": ['[{"feature": "falls_12m", "value": 1, "text": "1 fall", "contribution": 0.1}]'] * len(rows)},
    )


def _publish(engine, week: str, frame: pl.DataFrame, *, before_commit=None) -> str:
    run_id = new_run_id()
    start_score_run(engine, run_id=run_id, week=week, index_date=WEEKS[week], target="crisis",
                    model_name="m", model_version="1")
    write_scores(engine, run_id, frame)
    empty_lists = pl.DataFrame(schema={c: pl.String for c in LIST_ROW_COLUMNS})
    publish_week(engine, week=week, run_id=run_id, index_date=WEEKS[week], lists=empty_lists,
                 before_commit=before_commit)
    return run_id


@pytest.fixture
def year(tmp_path):
    """Eight weeks published one after another, the database keeping the newest two (the setting)."""
    settings = Settings(home=tmp_path, retention={"database_score_weeks": 2})
    engine = get_engine(settings.db_url)
    store = history_store(settings)
    runs = {}
    for k, week in enumerate(WEEKS):
        runs[week] = _publish(engine, week, _week_rows(k, week))
        # as publish_run does: stage the published rows, then move what is past the setting
        stage_history(store, PublishedWeek(week, runs[week], WEEKS[week]), _week_rows(k, week).drop("reasons"))
        settle_history(engine, store, settings.retention.database_score_weeks)
    return settings, engine, store, runs


def test_blocks_and_buckets_are_what_the_layout_declares():
    assert [block_of(w) for w in ("2026-W01", "2026-W13", "2026-W14", "2026-W39", "2026-W40", "2026-W53",
                                  "2026-Q2")] == ["2026-Q1", "2026-Q1", "2026-Q2", "2026-Q3", "2026-Q4", "2026-Q4",
                                                  "2026-Q2"]
    assert bucket_of("aa00000000000001") == 0xAA
    assert bucket_of("not-hex") == bucket_of("not-hex") < BUCKETS  # stable for an id that is not hex


def test_weeks_past_the_setting_move_to_the_history_store(year):
    _, engine, store, runs = year
    # The database keeps the newest two weeks' scores; the other six are in the store, in two blocks.
    with engine.connect() as conn:
        in_db = set(conn.execute(sa.select(scores.c.run_id).distinct()).scalars())
    assert in_db == {runs["2026-W43"], runs["2026-W44"]}
    assert store.weeks() == ["2026-W37", "2026-W38", "2026-W39", "2026-W40", "2026-W41", "2026-W42"]
    # W37-W39 (Q3) are compacted into their quarter block since a Q4 week arrived; Q4's weeks are blocks of one.
    assert sorted(store.manifest()["blocks"]) == ["2026-Q3", "2026-W40", "2026-W41", "2026-W42"]
    assert store.manifest()["blocks"]["2026-Q3"]["weeks"] == ["2026-W37", "2026-W38", "2026-W39"]
    assert sorted(p.name.split(".")[0] for p in store.root.iterdir() if p.is_dir() and p.name != "staged") == [
        "2026-Q3", "2026-W40", "2026-W41", "2026-W42"]  # the compacted week blocks' files are gone
    # Staged rows are kept only for the two runs still in the database (the moved ones were read from theirs).
    assert sorted(p.stem for p in (store.root / "staged").iterdir()) == sorted([runs["2026-W43"], runs["2026-W44"]])
    # A whole week read back from the store: 23 residents in W37 (stayer, opted, leaver, 20 others).
    w37 = store.week("2026-W37")
    assert w37.height == 23
    assert w37.filter(pl.col("person_id") == STAYER)["score"].to_list() == [0.10]
    # Re-settling moves nothing more and duplicates nothing.
    assert settle_history(engine, store, 2).moved_weeks == []
    assert store.week("2026-W37").height == 23


def test_a_resident_history_reads_both_tiers(year):
    _, engine, store, _ = year
    with engine.connect() as conn:
        stayer = resident_history(conn, STAYER, store)
        leaver = resident_history(conn, LEAVER, store)
    assert [h["week"] for h in stayer] == list(reversed(WEEKS))  # all 8, newest first
    assert [h["score"] for h in stayer] == [0.17, 0.16, 0.15, 0.14, 0.13, 0.12, 0.11, 0.10]
    assert [h["band"] for h in stayer] == ["high"] * 4 + ["moderate"] * 4
    assert [h["index_date"] for h in stayer] == list(reversed(WEEKS.values()))
    assert stayer[0]["reasons"][0]["text"] == "1 fall"  # the newest weeks keep their reasons
    assert stayer[-1]["reasons"] is None  # moved weeks keep none: None, "not explained" (not [], "nothing raises risk")
    assert [(h["week"], h["locality"], h["score"]) for h in leaver] == [
        ("2026-W39", "South", 0.3), ("2026-W38", "South", 0.3), ("2026-W37", "South", 0.3)]


def test_summaries_and_week_scores_survive_the_move(year):
    _, engine, store, runs = year
    with engine.connect() as conn:
        # W37 has moved: counted from the stored summary. North: stayer (moderate), opted (high), 20 low.
        assert band_counts(conn, runs["2026-W37"]) == [("North", "high", 1), ("North", "low", 20),
                                                       ("North", "moderate", 1), ("South", "moderate", 1)]
        assert localities(conn, runs["2026-W37"]) == ["North", "South"]
        assert locality_known(conn, runs["2026-W37"], "South")
        assert not locality_known(conn, runs["2026-W37"], "East")
        # 20 x 0.05 -> bin 0; 0.10 -> bin 1; 0.5 -> bin 5
        assert score_histogram(conn, runs["2026-W37"], "North") == [20, 1, 0, 0, 0, 1, 0, 0, 0, 0]
        # W44 is still in the database: same query, counted from its rows (no leaver since W40)
        assert band_counts(conn, runs["2026-W44"]) == [("North", "high", 2), ("North", "low", 20)]
    moved = load_run_scores(engine, runs["2026-W38"], store)
    assert moved.height == 23 and moved.filter(pl.col("person_id") == STAYER)["score"].item() == 0.11
    assert load_run_scores(engine, runs["2026-W38"]).height == 0  # without the store: the database alone


def test_retention_removes_exactly_the_weeks_past_the_setting(year):
    settings, engine, store, _ = year
    # score_weeks = 60: oldest kept = now - 420 days. now = 2027-11-22 -> 2026-09-28 (W40's Monday), so W37,
    # W38 and W39 (index dates 09-07, 09-14, 09-21) go and W40 (09-28, not before the cutoff) stays.
    kept = Settings(home=settings.home, retention={"score_weeks": 60, "database_score_weeks": 2})
    removed = enforce_retention(kept, now=datetime(2027, 11, 22, 9, tzinfo=UTC))
    assert removed["score_runs"] == 3
    assert removed["scores"] == 23 * 3  # all three were in the history store, 23 residents each
    assert store.weeks() == ["2026-W40", "2026-W41", "2026-W42"]
    assert sorted(store.manifest()["blocks"]) == ["2026-W40", "2026-W41", "2026-W42"]  # Q3 gone, files and all
    assert [p.name for p in store.root.iterdir() if p.is_dir() and p.name.startswith("2026-Q3")] == []
    assert published_week(engine, "2026-W39") is None and published_week(engine, "2026-W40") is not None
    with engine.connect() as conn:
        assert resident_history(conn, LEAVER, store) == []
        assert [h["week"] for h in resident_history(conn, STAYER, store)][-1] == "2026-W40"
    assert enforce_retention(kept, now=datetime(2027, 11, 22, 9, tzinfo=UTC))["scores"] == 0  # idempotent


def test_an_opt_out_reaches_the_history_store(year):
    _, engine, store, _ = year
    assert store.person(OPTED).height == 6
    settled = settle_history(engine, store, 2, opted_out=[OPTED])
    assert settled.opted_out_rows == 6
    assert store.person(OPTED).is_empty() and store.person(STAYER).height == 6
    assert store.week("2026-W37").height == 22
    # Next week's opt-out file lists them again: nothing left to remove, and a week moved later (here W37
    # stored again, as a re-published week would be) does not bring them back.
    assert settle_history(engine, store, 2, opted_out=[OPTED]).opted_out_rows == 0
    store.add_weeks(pl.concat([store.week("2026-W37"), store.week("2026-W37").with_columns(
        pl.lit(OPTED).alias("person_id"))]).unique("person_id"))
    assert store.person(OPTED).is_empty() and store.week("2026-W37").height == 22


def test_a_failed_run_leaves_no_history_rows(year):
    _, engine, store, _ = year
    manifest = store.manifest()

    def drill() -> None:
        raise RuntimeError("power cut before commit")

    WEEKS["2026-W45"] = date(2026, 11, 2)
    try:
        with pytest.raises(RuntimeError, match="power cut"):
            _publish(engine, "2026-W45", _week_rows(8, "2026-W45"), before_commit=drill)
        settle_history(engine, store, 2)
    finally:
        del WEEKS["2026-W45"]
    assert store.manifest() == manifest  # nothing moved: W43/W44 are still the newest published weeks
    assert "2026-W45" not in store.weeks()
    with engine.connect() as conn:
        assert resident_history(conn, STAYER, store)[0]["week"] == "2026-W44"
    assert published_week(engine, "2026-W45") is None


class _DiesBeforeTheSwap(HistoryStore):
    """A history store whose write dies after writing its bucket files, before the manifest swap."""

    def _write_manifest(self, manifest):
        raise OSError("disk full")


def test_a_move_that_dies_leaves_the_week_in_the_database(tmp_path):
    settings = Settings(home=tmp_path)
    engine = get_engine(settings.db_url)
    runs = [_publish(engine, week, _week_rows(k, week)) for k, week in enumerate(list(WEEKS)[:3])]
    dying = _DiesBeforeTheSwap(settings.history_dir)
    with pytest.raises(OSError, match="disk full"):
        settle_history(engine, dying, 1)
    store = history_store(settings)
    assert store.weeks() == []
    with engine.connect() as conn:  # every week still served from the database, nothing twice
        assert [h["score"] for h in resident_history(conn, STAYER, store)] == [0.12, 0.11, 0.10]
        assert conn.execute(sa.select(sa.func.count()).select_from(scores)
                            .where(scores.c.run_id == runs[0])).scalar_one() == 23
    # The next publish's settle finishes the move and sweeps the dead write's files.
    assert settle_history(engine, store, 1).moved_weeks == ["2026-W37", "2026-W38"]
    assert sorted(p.name.split(".")[0] for p in store.root.iterdir() if p.is_dir()) == ["2026-W37", "2026-W38"]
    with engine.connect() as conn:
        assert [h["score"] for h in resident_history(conn, STAYER, store)] == [0.12, 0.11, 0.10]


def test_staged_rows_of_an_opted_out_person_never_reach_a_block(tmp_path):
    settings = Settings(home=tmp_path)
    engine = get_engine(settings.db_url)
    store = history_store(settings)
    for k, week in enumerate(list(WEEKS)[:3]):
        run_id = _publish(engine, week, _week_rows(k, week))
        stage_history(store, PublishedWeek(week, run_id, WEEKS[week]), _week_rows(k, week).drop("reasons"))
    settled = settle_history(engine, store, 1, opted_out=[OPTED])
    assert settled.moved_weeks == ["2026-W37", "2026-W38"] and settled.moved_rows == 2 * 22
    assert store.person(OPTED).is_empty()
    assert store.person(STAYER)["score"].to_list() == [0.11, 0.10]
