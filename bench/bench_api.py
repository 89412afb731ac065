"""Serving benchmark: latency and throughput of the score and list routes on a 280k-resident scored DB.

Synthesises the DB directly through ``upstream.store`` (2 published weeks x 280k scores, lists of 500
rows per locality), starts ``upstream serve`` (uvicorn, 1 process) on loopback and measures:

1. a bounded, sequential httpx loop (one connection, every response checked): p50/p99 per route;
2. ``wrk`` (Debian) at fixed small concurrency for throughput, when installed.

Goal (issue 7): p99 < 20 ms for /residents/{id}/score, p99 < 200 ms for a 500-row CSV list, zero errors.
/health is measured the same way as the framework baseline.

    .venv/bin/python bench/bench_api.py [--residents 280000] [--requests 3000] [--wrk-seconds 10]
    .venv/bin/python bench/bench_api.py --home W/home     # a DB written by bench/bench_weekly.py --workdir W
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, date, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from upstream.processes import stop_process

LOCALITIES = ["Chatham", "Gillingham", "Rochester", "Strood"]
WEEKS = {"2026-W47": date(2026, 11, 16), "2026-W48": date(2026, 11, 23)}
LIST_SIZE = 500
REASONS = [
    {"feature": "falls_12m", "value": 2, "text": "2 falls in last 6 months", "contribution": 0.21},
    {"feature": "lives_alone", "value": True, "text": "lives alone", "contribution": 0.12},
    {"feature": "bereaved_6m", "value": True, "text": "bereaved 3 months ago", "contribution": 0.08},
]


def synthesise(home: Path, residents: int, seed: int = 7) -> tuple[list[str], dict[str, str]]:
    """Write score runs, scores, lists, published weeks and a re-identification map; returns ids and keys."""
    import polars as pl

    from serving.keys import create_key
    from upstream.settings import Settings
    from upstream.store import get_engine, published_weeks, risk_lists, score_runs, scores

    rng = random.Random(seed)
    settings = Settings(home=home, pseudo_key="bench-key")
    engine = get_engine(settings.db_url)
    person_ids = [f"{rng.getrandbits(64):016x}" for _ in range(residents)]
    localities = [LOCALITIES[i % len(LOCALITIES)] for i in range(residents)]
    base = [rng.betavariate(1.2, 6) for _ in range(residents)]
    now = datetime.now(UTC)
    with engine.begin() as conn:
        for w, (week, index_date) in enumerate(WEEKS.items()):
            run_id = f"bench-{week}"
            conn.execute(
                score_runs.insert().values(
                    run_id=run_id, week=week, index_date=index_date, target="crisis", model_name="upstream-crisis",
                    model_version="1", status="complete", n_scored=residents, started_at=now, finished_at=now,
                )
            )
            week_scores = [min(1.0, s + 0.01 * w) for s in base]
            chunk = []
            for pid, loc, s in zip(person_ids, localities, week_scores, strict=True):
                band = "high" if s >= 0.4 else "moderate" if s >= 0.2 else "low"
                chunk.append({"run_id": run_id, "person_id": pid, "locality": loc, "score": s, "band": band,
                              "reasons": REASONS[: 1 + int(s * 30) % 3], "in_long_term_care": False})
                if len(chunk) == 20_000:
                    conn.execute(scores.insert(), chunk)
                    chunk = []
            if chunk:
                conn.execute(scores.insert(), chunk)
            for loc in LOCALITIES:
                ranked = sorted((i for i in range(residents) if localities[i] == loc), key=lambda i: -week_scores[i])
                conn.execute(risk_lists.insert(), [
                    {"run_id": run_id, "week": week, "locality": loc, "rank": r + 1, "person_id": person_ids[i],
                     "score": week_scores[i], "band": "high", "change_points": 1.0 if w else None,
                     "section": "new" if r % 7 == 0 else "top", "why_listed": "Among the highest risks",
                     "what_changed": "emergency admission on 12 Nov 2026" if r % 7 == 0 else None,
                     "suggested_offers": "falls_prevention", "offer_evidence": "falls_prevention: 1 fall",
                     "top_reasons": "; ".join(x["text"] for x in REASONS), "age_band": "75-84",
                     "gp_practice": "G82001", "reasons": REASONS}
                    for r, i in enumerate(ranked[:LIST_SIZE])
                ])
            conn.execute(published_weeks.insert().values(week=week, run_id=run_id, index_date=index_date,
                                                         published_at=now))
    settings.restricted_dir.mkdir(parents=True, exist_ok=True)
    nhs = [f"{9_000_000_000 + i:010d}" for i in range(residents)]
    pl.DataFrame({"person_id": person_ids, "nhs_number": nhs}).write_parquet(settings.reid_map_path)
    keys = {
        "locality": create_key(engine, "locality", [LOCALITIES[0]], "bench"),
        "analyst": create_key(engine, "analyst", [], "bench"),
    }
    engine.dispose()
    return [p for p, loc in zip(person_ids, localities, strict=True) if loc == LOCALITIES[0]], keys


def from_flow_home(home: Path) -> tuple[list[str], dict[str, str], str, int]:
    """Use a home the real weekly flow wrote (e.g. bench/bench_weekly.py --workdir W -> W/home).

    Returns the latest published week's residents of the locality with the longest list, keys for it,
    that locality and its list length. The keys are added to that database (label "bench").
    """
    import sqlalchemy as sa

    from serving.keys import create_key
    from upstream.settings import Settings
    from upstream.store import get_engine, published_weeks, risk_lists, scores

    engine = get_engine(Settings(home=home).db_url)
    with engine.connect() as conn:
        run_id = conn.execute(
            sa.select(published_weeks.c.run_id).order_by(published_weeks.c.week.desc()).limit(1)
        ).scalar_one()
        locality, length = conn.execute(
            sa.select(risk_lists.c.locality, sa.func.count()).where(risk_lists.c.run_id == run_id)
            .group_by(risk_lists.c.locality).order_by(sa.func.count().desc()).limit(1)
        ).one()
        pids = conn.execute(
            sa.select(scores.c.person_id).where((scores.c.run_id == run_id) & (scores.c.locality == locality))
        ).scalars().all()
    keys = {"locality": create_key(engine, "locality", [locality], "bench"), "analyst": create_key(engine, "analyst", [], "bench")}
    engine.dispose()
    return list(pids), keys, locality, int(length)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _server_side_latencies(log_path: Path) -> dict[str, list[float]]:
    """Durations from the server's own access log lines ``GET <template> <status> <ms>ms``."""
    out: dict[str, list[float]] = {}
    for line in log_path.read_text().splitlines():
        parts = line.split()
        if len(parts) >= 4 and parts[-4] == "GET" and parts[-1].endswith("ms") and parts[-2] == "200":
            out.setdefault(parts[-3], []).append(float(parts[-1][:-2]))
    return out


def sequential(base: str, paths: list[str], key: str, check) -> dict:
    """One connection, one request at a time: service latency as a client sees it, every response checked."""
    import httpx

    latencies, errors = [], 0
    with httpx.Client(base_url=base, headers={"X-API-Key": key}, timeout=10) as http:
        for path in paths[:50]:  # warm-up (re-identification map load, SQLite page cache)
            http.get(path)
        started = time.perf_counter()
        for path in paths:
            t0 = time.perf_counter()
            r = http.get(path)
            latencies.append((time.perf_counter() - t0) * 1000)
            if r.status_code != 200 or not check(r):
                errors += 1
        elapsed = time.perf_counter() - started
    return {"n": len(paths), "errors": errors, "rps": len(paths) / elapsed,
            "p50_ms": statistics.median(latencies), "p99_ms": _pct(latencies, 0.99), "max_ms": max(latencies)}


def run_wrk(base: str, key: str, paths: list[str], seconds: int, connections: int) -> dict | None:
    """Throughput with wrk (C, so the load generator barely competes with the server for the 2 cores)."""
    if shutil.which("wrk") is None:
        return None
    script = Path(tempfile.mkdtemp()) / "paths.lua"
    lua_paths = ",".join(json.dumps(p) for p in paths[:5000])
    script.write_text(
        f'local paths = {{{lua_paths}}}\nlocal n = #paths\nlocal i = 0\n'
        f'wrk.headers["X-API-Key"] = "{key}"\n'
        "request = function() i = i % n + 1; return wrk.format('GET', paths[i]) end\n"
        "done = function(summary, latency, requests)\n"
        "  io.write(string.format('JSON {\"requests\":%d,\"non2xx\":%d,\"errors\":%d,\"p50\":%.3f,\"p99\":%.3f}\\n',\n"
        "    summary.requests, summary.errors.status, summary.errors.connect + summary.errors.read +\n"
        "    summary.errors.write + summary.errors.timeout, latency:percentile(50)/1000, latency:percentile(99)/1000))\n"
        "end\n"
    )
    out = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "-s", str(script), base],
                         capture_output=True, text=True, check=True).stdout
    data = json.loads(next(line for line in out.splitlines() if line.startswith("JSON "))[5:])
    data["rps"] = data["requests"] / seconds
    data["connections"] = connections
    return data


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--residents", type=int, default=280_000)
    parser.add_argument("--requests", type=int, default=3000, help="sequential score requests (lists: 1/10)")
    parser.add_argument("--wrk-seconds", type=int, default=10)
    parser.add_argument("--keep", action="store_true", help="keep the temporary UPSTREAM_HOME")
    parser.add_argument("--home", type=Path, default=None,
                        help="serve an UPSTREAM_HOME written by the weekly flow instead of synthesising one")
    args = parser.parse_args()

    if args.home:
        home, args.keep = args.home.resolve(), True
        pids, keys, locality, list_size = from_flow_home(home)
        print(f"flow-written DB {home / 'upstream.db'} ({(home / 'upstream.db').stat().st_size / 1e6:.0f} MB): "
              f"{len(pids):,} residents scored in {locality}, list of {list_size}; requesting {LIST_SIZE} rows")
        list_size = min(list_size, LIST_SIZE)  # the goal is stated for a 500-row list
    else:
        home = Path(tempfile.mkdtemp(prefix="upstream-bench-api-"))
        t0 = time.perf_counter()
        pids, keys = synthesise(home, args.residents)
        locality, list_size = LOCALITIES[0], LIST_SIZE
        print(f"synthesised {args.residents:,} residents x {len(WEEKS)} published weeks, lists of {LIST_SIZE} "
              f"per locality ({len(LOCALITIES)} localities) in {time.perf_counter() - t0:.1f}s; "
              f"DB {(home / 'upstream.db').stat().st_size / 1e6:.0f} MB")

    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ, "UPSTREAM_HOME": str(home)}
    env.setdefault("UPSTREAM_PSEUDO_KEY", "bench-key")
    server_log = home / "server.log"
    log_handle = server_log.open("w")
    server = subprocess.Popen([sys.executable, "-m", "upstream.cli", "serve", "--port", str(port)], env=env,
                              stdout=log_handle, stderr=subprocess.STDOUT)
    try:
        import httpx

        for _ in range(100):
            try:
                if httpx.get(f"{base}/health").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        rng = random.Random(1)
        score_paths = [f"/residents/{rng.choice(pids)}/score" for _ in range(args.requests)]
        csv_path = f"/localities/{locality}/rising-risk?format=csv&limit={list_size}"
        n_lists = max(args.requests // 10, 50)
        results = {
            "health (baseline)": sequential(base, ["/health"] * args.requests, keys["analyst"], lambda r: True),
            "score, locality key (re-identified)": sequential(
                base, score_paths, keys["locality"], lambda r: r.json()["nhs_number"] is not None),
            "score, analyst key": sequential(base, score_paths, keys["analyst"], lambda r: r.json()["nhs_number"] is None),
            f"list CSV {list_size} rows, locality key": sequential(
                base, [csv_path] * n_lists, keys["locality"], lambda r: r.text.count("\n") == list_size + 1),
            f"list JSON {list_size} rows, analyst key": sequential(
                base, [csv_path.replace("csv", "json")] * n_lists, keys["analyst"],
                lambda r: len(r.json()["rows"]) == list_size),
        }
        print(f"load average before measuring (2 cores, shared machine): {os.getloadavg()[0]:.1f}")
        print(f"\nsequential httpx loop (1 connection, each response checked), {base}:")
        print(f"{'route':<40}{'n':>7}{'errors':>8}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}")
        for name, r in results.items():
            print(f"{name:<40}{r['n']:>7}{r['errors']:>8}{r['rps']:>9.0f}{r['p50_ms']:>9.2f}{r['p99_ms']:>9.2f}"
                  f"{r['max_ms']:>9.1f}")
        score_ratio = results["score, locality key (re-identified)"]["p50_ms"] / results["health (baseline)"]["p50_ms"]
        print(f"score p50 / health p50 = {score_ratio:.1f}x")
        wrk_latency = {
            "health (baseline)": run_wrk(base, keys["analyst"], ["/health"], args.wrk_seconds, 1),
            "score, locality key": run_wrk(base, keys["locality"], score_paths, args.wrk_seconds, 1),
            "score, analyst key": run_wrk(base, keys["analyst"], score_paths, args.wrk_seconds, 1),
            f"list CSV {list_size} rows": run_wrk(base, keys["locality"], [csv_path], args.wrk_seconds, 1),
        }
        wrk_results = {
            "health (baseline)": run_wrk(base, keys["analyst"], ["/health"], args.wrk_seconds, 4),
            "score, locality key": run_wrk(base, keys["locality"], score_paths, args.wrk_seconds, 4),
            f"list CSV {list_size} rows": run_wrk(base, keys["locality"], [csv_path], args.wrk_seconds, 4),
        }
        if all(v is None for v in wrk_results.values()):
            print("\nwrk not installed: throughput under concurrency not measured")
        else:
            for title, table in (
                (f"wrk -t1 -c1 -d{args.wrk_seconds}s (latency; a C client barely competes for the CPU):", wrk_latency),
                (f"wrk -t1 -c4 -d{args.wrk_seconds}s (throughput under load; latency includes queueing):", wrk_results),
            ):
                print(f"\n{title}")
                print(f"{'route':<40}{'requests':>9}{'non2xx':>8}{'sockerr':>8}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}")
                for name, r in table.items():
                    print(f"{name:<40}{r['requests']:>9}{r['non2xx']:>8}{r['errors']:>8}{r['rps']:>9.0f}"
                          f"{r['p50']:>9.2f}{r['p99']:>9.2f}")
        print(f"load average after measuring: {os.getloadavg()[0]:.1f}")
        server_side = _server_side_latencies(server_log)
        print("\nserver-side time per request (our access log: app entry to last byte, all runs above):")
        for template, values in sorted(server_side.items()):
            print(f"  {template:<40} n={len(values):>6}  p50 {statistics.median(values):6.2f} ms"
                  f"  p99 {_pct(values, 0.99):6.2f} ms")
        # The goal is judged on the lighter client (wrk -c1) when available, else on the httpx loop.
        if wrk_latency["score, locality key"] is not None:
            p99_score, p99_list = wrk_latency["score, locality key"]["p99"], wrk_latency[f"list CSV {list_size} rows"]["p99"]
        else:
            p99_score = results["score, locality key (re-identified)"]["p99_ms"]
            p99_list = results[f"list CSV {list_size} rows, locality key"]["p99_ms"]
        ok_score, ok_list = p99_score < 20, p99_list < 200
        errors = sum(r["errors"] for r in results.values()) + sum(
            (r["non2xx"] + r["errors"]) for table in (wrk_latency, wrk_results) for r in table.values() if r)
        print(f"\ngoal p99 score < 20 ms: {'MET' if ok_score else 'MISSED'} ({p99_score:.1f} ms); "
              f"p99 CSV list < 200 ms: {'MET' if ok_list else 'MISSED'} ({p99_list:.1f} ms); errors: {errors}")
        return 0 if ok_score and ok_list and errors == 0 else 1
    finally:
        stop_process(server, timeout=10)
        log_handle.close()
        if not args.keep:
            shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
