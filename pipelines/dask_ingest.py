"""Ingest fanned out over a cluster: the per-chunk functions cluster tasks run (``pipelines.flows``).

They live in ``expectations.chunked`` since issue 15 session 6, because the local process pool
(``expectations.ingest_pool``, both cores of one machine) runs the very same functions: one home for
"validate a chunk, merge a source, judge the sums". This module keeps the cluster's import path.
"""

from __future__ import annotations

from expectations.chunked import (
    FILE_ROW,
    ChunkDone,
    IngestPlan,
    SourceChunk,
    chunk_key,
    discard_work,
    finish_ingest,
    ingest_chunk,
    merge_source,
    plan_ingest,
    read_chunk,
    source_of,
)

__all__ = ["FILE_ROW", "ChunkDone", "IngestPlan", "SourceChunk", "chunk_key", "discard_work", "finish_ingest",
           "ingest_chunk", "merge_source", "plan_ingest", "read_chunk", "source_of"]
