"""The bulk insert of a run's scores stores exactly what SQLAlchemy Core's insert stored before it.

``write_scores`` now hands plain row tuples to the driver (SQLite ``executemany``; ``COPY`` on PostgreSQL,
exercised by ``test_postgres.py``). Whatever the route, each stored value (its SQLite storage class
included) and each resident's reasons text must be what the slower dict-per-row insert wrote, because the
API and the lists read them back.
"""

from __future__ import annotations

import json
from datetime import date

import polars as pl
import sqlalchemy as sa

from pipelines.score_history import start_score_run, write_scores
from pipelines.scoring import SCORE_ROW
from upstream.store import EncodedJSON, get_engine, score_runs, scores


def _banded() -> pl.DataFrame:
    reasons = [
        json.dumps([{"feature": "falls_12m", "value": 2, "text": "2 falls", "contribution": 0.1 + 0.2}],
                   separators=(",", ":")),
        json.dumps([{"feature": "age", "value": 87.5, "text": "aged 87", "contribution": 1e-05},
                    {"feature": None, "value": None, "text": "several factors", "contribution": None}],
                   separators=(",", ":")),
        "[]",
    ]
    return pl.DataFrame(
        {"person_id": ["a", "b", "c"], "locality": ["North", "North", "Sea \u00e9"], "score": [0.1 + 0.2, 1e-300, 1.0],
         "band": ["low", "very high", "high"], "in_long_term_care": [False, True, False], "reasons": reasons},
        schema=SCORE_ROW,
    )


def _stored(engine, run_id: str) -> list[tuple]:
    with engine.connect() as conn:
        return conn.execute(sa.text(
            "SELECT person_id, locality, score, typeof(score), band, in_long_term_care, typeof(in_long_term_care), "
            "CAST(reasons AS TEXT), typeof(reasons) FROM scores WHERE run_id = :r ORDER BY person_id"
        ), {"r": run_id}).all()


def _start(engine, run_id: str) -> None:
    start_score_run(engine, run_id=run_id, week="2026-W48", index_date=date(2026, 11, 23), target="crisis",
                    model_name="upstream-crisis", model_version="1")


def test_bulk_insert_stores_what_the_core_insert_stored(tmp_path):
    banded = _banded()
    fast = get_engine(f"sqlite:///{tmp_path / 'fast.db'}")
    _start(fast, "r1")
    assert write_scores(fast, "r1", banded) == 3

    # The path this replaced: one dict per resident through SQLAlchemy Core, reasons passed as EncodedJSON.
    core = get_engine(f"sqlite:///{tmp_path / 'core.db'}")
    _start(core, "r1")
    rows = banded.to_dicts()
    for row in rows:
        row["run_id"] = "r1"
        row["reasons"] = EncodedJSON(row["reasons"])
    with core.begin() as conn:
        conn.execute(scores.insert(), rows)

    assert _stored(fast, "r1") == _stored(core, "r1")
    # And against the values themselves, by hand: 0/1 integers for booleans, the reasons text unchanged.
    got = _stored(fast, "r1")
    assert [r[0] for r in got] == ["a", "b", "c"]
    assert got[0][2] == 0.30000000000000004 and got[1][2] == 1e-300
    assert [(r[5], r[6]) for r in got] == [(0, "integer"), (1, "integer"), (0, "integer")]
    assert [r[7] for r in got] == banded["reasons"].to_list()
    with fast.connect() as conn:
        assert conn.execute(sa.select(scores.c.reasons).where(scores.c.person_id == "b")).scalar_one()[0] == {
            "feature": "age", "value": 87.5, "text": "aged 87", "contribution": 1e-05}
        assert conn.execute(sa.select(scores.c.in_long_term_care).where(scores.c.person_id == "b")).scalar_one() is True
        run = conn.execute(sa.select(score_runs.c.status, score_runs.c.n_scored)).one()
    assert tuple(run) == ("complete", 3)


def test_bulk_insert_writes_every_chunk(tmp_path, monkeypatch):
    """More residents than one transaction's chunk: every row lands once, in order of the frame."""
    import pipelines.score_history as history

    monkeypatch.setattr(history, "_CHUNK", 2)
    banded = pl.concat([_banded().with_columns(pl.col("person_id") + f"-{i}") for i in range(3)])
    engine = get_engine(f"sqlite:///{tmp_path / 'chunks.db'}")
    _start(engine, "r2")
    assert write_scores(engine, "r2", banded) == 9
    assert sorted(r[0] for r in _stored(engine, "r2")) == sorted(banded["person_id"].to_list())


def test_run_scores_read_through_the_driver_are_what_sqlalchemy_reads(tmp_path):
    """Monitoring reads every resident's score with the driver's own rows (``load_run_scores``): the values,
    the last float digit and the types must be what a SQLAlchemy Core select returns, and another run's
    rows must not come with them."""
    from pipelines.score_history import load_run_scores

    engine = get_engine(f"sqlite:///{tmp_path / 'read.db'}")
    banded = _banded()
    _start(engine, "r1")
    write_scores(engine, "r1", banded)
    start_score_run(engine, run_id="r2", week="2026-W49", index_date=date(2026, 11, 30), target="crisis",
                    model_name="upstream-crisis", model_version="1")
    write_scores(engine, "r2", banded.with_columns(pl.col("score") / 2))
    read = load_run_scores(engine, "r1").sort("person_id")
    with engine.connect() as conn:
        core = conn.execute(sa.select(scores.c.person_id, scores.c.score).where(scores.c.run_id == "r1")
                            .order_by(scores.c.person_id)).all()
    assert read.rows() == [tuple(row) for row in core]
    assert read.get_column("score").to_list() == [0.1 + 0.2, 1e-300, 1.0]  # exact, as written
    assert read.schema == pl.Schema({"person_id": pl.String, "score": SCORE_ROW["score"]})
    assert load_run_scores(engine, "nobody").height == 0
