"""Ingest one raw delivery: read, validate every row in Great Expectations, quarantine, pseudonymise.

Why this shape:
- every source is read and typed before anything is validated, so a bad file fails fast and
  nothing is written;
- residents are validated first: "the person is in residents" means *in the valid residents*,
  so an event never points at a quarantined person;
- output is written to a temporary directory next to ``out_dir`` and renamed into place, so a
  failure never leaves a partial delivery behind.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import date
from pathlib import Path

import polars as pl

from expectations.contract import OPTIONAL_SOURCES, SOURCES
from expectations.read import find_source_file, probe_source, read_source
from expectations.suites import Mode
from expectations.validate import (
    SOURCE_ORDER,
    GxRunner,
    SourceResult,
    _empty_clean,
    _has_no_rows,
    _has_source_file,
    _replace_dir,
    _summarise,
    _write_reid_map,
    clean_frame,
    quarantine_frame,
    validate_source,
)
from upstream.errors import UpstreamError
from upstream.settings import Settings

log = logging.getLogger(__name__)

#: Names callers have imported from here since before ``expectations.validate`` held them.
__all__ = ["SOURCE_ORDER", "GxRunner", "delivery_extract_date", "ingest_delivery", "resolve_as_of", "validate_source"]


def delivery_extract_date(raw_dir: Path) -> date | None:
    """``extract_date`` from the delivery's ``_delivery.json`` (the one reader of it), when it has one."""
    meta = Path(raw_dir) / "_delivery.json"
    if not meta.exists():
        return None
    try:
        return date.fromisoformat(json.loads(meta.read_text())["extract_date"])
    except (KeyError, ValueError, TypeError) as exc:
        raise UpstreamError(f"{meta}: extract_date is missing or not a YYYY-MM-DD date ({exc})") from None


def resolve_as_of(raw_dir: Path, as_of: date | None) -> date:
    """Explicit date (the weekly run passes its index date), else the delivery's extract date, else today."""
    if as_of is not None:
        return as_of
    return delivery_extract_date(raw_dir) or date.today()


def ingest_delivery(
    raw_dir: Path,
    out_dir: Path,
    settings: Settings,
    as_of: date | None = None,
    previous_summary: dict | None = None,
    *,
    mode: Mode = "precomputed",
    chunk_rows: int | None = None,
    build_docs: bool = True,
) -> dict:
    """Validate, quarantine and pseudonymise one delivery; returns the validation summary.

    Raises BadFileError for an unusable file and UpstreamError when a table-level check fails; in
    both cases nothing is left behind. Sources are processed one at a time into a temporary
    directory (memory stays bounded by the largest source), which is renamed into place at the end.
    A delivery of ``ingest.pool_min_rows`` rows or more is validated by ``ingest.workers`` processes
    (``expectations.ingest_pool``), with the same outputs.
    """
    raw_dir, out_dir = Path(raw_dir), Path(out_dir)
    if not raw_dir.is_dir():
        raise UpstreamError(f"{raw_dir}: delivery directory not found")
    as_of = resolve_as_of(raw_dir, as_of)
    if chunk_rows is None and settings.ingest.workers != 1:
        # Both cores (``ingest.workers``): the same outputs from worker processes, for deliveries big enough
        # to pay for them. An explicit ``chunk_rows`` (GX batch size studies) keeps the one-process path.
        from expectations.ingest_pool import ingest_in_processes, plan_for_pool

        plan = plan_for_pool(raw_dir, out_dir, as_of, settings)
        if plan is not None:
            return ingest_in_processes(plan, out_dir, settings, previous_summary, mode=mode, build_docs=build_docs)
    chunk_rows = chunk_rows or settings.ingest.gx_chunk_rows
    for name in SOURCE_ORDER:
        probe_source(raw_dir, SOURCES[name])  # fail fast, before any work, on a missing/empty/renamed file
    optional = [name for name in OPTIONAL_SOURCES if _has_source_file(raw_dir, name)]
    for name in optional:
        if not _has_no_rows(raw_dir, OPTIONAL_SOURCES[name]):
            probe_source(raw_dir, OPTIONAL_SOURCES[name])
    key = settings.pseudonymisation_key()

    runner = GxRunner(settings.home / "gx")
    summary: dict[str, dict] = {}
    failures: list[str] = []
    valid_people: pl.Series | None = None
    reid: pl.DataFrame | None = None
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_dir.with_name(f".{out_dir.name}.tmp-{uuid.uuid4().hex[:8]}")
    reid_tmp: Path | None = None
    try:
        (tmp / "clean").mkdir(parents=True)
        (tmp / "quarantine").mkdir()
        # One worker thread writes each source's outputs while this thread reads and validates the next: the
        # writing side (joins, pseudonyms, parquet) is polars, which releases the GIL, and GX is Python, so the
        # two overlap on the second core. Everything GX does stays on this thread (its execution engine holds
        # one active batch per datasource: not for concurrent use). One source's outputs in flight at a time.
        entries: dict[str, Future[tuple[dict, list[str]]] | dict] = {}
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="ingest-write") as writer:
            for name in (*SOURCE_ORDER, *optional):
                source = SOURCES.get(name) or OPTIONAL_SOURCES[name]
                if name in OPTIONAL_SOURCES and _has_no_rows(raw_dir, source):
                    # a header-only opt-out file means "nobody opted out": an empty clean file, 0 = 0 + 0
                    _empty_clean(source).write_parquet(tmp / "clean" / f"{name}.parquet")
                    entries[name] = {"rows_in": 0, "rows_valid": 0, "rows_quarantined": 0, "checks": [],
                                     "file": find_source_file(raw_dir, source).name, "as_of": as_of.isoformat()}
                    continue
                frame = read_source(raw_dir, source)
                result = validate_source(
                    frame, runner, as_of=as_of, settings=settings, valid_people=valid_people,
                    mode=mode, chunk_rows=chunk_rows,
                )
                log.info("%s: %d rows, %d quarantined (GX %.1fs)", name, frame.raw.height,
                         result.bad_rows.height, result.gx_seconds)
                if build_docs:
                    runner.store_for_docs(name, result.gx_results)  # GX's store: on this thread
                previous = (previous_summary or {}).get(name)
                for earlier in entries.values():  # the last source's writing is done before this one's starts
                    if isinstance(earlier, Future):
                        earlier.result()
                if name == "residents":
                    # Events check against the valid residents and reuse their pseudonyms: written here, first.
                    clean = clean_frame(result, key)
                    valid_people = (result.canonical.with_row_index("row_index")
                                    .join(result.bad_rows, on="row_index", how="anti")["nhs_number"])
                    reid = pl.DataFrame({"person_id": clean["person_id"], "nhs_number": valid_people})
                    entries[name] = writer.submit(_write_source, result, tmp, key, reid, as_of, settings, previous,
                                                  clean)
                else:
                    entries[name] = writer.submit(_write_source, result, tmp, key, reid, as_of, settings, previous)
                del frame, result
            for name, entry in entries.items():
                if isinstance(entry, Future):
                    summary[name], failed = entry.result()
                    failures += failed
                else:
                    summary[name] = entry
        if failures:
            raise UpstreamError("table-level checks failed, nothing written: " + "; ".join(failures))
        (tmp / "validation_summary.json").write_text(json.dumps(summary, indent=2, default=str))
        if build_docs:
            runner.build_docs(tmp / "data_docs")
        assert reid is not None
        reid_tmp = _write_reid_map(settings.reid_map_path, reid)
        _replace_dir(tmp, out_dir)
        os.replace(reid_tmp, settings.reid_map_path)
        reid_tmp = None
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
        if reid_tmp is not None and reid_tmp.exists():
            reid_tmp.unlink()
    return summary


def _write_source(
    result: SourceResult,
    tmp: Path,
    key: bytes,
    known: pl.DataFrame | None,
    as_of: date,
    settings: Settings,
    previous: dict | None,
    clean: pl.DataFrame | None = None,
) -> tuple[dict, list[str]]:
    """A validated source's clean and quarantine files, and its summary entry (runs on the writer thread)."""
    name = result.source.name
    if clean is None:
        clean = clean_frame(result, key, known)  # events reuse the residents' pseudonyms
    clean.write_parquet(tmp / "clean" / f"{name}.parquet")
    quarantine_frame(result).write_parquet(tmp / "quarantine" / f"{name}.parquet")
    return _summarise(result, as_of, settings, previous)
