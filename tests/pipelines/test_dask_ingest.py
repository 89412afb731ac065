"""Ingest cut into source chunks (``pipelines.dask_ingest``, the functions cluster tasks run), called
directly: no Prefect, no Dask. Expected quarantines come from the generator's recorded truth
(``_truth/defects.parquet``), and the whole output is compared with a one-process ``ingest_delivery``."""

from __future__ import annotations

import json
import math

import polars as pl
import pytest

from expectations.chunked import chunk_key, source_of
from expectations.ingest import delivery_extract_date, ingest_delivery
from pipelines import dask_ingest
from synthetic import generate
from upstream.errors import BadFileError
from upstream.settings import Settings

CHUNK_ROWS = 2500


@pytest.fixture(scope="module")
def defective(tmp_path_factory):
    """A CSV delivery with injected defects (duplicates, bad codes, future dates, unknown people...)."""
    root = tmp_path_factory.mktemp("chunks")
    raw = root / "raw"
    generate.generate_delivery(raw, residents=1500, seed=5, defect_rate=0.05, fmt="csv")
    return root, raw, delivery_extract_date(raw)


def _chunked(raw, out, as_of, settings):
    plan = dask_ingest.plan_ingest(raw, out, as_of, CHUNK_ROWS)
    done = [dask_ingest.ingest_chunk(plan, chunk, settings) for chunk in plan.residents]
    dask_ingest.merge_source(plan, "residents")
    done += [dask_ingest.ingest_chunk(plan, chunk, settings) for chunk in plan.events]
    for source in plan.sources[1:]:
        dask_ingest.merge_source(plan, source)
    return plan, done, dask_ingest.finish_ingest(plan, done, out, settings, None)


def test_chunked_ingest_quarantines_the_injected_defects_and_matches_one_process(defective):
    root, raw, as_of = defective
    local_settings, chunk_settings = Settings(home=root / "local"), Settings(home=root / "chunked")
    local_summary = ingest_delivery(raw, root / "local" / "ingest", local_settings, as_of=as_of)
    plan, done, summary = _chunked(raw, root / "chunked" / "ingest", as_of, chunk_settings)
    out = root / "chunked" / "ingest"

    # Cut as planned: ceil(rows / CHUNK_ROWS) chunks per source, each row in exactly one chunk; a source whose
    # history and key disagree (spells) is never cut (expectations.chunked.chunk_key). Generator 1.8's 1,500
    # residents have 2,568 spells, more than one chunk's worth.
    truth = pl.read_parquet(raw / "_truth" / "defects.parquet")
    for source in plan.sources:
        rows = pl.scan_csv(raw / f"{source}.csv", infer_schema=False).select(pl.len()).collect().item()
        chunks = [d for d in done if d.chunk.source == source]
        assert len(chunks) == (1 if chunk_key(source_of(source)) is None else math.ceil(rows / CHUNK_ROWS))
        assert sum(d.stats.rows_in for d in chunks) == rows == summary[source]["rows_in"]
        # Exactly the rows the generator damaged are quarantined, duplicates included (a duplicate and its
        # original hash to the same chunk); the chunks' counts add up to them.
        quarantined = pl.read_parquet(out / "quarantine" / f"{source}.parquet")
        expected = sorted(truth.filter(pl.col("source") == source)["row_index"].to_list())
        assert sum(d.stats.rows_quarantined for d in chunks) == len(expected) == summary[source]["rows_quarantined"]
        assert summary[source]["rows_valid"] == rows - len(expected)
        assert quarantined["row_index"].to_list() == expected, source
        assert pl.read_parquet(out / "clean" / f"{source}.parquet").height == rows - len(expected)
    gp_chunks = [d for d in done if d.chunk.source == "gp_events"]
    assert len(gp_chunks) > 1
    duplicated = truth.filter((pl.col("source") == "gp_events") & (pl.col("defect") == "duplicate_row"))
    assert duplicated.height > 0

    # The same delivery as one process writes: summary, clean and quarantine files, re-identification map.
    assert json.dumps(summary, sort_keys=True) == json.dumps(local_summary, sort_keys=True)
    for kind in ("clean", "quarantine"):
        names = sorted(p.name for p in (root / "local" / "ingest" / kind).glob("*.parquet"))
        assert names == sorted(p.name for p in (out / kind).glob("*.parquet"))
        for name in names:
            assert pl.read_parquet(out / kind / name).equals(pl.read_parquet(root / "local" / "ingest" / kind / name))
    assert pl.read_parquet(chunk_settings.reid_map_path).equals(pl.read_parquet(local_settings.reid_map_path))
    assert sorted(p.name for p in out.parent.iterdir() if p.name.startswith(".")) == []  # no work dir left


def test_a_corrupt_source_fails_before_any_chunk_runs(defective, tmp_path):
    _, raw, as_of = defective
    broken = tmp_path / "raw"
    broken.mkdir()
    for path in raw.glob("*.csv"):
        (broken / path.name).write_bytes(path.read_bytes())
    data = (broken / "hospital_spells.csv").read_bytes()
    (broken / "hospital_spells.csv").write_bytes(data[: len(data) - 40])  # cut off mid-row
    with pytest.raises(BadFileError) as error:
        dask_ingest.plan_ingest(broken, tmp_path / "home" / "ingest", as_of, CHUNK_ROWS)
    assert "hospital_spells.csv" in str(error.value) and "truncated" in str(error.value)
    assert not (tmp_path / "home").exists()
