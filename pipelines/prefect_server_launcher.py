"""Runs Prefect's temporary API server (uvicorn) so that a signal that stops it says who sent it.

    python -m pipelines.prefect_server_launcher <uvicorn arguments>

WHY: issue 17's county run lost its temporary server mid-week with no trace of why. A process that is
signalled cannot be told the sender by its parent (``waitpid`` gives only the signal number), and the
kernel's own record (``siginfo``: sender pid and uid) is only visible to the receiver. Here a helper
thread takes SIGTERM/SIGINT/SIGHUP with ``sigwaitinfo``, writes one line to the server's stderr (kept in
a log file by ``prefect_server``) naming the sender's pid, uid and command line, then re-delivers the
signal so uvicorn (or the default action) handles it exactly as it would have. Nothing else changes:
same uvicorn, same arguments, same environment.
"""

from __future__ import annotations

import os
import signal
import sys
import threading

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


def main(argv: list[str]) -> None:
    from uvicorn.main import main as uvicorn_main

    if not hasattr(signal, "sigwaitinfo"):  # macOS, Windows: no siginfo to read; plain uvicorn
        uvicorn_main(args=argv, prog_name="uvicorn")
        return
    # Blocked before the helper starts, so every thread (including uvicorn's) inherits the block and
    # only the helper's sigwaitinfo takes these signals.
    signal.pthread_sigmask(signal.SIG_BLOCK, NOTED_SIGNALS)
    threading.Thread(target=_note_and_redeliver, name="signal-sender-note", daemon=True).start()

    try:
        uvicorn_main(args=argv, prog_name="uvicorn")
    finally:
        # uvicorn re-raises a caught signal in the main thread on its way out (to exit with it): let it land.
        signal.pthread_sigmask(signal.SIG_UNBLOCK, NOTED_SIGNALS)


if __name__ == "__main__":
    main(sys.argv[1:])
