"""Ingest cut into source chunks: the functions both a Dask cluster (``pipelines.flows``, one task per
chunk) and the local process pool (``expectations.ingest_pool``, both cores of one machine) run, with the
same rows out as the one-process ``ingest_delivery``.

Plain typed functions (no Prefect, no Dask, no pool): callers submit them, and tests call them directly.
Every function reads and writes files under the run's work directory, which must be on storage every
worker sees (the run's home on a shared filesystem for a cluster), so tasks exchange paths and small
counts, never frames.

Why chunks are cut by a hash of a column and not by row ranges: some checks look across rows (a duplicate
row, a duplicated key such as ``spell_id``, a person's spell or address history), and rows judged together
share that column, so they land in the same chunk and are judged there exactly as in a whole-file run. A
source whose checks group rows by two different columns (spells: ``spell_id`` for the duplicate key, the
person for the history) is not cut. Each chunk keeps the rows' positions in the file, so quarantine rows
carry their file ``row_index`` and the merged clean file is in file order, identical to a local run's.
Residents are validated before any event source, as locally: "the person is in residents" means in the
valid residents of the whole delivery.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import polars as pl

from expectations import checks as C
from expectations.contract import OPTIONAL_SOURCES, SOURCES, Source
from expectations.read import (
    SourceFrame,
    find_source_file,
    probe_source,
    type_source,
    unparsed_example,
    wrong_type_throughout,
)
from expectations.suites import Mode, build_suite
from expectations.validate import (
    SOURCE_ORDER,
    GxRunner,
    SourceStats,
    _empty_clean,
    _has_no_rows,
    _has_source_file,
    _replace_dir,
    _write_reid_map,
    clean_frame,
    quarantine_frame,
    slim_results,
    source_stats,
    summarise_stats,
    validate_source,
)
from upstream.errors import BadFileError, UpstreamError
from upstream.settings import Settings

#: A row's 0-based position in its source file, carried through a chunk.
FILE_ROW = "_file_row"


def source_of(name: str) -> Source:
    return SOURCES.get(name) or OPTIONAL_SOURCES[name]


def chunk_key(source: Source) -> str | None:
    """The column chunks are cut by, or None when the source must be validated whole.

    The duplicate-row check needs identical rows together (any column does), the duplicate-key check rows
    sharing the key (its first column does), and the spell or address history checks a person's rows
    together (``nhs_number`` does). A source whose history and key disagree (spells, keyed by ``spell_id``)
    cannot be cut without splitting one of the groups, so it is one chunk.
    """
    key = source.key[0] if source.key else "nhs_number"
    has_history = any(c.name in C.HISTORY_CHECKS for c in C.row_checks(source))
    return None if has_history and key != "nhs_number" else key


@dataclass(frozen=True)
class SourceChunk:
    """One task's share of a source: rows whose ``chunk_key`` hashes to ``index`` modulo ``of``."""

    source: str
    index: int
    of: int


@dataclass(frozen=True)
class IngestPlan:
    """The delivery's sources, in validation order, each cut into chunks; ``work_dir`` holds everything."""

    raw_dir: Path
    work_dir: Path
    as_of: date
    residents: list[SourceChunk]
    events: list[SourceChunk]
    empty_optional: list[str]  # header-only optional files ("nobody opted out")
    rows_in: dict[str, int] = field(default_factory=dict)  # rows per source file (to hand out work)

    def chunk_rows(self, chunk: SourceChunk) -> int:
        """About how many rows ``chunk`` holds (its share of the file; hash shares are near even)."""
        return self.rows_in.get(chunk.source, 0) // chunk.of

    def chunk_cost(self, chunk: SourceChunk) -> int:
        """About how much work ``chunk`` is: rows x row checks (GX runs one expectation per check; at 1.9M the
        CPU per row of each source was 0.11-0.27 us per check, against 1.2-5.7 us per row)."""
        return self.chunk_rows(chunk) * len(C.row_checks(chunk.source))

    def chunks_of(self, source: str) -> list[SourceChunk]:
        return [c for c in (*self.residents, *self.events) if c.source == source]

    @property
    def sources(self) -> list[str]:
        return list(dict.fromkeys(c.source for c in (*self.residents, *self.events)))


@dataclass
class ChunkDone:
    """What a chunk task hands back: counts, and GX results slimmed for Data Docs (no row values)."""

    chunk: SourceChunk
    stats: SourceStats
    gx_results: list[Any]
    seconds: float
    cpu_seconds: float = 0.0  # the worker process's CPU (all its threads) for this chunk
    #: Columns with values present in this chunk but none that parses: column -> (file row of the first
    #: value present, that value), for ``judge_column_types``.
    unparsed: dict[str, tuple[int, str]] = field(default_factory=dict)
    #: Columns in which at least one value parsed in this chunk.
    parsed: frozenset[str] = frozenset()
    peak_rss_bytes: int = 0  # the worker's peak resident memory so far


def _rows_in_file(path: Path) -> int:
    try:
        lazy = pl.scan_csv(path, infer_schema=False) if path.suffix == ".csv" else pl.scan_parquet(path)
        return int(lazy.select(pl.len()).collect().item())
    except Exception as exc:  # the same wording as a whole-file read
        kind = "CSV" if path.suffix == ".csv" else "parquet"
        raise BadFileError(str(path), f"truncated or corrupt {kind} file ({str(exc).strip()[:200]})") from None


def plan_ingest(
    raw_dir: Path, out_dir: Path, as_of: date, chunk_rows: int, *, residents_chunks: int = 1,
    event_shares: int | None = None,
) -> IngestPlan:
    """Probe every file (a bad file fails before any work), count rows and cut each source into chunks of
    about ``chunk_rows`` rows. Runs on a worker: counting a CSV's rows reads it whole.

    For a fixed set of workers (the local pool): residents into at least ``residents_chunks`` (every event
    chunk waits for them, so every worker takes a share), and the event sources into chunks of at most
    1/``event_shares`` of all their rows, so the GP events (70% of the rows) are spread over the workers
    and handing out the largest first leaves no core idle at the end."""
    raw_dir = Path(raw_dir)
    if not raw_dir.is_dir():
        raise UpstreamError(f"{raw_dir}: delivery directory not found")
    for name in SOURCE_ORDER:
        probe_source(raw_dir, SOURCES[name])
    optional = [name for name in OPTIONAL_SOURCES if _has_source_file(raw_dir, name)]
    empty_optional = [name for name in optional if _has_no_rows(raw_dir, OPTIONAL_SOURCES[name])]
    rows_in: dict[str, int] = {}
    for name in (*SOURCE_ORDER, *(n for n in optional if n not in empty_optional)):
        path = probe_source(raw_dir, source_of(name))
        rows_in[name] = _rows_in_file(path)
        if rows_in[name] == 0:
            raise BadFileError(str(path), "empty file (no rows)")
    if event_shares:
        event_rows = sum(rows for name, rows in rows_in.items() if name != "residents")
        chunk_rows = max(1, math.ceil(event_rows / event_shares))
    chunks: list[SourceChunk] = []
    for name, rows in rows_in.items():
        of = max(1, math.ceil(rows / chunk_rows), residents_chunks if name == "residents" else 1)
        if chunk_key(source_of(name)) is None:
            of = 1
        chunks += [SourceChunk(name, k, of) for k in range(of)]
    work_dir = out_dir.with_name(f".{out_dir.name}.tmp-{uuid.uuid4().hex[:8]}")
    return IngestPlan(
        raw_dir,
        work_dir,
        as_of,
        residents=[c for c in chunks if c.source == "residents"],
        events=[c for c in chunks if c.source != "residents"],
        empty_optional=empty_optional,
        rows_in=rows_in,
    )


def _in_chunk(column: str | None, chunk: SourceChunk) -> pl.Expr:
    """Rows of ``chunk``: those whose ``column`` hashes to its index (one definition, for reads and lookups)."""
    assert column is not None, f"{chunk.source} is validated whole"
    return pl.col(column).hash(seed=0) % chunk.of == chunk.index


#: This thread's GX project for the current run (``_runner``): a chunk's GX context is not rebuilt per chunk.
_THREAD_GX = threading.local()


def _runner(work_dir: Path) -> GxRunner:
    """A GX project of this process and thread under ``work_dir`` (made on first use, kept for the run).

    One per thread, not per process: a Dask worker runs tasks in threads, and GX's execution engine holds one
    active batch per datasource (not for concurrent use); workers never write one GX config at the same time.
    """
    root = work_dir / "_chunks" / "gx" / f"worker-{os.getpid()}-{threading.get_ident()}"
    if getattr(_THREAD_GX, "root", None) != root:
        _THREAD_GX.root, _THREAD_GX.runner = root, GxRunner(root)
    return _THREAD_GX.runner


def _part(plan: IngestPlan, kind: str, chunk: SourceChunk) -> Path:
    """A chunk's output, Arrow IPC uncompressed: written once by its worker and read once by the merge, so
    parquet's encoding and compression would be paid twice for nothing (the merge writes the parquet)."""
    return plan.work_dir / "_chunks" / kind / f"{chunk.source}-{chunk.index:05d}.arrow"


def _write_part(frame: pl.DataFrame, path: Path) -> None:
    frame.write_ipc(path, compression="uncompressed")


def _read_part(path: Path) -> pl.DataFrame:
    return pl.read_ipc(path)


def read_chunk(raw_dir: Path, chunk: SourceChunk) -> tuple[Any, pl.Series]:
    """One chunk of a source, typed as ``read_source`` types a whole file, and each row's file position."""
    source = source_of(chunk.source)
    path = find_source_file(Path(raw_dir), source)
    lazy = pl.scan_csv(path, infer_schema=False) if path.suffix == ".csv" else pl.scan_parquet(path)
    lazy = lazy.with_row_index(FILE_ROW)
    if chunk.of > 1:
        lazy = lazy.filter(_in_chunk(chunk_key(source), chunk))
    try:
        frame = lazy.collect()
    except Exception as exc:
        kind = "CSV" if path.suffix == ".csv" else "parquet"
        raise BadFileError(str(path), f"truncated or corrupt {kind} file ({str(exc).strip()[:200]})") from None
    return type_source(path, source, frame.drop(FILE_ROW), whole_file=False), frame[FILE_ROW]


def _empty_quarantine(source: Source) -> pl.DataFrame:
    return pl.DataFrame(schema={"row_index": pl.UInt32, **dict.fromkeys(source.names, pl.String), "reason": pl.String})


def ingest_chunk(
    plan: IngestPlan, chunk: SourceChunk, settings: Settings, *, mode: Mode = "precomputed"
) -> ChunkDone:
    """Validate one chunk in GX, write its clean rows (pseudonymised) and quarantined rows with reasons.

    Each chunk has its own GX project under the work directory: workers never write one GX config at
    the same time. Event chunks read the valid residents written by ``merge_source("residents")``.
    """
    started, cpu_started = time.perf_counter(), time.process_time()
    source = source_of(chunk.source)
    frame, file_rows = read_chunk(plan.raw_dir, chunk)
    for kind in ("clean", "quarantine", "reid"):
        _part(plan, kind, chunk).parent.mkdir(parents=True, exist_ok=True)
    if frame.raw.height == 0:  # a hash share with no rows (small sources cut finely)
        _write_part(_empty_clean(source).with_columns(pl.lit(None, pl.UInt32).alias(FILE_ROW)),
                    _part(plan, "clean", chunk))
        _write_part(_empty_quarantine(source), _part(plan, "quarantine", chunk))
        stats = SourceStats(frame.path.name, 0, 0, dict.fromkeys(source.names, 0), {})
        return ChunkDone(chunk, stats, [], time.perf_counter() - started)
    valid_people = None
    if chunk.source != "residents":
        valid_people = _read_part(plan.work_dir / "_chunks" / "valid_nhs.arrow")["nhs_number"]
    runner = _runner(plan.work_dir)
    result = validate_source(
        frame, runner, as_of=plan.as_of, settings=settings, valid_people=valid_people,
        mode=mode, chunk_rows=settings.ingest.gx_chunk_rows,
    )
    kept_rows = (
        pl.DataFrame({FILE_ROW: file_rows}).with_row_index("row_index")
        .join(result.bad_rows, on="row_index", how="anti")[FILE_ROW]
    )
    known = None
    reid_path = plan.work_dir / "_chunks" / "reid.arrow"
    if chunk.source != "residents" and reid_path.exists():
        # The residents' pseudonyms, as a one-process ingest reuses them (one HMAC per person per delivery,
        # not per source); only this chunk's share when the source is cut by person.
        lazy = pl.scan_ipc(reid_path)
        if chunk.of > 1 and chunk_key(source) == "nhs_number":
            lazy = lazy.filter(_in_chunk("nhs_number", chunk))
        known = lazy.collect()
    clean = clean_frame(result, settings.pseudonymisation_key(), known)
    _write_part(clean.with_columns(kept_rows), _part(plan, "clean", chunk))
    quarantined = quarantine_frame(result)
    _write_part(quarantined.with_columns(
        pl.Series("row_index", file_rows.gather(quarantined["row_index"]), dtype=pl.UInt32)
    ), _part(plan, "quarantine", chunk))
    if chunk.source == "residents":
        valid_nhs = (result.canonical.with_row_index("row_index")
                     .join(result.bad_rows, on="row_index", how="anti")["nhs_number"])
        _write_part(pl.DataFrame({"person_id": clean["person_id"], "nhs_number": valid_nhs, FILE_ROW: kept_rows}),
                    _part(plan, "reid", chunk))
    stats = source_stats(result)
    slim_results(result.gx_results)  # counts only, before they travel (the caller stores them for Data Docs)
    unparsed, parsed = _column_parsing(frame, file_rows)
    return ChunkDone(chunk, stats, result.gx_results, time.perf_counter() - started,
                     time.process_time() - cpu_started, unparsed, parsed, _peak_rss())


def _peak_rss() -> int:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def _column_parsing(frame: SourceFrame, file_rows: pl.Series) -> tuple[dict[str, tuple[int, str]], frozenset[str]]:
    """Per column of a chunk: parsed somewhere, or present but never parsed (first such value, file row)."""
    unparsed: dict[str, tuple[int, str]] = {}
    parsed = set()
    for column in frame.source.columns:
        values, typed = frame.raw[column.name], frame.typed[column.name]
        if typed.is_not_null().any():
            parsed.add(column.name)
        elif (example := unparsed_example(values, typed)) is not None:
            first = int(values.is_not_null().arg_max())
            unparsed[column.name] = (int(file_rows[first]), example)
    return unparsed, frozenset(parsed)


def judge_column_types(plan: IngestPlan, done: list[ChunkDone], sources: list[str]) -> None:
    """What ``read_source`` decides on a whole file, on the chunks: a column with values present but none
    that parses anywhere in the file is a wrong type throughout (the same error, the same example: the
    file's first value). A chunk alone cannot say so: the values that parse may all be in other chunks."""
    for name in sources:
        parts = [d for d in done if d.chunk.source == name]
        for column in source_of(name).columns:
            if any(column.name in d.parsed for d in parts):
                continue
            examples = [d.unparsed[column.name] for d in parts if column.name in d.unparsed]
            if examples:
                raise wrong_type_throughout(find_source_file(plan.raw_dir, source_of(name)), column, min(examples)[1])


def merge_people(plan: IngestPlan) -> None:
    """From the residents' chunks: the valid NHS numbers every event chunk checks against and the
    re-identification map (in file order, as a local run writes it). Apart from ``merge_source`` so event
    chunks can start before the residents' clean and quarantine files are written."""
    parts = [p for c in plan.chunks_of("residents") if (p := _part(plan, "reid", c)).exists()]
    reid = pl.concat([_read_part(p) for p in parts]).sort(FILE_ROW).drop(FILE_ROW)
    _write_part(reid, plan.work_dir / "_chunks" / "reid.arrow")
    _write_part(reid.select("nhs_number"), plan.work_dir / "_chunks" / "valid_nhs.arrow")


def merge_source(plan: IngestPlan, source: str, *, people: bool = True) -> int:
    """Stack a source's chunk outputs in file order into ``clean/`` and ``quarantine/``; returns clean rows.

    For residents it also writes the valid residents and re-identification map (``merge_people``) unless
    ``people`` is False (already written).
    """
    chunks = plan.chunks_of(source)
    out = plan.work_dir
    (out / "clean").mkdir(parents=True, exist_ok=True)
    (out / "quarantine").mkdir(parents=True, exist_ok=True)
    # One chunk is already in file order; several are put back into it.
    clean = pl.concat([_read_part(_part(plan, "clean", c)) for c in chunks])
    quarantined = pl.concat([_read_part(_part(plan, "quarantine", c)) for c in chunks])
    if len(chunks) > 1:
        clean, quarantined = clean.sort(FILE_ROW), quarantined.sort("row_index")
    clean.drop(FILE_ROW).write_parquet(out / "clean" / f"{source}.parquet")
    quarantined.write_parquet(out / "quarantine" / f"{source}.parquet")
    if source == "residents" and people:
        merge_people(plan)
    return clean.height


def finish_ingest(
    plan: IngestPlan,
    done: list[ChunkDone],
    out_dir: Path,
    settings: Settings,
    previous_summary: dict | None,
    *,
    mode: Mode = "precomputed",
    build_docs: bool = True,
) -> dict:
    """The small end of a fanned-out ingest, in the flow process: sum each source's chunk counts (rows_in =
    rows_valid + rows_quarantined per chunk, hence per source), judge the table-level checks on the sums,
    write the summary and Data Docs, merge the re-identification map and move the delivery into place.
    Nothing is moved into place when a table-level check fails."""
    try:
        judge_column_types(plan, done, plan.sources)
        summary: dict[str, dict] = {}
        failures: list[str] = []
        for name in plan.sources:
            parts = _parts_of(plan, done, name)
            stats = parts[0].stats
            for part in parts[1:]:
                stats = stats + part.stats
            summary[name], failed = summarise_stats(source_of(name), stats, plan.as_of, settings,
                                                    (previous_summary or {}).get(name))
            failures += failed
        for name in plan.empty_optional:
            source = OPTIONAL_SOURCES[name]
            _empty_clean(source).write_parquet(plan.work_dir / "clean" / f"{name}.parquet")
            summary[name] = {"rows_in": 0, "rows_valid": 0, "rows_quarantined": 0, "checks": [],
                             "file": find_source_file(plan.raw_dir, source).name, "as_of": plan.as_of.isoformat()}
        # The summary lists sources in a one-process ingest's order (residents first, optional ones last).
        summary = {name: summary[name] for name in (*SOURCE_ORDER, *OPTIONAL_SOURCES) if name in summary}
        if failures:
            raise UpstreamError("table-level checks failed, nothing written: " + "; ".join(failures))
        shutil.rmtree(plan.work_dir / "_chunks" / "gx", ignore_errors=True)
        (plan.work_dir / "validation_summary.json").write_text(json.dumps(summary, indent=2, default=str))
        if build_docs:
            build_data_docs(plan, done, settings, mode=mode)
        reid_tmp = _write_reid_map(settings.reid_map_path, _read_part(plan.work_dir / "_chunks" / "reid.arrow"))
        shutil.rmtree(plan.work_dir / "_chunks")
        try:
            _replace_dir(plan.work_dir, Path(out_dir))
            reid_tmp.replace(settings.reid_map_path)
        finally:
            reid_tmp.unlink(missing_ok=True)
        return summary
    finally:
        discard_work(plan)


def _parts_of(plan: IngestPlan, done: list[ChunkDone], name: str) -> list[ChunkDone]:
    parts = sorted((d for d in done if d.chunk.source == name), key=lambda d: d.chunk.index)
    if len(parts) != len(plan.chunks_of(name)):
        raise UpstreamError(f"{name}: {len(parts)} of {len(plan.chunks_of(name))} chunks came back")
    return parts


def build_data_docs(plan: IngestPlan, done: list[ChunkDone], settings: Settings, *,
                    mode: Mode = "precomputed") -> None:
    """Data Docs of a fanned-out ingest (every source's suite and its chunks' results) into the work
    directory. Separate from ``finish_ingest`` so the local pool runs it in a worker, which has GX loaded
    already: the flow's process then never imports GX (2.2 CPU s)."""
    runner = GxRunner(settings.home / "gx")
    for name in plan.sources:
        runner.context.suites.add_or_update(build_suite(
            source_of(name), mode, as_of=plan.as_of, earliest=settings.ingest.earliest_valid_date,
            max_age_years=settings.ingest.max_age_years))
        runner.store_for_docs(name, [r for part in _parts_of(plan, done, name) for r in part.gx_results])
    runner.build_docs(plan.work_dir / "data_docs")


def discard_work(plan: IngestPlan) -> None:
    """Remove a run's work directory (after a failure: a fanned-out ingest never leaves a partial delivery)."""
    if plan.work_dir.exists():
        shutil.rmtree(plan.work_dir, ignore_errors=True)
