"""Errors a user can act on. The CLI prints these as one clear message, never a traceback."""

from __future__ import annotations


class UpstreamError(Exception):
    """A problem the user can fix (bad input, missing model, wrong option)."""


class BadFileError(UpstreamError):
    """A delivery file that cannot be used at all. Names the file, the column and the problem."""

    def __init__(self, file: str, problem: str, column: str | None = None) -> None:
        self.file, self.column, self.problem = file, column, problem
        where = f"{file}, column '{column}'" if column else file
        super().__init__(f"{where}: {problem}")

    def __reduce__(self):
        # Rebuilt from its parts when it crosses a process (an ingest worker, a Dask task): the default
        # would call ``BadFileError(message)`` and fail, hiding the file, column and problem.
        return (type(self), (self.file, self.problem, self.column))
