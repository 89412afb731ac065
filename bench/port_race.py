"""Issue 17: N processes start a temporary Prefect server at the same moment; how many end up talking to a
server that is not their own?

    .venv/bin/python bench/port_race.py --processes 6 --ports 2 [--code DIR]

WHY this experiment: Prefect's ``SubprocessASGIServer`` picks a port with a bind test, then starts uvicorn,
which binds only after importing Prefect's app and running its lifespan (seconds; tens of seconds on a
loaded 2-core machine). Every process on the machine that starts such a server (each test session's
harness, each ``upstream run``) draws from the same 8000-8999. Two draws of one port inside that window both
pass the bind test; the loser's uvicorn exits 3 ("address already in use"), but the loser's parent has by
then had ``200`` from the winner's ``/api/health`` and carries on with the winner's server, until its owner
ends and stops it. ``--ports`` narrows the range (Prefect's ``_port_range``) so the draw collides at once
instead of once in a while; nothing else is changed.

Each worker enters ``pipelines.prefect_server._temporary_api`` (the code under ``--code``: pass a checkout
of the old code to measure it), then reports: the port it uses, the pid listening there (from the kernel's
socket table), its own server's pid and exit code. The coordinator then stops every server owner first and
asks the others whether their API still answers. Real processes, a Prefect DB per worker in a temp dir.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _measuring_helper() -> Callable[[int], set[int]]:
    """``upstream.processes.listening_pids`` from THIS checkout, loaded by path so that the code under
    ``--code`` (which may predate it) is imported whole and unmixed."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("_port_race_processes", ROOT / "upstream" / "processes.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.listening_pids


def worker(code: Path, ports: range, prefect_home: Path) -> None:
    """One process: start our temporary API the way `upstream run` does, then obey the coordinator."""
    from contextlib import contextmanager
    from urllib.parse import urlparse

    listening_pids = _measuring_helper()
    sys.path.insert(0, str(code))
    os.environ["PREFECT_HOME"] = str(prefect_home)
    from pipelines.prefect_server import _temporary_api, api_answers, current_api, prepare_environment

    prepare_environment()
    from prefect.server.api.server import SubprocessASGIServer

    SubprocessASGIServer._port_range = ports  # the old code draws from this; the fixed code ignores it

    def say(**fields: object) -> None:
        print(json.dumps({"worker": os.getpid(), **fields}), flush=True)

    started = time.monotonic()
    try:
        with contextmanager(_temporary_api)(server_log=prefect_home / "server.log"):
            took = time.monotonic() - started
            url, own = current_api()
            assert url is not None and own is not None
            port = int(urlparse(url).port or 0)
            say(event="started", seconds=round(took, 2), port=port, own_server=own.pid)
            for command in sys.stdin:
                if command.strip() == "status":
                    say(
                        event="status",
                        port=port,
                        own_server=own.pid,
                        own_exit_code=own.poll(),
                        serving=own.pid in listening_pids(port),
                        api_answers=api_answers(url, timeout=3),
                    )
                elif command.strip() == "exit":
                    break
    except Exception as exc:  # the experiment counts start-up failures, whatever they are
        say(event="failed", seconds=round(time.monotonic() - started, 2), error=f"{type(exc).__name__}: {exc}"[:300])
        sys.stdin.readline()


def coordinate(processes: int, first_port: int, n_ports: int, code: Path) -> dict[str, object]:
    """Start the workers together, then: who is attached to whom, and who still has an API once the
    owners of the servers have ended."""
    tmp = Path(tempfile.mkdtemp(prefix="port-race-", dir=os.environ.get("TMPDIR")))
    env = {key: value for key, value in os.environ.items() if not key.startswith("PREFECT_API")}
    env |= {"PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "true", "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, __file__, "--worker", "--code", str(code), "--first-port", str(first_port)]
    command += ["--ports", str(n_ports)]
    workers = [
        subprocess.Popen(
            [*command, "--prefect-home", str(tmp / f"w{i}")],
            cwd=code,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for i in range(processes)
    ]

    def ask(process: subprocess.Popen, command: str) -> dict:
        assert process.stdin is not None and process.stdout is not None
        process.stdin.write(command + "\n")
        process.stdin.flush()
        return json.loads(process.stdout.readline())

    try:
        starts = [json.loads(w.stdout.readline()) for w in workers]  # type: ignore[union-attr]
        time.sleep(5)  # a loser's own uvicorn reaches its bind (and exits 3) well within this
        up = [(w, s) for w, s in zip(workers, starts, strict=True) if s["event"] == "started"]
        status = [ask(w, "status") for w, _ in up]
        # Wait (bounded) until each process not served by its own server sees that server end: at load
        # its uvicorn can still be importing when the 200 from another process's server has arrived.
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and any(not s["serving"] and s["own_exit_code"] is None for s in status):
            time.sleep(2)
            status = [ask(w, "status") for w, _ in up]
        owners = [(w, s) for (w, _), s in zip(up, status, strict=True) if s["serving"]]
        attached = [(w, s) for (w, _), s in zip(up, status, strict=True) if not s["serving"]]
        for w, _ in owners:  # the owners' runs end (their pytest session or weekly run finishes)
            w.stdin.write("exit\n")  # type: ignore[union-attr]
            w.stdin.flush()  # type: ignore[union-attr]
            w.wait(60)
        after = [ask(w, "status") for w, _ in attached]
    finally:
        for w in workers:
            if w.poll() is None:
                w.stdin.write("exit\n")  # type: ignore[union-attr]
                w.stdin.flush()  # type: ignore[union-attr]
        for w in workers:
            try:
                w.wait(60)
            except subprocess.TimeoutExpired:
                w.kill()
                w.wait()
        shutil.rmtree(tmp, ignore_errors=True)  # the workers' Prefect DBs and server logs
    return {
        "processes": processes,
        "ports": f"{first_port}-{first_port + n_ports - 1}",
        "code": str(code),
        "start_seconds": sorted(s["seconds"] for s in starts),
        "start_failures": [s["error"] for s in starts if s["event"] == "failed"],
        "own_server": len(owners),
        "attached_to_another_process_server": len(attached),
        "attached_whose_own_server_exited": sorted({str(s["own_exit_code"]) for _, s in attached}),
        "attached_with_an_api_after_the_owners_ended": sum(bool(s["api_answers"]) for s in after),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=6)
    parser.add_argument("--ports", type=int, default=2, help="size of the narrowed port range")
    parser.add_argument("--first-port", type=int, default=0, help="default: a free port found now")
    parser.add_argument("--code", type=Path, default=ROOT, help="the checkout whose pipelines/ is measured")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--prefect-home", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.code, range(args.first_port, args.first_port + args.ports), args.prefect_home)
        return
    first = args.first_port or _free_range(args.ports)
    print(json.dumps(coordinate(args.processes, first, args.ports, args.code.resolve()), indent=1))


def _free_range(size: int) -> int:
    """A run of ``size`` ports nobody listens on now, in Prefect's own 8000-8999 (as the old code drew)."""
    import random
    import socket

    for _ in range(200):
        first = random.randrange(8000, 9000 - size)
        try:
            socks = []
            for port in range(first, first + size):
                sock = socket.socket()
                socks.append(sock)
                sock.bind(("127.0.0.1", port))
            return first
        except OSError:
            continue
        finally:
            for sock in socks:
                sock.close()
    raise SystemExit("no free run of ports in 8000-8999")


if __name__ == "__main__":
    main()
