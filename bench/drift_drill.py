"""Drift drill (issue 16): does weekly monitoring raise the right alerts, and only those?

    uv run python bench/drift_drill.py --residents 20000 --work /work/data-i16/drill

Generates a delivery, runs week 1 (training: the champion's reference profile), then week 2 four ways
through the real weekly flow: unchanged, everyone 5 years older, half / 40% of the GP events missing,
and a failure drill. Alerts go to a local HTTP receiver (an ephemeral port). Prints, per scenario, the final
Prefect state, every check above "ok", and the alerts posted.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--residents", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--work", type=Path, required=True)
    args = parser.parse_args()

    import os

    from pipelines.prefect_server import prepare_environment

    prepare_environment()
    received: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *a) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    os.environ["UPSTREAM_ALERTS__WEBHOOK_URL"] = f"http://127.0.0.1:{server.server_address[1]}/hook"
    os.environ["UPSTREAM_GATE__CALIBRATION_SLOPE_MIN"] = "0.3"  # small deliveries: see tests/conftest.py
    os.environ["UPSTREAM_GATE__CALIBRATION_SLOPE_MAX"] = "3.0"
    os.environ["UPSTREAM_GATE__MAX_SUBGROUP_AUROC_GAP"] = "1.0"

    import sqlalchemy as sa

    from pipelines.flows import weekly
    from pipelines.scoring import iso_week
    from pipelines.weeks import delivery_extract_date
    from synthetic.drills import half_missing, older_population
    from synthetic.generate import generate_delivery
    from upstream.settings import Settings
    from upstream.store import get_engine, monitoring_results

    raw = args.work / "raw"
    if not (raw / "residents.parquet").exists():
        generate_delivery(raw, residents=args.residents, seed=args.seed)
    extract = delivery_extract_date(raw)
    home = args.work / "home"
    engine = get_engine(Settings(home=home).db_url)
    scenarios = [
        ("week 1 (train)", raw, extract - timedelta(days=7), "always", None),
        ("unchanged", raw, extract, "auto", None),
        ("ages +5 years", older_population(raw, args.work / "older"), extract, "auto", None),
        ("half of gp_events missing", half_missing(raw, args.work / "half", "gp_events"), extract, "auto", None),
        ("40% of gp_events missing", half_missing(raw, args.work / "forty", "gp_events", missing=0.4), extract, "auto", None),
        ("failure drill", raw, extract, "auto", "score"),
    ]
    for name, delivery, day, train, fail in scenarios:
        before = len(received)
        started = time.perf_counter()
        state = weekly(str(delivery), day, train=train, home=str(home), inject_failure=fail, return_state=True)
        seconds = time.perf_counter() - started
        with engine.connect() as conn:
            rows = conn.execute(
                sa.select(monitoring_results).where(
                    monitoring_results.c.week == iso_week(day), monitoring_results.c.status.in_(["warn", "alert"])
                )
            ).mappings().all()
        print(f"\n## {name}: state {state.name!r} ({seconds:.0f} s)")
        if state.is_completed():  # a failed run wrote no monitoring: the rows would be an earlier run's
            for r in rows:
                print(f"- {r['status']}: {r['kind']} {r['subject']} {r['metric']} = {r['value']} (threshold {r['threshold']})")
            if not rows:
                print("- no check above ok")
        for post in received[before:]:
            print(f"- POSTED {post['event']}: {post['summary']}")
    server.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
