"""The score-history store: published weeks' scores that have left the database, as zstd parquet.

Owned by ``pipelines.score_history`` (the only module that may import this one; a guard test checks it).

WHY this layout (issue 15 item 4, measured in bench/README.md): a year at 1.9M residents is ~99M score rows.
In SQLite with reasons that is tens of GB; as parquet it is ~1.5 GiB. But one file per week makes a
resident's year 52 file reads (p99 ~1 s measured). So every *block* (a directory) is split into 256
*buckets* by the first two hex digits of the pseudonym (uniform: pseudonyms are HMAC output), and a resident
reads one small file per block. A week arrives as its own block (writing it is seconds: rewriting a quarter
every week was 37 s at 1.9M); once the next quarter has begun, a quarter's week blocks are compacted into one
quarter block (once a quarter). A resident's year is then 4-5 quarter files plus at most one quarter's week
files. Inside a file rows are sorted by (week, person_id) with small row groups, so the per-row-group min/max
statistics let a reader decode about one row group per week for one person, and only that week's row groups
when a whole week is read (the rise comparison week, monitoring's matured weeks).

Writes are copy-on-write: a changed block is written to a new directory (unchanged buckets are hard-linked)
and ``manifest.json`` is replaced atomically (``os.replace``), so a reader sees the old block or the new one,
never half; a write that dies leaves the manifest as it was (its directory is swept by the next write).
Writers take ``.lock`` (the weekly run and ``upstream retention`` may overlap); readers take no lock and
retry once if a block they were reading was just replaced.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import uuid
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import polars as pl

#: One stored history row (no reasons: only the database's newest weeks keep them, as only they are shown).
HISTORY_SCHEMA: dict[str, Any] = {
    "week": pl.String,
    "index_date": pl.Date,
    "person_id": pl.String,
    "locality": pl.String,
    "score": pl.Float64,  # exact as published (the API shows it), not rounded to float32
    "band": pl.String,
    "in_long_term_care": pl.Boolean,
}
BUCKETS = 256  # first two hex digits of the pseudonym
BLOCK_WEEKS = 13  # a quarter: a year is 4-5 files per resident (plus the current quarter's week files)
ROW_GROUP_ROWS = 2048  # small groups: one resident's lookup decodes ~one group per week
MANIFEST_FORMAT = 1
STAGED_DIR = "staged"  # a published week's rows, written at its publish, until the week moves into a block


def block_of(week: str) -> str:
    """The quarter block a week is compacted into: ``2026-W48`` -> ``2026-Q4`` (W53 joins Q4). Also maps a
    quarter to itself, so block names (a quarter, or a week not yet compacted) sort into their quarter."""
    if "-Q" in week:
        return week
    year, number = week.split("-W")
    return f"{year}-Q{min(4, (int(number) - 1) // BLOCK_WEEKS + 1)}"


def bucket_of(person_id: str) -> int:
    """A resident's bucket: the pseudonym's first two hex digits (CRC-32 for an id that is not hex)."""
    try:
        return int(person_id[:2], 16) % BUCKETS
    except ValueError:
        return zlib.crc32(person_id.encode()) % BUCKETS


def _with_bucket(frame: pl.DataFrame) -> pl.DataFrame:
    hexed = frame.with_columns(
        pl.col("person_id").str.slice(0, 2).str.to_integer(base=16, strict=False).alias("_bucket")
    )
    if hexed["_bucket"].null_count() or (hexed["person_id"].str.len_chars() < 2).any():
        hexed = hexed.with_columns(pl.Series("_bucket", [bucket_of(p) for p in hexed["person_id"]]))
    return hexed.with_columns(pl.col("_bucket").cast(pl.Int32) % BUCKETS)


def _replacing(new: pl.DataFrame, weeks: set[str]) -> Callable[[pl.DataFrame], pl.DataFrame]:
    """A block change: drop the stored rows of ``weeks``, add ``new`` (re-publishing a week replaces it)."""
    return lambda old: pl.concat([old.filter(~pl.col("week").is_in(list(weeks))), new])


def _bucket_name(bucket: int) -> str:
    return f"bucket={bucket:03d}.parquet"


class HistoryStore:
    """Blocks of weekly scores under ``root`` (``<home>/history`` by default), listed by ``manifest.json``."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    # --- manifest ---------------------------------------------------------------------------------

    @property
    def _manifest_path(self) -> Path:
        return self.root / "manifest.json"

    def manifest(self) -> dict[str, Any]:
        try:
            data = json.loads(self._manifest_path.read_text())
        except FileNotFoundError:
            return {"format": MANIFEST_FORMAT, "buckets": BUCKETS, "blocks": {}}
        if data.get("format") != MANIFEST_FORMAT or data.get("buckets") != BUCKETS:
            raise RuntimeError(f"{self._manifest_path}: history store format {data.get('format')} with "
                               f"{data.get('buckets')} buckets; this release reads format {MANIFEST_FORMAT}, {BUCKETS}")
        return data

    def weeks(self) -> list[str]:
        """Every week the store holds, oldest first."""
        return sorted(w for block in self.manifest()["blocks"].values() for w in block["weeks"])

    def _write_manifest(self, manifest: dict[str, Any]) -> None:
        tmp = self.root / f".manifest.{uuid.uuid4().hex}.tmp"
        tmp.write_text(json.dumps(manifest, indent=1, sort_keys=True))
        with tmp.open("rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, self._manifest_path)  # the commit point

    @contextmanager
    def _writing(self) -> Iterator[dict[str, Any]]:
        """Hold the writers' lock; yield the manifest to change; sweep directories no manifest names."""
        self.root.mkdir(parents=True, exist_ok=True)
        with (self.root / ".lock").open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            manifest = self.manifest()
            self._sweep(manifest)  # left by a write that died before its manifest swap
            yield manifest

    def _sweep(self, manifest: dict[str, Any]) -> None:
        named = {block["dir"] for block in manifest["blocks"].values()} | {STAGED_DIR}
        for path in self.root.iterdir():
            if path.is_dir() and path.name not in named:
                shutil.rmtree(path, ignore_errors=True)
            elif path.name.startswith((".manifest.", ".removed.")) and path.name.endswith(".tmp"):
                path.unlink(missing_ok=True)

    # --- staged weeks ------------------------------------------------------------------------------

    def _staged_path(self, run_id: str) -> Path:
        return self.root / STAGED_DIR / f"{run_id}.parquet"

    def stage(self, run_id: str, frame: pl.DataFrame) -> None:
        """Keep a just-published run's rows (``HISTORY_SCHEMA``) until its week moves into a block.

        WHY: the week moves weeks later, when reading it back from the database costs as much as scoring
        wrote it (35 s at 1.9M); publishing already holds these rows, and a sorted parquet write is seconds.
        The score step stages a run as soon as it is stored, so the week's own readers use this copy too
        (``score_history._staged_copy``). Sorted by locality, then person: the order in which the database
        returns a run stored in person order (its run index reads locality by locality, each in insertion
        order), so a reader gets the same frame from either tier."""
        path = self._staged_path(run_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{uuid.uuid4().hex}.tmp")
        frame.select(list(HISTORY_SCHEMA)).cast(HISTORY_SCHEMA).sort("locality", "person_id").write_parquet(
            tmp, compression="zstd")
        os.replace(tmp, path)

    def staged_rows(self, run_id: str) -> int | None:
        """How many rows a staged run holds (from the parquet footer), or None when it was not staged."""
        try:
            return pl.scan_parquet(self._staged_path(run_id)).select(pl.len()).collect().item()
        except FileNotFoundError:
            return None

    def staged(self, run_id: str) -> pl.DataFrame | None:
        """A staged run's rows, or None when it was not staged (then the caller reads the database)."""
        try:
            return pl.read_parquet(self._staged_path(run_id))
        except FileNotFoundError:
            return None

    def unstage(self, keep: set[str]) -> None:
        """Delete staged runs other than ``keep`` (moved into a block, replaced or never published)."""
        folder = self.root / STAGED_DIR
        if folder.exists():
            for path in folder.iterdir():
                if path.name.split(".")[0] not in keep:
                    path.unlink(missing_ok=True)

    # --- writes -----------------------------------------------------------------------------------

    def add_weeks(self, frame: pl.DataFrame) -> None:
        """Store whole weeks (``HISTORY_SCHEMA`` rows); a week already stored is replaced, not duplicated.

        A new week is written as its own block (256 small files: seconds at 1.9M). Once a later quarter has
        begun, a finished quarter's week blocks are compacted into its quarter block (one rewrite a quarter),
        so a resident's year stays 4-5 quarter files plus at most a quarter's week files."""
        if frame.is_empty():
            return
        frame = frame.select(list(HISTORY_SCHEMA)).cast(HISTORY_SCHEMA)
        if removed := self.removed_people():  # an opted-out person never comes back into history
            frame = frame.filter(~pl.col("person_id").is_in(list(removed)))
        with self._writing() as manifest:
            for (week,), new in frame.partition_by("week", as_dict=True, include_key=True).items():
                holder = next((b for b, e in manifest["blocks"].items() if week in e["weeks"]), week)
                self._rewrite_block(manifest, holder, _replacing(new, {week}))
            self._compact(manifest)
            self._write_manifest(manifest)
            self._sweep(manifest)  # after the swap: the replaced directories

    def _compact(self, manifest: dict[str, Any]) -> None:
        """Merge the week blocks of every quarter before the newest stored week's into their quarter block."""
        blocks = manifest["blocks"]
        newest = max((w for e in blocks.values() for w in e["weeks"]), default=None)
        if newest is None:
            return
        for quarter in sorted({block_of(b) for b in blocks if "-W" in b}):
            if quarter >= block_of(newest):
                continue
            singles = [b for b in blocks if "-W" in b and block_of(b) == quarter]
            paths = [p for b in singles for p in self._paths(manifest, b)]
            rows = pl.read_parquet(paths) if paths else pl.DataFrame(schema=HISTORY_SCHEMA)
            self._rewrite_block(manifest, quarter, lambda old, rows=rows: pl.concat([old, rows]))
            for b in singles:
                blocks.pop(b)

    @property
    def _removed_path(self) -> Path:
        return self.root / "removed_people.json"

    def removed_people(self) -> set[str]:
        """Pseudonyms already removed (opt-outs): not searched for again, and kept out of weeks added later."""
        try:
            return set(json.loads(self._removed_path.read_text()))
        except FileNotFoundError:
            return set()

    def remove_people(self, person_ids: list[str]) -> int:
        """Delete every stored week of these residents (opt-outs apply to the past too, DESIGN §7).

        Only their buckets are read and rewritten; the others are hard-linked into the new block. People
        removed before are skipped (the opt-out file lists everyone every week: searching a year of history
        for all of them weekly would cost seconds at county scale). Returns the rows removed."""
        if not person_ids:
            return 0
        removed = 0
        with self._writing() as manifest:
            done = self.removed_people()
            person_ids = sorted(set(person_ids) - done)
            if not person_ids:
                return 0
            buckets = {bucket_of(p) for p in person_ids}
            for block in list(manifest["blocks"]):
                before = self._rows_of(manifest, block, buckets, pl.col("person_id").is_in(person_ids))
                if not before:
                    continue
                removed += before
                self._rewrite_block(manifest, block, lambda old: old.filter(~pl.col("person_id").is_in(person_ids)),
                                    only_buckets=buckets)
            if removed:
                self._write_manifest(manifest)
                self._sweep(manifest)  # after the swap: the replaced directories
            tmp = self.root / f".removed.{uuid.uuid4().hex}.tmp"
            tmp.write_text(json.dumps(sorted(done | set(person_ids))))
            os.replace(tmp, self._removed_path)
        return removed

    def remove_weeks(self, weeks: list[str]) -> int:
        """Delete whole weeks (retention); returns the rows removed."""
        doomed = set(weeks)
        removed = 0
        with self._writing() as manifest:
            for block, entry in list(manifest["blocks"].items()):
                hit = doomed & set(entry["weeks"])
                if not hit:
                    continue
                removed += self._rows_of(manifest, block, None, pl.col("week").is_in(list(hit)))
                self._rewrite_block(manifest, block, lambda old, hit=hit: old.filter(~pl.col("week").is_in(list(hit))))
            self._write_manifest(manifest)
            self._sweep(manifest)  # after the swap: the replaced directories
        return removed

    def _rows_of(self, manifest: dict[str, Any], block: str, buckets: set[int] | None, where: pl.Expr) -> int:
        paths = self._paths(manifest, block, buckets)
        if not paths:
            return 0
        return pl.scan_parquet(paths).filter(where).select(pl.len()).collect().item()

    def _paths(self, manifest: dict[str, Any], block: str, buckets: set[int] | None = None) -> list[Path]:
        entry = manifest["blocks"].get(block)
        if entry is None:
            return []
        folder = self.root / entry["dir"]
        wanted = range(BUCKETS) if buckets is None else sorted(buckets)
        return [folder / _bucket_name(b) for b in wanted if (folder / _bucket_name(b)).exists()]

    def _rewrite_block(
        self,
        manifest: dict[str, Any],
        block: str,
        change: Callable[[pl.DataFrame], pl.DataFrame],
        only_buckets: set[int] | None = None,
    ) -> None:
        """Write ``change(old rows)`` of ``block`` to a new directory and point ``manifest`` at it (not saved)."""
        old_paths = self._paths(manifest, block, only_buckets)
        old = pl.read_parquet(old_paths) if old_paths else pl.DataFrame(schema=HISTORY_SCHEMA)
        rows = change(old.select(list(HISTORY_SCHEMA)))
        folder = self.root / f"{block}.{uuid.uuid4().hex[:12]}"
        folder.mkdir()
        previous = manifest["blocks"].get(block)
        if only_buckets is not None and previous is not None:
            for path in (self.root / previous["dir"]).glob("bucket=*.parquet"):
                if int(path.stem.removeprefix("bucket=")) not in only_buckets:
                    os.link(path, folder / path.name)  # unchanged: shared, not copied
        for (bucket,), part in _with_bucket(rows).partition_by("_bucket", as_dict=True, include_key=False).items():
            path = folder / _bucket_name(int(bucket))
            part.sort("week", "person_id").write_parquet(
                path, compression="zstd", row_group_size=ROW_GROUP_ROWS, statistics=True
            )
            with path.open("rb") as handle:  # on disk before the manifest names it (a power cut mid-write)
                os.fsync(handle.fileno())
        weeks = sorted(set(rows["week"].unique().to_list()) | (set(previous["weeks"]) if previous and only_buckets
                                                                 is not None else set()))
        if only_buckets is None and rows.is_empty():
            manifest["blocks"].pop(block, None)
        else:
            manifest["blocks"][block] = {"dir": folder.name, "weeks": weeks}

    # --- reads ------------------------------------------------------------------------------------

    def person(self, person_id: str) -> pl.DataFrame:
        """Every stored week of one resident (``HISTORY_SCHEMA``), newest first: one file per block."""
        bucket = {bucket_of(person_id)}
        return self._read(lambda m: [p for block in m["blocks"] for p in self._paths(m, block, bucket)],
                          pl.col("person_id") == person_id).sort("week", descending=True)

    def week(self, week: str) -> pl.DataFrame:
        """Every stored resident of one week (``HISTORY_SCHEMA``), sorted by person."""
        return self._read(lambda m: [p for b, e in m["blocks"].items() if week in e["weeks"]
                                     for p in self._paths(m, b)], pl.col("week") == week).sort("person_id")

    def _read(self, paths_of: Callable[[dict[str, Any]], list[Path]], where: pl.Expr) -> pl.DataFrame:
        for attempt in (1, 2):
            paths = paths_of(self.manifest())
            if not paths:
                return pl.DataFrame(schema=HISTORY_SCHEMA)
            try:
                return pl.scan_parquet(paths).filter(where).collect()
            except (FileNotFoundError, OSError):
                if attempt == 2:  # a block replaced twice while we read: rare enough to surface
                    raise
        raise AssertionError("unreachable")
