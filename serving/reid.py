"""Re-identification: person_id -> NHS number, for locality keys and their own residents only.

The map lives apart from the analytical data (``settings.reid_map_path``). It is read once and
kept in memory (reloaded when the file changes) so the score route stays fast.
"""

from __future__ import annotations

import threading
from pathlib import Path

_lock = threading.Lock()
_cache: dict[Path, tuple[float, dict[str, str]]] = {}


def reid_lookup(path: Path) -> dict[str, str]:
    """The person_id -> nhs_number map; empty when the file does not exist (nothing to re-identify)."""
    try:
        mtime = path.stat().st_mtime
    except FileNotFoundError:
        return {}
    cached = _cache.get(path)
    if cached and cached[0] == mtime:
        return cached[1]
    with _lock:
        cached = _cache.get(path)
        if cached and cached[0] == mtime:
            return cached[1]
        import polars as pl

        frame = pl.read_parquet(path, columns=["person_id", "nhs_number"])
        mapping = dict(zip(frame["person_id"].to_list(), frame["nhs_number"].cast(pl.String).to_list(), strict=True))
        _cache[path] = (mtime, mapping)
        # Move the big map out of the garbage collector's generations: it holds no cycles, and
        # scanning it on every full collection shows up as latency spikes on unrelated requests.
        import gc

        gc.freeze()
        return mapping
