"""Issue 17 item 4 (session 4): does anything in the 501c93c weekly run (two weeks, as bench_weekly ran them)
hold upstream.db's write lock outside its own store/publish transactions?

    git archive 501c93c | tar -x -C CODE
    .venv/bin/python bench/lock_probe.py CODE WORK      # WORK: a fresh directory (3,000 residents)

Runs the code in CODE on a small delivery with two instruments, both separate sqlite3 connections that try
``BEGIN IMMEDIATE`` without waiting (the write lock's state at that instant):
- a sampler every 0.2 s recording each stretch the lock was held, labelled by the task running then;
- a probe at the exact moment each week's store step first writes (``INSERT INTO score_runs``, the
  statement that failed in the report): lock free? how many connections of the run's engine are checked
  out (an open transaction needs one)?
"""

from __future__ import annotations

import functools
import json
import os
import sqlite3
import sys
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any


def _write_lock_free(db: Path) -> str:
    probe = sqlite3.connect(db, timeout=0, isolation_level=None)
    try:
        probe.execute("BEGIN IMMEDIATE")
        probe.execute("ROLLBACK")
        return "free"
    except sqlite3.OperationalError as exc:
        return str(exc)
    finally:
        probe.close()


def main(code: Path, work: Path) -> None:
    sys.path.insert(0, str(code))
    os.chdir(code)
    os.environ.pop("PREFECT_API_URL", None)
    os.environ |= {
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "true",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "GX_ANALYTICS_ENABLED": "false",
        "UPSTREAM_PSEUDO_KEY": "probe-key",
        "PREFECT_HOME": str(work / "prefect"),
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "300",  # before Prefect is imported
        "UPSTREAM_GATE__CALIBRATION_SLOPE_MIN": "0.3",
        "UPSTREAM_GATE__CALIBRATION_SLOPE_MAX": "3.0",
        "UPSTREAM_GATE__MAX_SUBGROUP_AUROC_GAP": "1.0",
    }
    raw, home = work / "raw", work / "home"
    from synthetic import generate

    if not (raw / "_delivery.json").exists():
        generate.generate_delivery(raw, residents=3000, seed=7)
    import pipelines.flows as flows
    from pipelines import steps
    from pipelines.prefect_server import prefect_api, prepare_environment
    from upstream.store import get_engine

    extract = steps.delivery_extract_date(raw)
    assert extract is not None
    db = home / "upstream.db"
    phase = {"now": "start"}
    held: list[dict[str, Any]] = []
    probes: list[dict[str, Any]] = []
    stop = threading.Event()

    def sampler() -> None:
        since: tuple[float, str] | None = None
        while not stop.wait(0.2):
            if not db.exists():
                continue
            locked = _write_lock_free(db) != "free"
            now = time.monotonic()
            if locked and since is None:
                since = (now, phase["now"])
            elif not locked and since is not None:
                held.append({"phase": since[1], "seconds": round(now - since[0], 2)})
                since = None

    original = steps.start_score_run

    def probing(engine: Any, **kw: Any) -> None:
        probes.append(
            {"week": kw["week"], "write_lock": _write_lock_free(db), "checked_out": engine.pool.checkedout(),
             "pool": engine.pool.status()}
        )  # fmt: skip
        original(engine, **kw)

    steps.start_score_run = probing

    def labelled(fn: Callable[..., Any], label: str) -> Callable[..., Any]:
        @functools.wraps(fn)  # Prefect reads the parameters (task run names) through __wrapped__
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            phase["now"] = label
            try:
                return fn(*args, **kwargs)
            finally:
                phase["now"] = f"after {label}"

        return wrapped

    for name in ("ingest_task", "features_task", "train_task", "score_task", "store_scores_task", "publish_task"):
        task = getattr(flows, name)
        task.fn = labelled(task.fn, name)
    prepare_environment()
    threading.Thread(target=sampler, daemon=True).start()
    with prefect_api(with_ui=False):
        for label, index_date, train in (
            ("week 1", extract - timedelta(days=7), "always"),
            ("week 2", extract, "never"),
        ):
            started = time.monotonic()
            result = flows.weekly(raw_dir=str(raw), index_date=index_date, train=train, home=str(home))
            print(label, result["n_scored"], f"{time.monotonic() - started:.1f} s", flush=True)
            phase["now"] = f"between weeks (after {label})"
    time.sleep(1)
    stop.set()
    engine = get_engine(f"sqlite:///{db}")
    summary = {"probes_at_store": probes, "write_lock_held": held, "checked_out_at_end": engine.pool.checkedout()}
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main(Path(sys.argv[1]).resolve(), Path(sys.argv[2]).resolve())
