"""Read one raw source file and type it against the contract.

Whole-file problems (missing, empty, corrupt, a column missing or of the wrong type throughout)
raise ``BadFileError``: no row of such a file can be trusted, so ingest stops. A value that
fails to parse in an otherwise good column is a row problem: it becomes null in the typed frame
and the ``type(column)`` check quarantines that row.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from expectations.contract import Column, Source
from upstream.errors import BadFileError

RAW_PREFIX = "raw__"
_TRUE = ("true", "t", "1", "yes", "y")
_FALSE = ("false", "f", "0", "no", "n")


@dataclass
class SourceFrame:
    """A source as read: ``raw`` holds the file's contract columns (as read), ``typed`` the contract types."""

    source: Source
    path: Path
    raw: pl.DataFrame
    typed: pl.DataFrame


def find_source_file(raw_dir: Path, source: Source) -> Path:
    """``<source>.parquet`` preferred, else ``<source>.csv``; neither is a missing-file error."""
    for suffix in (".parquet", ".csv"):
        candidate = raw_dir / f"{source.name}{suffix}"
        if candidate.exists():
            return candidate
    raise BadFileError(str(raw_dir / f"{source.name}.parquet"), "missing file (no .parquet or .csv for this source)")


def _refuse_truncated_csv(path: Path) -> None:
    """A CSV whose last record ends without a newline and has fewer fields than the header was cut
    off mid-row (a truncated transfer). The reader would pad it with nulls and take it for a row."""
    if path.suffix != ".csv":
        return
    size = path.stat().st_size
    with path.open("rb") as fh:
        header = fh.readline()
        fh.seek(max(size - 65536, 0))
        tail = fh.read()
    if tail.endswith(b"\n") or size <= len(header):
        return
    last = tail.rsplit(b"\n", 1)[-1].decode("utf-8", errors="replace")
    names = next(csv.reader([header.decode("utf-8-sig", errors="replace").rstrip("\r\n")]), [])
    if len(next(csv.reader([last]), [])) < len(names):
        raise BadFileError(str(path), "truncated CSV file (the last row is cut off mid-row)")


def _read_frame(path: Path) -> pl.DataFrame:
    if not path.is_file():
        raise BadFileError(str(path), "not a regular file")
    if path.stat().st_size == 0:
        raise BadFileError(str(path), "empty file (0 bytes)")
    _refuse_truncated_csv(path)
    try:
        if path.suffix == ".csv":
            # Strings throughout: typing is ours to do, against the contract, not the reader's guess.
            return pl.read_csv(path, infer_schema=False)
        return pl.read_parquet(path)
    except Exception as exc:  # any reader failure means the file cannot be used
        kind = "CSV" if path.suffix == ".csv" else "parquet"
        detail = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise BadFileError(str(path), f"truncated or corrupt {kind} file ({detail})") from None


def _to_contract_type(values: pl.Series, column: Column, path: Path) -> pl.Series:
    """Cast one column to its contract type; values that do not parse become null."""
    target, found = column.dtype, values.dtype
    if found == target:
        return values
    if found == pl.Null:
        return pl.Series(values.name, [None] * len(values), dtype=target)
    if target == pl.String:
        if found.is_integer() or found == pl.String:
            return values.cast(pl.String)
    elif target == pl.Date:
        if found == pl.String:
            return values.str.strip_chars().str.to_date("%Y-%m-%d", strict=False)
        if isinstance(found, pl.Datetime):
            return values.dt.date()
    elif target == pl.Float64:
        if found == pl.String:
            return values.str.strip_chars().cast(pl.Float64, strict=False)
        if found.is_numeric():
            return values.cast(pl.Float64)
    elif target == pl.Boolean:
        if found == pl.String:
            lowered = values.str.strip_chars().str.to_lowercase()
            return (
                pl.select(
                    pl.when(lowered.is_in(_TRUE)).then(True).when(lowered.is_in(_FALSE)).then(False).otherwise(None)
                )
                .to_series()
                .rename(values.name)
            )
        if found.is_integer():
            return pl.select(pl.when(values == 1).then(True).when(values == 0).then(False)).to_series().rename(
                values.name
            )
    raise BadFileError(str(path), f"wrong type: expected {target}, found {found}", column.name)


def _check_columns(path: Path, source: Source, present: set[str]) -> None:
    for column in source.columns:
        if column.name not in present:
            unknown = sorted(present - set(source.names))
            hint = f"; unexpected columns present: {', '.join(unknown)}" if unknown else ""
            raise BadFileError(str(path), f"missing column (renamed or absent){hint}", column.name)


def probe_source(raw_dir: Path, source: Source) -> Path:
    """Cheap up-front check (file present, non-empty, readable header, contract columns) so a bad
    file fails before any source is validated. Damage deeper in a file is caught by ``read_source``."""
    path = find_source_file(raw_dir, source)
    if not path.is_file():
        raise BadFileError(str(path), "not a regular file")
    if path.stat().st_size == 0:
        raise BadFileError(str(path), "empty file (0 bytes)")
    try:
        if path.suffix == ".csv":
            names = pl.read_csv(path, n_rows=0, infer_schema=False).columns
        else:
            names = list(pl.read_parquet_schema(path))
    except Exception as exc:  # any reader failure means the file cannot be used
        kind = "CSV" if path.suffix == ".csv" else "parquet"
        detail = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise BadFileError(str(path), f"truncated or corrupt {kind} file ({detail})") from None
    _check_columns(path, source, set(names))
    _refuse_truncated_csv(path)
    return path


def read_source(raw_dir: Path, source: Source) -> SourceFrame:
    """Read, check the columns, and type a source. Raises BadFileError for whole-file problems."""
    path = find_source_file(raw_dir, source)
    frame = _read_frame(path)
    if frame.height == 0:
        raise BadFileError(str(path), "empty file (no rows)")
    return type_source(path, source, frame)


def type_source(path: Path, source: Source, frame: pl.DataFrame, *, whole_file: bool = True) -> SourceFrame:
    """Check the columns and type rows read from ``path`` (the whole file, or one chunk of it).

    ``whole_file=False`` (a chunk): "no value of a column parses" is a verdict on the whole file, so it is
    left to the caller, on the chunks' sums (``unparsed_example``, ``expectations.chunked``)."""
    _check_columns(path, source, set(frame.columns))
    raw = frame.select(source.names)
    typed_columns = []
    for column in source.columns:
        values = raw[column.name]
        typed = _to_contract_type(values, column, path)
        if whole_file and (example := unparsed_example(values, typed)) is not None:
            raise wrong_type_throughout(path, column, example)
        typed_columns.append(typed)
    return SourceFrame(source, path, raw, pl.DataFrame(typed_columns))


def unparsed_example(values: pl.Series, typed: pl.Series) -> str | None:
    """The first value present, when values are present and none of them parsed; else None."""
    if values.is_not_null().sum() > 0 and typed.is_not_null().sum() == 0:
        return values.drop_nulls().head(1).cast(pl.String).to_list()[0]
    return None


def wrong_type_throughout(path: Path, column: Column, example: str) -> BadFileError:
    return BadFileError(
        str(path),
        f"wrong type throughout the column: expected {column.dtype}, no value parses (e.g. {example!r})",
        column.name,
    )
