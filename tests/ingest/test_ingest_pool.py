"""Ingest on several cores (``expectations.ingest_pool``): worker processes validate chunks of the sources.

Real worker processes (a fork server, as in production), no mocks. Expected reasons are the hand-worked ones
of ``conftest.EXPECTED_REASONS`` and the generator's recorded truth (``_truth/defects.parquet``); the whole
output is also compared with the one-process path (``ingest.workers = 1``), which is kept as it was.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import polars as pl
import psutil
import pytest

from expectations.chunked import chunk_key
from expectations.contract import OPTIONAL_SOURCES, SOURCES
from expectations.ingest import delivery_extract_date, ingest_delivery
from expectations.ingest_pool import IngestPool, plan_for_pool
from synthetic import generate
from tests.ingest.conftest import AS_OF, EXPECTED_REASONS, ROWS_IN
from tests.ingest.test_bad_files import CASES
from upstream.cli import main
from upstream.errors import BadFileError
from upstream.settings import IngestSettings, Settings, get_settings


def _pool_settings(home: Path, chunks_per_worker: int = 2) -> Settings:
    """Two workers whatever the machine, for a delivery of any size (the default floor is 20M rows)."""
    return Settings(home=home, pseudo_key="test-key-not-secret",
                    ingest=IngestSettings(workers=2, pool_min_rows=0, pool_chunks_per_worker=chunks_per_worker))


def _one_process(home: Path) -> Settings:
    return Settings(home=home, pseudo_key="test-key-not-secret", ingest=IngestSettings(workers=1))


def _workers_left(before: set[int]) -> list[psutil.Process]:
    """Child processes started since ``before`` that are still running, other than the fork server (which
    lives as long as this process, like a pool's resource tracker, and never runs a chunk)."""
    left = []
    for child in psutil.Process().children(recursive=True):
        try:
            if child.pid in before or child.status() == psutil.STATUS_ZOMBIE:
                continue
            if "forkserver" in " ".join(child.cmdline()) or "resource_tracker" in " ".join(child.cmdline()):
                continue
        except psutil.NoSuchProcess:
            continue
        left.append(child)
    return left


def _same_outputs(one: Path, pool: Path, one_settings: Settings, pool_settings: Settings) -> None:
    # The summary file byte for byte (sources in the same order, same counts and check verdicts).
    assert (pool / "validation_summary.json").read_text() == (one / "validation_summary.json").read_text()
    for kind in ("clean", "quarantine"):
        names = sorted(p.name for p in (one / kind).glob("*.parquet"))
        assert names == sorted(p.name for p in (pool / kind).glob("*.parquet"))
        for name in names:
            a, b = pl.read_parquet(one / kind / name), pl.read_parquet(pool / kind / name)
            assert a.schema == b.schema, (kind, name)  # column order and dtypes
            assert a.equals(b), (kind, name)  # values and row order
    assert pl.read_parquet(pool_settings.reid_map_path).equals(pl.read_parquet(one_settings.reid_map_path))
    assert (pool / "data_docs" / "index.html").exists()


def test_the_pool_gives_the_hand_worked_reasons_and_the_one_process_outputs(delivery: Path, tmp_path: Path):
    pool_settings = _pool_settings(tmp_path / "pool")
    plan = plan_for_pool(delivery, tmp_path / "x", AS_OF, pool_settings)
    assert plan is not None and len(plan.residents) == 2  # every worker takes a share of the residents
    assert [c.of for c in plan.chunks_of("hospital_spells")] == [1]  # spell history: never cut

    summary = ingest_delivery(delivery, tmp_path / "pool" / "out", pool_settings)
    for source, reasons in EXPECTED_REASONS.items():
        quarantined = pl.read_parquet(tmp_path / "pool" / "out" / "quarantine" / f"{source}.parquet")
        assert dict(zip(quarantined["row_index"].to_list(), quarantined["reason"].to_list(), strict=True)) == reasons, source
        entry = summary[source]
        assert entry["rows_in"] == ROWS_IN[source] == entry["rows_valid"] + entry["rows_quarantined"]
        assert entry["rows_quarantined"] == len(reasons)

    one_settings = _one_process(tmp_path / "one")
    ingest_delivery(delivery, tmp_path / "one" / "out", one_settings)
    _same_outputs(tmp_path / "one" / "out", tmp_path / "pool" / "out", one_settings, pool_settings)


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    """A generated parquet delivery with injected defects (duplicates, bad codes, unknown people, overlapping
    spells and addresses...), and its address history."""
    root = tmp_path_factory.mktemp("pool")
    raw = root / "raw"
    generate.generate_delivery(raw, residents=1500, seed=11, defect_rate=0.05)
    return root, raw


def test_the_pool_quarantines_the_generator_s_defects_exactly_as_one_process(generated):
    root, raw = generated
    as_of = delivery_extract_date(raw)
    pool_settings = _pool_settings(root / "pool", chunks_per_worker=4)  # GP events in several chunks
    plan = plan_for_pool(raw, root / "x", as_of, pool_settings)
    assert plan is not None
    event_rows = sum(rows for name, rows in plan.rows_in.items() if name != "residents")
    share = math.ceil(event_rows / 8)
    assert len(plan.chunks_of("gp_events")) == math.ceil(plan.rows_in["gp_events"] / share) > 1
    if "addresses" in plan.rows_in:
        assert chunk_key(OPTIONAL_SOURCES["addresses"]) == "nhs_number"  # address history: cut by person

    summary = ingest_delivery(raw, root / "pool" / "out", pool_settings, as_of=as_of)
    truth = pl.read_parquet(raw / "_truth" / "defects.parquet")
    for source, entry in summary.items():
        assert entry["rows_in"] == entry["rows_valid"] + entry["rows_quarantined"]
        if source in SOURCES:
            quarantined = pl.read_parquet(root / "pool" / "out" / "quarantine" / f"{source}.parquet")
            expected = sorted(truth.filter(pl.col("source") == source)["row_index"].to_list())
            assert quarantined["row_index"].to_list() == expected, source
    assert truth.filter((pl.col("source") == "gp_events") & (pl.col("defect") == "duplicate_row")).height > 0

    one_settings = _one_process(root / "one")
    ingest_delivery(raw, root / "one" / "out", one_settings, as_of=as_of)
    _same_outputs(root / "one" / "out", root / "pool" / "out", one_settings, pool_settings)
    assert not [p for p in (root / "pool").iterdir() if p.name.startswith(".")]  # no work directory left


def test_the_fork_server_has_one_thread_when_it_forks_a_worker():
    """Forking a process with live threads can leave a lock held forever in the child: the server the
    workers are forked from must have exactly one thread (GX's import would start pyarrow's jemalloc thread
    and OpenBLAS's pool: ``expectations._ingest_preload`` switches them off)."""
    pool = IngestPool(2)
    try:
        assert pool.start_method == "forkserver"
        assert pool.server_threads == 1
    finally:
        pool.stop()


WORKER_CASES = [c for c in CASES if c[0] in ("strings for dates", "ints for dates", "csv booleans")]


@pytest.mark.parametrize(("label", "damage", "file", "column", "problem"), WORKER_CASES, ids=[c[0] for c in WORKER_CASES])
def test_a_bad_file_found_in_a_worker_fails_cleanly_and_stops_every_worker(
    label, damage, file, column, problem, delivery: Path, tmp_path: Path, monkeypatch, capsys
):
    """These files pass the up-front probe (names and header are right), so a worker finds the problem."""
    damage(delivery)
    monkeypatch.setenv("UPSTREAM_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("UPSTREAM_INGEST__WORKERS", "2")
    monkeypatch.setenv("UPSTREAM_INGEST__POOL_MIN_ROWS", "0")
    get_settings.cache_clear()
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    try:
        with pytest.raises(BadFileError) as raised:
            ingest_delivery(delivery, tmp_path / "direct", get_settings())
        assert raised.value.file.endswith(file) and raised.value.column == column
        assert problem in raised.value.problem
        assert raised.value.__cause__ is None  # not chained to the worker's traceback
        assert not _workers_left(before)

        out = tmp_path / "out"
        code = main(["ingest", "--raw", str(delivery), "--out", str(out)])
        err = capsys.readouterr().err
    finally:
        get_settings.cache_clear()
    assert code != 0
    assert file in err and problem in err and f"column '{column}'" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not out.exists() and not (tmp_path / "direct").exists()
    assert not any(p.name.startswith((".out", ".direct")) for p in tmp_path.iterdir())
    assert not (tmp_path / "home" / "restricted" / "reid_map.parquet").exists()
    assert not _workers_left(before)


def test_small_deliveries_and_one_worker_keep_the_one_process_path(delivery: Path, tmp_path: Path):
    assert plan_for_pool(delivery, tmp_path / "x", AS_OF, _one_process(tmp_path)) is None
    floor = sum(ROWS_IN.values()) + 1  # one row more than the delivery has
    settings = Settings(home=tmp_path, ingest=IngestSettings(workers=2, pool_min_rows=floor))
    assert plan_for_pool(delivery, tmp_path / "x", AS_OF, settings) is None
    settings = Settings(home=tmp_path, ingest=IngestSettings(workers=2, pool_min_rows=floor - 1))
    assert plan_for_pool(delivery, tmp_path / "x", AS_OF, settings) is not None


def test_the_summary_json_is_what_the_caller_gets(delivery: Path, tmp_path: Path):
    summary = ingest_delivery(delivery, tmp_path / "out", _pool_settings(tmp_path / "home"))
    assert json.loads((tmp_path / "out" / "validation_summary.json").read_text()) == summary
    assert list(summary) == [n for n in (*SOURCES, *OPTIONAL_SOURCES) if n in summary]


def test_a_column_that_parses_in_one_chunk_only_is_judged_on_the_whole_file(delivery: Path, tmp_path: Path):
    """``date_of_death`` as text: one date parses, and the residents' other chunk holds only values that do
    not. A chunk alone would call the column "wrong type throughout"; the file is not (one date parses), so
    the rows are quarantined instead, as by one process. Only rows quarantined anyway are touched, so the
    delivery stays usable."""
    frame = pl.read_parquet(delivery / "residents.parquet")
    share = (frame["nhs_number"].hash(seed=0) % 2).to_list()
    already = sorted(EXPECTED_REASONS["residents"])
    good = already[0]
    garbage = [row for row in already if share[row] != share[good]]
    assert garbage  # the other chunk has values, none of which parse
    text = [None] * frame.height
    text[good] = "2025-06-01"
    for row in garbage:
        text[row] = f"not a date {row}"
    frame.with_columns(pl.Series("date_of_death", text, dtype=pl.String)).write_parquet(delivery / "residents.parquet")

    pool_settings, one_settings = _pool_settings(tmp_path / "pool"), _one_process(tmp_path / "one")
    pool_summary = ingest_delivery(delivery, tmp_path / "pool" / "out", pool_settings)
    ingest_delivery(delivery, tmp_path / "one" / "out", one_settings)
    _same_outputs(tmp_path / "one" / "out", tmp_path / "pool" / "out", one_settings, pool_settings)
    failed = {c["token"]: c["unexpected_count"] for c in pool_summary["residents"]["checks"] if c["scope"] == "row"}
    assert failed["type(date_of_death)"] == len(garbage)


def test_a_column_that_parses_nowhere_names_the_file_s_first_value(delivery: Path, tmp_path: Path):
    frame = pl.read_parquet(delivery / "residents.parquet")
    text = [f"not a date {i}" for i in range(frame.height)]
    frame.with_columns(pl.Series("registration_start", text)).write_parquet(delivery / "residents.parquet")
    with pytest.raises(BadFileError) as raised:
        ingest_delivery(delivery, tmp_path / "out", _pool_settings(tmp_path / "pool"))
    assert raised.value.column == "registration_start"
    assert raised.value.problem == ("wrong type throughout the column: expected Date, no value parses "
                                    "(e.g. 'not a date 0')")


def test_unset_workers_means_every_core_from_three_cores_and_one_process_below(tmp_path: Path):
    from expectations.ingest_pool import POOL_MIN_CORES, ingest_workers, usable_cores

    assert POOL_MIN_CORES == 3
    unset = Settings(home=tmp_path)
    assert ingest_workers(unset) == (usable_cores() if usable_cores() >= 3 else 1)
    assert ingest_workers(Settings(home=tmp_path, ingest=IngestSettings(workers=2))) == 2
