"""A year of score history on the real store: bytes on disk, the weekly write, and the API's p50/p99.

Usage (1.9M under the county lock; 280k under the heavy lock):

    flock /tmp/upstream-county.lock .venv/bin/python bench/bench_history.py --residents 1900000 \\
        --home /work/data-BR/history-1900k

What it does (issue 15 item 4). 52 ISO weeks of 2026 for N residents (scores drift a little week to week):

1. Weeks 1 to 52 - D - 1 (D = ``retention.database_score_weeks``) go straight into the history store through
   ``HistoryStore.add_weeks`` (the call ``settle_history`` makes), a quarter's block at a time, each registered
   as a published week in the database (run, pointer, summary counts), as a year of weekly runs leaves them.
2. The last D + 1 weeks go through the real weekly write path: ``store_scores``-style ``write_scores`` (with
   reasons), ``publish_week`` (a 500-row list per locality), ``stage_history`` and ``settle_history`` (what
   ``publish_run`` calls). The last publish moves the oldest database week into the store: its stage + settle
   is **the weekly write**, timed, with its parts.
3. The real FastAPI app (TestClient, in process) answers (a) ``/residents/{id}/score`` for random residents (a
   year of history: D weeks from the database, the rest from the store) and (b) the 500-row list of a
   locality; p50/p99 of each, every response checked (52 history points; 500 rows).

Prints bytes on disk (history store, database), the timings, and the load average.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import sys
import time
from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

LOCALITIES = ["North", "South", "East", "West", "Central", "Coast", "Weald", "Valley"]
LIST_SIZE = 500
REASONS = ('[{"feature": "falls_12m", "value": 2, "text": "2 falls in last 6 months", "contribution": 0.21}, '
           '{"feature": "lives_alone", "value": true, "text": "lives alone", "contribution": 0.12}, '
           '{"feature": "bereaved_6m", "value": true, "text": "bereaved 3 months ago", "contribution": 0.08}]')


def _band(score: pl.Expr) -> pl.Expr:
    return pl.when(score >= 0.4).then(pl.lit("high")).when(score >= 0.2).then(pl.lit("moderate")).otherwise(
        pl.lit("low"))


def week_scores(people: pl.DataFrame, base: np.ndarray, number: int) -> pl.DataFrame:
    """One week's SCORE_ROW frame: a resident's score drifts slowly over the year (rising risk)."""
    rng = np.random.default_rng(number)
    score = np.clip(base + 0.002 * number + rng.normal(0, 0.01, base.size), 0, 1)
    return people.with_columns(pl.Series("score", score)).with_columns(
        _band(pl.col("score")).alias("band"), pl.lit(False).alias("in_long_term_care"), pl.lit(REASONS).alias("reasons")
    )


def lists_of(frame: pl.DataFrame) -> pl.DataFrame:
    """A 500-row list per locality (the top scores) in the stored list row's columns."""
    from upstream.store import LIST_ROW_COLUMNS

    top = (frame.sort("score", descending=True).group_by("locality", maintain_order=True).head(LIST_SIZE)
           .with_columns((pl.int_range(pl.len()).over("locality") + 1).alias("rank")))
    text = {"section": "top", "why_listed": "Among the highest risks", "what_changed": None,
            "suggested_offers": "falls_prevention", "offers_this_week": "falls_prevention", "offers_waiting": "",
            "offer_evidence": "falls_prevention: 2 falls", "top_reasons": "2 falls in last 6 months; lives alone",
            "age_band": "75-84", "gp_practice": "G82001", "change_points": None, "among_highest": True}
    return top.with_columns(*(pl.lit(v).alias(k) for k, v in text.items())).select(LIST_ROW_COLUMNS)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--residents", type=int, default=1_900_000)
    parser.add_argument("--weeks", type=int, default=52)
    parser.add_argument("--db-weeks", type=int, default=None, help="retention.database_score_weeks (default: the setting)")
    parser.add_argument("--lookups", type=int, default=300)
    parser.add_argument("--home", type=Path, required=True)
    args = parser.parse_args()

    import sqlalchemy as sa
    from fastapi.testclient import TestClient

    from pipelines.history_store import HISTORY_SCHEMA, block_of
    from pipelines.score_history import (
        PublishedWeek,
        history_store,
        new_run_id,
        publish_week,
        settle_history,
        stage_history,
        start_score_run,
        write_scores,
    )
    from serving.app import create_app
    from serving.keys import create_key
    from upstream.settings import RetentionSettings, Settings
    from upstream.store import get_engine, published_weeks, score_runs, score_summaries

    db_weeks = args.db_weeks or RetentionSettings().database_score_weeks
    shutil.rmtree(args.home, ignore_errors=True)
    settings = Settings(home=args.home, pseudo_key="bench-key", retention={"database_score_weeks": db_weeks},
                        serving={"trusted_hosts": ["testserver"]})  # TestClient's Host header
    engine = get_engine(settings.db_url)
    store = history_store(settings)
    rng = random.Random(1)
    ids = sorted({f"{rng.getrandbits(64):016x}" for _ in range(args.residents)})
    people = pl.DataFrame({"person_id": ids, "locality": [LOCALITIES[i % len(LOCALITIES)] for i in range(len(ids))]})
    base = np.random.default_rng(2).beta(1.2, 9.0, len(ids))
    weeks = {f"2026-W{n:02d}": date.fromisocalendar(2026, n, 1) for n in range(1, args.weeks + 1)}
    names = list(weeks)
    straight, through_db = names[: len(names) - db_weeks - 1], names[len(names) - db_weeks - 1:]
    now = datetime.now(UTC)

    # 1. The older weeks, a block at a time, as earlier weekly runs left them.
    started = time.perf_counter()
    for block in sorted({block_of(w) for w in straight}):
        frames = []
        for week in (w for w in straight if block_of(w) == block):
            frame = week_scores(people, base, int(week[-2:]))
            frames.append(frame.with_columns(pl.lit(week).alias("week"), pl.lit(weeks[week]).alias("index_date"))
                          .select(list(HISTORY_SCHEMA)))
            run_id = new_run_id()
            counts = frame.group_by("locality", "band").len().rows()
            with engine.begin() as conn:
                conn.execute(score_runs.insert().values(
                    run_id=run_id, week=week, index_date=weeks[week], target="crisis", model_name="bench",
                    model_version="1", status="complete", n_scored=frame.height, started_at=now, finished_at=now))
                conn.execute(published_weeks.insert().values(week=week, run_id=run_id, index_date=weeks[week],
                                                             published_at=now))
                conn.execute(score_summaries.insert(), [
                    {"run_id": run_id, "locality": loc, "band": band, "score_bin": 0, "residents": n}
                    for loc, band, n in counts])
        store.add_weeks(pl.concat(frames))
        print(f"  block {block}: {len(frames)} weeks stored ({time.perf_counter() - started:.0f} s so far)", flush=True)

    # 2. The newest weeks through the real write path; the last publish moves one week: the weekly write.
    timings: dict[str, list[float]] = {"write_scores": [], "publish_week": [], "stage_history": [],
                                       "settle_history": []}
    settled = None
    for week in through_db:
        frame = week_scores(people, base, int(week[-2:]))
        run_id = new_run_id()
        start_score_run(engine, run_id=run_id, week=week, index_date=weeks[week], target="crisis",
                        model_name="bench", model_version="1")
        t0 = time.perf_counter()
        write_scores(engine, run_id, frame)
        t1 = time.perf_counter()
        publish_week(engine, week=week, run_id=run_id, index_date=weeks[week], lists=lists_of(frame))
        t2 = time.perf_counter()
        # as publish_run: stage the rows it read for list building, then move what is past the setting
        stage_history(store, PublishedWeek(week, run_id, weeks[week]), frame.drop("reasons"))
        t3 = time.perf_counter()
        settled = settle_history(engine, store, db_weeks)
        t4 = time.perf_counter()
        for name, seconds in zip(timings, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
            timings[name].append(seconds)
        print(f"  {week}: write_scores {t1 - t0:.1f} s, publish {t2 - t1:.1f} s, stage {t3 - t2:.1f} s, "
              f"settle {t4 - t3:.1f} s (moved {settled.moved_weeks})", flush=True)

    history_bytes = sum(p.stat().st_size for p in store.root.rglob("*.parquet"))
    db_path = Path(settings.db_url.removeprefix("sqlite:///"))
    with engine.connect() as conn:
        conn.execute(sa.text("PRAGMA wal_checkpoint(TRUNCATE)"))
    db_bytes = sum(p.stat().st_size for p in db_path.parent.glob(db_path.name + "*"))
    rows = len(ids) * args.weeks

    # 3. The API on that store.
    key = create_key(engine, "locality", [LOCALITIES[0]], "bench")
    pids = [p for i, p in enumerate(ids) if i % len(LOCALITIES) == 0]
    sample = random.Random(3).sample(pids, min(args.lookups, len(pids)))
    resident_ms, list_ms = [], []
    with TestClient(create_app(settings)) as client:
        headers = {"X-API-Key": key}
        for pid in sample[:20]:  # warm-up
            client.get(f"/residents/{pid}/score", headers=headers)
        for pid in sample:
            t0 = time.perf_counter()
            r = client.get(f"/residents/{pid}/score", headers=headers)
            resident_ms.append((time.perf_counter() - t0) * 1000)
            assert r.status_code == 200 and len(r.json()["history"]) == args.weeks, (pid, r.status_code, r.text[:200])
        for _ in range(min(args.lookups, 200)):
            t0 = time.perf_counter()
            r = client.get(f"/localities/{LOCALITIES[0]}/rising-risk", headers=headers)
            list_ms.append((time.perf_counter() - t0) * 1000)
            assert r.status_code == 200 and r.json()["count"] == LIST_SIZE, r.text[:200]

    def pct(values: list[float], q: float) -> float:
        return float(np.percentile(values, q))

    print(f"\n{len(ids):,} residents x {args.weeks} weeks = {rows:,} score rows; database keeps the newest {db_weeks}")
    print(f"history store: {history_bytes:,} bytes ({history_bytes / 2**30:.2f} GiB, {history_bytes / (len(ids) * (args.weeks - db_weeks)):.1f} B/row) "
          f"in {sum(1 for _ in store.root.rglob('*.parquet'))} files, {len(store.weeks())} weeks")
    print(f"database: {db_bytes:,} bytes ({db_bytes / 2**30:.2f} GiB) for {db_weeks} weeks with reasons + lists")
    for name, values in timings.items():
        print(f"{name} per week: median {statistics.median(values):.1f} s, max {max(values):.1f} s")
    print(f"weekly write = the last publish's stage {timings['stage_history'][-1]:.1f} s + settle (week {settled.moved_weeks if settled else []} -> store, "
          f"{settled.moved_rows if settled else 0:,} rows): {timings['settle_history'][-1]:.1f} s "
          f"{settled.seconds if settled else {}}")
    print(f"API /residents/{{id}}/score with {args.weeks} weeks of history, {len(resident_ms)} requests: "
          f"p50 {pct(resident_ms, 50):.1f} ms, p99 {pct(resident_ms, 99):.1f} ms, max {max(resident_ms):.1f} ms")
    print(f"API 500-row list (JSON), {len(list_ms)} requests: p50 {pct(list_ms, 50):.1f} ms, "
          f"p99 {pct(list_ms, 99):.1f} ms")
    print(f"load average {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
