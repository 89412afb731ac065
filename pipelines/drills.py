"""Failure drills: a weekly run asked to fail at a named step, to prove a failed run changes nothing."""

from __future__ import annotations


class InjectedFailure(RuntimeError):
    """Raised on purpose by a failure drill (``inject_failure=...``) to prove a failed run changes nothing."""


def check_injected(inject_failure: str | None, step: str) -> None:
    if inject_failure == step:
        raise InjectedFailure(f"failure injected at step {step!r} (drill)")
