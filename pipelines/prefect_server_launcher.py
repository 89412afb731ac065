"""Runs Prefect's API server (uvicorn) on a listening socket its parent already holds, and says who sent a
signal that stops it.

    python -m pipelines.prefect_server_launcher --fd N [--log-level error]

WHY the socket comes from the parent (issue 17's root cause): Prefect's ``SubprocessASGIServer`` chose a
port with a bind test and uvicorn bound it only after importing Prefect's app and running its lifespan
(seconds; tens of seconds on a loaded machine). In that window another process on the machine (another
test session's harness, another ``upstream run``) could pass the same bind test; the loser's uvicorn
exited 3 while its parent, polling ``/api/health``, already had ``200`` from the winner's server and used
it until the winner's owner ended and stopped it. Here the port is bound and listening before this
process starts, so nobody else can take it, and whatever answers on it is this server.

WHY the signal note: a process that is signalled cannot be told the sender by its parent (``waitpid``
gives only the signal number), and the kernel's own record (``siginfo``: sender pid and uid) is only
visible to the receiver. A helper thread takes SIGTERM/SIGINT/SIGHUP with ``sigwaitinfo``, writes one
line to the server's stderr (kept in a log file by ``prefect_server``) naming the sender's pid, uid and
command line, then re-delivers the signal so uvicorn (or the default action) handles it exactly as it
would have.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import sys
import threading
import time

#: What a person or another program sends to stop a server (SIGKILL cannot be caught: the parent
#: reports it, with the hint that the OOM killer or ``kill -9`` are the usual senders).
NOTED_SIGNALS = frozenset({signal.SIGTERM, signal.SIGINT, signal.SIGHUP})


def sender_command(pid: int) -> str:
    """The sender's command line, read at once (it may be gone a moment later)."""
    if pid == 0:
        return "(the kernel: a terminal's Ctrl-C or hang-up)"
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
            text = cmdline.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return "(gone)"
    return text[:300] or "(kernel or exited)"


def _stop_when_orphaned(parent_pid: int, interval: float = 1.0) -> None:
    """Runs in a helper thread: once the process that started this server is gone, stop (as if SIGTERMed).

    WHY: a run killed with SIGKILL (the OOM killer, ``kill -9``) runs no clean-up, so its server would
    live on, holding its port and its Prefect database, with nobody to stop it. ``PR_SET_PDEATHSIG`` was
    refused: it fires when the parent *thread* that started us ends, not the process, which would stop a
    healthy run's server if that thread were ever a worker's."""
    while os.getppid() == parent_pid:
        time.sleep(interval)
    print(
        f"upstream: Prefect server (pid {os.getpid()}): the process that started it (pid {parent_pid}) is gone; "
        "stopping",
        file=sys.stderr,
        flush=True,
    )
    os.kill(os.getpid(), signal.SIGTERM)


def _note_and_redeliver() -> None:
    """Runs in the helper thread, where the noted signals are blocked: wait, note, re-deliver."""
    while True:
        info = signal.sigwaitinfo(NOTED_SIGNALS)
        name = signal.Signals(info.si_signo).name
        # Not news: uvicorn re-raising what it caught on its way out, or our parent stopping its own server
        # at the end of a run (that line would be noise on every demo and run console).
        if info.si_pid not in (os.getpid(), os.getppid()):
            print(
                f"upstream: Prefect server (pid {os.getpid()}) received {name} from pid {info.si_pid} "
                f"(uid {info.si_uid}): {sender_command(info.si_pid)}",
                file=sys.stderr,
                flush=True,
            )
        # Unblocked in this thread only, a signal this process sends itself is delivered before kill()
        # returns: uvicorn's handler (run by the main thread) or the default action takes it from here.
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {info.si_signo})
        os.kill(os.getpid(), info.si_signo)
        signal.pthread_sigmask(signal.SIG_BLOCK, {info.si_signo})


def serve(fd: int, log_level: str) -> None:
    """Prefect's app factory under uvicorn, on the inherited listening socket (never a port of its own).

    WHY not uvicorn's ``--fd``: 0.54 wraps that descriptor as AF_UNIX; ``socket.socket(fileno=...)`` reads
    the real family (AF_INET) from the kernel. The environment (UI on or off, ephemeral or not) is the
    parent's choice, as it was for Prefect's own ``uvicorn --factory`` command."""
    import uvicorn

    listener = socket.socket(fileno=fd)
    config = uvicorn.Config("prefect.server.api.server:create_app", factory=True, lifespan="on", log_level=log_level)
    uvicorn.Server(config).run(sockets=[listener])


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m pipelines.prefect_server_launcher")
    parser.add_argument("--fd", type=int, required=True, help="a listening TCP socket inherited from the parent")
    parser.add_argument("--log-level", default="error")
    parser.add_argument("--parent-pid", type=int, help="stop when this process is gone (default: our parent now)")
    args = parser.parse_args(argv)
    parent_pid = args.parent_pid or os.getppid()
    orphan_watch = threading.Thread(target=_stop_when_orphaned, args=(parent_pid,), name="orphan-watch", daemon=True)
    if not hasattr(signal, "sigwaitinfo"):  # macOS: no siginfo to read; plain uvicorn
        orphan_watch.start()
        serve(args.fd, args.log_level)
        return
    # Blocked before the helper starts, so every thread (including uvicorn's) inherits the block and
    # only the helper's sigwaitinfo takes these signals.
    signal.pthread_sigmask(signal.SIG_BLOCK, NOTED_SIGNALS)
    threading.Thread(target=_note_and_redeliver, name="signal-sender-note", daemon=True).start()
    orphan_watch.start()  # after the block, like every thread: only the note thread takes those signals

    try:
        serve(args.fd, args.log_level)
    finally:
        # uvicorn re-raises a caught signal in the main thread on its way out (to exit with it): let it land.
        signal.pthread_sigmask(signal.SIG_UNBLOCK, NOTED_SIGNALS)


if __name__ == "__main__":
    main(sys.argv[1:])
