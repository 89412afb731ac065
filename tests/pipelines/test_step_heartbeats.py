"""The weekly flow's steps run as subflows without their own heartbeat thread; the weekly run keeps its own.

Why it matters: Prefect 3.8 joins a flow run's heartbeat thread when the run ends and that thread sleeps in
one-second slices, so each step ended up to a second late (bench/README.md, lead session 6)."""

from __future__ import annotations

import threading

import pytest
from prefect import flow
from prefect.settings import get_current_settings

from pipelines.flows import subflows_without_heartbeats

pytestmark = pytest.mark.usefixtures("prefect_harness")


def _heartbeat_threads() -> int:
    """Prefect's heartbeat threads run `heartbeat_loop` in a copied context (flow_engine._send_heartbeats)."""
    return sum(
        "heartbeat_loop" in repr((getattr(t, "_target", None), getattr(t, "_args", ())))
        for t in threading.enumerate()
    )


@flow
def _step() -> tuple[int | None, int]:
    return get_current_settings().flows.heartbeat_frequency, _heartbeat_threads()


@flow
def _weekly_like() -> dict[str, tuple[int | None, int]]:
    seen = {"parent": (get_current_settings().flows.heartbeat_frequency, _heartbeat_threads())}
    with subflows_without_heartbeats():
        seen["step inside"] = _step()
    seen["step outside"] = _step()
    return seen


def test_steps_have_no_heartbeat_thread_and_the_weekly_run_keeps_its_own() -> None:
    seen = _weekly_like()
    default = 180  # Prefect's documented default heartbeat interval (settings.flows.heartbeat_frequency)
    assert seen["parent"] == (default, 1)  # the weekly run: its own heartbeat thread
    assert seen["step inside"] == (None, 1)  # a step: only the parent's thread is alive
    assert seen["step outside"] == (default, 2)  # without the context a step starts a second thread
