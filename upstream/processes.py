"""Stopping the child processes Upstream starts (a Prefect server, the API under test or benchmark)."""

from __future__ import annotations

import signal
import subprocess


def stop_process(process: subprocess.Popen, timeout: float = 15, sig: int = signal.SIGTERM) -> int:
    """Ask the process to stop (SIGTERM by default), kill it if it has not within ``timeout`` seconds,
    and return its exit code. Waiting after the kill reaps it, so no zombie is left behind."""
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode
