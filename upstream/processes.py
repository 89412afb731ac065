"""Stopping the child processes Upstream starts (a Prefect server, the API under test or benchmark), and
telling whose a listening port is."""

from __future__ import annotations

import os
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


def listening_pids(port: int) -> set[int]:
    """Every process holding a TCP socket that listens on ``port`` (IPv4), read from the kernel (Linux /proc).

    WHY not ``psutil.net_connections``: it reports one pid per socket, but a socket handed to a child is
    held by both; issue 17's question is exactly "which processes can answer on this port". Processes of
    other users are visible only to root; an empty set means nobody (visible) listens."""
    inodes: set[str] = set()
    try:
        with open("/proc/net/tcp") as table:
            next(table)
            for row in table:
                fields = row.split()
                if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:  # 0A: LISTEN
                    inodes.add(fields[9])
    except OSError:
        return set()
    targets = {f"socket:[{inode}]" for inode in inodes}
    holders: set[int] = set()
    for pid in filter(str.isdigit, os.listdir("/proc")) if targets else ():
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                if os.readlink(f"/proc/{pid}/fd/{fd}") in targets:
                    holders.add(int(pid))
                    break
        except OSError:  # gone meanwhile, or not ours to read
            continue
    return holders
