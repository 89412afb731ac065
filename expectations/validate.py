"""The building blocks of ingest, one source (or one chunk of a source) at a time: GX validation, row and
table-level checks, the clean and quarantine frames, the summary entry.

Why a module of their own: the one-process ``expectations.ingest.ingest_delivery`` and the chunked ingest
(``expectations.chunked``: a Dask cluster's tasks and the local process pool, ``expectations.ingest_pool``)
use the same functions, so both give the same rows, reasons and counts; and ``ingest_delivery`` can hand a
large delivery to the pool without an import cycle.
"""

from __future__ import annotations

import shutil
import time
import uuid
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import polars as pl

from expectations import checks as C
from expectations.contract import EMERGENCY_ADMISSION_METHODS, OPTIONAL_SOURCES, Source
from expectations.pseudonymise import pseudonymise
from expectations.read import RAW_PREFIX, SourceFrame, find_source_file
from expectations.suites import ALWAYS_PRECOMPUTED, Mode, build_suite
from upstream.errors import UpstreamError
from upstream.settings import Settings

#: Residents first: events are checked against the valid residents.
SOURCE_ORDER = ("residents", "gp_events", "hospital_spells", "ae_attendances", "social_care_events", "deaths")


@dataclass
class SourceResult:
    """What validation decided for one source."""

    source: Source
    frame: SourceFrame
    canonical: pl.DataFrame
    failed_tokens: dict[str, list[int]]  # token -> row positions that failed it (from GX)
    bad_rows: pl.DataFrame  # row_index, reason
    gx_seconds: float = 0.0
    gx_results: list[Any] = field(default_factory=list)


# --- Great Expectations ---------------------------------------------------------------------------


def _gx_exception(info: dict | None) -> str | None:
    """GX reports a failed metric either flat or nested per metric id; find any raised exception."""
    if not info:
        return None
    if info.get("raised_exception"):
        return str(info.get("exception_message"))
    for value in info.values():
        if isinstance(value, dict) and value.get("raised_exception"):
            return str(value.get("exception_message"))
    return None


def skip_batch_fingerprint() -> None:
    """Stop GX 1.x hashing every pandas batch it is given (a documented override of one GX constant).

    Why: ``PandasExecutionEngine.get_batch_data_and_markers`` stores ``pandas_data_fingerprint`` (an MD5 of
    ``pandas.util.hash_pandas_object`` over every cell) in the batch markers of every frame under
    ``HASH_THRESHOLD`` (1 GB), and a fluent ``Batch.validate`` fetches its batch a second time, so every flag
    cell was hashed twice: about 45% of GX's CPU in ingest. Upstream never reads that marker (the delivery's
    files and the validation summary identify what was validated), and GX 1.x offers no option, batch spec
    field or batch parameter to skip it: its only switch is that module constant, which a frame of any size
    now exceeds. Nothing else in GX reads it (checked in 1.24: only the marker is written), every
    expectation still runs on every row, and a test fails if a GX upgrade renames it or hashes again.
    Process-wide and idempotent, so concurrent ingest threads cannot undo it for each other.
    """
    from great_expectations.execution_engine import pandas_execution_engine

    if not hasattr(pandas_execution_engine, "HASH_THRESHOLD"):
        raise UpstreamError("great_expectations no longer has PandasExecutionEngine's HASH_THRESHOLD: "
                            "review expectations.validate.skip_batch_fingerprint for this GX version")
    pandas_execution_engine.HASH_THRESHOLD = 0


def slim_results(results: list) -> list:
    """GX results without their row-level lists (counts stay): what Data Docs shows, small enough to travel
    back from a worker process. In place; returns ``results``."""
    for result in results:
        for item in result.results:
            for key in ("unexpected_list", "unexpected_index_list", "unexpected_index_query",
                        "partial_unexpected_index_list"):
                item.result.pop(key, None)
    return results


class GxRunner:
    """A file-backed GX context under ``<home>/gx``: suites are saved there as JSON, results feed Data Docs."""

    def __init__(self, root: Path) -> None:
        import great_expectations as gx
        from great_expectations.data_context.types.base import ProgressBarsConfig

        root.mkdir(parents=True, exist_ok=True)
        self.context = gx.get_context(mode="file", project_root_dir=str(root))
        self.context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
        self.context.variables.save()
        self.datasource = self.context.data_sources.add_or_update_pandas("upstream_delivery")
        self.result_keys: list[Any] = []
        self.run_name = f"ingest-{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:6]}"

    def _batch_definition(self, asset_name: str):
        try:
            asset = self.datasource.get_asset(asset_name)
        except LookupError:
            asset = self.datasource.add_dataframe_asset(asset_name)
        try:
            return asset.get_batch_definition("whole")
        except KeyError:
            return asset.add_batch_definition_whole_dataframe("whole")

    def validate(self, name: str, suite, frame, chunk_rows: int | None = None) -> tuple[dict[str, list[int]], list]:
        """Run the suite on a pandas frame (optionally in row chunks); token -> failing row positions."""
        import pandas as pd

        suite = self.context.suites.add_or_update(suite)
        definition = self._batch_definition(name)
        failed: dict[str, list[int]] = {}
        results = []
        step = chunk_rows or max(len(frame), 1)
        skip_batch_fingerprint()
        for start in range(0, max(len(frame), 1), step):
            part = frame.iloc[start : start + step]
            # Copy-on-write (pandas' own mode, the default from pandas 3): GX selects the rows that pass each
            # expectation's null filter with ``df[mask]``; with every row kept, pandas 2 copies the whole
            # frame (all flag columns) for each of those selections, 4 per expectation. Under copy-on-write
            # that copy is deferred and never made, because GX only reads. Same results (tested); about 30%
            # of GX's time on a source's flag columns.
            with pd.option_context("mode.copy_on_write", True):
                batch = definition.get_batch(batch_parameters={"dataframe": part})
                result = batch.validate(suite, result_format={"result_format": "COMPLETE"})
            for item in result.results:
                message = _gx_exception(item.exception_info)
                if message is not None:
                    # A check that did not run must never pass silently.
                    raise UpstreamError(f"{name}: GX could not run {item.expectation_config.type}: {message}")
                token = item.expectation_config.meta["token"]
                indices = item.result.get("unexpected_index_list") or []
                failed.setdefault(token, []).extend(int(i) for i in indices)
            results.append(result)
        return failed, results

    def store_for_docs(self, name: str, results: list) -> None:
        """Keep a slim copy (counts, not every failing value) for Data Docs."""
        from great_expectations.core.run_identifier import RunIdentifier
        from great_expectations.data_context.types.resource_identifiers import (
            ExpectationSuiteIdentifier,
            ValidationResultIdentifier,
        )

        for number, result in enumerate(slim_results(results)):
            key = ValidationResultIdentifier(
                expectation_suite_identifier=ExpectationSuiteIdentifier(name=result.suite_name),
                run_id=RunIdentifier(run_name=self.run_name),
                batch_identifier=name if len(results) == 1 else f"{name}-part{number}",
            )
            self.context.validation_results_store.set(key, result)
            self.result_keys.append(key)

    def build_docs(self, target: Path) -> None:
        """Render this run's suites and results as static HTML into ``target``.

        Only this run's results: the project under ``<home>/gx`` keeps every earlier run's results, and GX's
        site builder renders every result in its store unless a run-name filter says otherwise, so each
        week's Data Docs re-rendered every week before it (a week's page listed them all, and the work grew
        with every run: 3 s of a 280k ingest after about 30 runs, bench/README.md lead session 6)."""
        site = f"upstream_{uuid.uuid4().hex[:8]}"
        self.context.add_data_docs_site(
            site,
            {
                "class_name": "SiteBuilder",
                "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(target)},
                "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
                "site_section_builders": {"validations": {"run_name_filter": {"equals": self.run_name}}},
            },
        )
        try:
            self.context.build_data_docs(site_names=[site])
        finally:
            self.context.delete_data_docs_site(site)


# --- Row-level validation -------------------------------------------------------------------------


def evaluation_frame(frame: SourceFrame) -> pl.DataFrame:
    """Typed + canonical columns (contract names) next to the raw columns (``raw__`` names)."""
    canonical = C.canonicalise(frame.typed, frame.source)
    raw = frame.raw.rename({n: RAW_PREFIX + n for n in frame.raw.columns})
    return pl.concat([canonical, raw], how="horizontal")


def gx_frame(evaluation: pl.DataFrame, source: Source, mode: Mode, flags: pl.DataFrame):
    """The pandas frame GX validates: only the flag columns (precomputed), or typed columns + flags (native)."""
    if mode == "precomputed":
        return flags.to_pandas()
    needed = source.names + [RAW_PREFIX + c.name for c in source.columns if c.dtype != pl.String]
    return pl.concat([evaluation.select(needed), flags], how="horizontal").to_pandas()


def validate_source(
    frame: SourceFrame,
    runner: GxRunner,
    *,
    as_of: date,
    settings: Settings,
    valid_people: pl.Series | None,
    mode: Mode = "precomputed",
    chunk_rows: int | None = None,
) -> SourceResult:
    """Every row-level check of one source, judged by GX; returns failing rows with their reasons."""
    source = frame.source
    checks = C.row_checks(source)
    evaluation = evaluation_frame(frame)
    flagged = [c for c in checks if mode == "precomputed" or c.name in ALWAYS_PRECOMPUTED]
    history = [c for c in checks if c.name in C.HISTORY_CHECKS]
    local = [c for c in checks if c.name not in C.HISTORY_CHECKS]
    local_flags = evaluation.select(
        C.check_exprs(
            local,
            as_of=as_of,
            earliest=settings.ingest.earliest_valid_date,
            max_age_years=settings.ingest.max_age_years,
            raw_names={n: RAW_PREFIX + n for n in source.names},
            valid_people=valid_people,
        )
    )
    if history:
        # History is judged among rows that pass every row-level check (polars verdicts; GX judges them too).
        row_ok = local_flags.select(pl.all_horizontal(pl.all())).to_series()
        local_flags = pl.concat([local_flags, C.history_flags(evaluation, history, row_ok)],
                                how="horizontal")
    flags = local_flags.select([c.flag_column for c in flagged])
    suite = build_suite(
        source,
        mode,
        as_of=as_of,
        earliest=settings.ingest.earliest_valid_date,
        max_age_years=settings.ingest.max_age_years,
    )
    started = time.perf_counter()
    failed, results = runner.validate(source.name, suite, gx_frame(evaluation, source, mode, flags), chunk_rows)
    gx_seconds = time.perf_counter() - started
    order = {c.token: i for i, c in enumerate(checks)}
    pairs = [(row, token) for token, rows in failed.items() for row in rows]
    bad = (
        pl.DataFrame(pairs, schema={"row_index": pl.UInt32, "token": pl.String}, orient="row")
        .with_columns(pl.col("token").replace_strict(order, return_dtype=pl.Int32).alias("order"))
        .sort("row_index", "order")
        .group_by("row_index", maintain_order=True)
        .agg(pl.col("token").str.join("; ").alias("reason"))
    )
    return SourceResult(source, frame, evaluation.select(source.names), failed, bad, gx_seconds, results)


# --- Table-level checks ---------------------------------------------------------------------------


def _level(value: float, warn: float, fail: float) -> str:
    """A threshold is reached AT its value: a feed that lost exactly half its rows has lost half (fail at 0.50),
    whether or not the row count happened to be even (``>`` made that depend on parity)."""
    return "fail" if value >= fail else "warn" if value >= warn else "ok"


@dataclass
class SourceStats:
    """What the summary and the table-level checks need from one source's validation.

    Additive (``+``), so a source validated in chunks on a cluster (``pipelines.dask_ingest``) is judged
    on the sums, exactly as if it had been validated whole: rows_in = rows_valid + rows_quarantined holds
    per chunk and therefore for the source.
    """

    file: str
    rows_in: int
    rows_quarantined: int
    null_counts: dict[str, int]
    failed_counts: dict[str, int]  # check token -> rows that failed it
    valid_emergency: int = 0  # hospital_spells: valid rows with an emergency admission method
    valid_with_method: int = 0  # hospital_spells: valid rows with an admission method

    def __add__(self, other: SourceStats) -> SourceStats:
        def added(a: dict[str, int], b: dict[str, int]) -> dict[str, int]:
            return {k: a.get(k, 0) + b.get(k, 0) for k in dict.fromkeys([*a, *b])}

        return SourceStats(
            self.file,
            self.rows_in + other.rows_in,
            self.rows_quarantined + other.rows_quarantined,
            added(self.null_counts, other.null_counts),
            added(self.failed_counts, other.failed_counts),
            self.valid_emergency + other.valid_emergency,
            self.valid_with_method + other.valid_with_method,
        )


def source_stats(result: SourceResult) -> SourceStats:
    """The additive counts of one validated source (or chunk of a source)."""
    raw = result.frame.raw
    emergency = with_method = 0
    if result.source.name == "hospital_spells":
        valid = result.canonical.with_row_index("row_index").join(result.bad_rows, on="row_index", how="anti")
        method = valid["admission_method"]
        with_method = method.len() - method.null_count()
        emergency = int(method.is_in(list(EMERGENCY_ADMISSION_METHODS)).sum())
    return SourceStats(
        file=result.frame.path.name,
        rows_in=raw.height,
        rows_quarantined=result.bad_rows.height,
        null_counts={c: raw[c].null_count() for c in result.source.names},
        failed_counts={token: len(rows) for token, rows in result.failed_tokens.items()},
        valid_emergency=emergency,
        valid_with_method=with_method,
    )


def table_checks(result: SourceResult, settings: Settings, previous: dict | None) -> list[dict]:
    """Row count vs the previous delivery, null rates, emergency share: warn/fail by configured thresholds."""
    return table_checks_from_stats(result.source, source_stats(result), settings, previous)


def table_checks_from_stats(source: Source, stats: SourceStats, settings: Settings, previous: dict | None) -> list[dict]:
    """``table_checks`` on counts (whole source, or the sum of its chunks)."""
    cfg = settings.ingest
    out: list[dict] = []
    rows_in = stats.rows_in
    prev_rows = (previous or {}).get("rows_in")
    if prev_rows:
        change = abs(rows_in - prev_rows) / prev_rows
        level = _level(change, cfg.row_count_change_warn, cfg.row_count_change_fail)
        if source.name in OPTIONAL_SOURCES and level == "fail":
            level = "warn"  # a short opt-out list doubling is news, not a broken extract
        out.append({"name": "row_count_change", "column": None, "unexpected_count": 0, "scope": "table",
                    "value": round(change, 6), "previous": prev_rows, "level": level})
    else:
        out.append({"name": "row_count_change", "column": None, "unexpected_count": 0, "scope": "table",
                    "value": None, "level": "skipped", "note": "no previous delivery"})
    prev_nulls = (previous or {}).get("null_rates", {})
    for column in source.columns:
        nulls = stats.null_counts[column.name]
        rate = nulls / rows_in
        if column.required:
            # Required columns: any null is quarantined; a high rate means a broken extract.
            level, name, value = _level(rate, cfg.null_rate_warn, cfg.null_rate_fail), "null_rate", rate
        elif column.name in prev_nulls:
            # Optional columns are legitimately null (the alive have no date of death): judge the change.
            value = abs(rate - prev_nulls[column.name])
            level, name = _level(value, cfg.null_rate_warn, cfg.null_rate_fail), "null_rate_change"
        else:
            level, name, value = "skipped", "null_rate_change", None
        out.append({"name": name, "column": column.name, "unexpected_count": nulls,
                    "scope": "table", "value": None if value is None else round(value, 6), "level": level})
    if source.name == "hospital_spells":
        rows_valid = stats.rows_in - stats.rows_quarantined
        share = stats.valid_emergency / stats.valid_with_method if rows_valid and stats.valid_with_method else 0.0
        fail_low, fail_high = cfg.emergency_share_fail_min, cfg.emergency_share_fail_max
        level = (
            "fail" if not fail_low <= share <= fail_high
            else "warn" if not cfg.emergency_share_min <= share <= cfg.emergency_share_max
            else "ok"
        )
        out.append({"name": "emergency_admission_share", "column": "admission_method", "unexpected_count": 0,
                    "scope": "table", "value": round(float(share), 6),
                    "warn_outside": [cfg.emergency_share_min, cfg.emergency_share_max],
                    "fail_outside": [fail_low, fail_high], "level": level})
    return out


# --- Outputs --------------------------------------------------------------------------------------


def clean_frame(result: SourceResult, key: bytes, known: pl.DataFrame | None = None) -> pl.DataFrame:
    """Valid rows, canonical codes, ``person_id`` (first column) instead of ``nhs_number``.

    ``known``: the residents' pseudonyms (``nhs_number``, ``person_id``) made earlier in this ingest, reused.
    """
    valid = (
        result.canonical.with_row_index("row_index")
        .join(result.bad_rows, on="row_index", how="anti")
        .drop("row_index")
    )
    person_id = pseudonymise(valid["nhs_number"], key, known)
    return valid.drop("nhs_number").insert_column(0, person_id)


def quarantine_frame(result: SourceResult) -> pl.DataFrame:
    """Failing rows as read (strings), their 0-based ``row_index`` in the file and the ``reason``.

    The failing rows are picked first and only they are cast to strings (casting every row of a source first
    cost as much as writing its clean file)."""
    bad = result.bad_rows.sort("row_index")
    picked = result.frame.raw[bad["row_index"]].with_columns(pl.all().cast(pl.String))
    return pl.concat([bad.select("row_index"), picked, bad.select("reason")], how="horizontal")


def _write_reid_map(path: Path, reid: pl.DataFrame) -> Path:
    """Merge with any earlier map (same key -> same person_id) and write to a temp file; caller renames."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        earlier = pl.read_parquet(path)
        clash = earlier.join(reid, on="nhs_number", how="inner").filter(
            pl.col("person_id") != pl.col("person_id_right")
        )
        if clash.height:
            # A different key: every person_id would change, history would no longer link, and the map
            # would hold two pseudonyms per person. Refuse rather than merge.
            raise UpstreamError(
                f"{path}: the pseudonymisation key differs from the one that made the existing "
                f"re-identification map ({clash.height} people would get a new person_id); "
                "set UPSTREAM_PSEUDO_KEY to the original key"
            )
        reid = pl.concat([earlier, reid]).unique(maintain_order=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    reid.write_parquet(tmp)
    return tmp


def _replace_dir(tmp: Path, out_dir: Path) -> None:
    if out_dir.exists():
        old = out_dir.with_name(f".{out_dir.name}.old-{uuid.uuid4().hex[:8]}")
        out_dir.rename(old)
        tmp.rename(out_dir)
        shutil.rmtree(old, ignore_errors=True)
    else:
        tmp.rename(out_dir)


def _has_source_file(raw_dir: Path, name: str) -> bool:
    return any((raw_dir / f"{name}{suffix}").exists() for suffix in (".parquet", ".csv"))


def _has_no_rows(raw_dir: Path, source: Source) -> bool:
    """An optional file with a header but no rows (a valid "nobody" for opt-outs)."""
    path = find_source_file(raw_dir, source)
    if path.stat().st_size == 0:
        return False  # a 0-byte file is a broken transfer: probe_source says so
    try:
        if path.suffix == ".csv":
            return pl.read_csv(path, infer_schema=False, n_rows=1).height == 0
        return pl.read_parquet_schema(path) is not None and pl.scan_parquet(path).select(pl.len()).collect().item() == 0
    except Exception:
        return False  # unreadable: let probe_source report it


def _empty_clean(source: Source) -> pl.DataFrame:
    schema = {"person_id": pl.String, **{k: v for k, v in source.schema.items() if k != "nhs_number"}}
    return pl.DataFrame(schema=schema)


def _summarise(result: SourceResult, as_of: date, settings: Settings, previous: dict | None) -> tuple[dict, list[str]]:
    """One source's summary entry, and the table-level checks that failed."""
    return summarise_stats(result.source, source_stats(result), as_of, settings, previous)


def summarise_stats(
    source: Source, stats: SourceStats, as_of: date, settings: Settings, previous: dict | None
) -> tuple[dict, list[str]]:
    """``_summarise`` on counts (whole source, or the sum of its chunks)."""
    row_entries = [
        {"name": c.name, "column": c.column, "token": c.token, "scope": "row",
         "unexpected_count": stats.failed_counts.get(c.token, 0),
         "level": "quarantine" if stats.failed_counts.get(c.token) else "ok"}
        for c in C.row_checks(source)
    ]
    table_entries = table_checks_from_stats(source, stats, settings, previous)
    for entry in row_entries + table_entries:
        # GX's own word for "nothing unexpected"; warn/fail/quarantine all count as not successful.
        entry["success"] = entry["level"] in ("ok", "skipped")
    name = source.name
    failures = [f"{name}: {t['name']}{'(' + t['column'] + ')' if t['column'] else ''} = {t['value']}"
                for t in table_entries if t["level"] == "fail"]
    entry = {
        "rows_in": stats.rows_in,
        "rows_valid": stats.rows_in - stats.rows_quarantined,
        "rows_quarantined": stats.rows_quarantined,
        "file": stats.file,
        "as_of": as_of.isoformat(),
        "checks": row_entries + table_entries,
        "null_rates": {c: stats.null_counts[c] / stats.rows_in for c in source.names},
    }
    return entry, failures
