"""Score history and publishing against a real SQLite DB: two weeks, a re-run and a failed publish."""

from __future__ import annotations

import shutil
from datetime import date

import polars as pl
import pytest
import sqlalchemy as sa

from pipelines.drills import InjectedFailure
from pipelines.publish import publish_run
from pipelines.score_history import published_week, store_scores
from pipelines.scoring import iso_week
from pipelines.weeks import clean_dir_of
from tests.features.conftest import write_clean
from tests.pipelines.conftest import score_frame
from upstream.store import get_engine, published_weeks, risk_lists, score_runs, scores

WEEK1 = date(2026, 11, 16)
WEEK2 = date(2026, 11, 23)


def _week1() -> pl.DataFrame:
    return score_frame([(f"p{i}", "A", (i + 1) / 10, False) for i in range(10)])


def _week2() -> pl.DataFrame:
    values = {"p0": 0.1, "p1": 0.2, "p2": 0.3, "p3": 0.5, "p4": 0.5, "p5": 0.6, "p6": 0.7, "p7": 0.8}
    values |= {"p8": 0.9, "p9": 0.05, "p10": 0.95}
    return score_frame([(pid, "A", value, False) for pid, value in values.items()])


def _counts(engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {
            t.name: conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one()
            for t in (score_runs, scores, published_weeks, risk_lists)
        }


def _published_list(engine, week: str) -> list[tuple]:
    with engine.connect() as conn:
        return [
            tuple(r)
            for r in conn.execute(
                sa.select(
                    risk_lists.c.rank,
                    risk_lists.c.person_id,
                    risk_lists.c.section,
                )
                .join(published_weeks, published_weeks.c.run_id == risk_lists.c.run_id)
                .where(published_weeks.c.week == week)
                .order_by(risk_lists.c.rank)
            )
        ]


def _publish(frame: pl.DataFrame, index_date: date, settings, before_commit=None):
    # the week's clean delivery the cohort is read from: everyone scored is an adult resident
    write_clean(clean_dir_of(settings, index_date), residents=[{"person_id": p} for p in frame["person_id"]])
    run = store_scores([frame], index_date, settings, "upstream-crisis", "3")
    return run, publish_run(run, settings, before_commit=before_commit)


def test_two_weeks_rerun_and_failed_publish(settings):
    engine = get_engine(settings.db_url)
    _publish(_week1(), WEEK1, settings)
    # Week 1, default rules: percentile >= 0.8 -> p8, p9; the first list has nothing to compare with: all top.
    assert _published_list(engine, iso_week(WEEK1)) == [(1, "p9", "top"), (2, "p8", "top")]

    run2, published2 = _publish(_week2(), WEEK2, settings)
    # Week 2 (11 residents): p10 (10/11) and p8 (9/11) are above the 80th percentile; p7 (8/11) is not.
    # p3 rose 0.4 -> 0.5 (>= 0.05); p9 fell; p10 was not scored last week. Last week's list was p9, p8, so
    # p10 and p3 are new (shown first, highest risk first), p8 stays in the top section.
    expected = [(1, "p10", "new"), (2, "p3", "new"), (3, "p8", "top")]
    assert _published_list(engine, "2026-W48") == expected
    with engine.connect() as conn:
        changes = dict(
            conn.execute(
                sa.select(risk_lists.c.person_id, risk_lists.c.change_points).where(
                    risk_lists.c.run_id == run2.run_id
                )
            ).all()
        )
    assert changes["p10"] is None
    assert changes["p8"] == pytest.approx(0.0)
    assert changes["p3"] == pytest.approx(10.0)  # percentage points
    assert published2.replaced_run_id is None
    assert (settings.home / "lists" / "2026-W48" / "a.csv").exists()
    assert _counts(engine) == {"score_runs": 2, "scores": 21, "published_weeks": 2, "risk_lists": 5}

    # Re-running week 2 replaces it: same counts, new run published, old run gone.
    run3, published3 = _publish(_week2(), WEEK2, settings)
    assert published3.replaced_run_id == run2.run_id
    assert published_week(engine, "2026-W48").run_id == run3.run_id
    assert _counts(engine) == {"score_runs": 2, "scores": 21, "published_weeks": 2, "risk_lists": 5}
    assert _published_list(engine, "2026-W48") == expected

    # A publish that fails mid-transaction changes nothing that readers see (DB or files).
    csv_before = (settings.home / "lists" / "2026-W48" / "a.csv").read_bytes()
    changed = _week2().with_columns(pl.lit(0.99).alias("score"))

    def boom() -> None:
        raise InjectedFailure("drill")

    with pytest.raises(InjectedFailure):
        _publish(changed, WEEK2, settings, before_commit=boom)
    assert published_week(engine, "2026-W48").run_id == run3.run_id
    assert _published_list(engine, "2026-W48") == expected
    assert (settings.home / "lists" / "2026-W48" / "a.csv").read_bytes() == csv_before
    assert [p.name for p in (settings.home / "lists").iterdir() if p.name.startswith(".")] == []
    # Week 1 is untouched throughout.
    assert _published_list(engine, iso_week(WEEK1))[0] == (1, "p9", "top")

    # The next good publish of the week clears the failed attempt's rows: still one run per week.
    _publish(_week2(), WEEK2, settings)
    assert _counts(engine) == {"score_runs": 2, "scores": 21, "published_weeks": 2, "risk_lists": 5}


def test_publishing_the_same_run_again_is_idempotent(settings):
    # What a retry of the publish task does when the DB commit succeeded but the file export did not:
    # publish the already published run once more. It must rewrite its lists, not hit the primary key.
    engine = get_engine(settings.db_url)
    run, _ = _publish(_week1(), WEEK1, settings)
    shutil.rmtree(settings.home / "lists" / iso_week(WEEK1))  # the export that "failed" after the commit
    again = publish_run(run, settings)
    assert again.replaced_run_id is None
    # Week 1 has 10 residents, 2 listed (p9, p8): nothing duplicated, and the files are back.
    assert _counts(engine) == {"score_runs": 1, "scores": 10, "published_weeks": 1, "risk_lists": 2}
    assert _published_list(engine, iso_week(WEEK1)) == [(1, "p9", "top"), (2, "p8", "top")]
    assert pl.read_csv(settings.home / "lists" / iso_week(WEEK1) / "a.csv")["person_id"].to_list() == ["p9", "p8"]


def test_reasons_are_stored_as_scoring_encoded_them(settings):
    """One shape for reasons: the JSON text ``encode_reasons`` made is what the scores and list rows hold,
    character for character (no decode and re-encode on the way), and what the API decodes."""
    from pipelines.scoring import encode_reasons

    reasons = [
        {"feature": "falls_12m", "value": 2, "text": "2 falls in the last 12 months", "contribution": 0.25},
        {"feature": "lives_alone", "value": True, "text": "lives alone", "contribution": 0.125},
        {"feature": "frailty", "value": None, "text": "frailty not recorded", "contribution": 0.0625},
    ]
    text = encode_reasons([reasons])[0]
    # compact, as written by hand: json.dumps's default ", " and ": " separators would differ from this
    assert text.startswith('[{"feature":"falls_12m","value":2,"text":"2 falls in the last 12 months",')
    frame = score_frame([(f"p{i}", "A", (i + 1) / 10, False) for i in range(10)]).with_columns(
        pl.lit(text).alias("reasons"))
    run, _ = _publish(frame, WEEK1, settings)
    engine = get_engine(settings.db_url)
    with engine.connect() as conn:
        stored = conn.execute(
            sa.select(sa.cast(scores.c.reasons, sa.Text)).where(scores.c.run_id == run.run_id)).scalars().all()
        listed = conn.execute(
            sa.select(sa.cast(risk_lists.c.reasons, sa.Text)).where(risk_lists.c.run_id == run.run_id)).scalars().all()
        decoded = conn.execute(sa.select(scores.c.reasons).where(scores.c.person_id == "p9")).scalar_one()
    assert stored == [text] * 10
    assert listed == [text, text]  # p9 and p8 are listed (percentile >= 0.8); 3 reasons <= top_reasons (3)
    assert decoded == reasons
