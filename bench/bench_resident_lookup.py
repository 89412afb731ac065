"""Benchmark: a resident's reasons on demand through the API, on a home a weekly run wrote (issue 15).

The weekly run explains only its listed people; anyone else's reasons are worked out when the resident view is
asked for them (``pipelines.explain``): the week's feature file, the model version that scored the week, its
TreeSHAP tables and flattened model (read from the home's tables file, or built and written by the first lookup
after a new model). This measures, through the real FastAPI app (in-process ``TestClient``, an analyst key):

1. the first lookup of an unlisted resident in a fresh process (model load + tables + feature read);
2. later lookups of other unlisted residents: p50/p99 wall, and the process CPU per lookup;
3. a listed resident (stored reasons, nothing worked out) for contrast;
4. with ``--reference`` (person_id, reasons of the same week as the whole-population path stored them, e.g.
   a run of the code before this change): how many on-demand answers are identical to it;
5. with ``--full``: every resident explained at once with this code, compared with ``--reference``.

    flock /tmp/upstream-heavy.lock .venv/bin/python bench/bench_resident_lookup.py --home W/home \\
        [--lookups 300] [--reference before_scores.parquet] [--full]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import sqlite3
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from upstream.cli import no_phone_home


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, required=True)
    parser.add_argument("--lookups", type=int, default=300)
    parser.add_argument("--reference", type=Path, default=None, help="parquet: person_id, reasons (JSON text)")
    parser.add_argument("--full", action="store_true", help="also explain everyone at once and compare")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    no_phone_home()
    os.environ.setdefault("UPSTREAM_PSEUDO_KEY", "bench-key-not-secret")
    os.environ.setdefault("UPSTREAM_SERVING__TRUSTED_HOSTS", '["testserver"]')  # TestClient's Host header

    import polars as pl
    from fastapi.testclient import TestClient

    from serving.app import create_app
    from serving.keys import create_key
    from upstream.settings import Settings
    from upstream.store import get_engine

    settings = Settings(home=args.home)
    engine = get_engine(settings.db_url)
    db = sqlite3.connect(f"file:{args.home / 'upstream.db'}?mode=ro", uri=True)  # the bench's own look, read only
    run_id, week = db.execute("SELECT run_id, week FROM published_weeks ORDER BY week DESC LIMIT 1").fetchone()
    unlisted = [r[0] for r in db.execute("SELECT person_id FROM scores WHERE run_id = ? AND reasons IS NULL",
                                         (run_id,))]
    listed = [r[0] for r in db.execute("SELECT person_id FROM scores WHERE run_id = ? AND reasons IS NOT NULL",
                                       (run_id,))]
    db.close()
    print(f"{week}: {len(unlisted) + len(listed):,} scored, {len(listed):,} explained in the run (listed), "
          f"{len(unlisted):,} to explain on demand; load {os.getloadavg()[0]:.1f}")
    people = random.Random(args.seed).sample(unlisted, min(args.lookups + 1, len(unlisted)))
    headers = {"X-API-Key": create_key(engine, "analyst", [], label="bench_resident_lookup")}
    answers: dict[str, list] = {}
    walls: list[float] = []
    with TestClient(create_app(settings)) as client:
        cpu0, t0 = _cpu(), time.perf_counter()
        response = client.get(f"/residents/{people[0]}/score", headers=headers)
        assert response.status_code == 200, response.text
        body = response.json()
        first, first_cpu = time.perf_counter() - t0, _cpu() - cpu0
        answers[people[0]] = body["reasons"]
        assert body.get("reasons_note") is None, body
        cpu0 = _cpu()
        for person in people[1:]:
            t0 = time.perf_counter()
            response = client.get(f"/residents/{person}/score", headers=headers)
            walls.append(time.perf_counter() - t0)
            assert response.status_code == 200 and response.json().get("reasons_note") is None, response.text
            answers[person] = response.json()["reasons"]
        later_cpu = (_cpu() - cpu0) / max(1, len(walls))
        stored_walls = []
        for person in random.Random(args.seed).sample(listed, min(50, len(listed))):
            t0 = time.perf_counter()
            assert client.get(f"/residents/{person}/score", headers=headers).status_code == 200
            stored_walls.append(time.perf_counter() - t0)
    ms = [w * 1000 for w in walls]
    print(f"first on-demand lookup in a fresh process: {first * 1000:.0f} ms wall, {first_cpu:.2f} s CPU "
          f"(model load, TreeSHAP tables, feature read)")
    print(f"later on-demand lookups ({len(ms)}): p50 {_pct(ms, 0.5):.1f} ms, p99 {_pct(ms, 0.99):.1f} ms, "
          f"max {max(ms):.1f} ms, mean CPU {later_cpu * 1000:.1f} ms")
    stored_ms = [w * 1000 for w in stored_walls]
    print(f"listed residents (stored reasons, {len(stored_ms)}): p50 {statistics.median(stored_ms):.1f} ms, "
          f"p99 {_pct(stored_ms, 0.99):.1f} ms; load {os.getloadavg()[0]:.1f}; "
          f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
    if args.reference is None:
        return
    reference = dict(pl.read_parquet(args.reference).select("person_id", "reasons").iter_rows())
    same = sum(json.loads(reference[p]) == r for p, r in answers.items())
    text = sum(reference[p] == json.dumps(r, separators=(",", ":")) for p, r in answers.items())
    print(f"on demand against the reference: {same} of {len(answers)} equal as JSON values, {text} as text")
    if args.full:
        from pipelines.explain import run_model
        from pipelines.score_history import published
        from pipelines.scoring import reasons_json
        from pipelines.weeks import week_features

        with engine.connect() as conn:
            identity = published(conn, week)
        model = run_model(settings, identity.model_name, identity.model_version)
        features = week_features(settings, identity.index_date)
        cpu0, t0 = _cpu(), time.perf_counter()
        everyone = dict(zip(features["person_id"].to_list(), reasons_json(features, model, settings.lists.top_reasons),
                            strict=True))
        print(f"everyone explained at once with this code: {len(everyone):,} in {time.perf_counter() - t0:.1f} s "
              f"wall, {_cpu() - cpu0:.1f} s CPU")
        differ = [p for p, t in everyone.items() if reference.get(p) != t]
        decoded = [p for p in differ if json.loads(reference[p]) != json.loads(everyone[p])]
        shown = [p for p in differ if [(r["feature"], r["value"], r["text"]) for r in json.loads(reference[p])]
                 != [(r["feature"], r["value"], r["text"]) for r in json.loads(everyone[p])]]
        print(f"against the reference: {len(differ)} texts differ, {len(decoded)} as JSON values, "
              f"{len(shown)} in feature, value, text or order")
        for p in differ[:3]:
            print(" ", reference[p], "\n ", everyone[p])


if __name__ == "__main__":
    main()
