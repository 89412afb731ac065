"""End to end: the real weekly Prefect flow on a small generated delivery, two weeks, a re-run, a failure
drill, and the Dask fan-out (distributed LocalCluster) giving the same published week as the local run.

Expected values are recomputed here from the stored scores with an independent implementation of the
list rules (numpy, not ``pipelines.lists``), or come from the generator's recorded truth.
"""

from __future__ import annotations

import json
from datetime import timedelta

import numpy as np
import polars as pl
import pytest
import sqlalchemy as sa

from synthetic import generate
from tests.pipelines.conftest import latest_artifact
from upstream.settings import Settings
from upstream.store import get_engine, listing_outcomes, published_weeks, risk_lists, score_runs, scores


@pytest.fixture(scope="module")
def delivery(tmp_path_factory):
    from pipelines.weeks import delivery_extract_date

    root = tmp_path_factory.mktemp("weekly")
    raw = root / "raw"
    generate.generate_delivery(raw, residents=3000, seed=11)
    extract = delivery_extract_date(raw)
    assert extract is not None
    return {"raw": raw, "home": root / "home", "extract": extract}


def _published(engine, week: str) -> tuple[str, pl.DataFrame, pl.DataFrame]:
    with engine.connect() as conn:
        run_id = conn.execute(sa.select(published_weeks.c.run_id).where(published_weeks.c.week == week)).scalar_one()
        s = conn.execute(
            sa.select(
                scores.c.person_id,
                scores.c.locality,
                scores.c.score,
                scores.c.band,
                scores.c.in_long_term_care,
                scores.c.reasons,
            ).where(scores.c.run_id == run_id)
        ).all()
        lst = conn.execute(
            sa.select(
                risk_lists.c.locality,
                risk_lists.c.rank,
                risk_lists.c.person_id,
                risk_lists.c.score,
                risk_lists.c.band,
                risk_lists.c.section,
                risk_lists.c.change_points,
                risk_lists.c.why_listed,
                risk_lists.c.what_changed,
                risk_lists.c.suggested_offers,
                risk_lists.c.reasons,
            ).where(risk_lists.c.run_id == run_id)
        ).all()
    score_frame = pl.DataFrame(
        [dict(r._mapping) | {"reasons": json.dumps(r.reasons)} for r in s], infer_schema_length=None
    ).sort("person_id")
    list_frame = pl.DataFrame(
        [dict(r._mapping) | {"reasons": json.dumps(r.reasons)} for r in lst], infer_schema_length=None
    ).sort(["locality", "rank"])
    return run_id, score_frame, list_frame


def _counts(engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {
            t.name: conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one()
            for t in (score_runs, scores, published_weeks, risk_lists)
        }


@pytest.fixture(scope="module")
def two_weeks(delivery, prefect_harness, small_delivery_gate):
    from pipelines.flows import weekly

    home = str(delivery["home"])
    week1 = weekly(str(delivery["raw"]), delivery["extract"] - timedelta(days=7), train="always", home=home)
    week2 = weekly(str(delivery["raw"]), delivery["extract"], train="auto", home=home)
    return week1, week2


def _expected_top_band(frame: pl.DataFrame, percentile: float, capacity: int, excluded: set[str]) -> set[str]:
    """Independent implementation: per locality, share with a strictly lower score >= percentile,
    excluding the cohort exclusions, highest first, up to capacity."""
    chosen: set[str] = set()
    for locality in frame["locality"].unique():
        part = frame.filter(pl.col("locality") == locality)
        values = part["score"].to_numpy()
        lower = np.array([(values < v).sum() for v in values]) / len(values)
        eligible = (lower >= percentile) & ~part["person_id"].is_in(list(excluded)).to_numpy()
        order = sorted(np.flatnonzero(eligible), key=lambda i: (-values[i], part["person_id"][int(i)]))
        chosen |= {part["person_id"][int(i)] for i in order[:capacity]}
    return chosen


def _independent_exclusions(raw, T, settings) -> set[str]:
    """person_id of residents excluded at T by DESIGN §6, from the raw files (injected defect rows left out)."""
    import csv as csv_module
    from datetime import timedelta as td

    from features.codelists import CODELIST_DIR

    defects = pl.read_parquet(raw / "_truth" / "defects.parquet")

    def read(name: str) -> pl.DataFrame:
        frame = pl.read_parquet(raw / f"{name}.parquet").with_row_index("_r")
        bad = defects.filter(pl.col("source") == name)["row_index"].implode()
        return frame.filter(~pl.col("_r").is_in(bad)).drop("_r")

    residents, spells, sc, gp = (read(n) for n in ("residents", "hospital_spells", "social_care_events", "gp_events"))
    with (CODELIST_DIR / "care_home_snomed.csv").open() as fh:
        care_codes = [r["code"] for r in csv_module.DictReader(fh)]
    # DESIGN §6 "last year of life": a GP palliative or end-of-life code in the 12 months before T (generator 1.7's
    # older population put the first such person in this fixture's top band).
    with (CODELIST_DIR / "palliative_and_end_of_life_care_snomed.csv").open() as fh:
        palliative_codes = [r["code"] for r in csv_module.DictReader(fh)]
    dob = pl.col("date_of_birth")
    age = T.year - dob.dt.year() - ((dob.dt.month() * 100 + dob.dt.day()) > T.month * 100 + T.day).cast(pl.Int32)
    nhs = set(residents.filter(age < 18)["nhs_number"])
    nhs |= set(spells.filter((pl.col("admission_date") < T) & (pl.col("discharge_date").is_null()
                                                               | (pl.col("discharge_date") >= T)))["nhs_number"])
    nhs |= set(sc.filter((pl.col("event_type") == "Service") & (pl.col("event_start_date") <= T)
                         & (pl.col("event_end_date").is_null() | (pl.col("event_end_date") >= T))
                         & pl.col("service_type").str.starts_with("Long Term Support")
                         | (pl.col("service_type") == "Short Term Support: ST-Max")
                         & (pl.col("event_type") == "Service") & (pl.col("event_start_date") <= T)
                         & (pl.col("event_end_date").is_null() | (pl.col("event_end_date") >= T)))["nhs_number"])
    nhs |= set(gp.filter(pl.col("snomed_code").is_in(care_codes + palliative_codes) & (pl.col("event_date") < T)
                         & (pl.col("event_date") >= T - td(days=365)))["nhs_number"])
    reid = pl.read_parquet(settings.reid_map_path)
    return set(reid.filter(pl.col("nhs_number").is_in(list(nhs)))["person_id"])


def test_two_weeks_end_to_end(delivery, two_weeks):
    from pipelines.scoring import iso_week

    week1, week2 = two_weeks
    settings = Settings(home=delivery["home"])
    engine = get_engine(settings.db_url)
    w1, w2 = iso_week(delivery["extract"] - timedelta(days=7)), iso_week(delivery["extract"])
    assert (week1["week"], week2["week"]) == (w1, w2)
    assert _counts(engine)["published_weeks"] == 2 and _counts(engine)["score_runs"] == 2

    _, scores1, _ = _published(engine, w1)
    _, scores2, lists2 = _published(engine, w2)
    assert scores2.height == week2["n_scored"] > 2000

    # Auto did not retrain in week 2: one registered version, used by both runs.
    with engine.connect() as conn:
        versions = conn.execute(sa.select(score_runs.c.model_version).distinct()).scalars().all()
    assert len(versions) == 1

    # Exclusions, computed here from the raw delivery (not with expectations.cohort): nobody excluded at T is
    # listed, and the top section matches an independent implementation over everyone else.
    T = delivery["extract"]
    excluded = _independent_exclusions(delivery["raw"], T, settings)
    rules = settings.lists
    assert not set(lists2["person_id"]) & excluded
    top = set(lists2.filter(pl.col("why_listed").str.contains("highest risk"))["person_id"])
    assert top == _expected_top_band(scores2, rules.band_percentile, rules.capacity_per_locality, excluded)

    # Change in points and risers, from the two weeks' stored scores (week 1 is the comparison week).
    joined = scores2.join(scores1.select("person_id", pl.col("score").alias("before")), on="person_id", how="left")
    change = dict(zip(joined["person_id"], (joined["score"] - joined["before"]).to_list(), strict=True))
    for row in lists2.iter_rows(named=True):
        expected = change[row["person_id"]]
        if expected is None:
            assert row["change_points"] is None
        else:
            assert row["change_points"] == pytest.approx(round(100 * expected, 1), abs=0.051)
    risers = {p for p, c in change.items() if c is not None and c >= rules.risk_rise_threshold - 1e-9} - excluded
    assert set(lists2.filter(pl.col("why_listed").str.contains("Risk up"))["person_id"]) == risers

    # Sections: new = not on week 1's list AND own risk put them on it (rising, or at/above week 1's entry
    # level: the lowest risk among week 1's highest); then rising; the rest top, and a top row that was not on
    # week 1's list says others left. New and rising say what changed.
    _, _, lists1 = _published(engine, w1)
    previous = set(lists1["person_id"])
    entry = dict(lists1.filter(pl.col("why_listed").str.contains("highest risk")).group_by("locality")
                 .agg(pl.col("score").min()).iter_rows())
    expected_sections = [
        "new" if p not in previous and (p in risers or sc >= entry[loc]) else "rising" if p in risers else "top"
        for p, loc, sc in lists2.select("person_id", "locality", "score").iter_rows()
    ]
    assert lists2["section"].to_list() == expected_sections
    drifted = lists2.filter(~pl.col("person_id").is_in(list(previous)) & (pl.col("section") == "top"))
    assert drifted["why_listed"].str.starts_with("Not on last week's list").all()
    assert drifted["why_listed"].str.ends_with("(others left the list)").all()
    order = {"new": 0, "rising": 1, "top": 2}
    for _, part in lists2.group_by("locality"):
        keys = [(order[s], -sc) for s, sc in zip(part["section"], part["score"], strict=True)]
        assert keys == sorted(keys)  # new first, then rising, then top; highest risk first in each
    changed = lists2.filter(pl.col("section") != "top")
    assert changed["what_changed"].null_count() == 0
    assert lists2.filter(pl.col("section") == "top")["what_changed"].null_count() == lists2.filter(
        pl.col("section") == "top").height

    # CSV and Excel per locality, the same rows as the DB.
    from pipelines.lists import locality_file_stem

    for locality in scores2["locality"].unique():
        stem = locality_file_stem(locality)
        csv = pl.read_csv(settings.home / "lists" / w2 / f"{stem}.csv")
        assert csv["person_id"].to_list() == lists2.filter(pl.col("locality") == locality)["person_id"].to_list()
        assert (settings.home / "lists" / w2 / f"{stem}.xlsx").exists()

    # Artifacts of the last run: validation reconciles, sizes are suppressed, progress reached 100%.
    validation = latest_artifact("validation-summary")["data"]
    validation = json.loads(validation) if isinstance(validation, str) else validation
    assert len(validation) == 7  # the six contract sources and the optional address history (the generator writes it)
    assert all(r["rows_in"] == r["rows_valid"] + r["rows_quarantined"] for r in validation)
    sizes = latest_artifact("list-sizes")["data"]
    sizes = json.loads(sizes) if isinstance(sizes, str) else sizes
    for row in sizes:
        assert row["listed"] == "<8" or int(row["listed"]) % 5 == 0
    assert latest_artifact("weekly-progress")["data"] == pytest.approx(100.0)
    assert latest_artifact("model-metrics")["data"]


def test_rerun_replaces_week_and_failure_drill_changes_nothing(delivery, two_weeks):
    from pipelines.drills import InjectedFailure
    from pipelines.flows import weekly
    from pipelines.scoring import iso_week

    settings = Settings(home=delivery["home"])
    engine = get_engine(settings.db_url)
    week = iso_week(delivery["extract"])
    before_counts = _counts(engine)
    run_before, scores_before, lists_before = _published(engine, week)

    again = weekly(str(delivery["raw"]), delivery["extract"], train="never", home=str(delivery["home"]))
    assert again["replaced_run_id"] == run_before
    assert _counts(engine) == before_counts  # no duplicated history
    run_after, scores_after, lists_after = _published(engine, week)
    assert run_after != run_before
    assert scores_after.equals(scores_before) and lists_after.equals(lists_before)

    csv = next((settings.home / "lists" / week).glob("*.csv")).read_bytes()
    for step in ("score", "publish"):
        state = weekly(
            str(delivery["raw"]),
            delivery["extract"],
            train="never",
            home=str(delivery["home"]),
            inject_failure=step,
            return_state=True,
        )
        assert state.is_failed()
        with pytest.raises(InjectedFailure):
            state.result()
        assert _published(engine, week)[0] == run_after
        assert next((settings.home / "lists" / week).glob("*.csv")).read_bytes() == csv


def _week_outputs(settings: Settings, engine, week: str) -> dict:
    """Everything a week publishes or keeps, in a comparable form (features stacked across partitions)."""
    root = settings.home / "weeks" / week
    ingest_dir = root / "ingest"
    _, score_frame, list_frame = _published(engine, week)
    with engine.connect() as conn:
        outcomes = pl.DataFrame(
            [dict(r._mapping) for r in conn.execute(sa.select(listing_outcomes).order_by(
                listing_outcomes.c.person_id, listing_outcomes.c.week, listing_outcomes.c.window))],
            infer_schema_length=None,
        )
    return {
        "summary": json.loads((ingest_dir / "validation_summary.json").read_text()),
        "clean": {p.name: pl.read_parquet(p) for p in sorted((ingest_dir / "clean").glob("*.parquet"))},
        "quarantine": {p.name: pl.read_parquet(p) for p in sorted((ingest_dir / "quarantine").glob("*.parquet"))},
        "features": pl.concat([pl.read_parquet(p) for p in sorted((root / "features").glob("*.parquet"))],
                              how="vertical_relaxed").sort("person_id"),
        "feature_files": sorted(p.name for p in (root / "features").glob("*.parquet")),
        "scores": score_frame,
        "lists": list_frame,
        "list_files": {p.name: p.read_bytes() for p in sorted((settings.home / "lists" / week).glob("*.csv"))},
        "outcomes": outcomes.drop("computed_at") if outcomes.height else outcomes,
        "ascof": (settings.home / "outcomes" / "ascof_2b.csv").read_text(),
    }


def _task_run_names(prefix: str) -> list[str]:
    """Names of the task runs starting with ``prefix``, from the running Prefect API."""
    import httpx
    from prefect.settings import PREFECT_API_URL

    response = httpx.post(f"{PREFECT_API_URL.value()}/task_runs/filter",
                          json={"task_runs": {"name": {"like_": prefix}}, "limit": 200}, timeout=30)
    response.raise_for_status()  # like_ matches anywhere in the name
    return sorted(run["name"] for run in response.json() if run["name"].startswith(prefix))


def _forget_outcomes(engine) -> None:
    """Follow-up only computes windows not yet stored: clear them so the next run computes them all again."""
    with engine.begin() as conn:
        conn.execute(listing_outcomes.delete())


#: Scores may differ in the last bits between processes (BLAS in the logistic model); everything else,
#: bands, ranks and every list, must be identical.
SCORE_TOLERANCE = 1e-12


def test_whole_week_on_a_dask_cluster_matches_local_run(delivery, two_weeks, monkeypatch):
    """Ingest (per source chunk), features, scoring, lists (per locality) and outcome follow-up as tasks on
    a LocalCluster of 2 worker processes publish the week a local run publishes."""
    from distributed import LocalCluster

    from pipelines.flows import weekly
    from pipelines.scoring import iso_week

    settings = Settings(home=delivery["home"])
    engine = get_engine(settings.db_url)
    home, raw, T = str(delivery["home"]), str(delivery["raw"]), delivery["extract"]
    week = iso_week(T)
    # A week listed 17 weeks earlier: its 91-day window has closed by T, so follow-up has outcomes to compute.
    weekly(raw, T - timedelta(weeks=17), train="never", home=home)

    _forget_outcomes(engine)
    weekly(raw, T, train="never", home=home)
    local = _week_outputs(settings, engine, week)
    assert local["outcomes"].height > 0 and local["quarantine"]  # follow-up really had windows to compute

    _forget_outcomes(engine)
    # Small chunks, so the larger sources are validated in several tasks (gp_events: ~31k rows -> 4 chunks).
    monkeypatch.setenv("UPSTREAM_INGEST__CLUSTER_CHUNK_ROWS", "10000")
    # ":0": an ephemeral port for the scheduler's HTTP server (None still binds the default 8787, shared machine)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster:
        result = weekly(raw, T, train="never", home=home, dask_address=cluster.scheduler_address)
        workers = len(cluster.workers)  # the two worker processes (nannies) the cluster started
    assert workers == 2
    on_cluster = _week_outputs(settings, engine, week)

    # Really fanned out: chunked ingest tasks, one list task per locality, follow-up as a task, and one
    # feature file per locality where the local run wrote one.
    gp_rows = pl.scan_parquet(delivery["raw"] / "gp_events.parquet").select(pl.len()).collect().item()
    assert _task_run_names("ingest-gp_events-") == [f"ingest-gp_events-{k}" for k in range(-(-gp_rows // 10000))]
    assert _task_run_names("lists-") == sorted(f"lists-{name}" for name in local["scores"]["locality"].unique())
    assert len(_task_run_names("outcomes_due_task")) == 1
    assert local["feature_files"] == ["all.parquet"]
    assert len(on_cluster["feature_files"]) == local["scores"]["locality"].n_unique() > 1
    assert result["n_scored"] == local["scores"].height

    assert on_cluster["summary"] == local["summary"]
    for source, entry in on_cluster["summary"].items():  # counts reconcile per source (summed over chunks)
        assert entry["rows_in"] == entry["rows_valid"] + entry["rows_quarantined"], source
        assert entry["rows_valid"] == on_cluster["clean"][f"{source}.parquet"].height, source
    for kind in ("clean", "quarantine"):
        assert on_cluster[kind].keys() == local[kind].keys()
        for name, frame in local[kind].items():
            assert on_cluster[kind][name].equals(frame), (kind, name)
    assert on_cluster["features"].equals(local["features"])

    scores_local, scores_cluster = local["scores"], on_cluster["scores"]
    assert scores_cluster["person_id"].to_list() == scores_local["person_id"].to_list()
    assert (scores_cluster["score"] - scores_local["score"]).abs().max() <= SCORE_TOLERANCE
    assert scores_cluster.drop("score", "reasons").equals(scores_local.drop("score", "reasons"))
    explained = 0
    for mine, theirs in zip(scores_cluster["reasons"], scores_local["reasons"], strict=True):
        a, b = json.loads(mine), json.loads(theirs)
        assert (a is None) == (b is None)  # the same people explained (the listed ones), the rest null in both
        if a is None:
            continue
        explained += 1
        assert [(r["feature"], r["value"], r["text"]) for r in a] == [(r["feature"], r["value"], r["text"]) for r in b]
        assert [r["contribution"] for r in a] == pytest.approx([r["contribution"] for r in b], abs=1e-9)
    assert explained == local["lists"].height > 0  # only the listed people were explained, in both runs
    assert on_cluster["lists"].drop("score", "reasons").equals(local["lists"].drop("score", "reasons"))
    assert on_cluster["list_files"] == local["list_files"]
    assert on_cluster["outcomes"].equals(local["outcomes"])
    assert result["outcomes"]["outcome_rows_added"] == local["outcomes"].height
    assert on_cluster["ascof"] == local["ascof"]
