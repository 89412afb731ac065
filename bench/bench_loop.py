"""Closing the loop (issue 11): does the evaluation recover the known effect, and what do the steps cost?

  cli SIZE [--effect E] [--seed S] --dir D   synth -> run -> actions import -> evaluate, through the CLI only;
                                             prints the true ATT, the estimate and whether the CI covers it
  seeds SIZE --n N --effect E --dir D        N seeds at a small size by direct calls (generate, ingest,
                                             import, evaluate without the model or the PRISM check); coverage
  retruth SIZE --log L --effect E --dir D     the seeds' logged estimates against the truth generated now
  import --home H --rows N                   time and peak memory of importing N action rows (valid)
  outcomes --home H --weeks 52 --listed K    outcome follow-up with a year of weekly lists (K people a week,
                                             drawn from the residents and published into the bench DB)

Run from the repository root. Memory is ru_maxrss of the child (CLI) or of this process.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
UPSTREAM = [str(ROOT / ".venv" / "bin" / "upstream")]


def _cli(args: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    """Run one CLI command; (seconds, peak RSS MiB of the child tree, stdout)."""
    start = time.perf_counter()
    proc = subprocess.run(["/usr/bin/time", "-f", "MAXRSS %M", *UPSTREAM, *args], env=env, capture_output=True,
                          text=True, check=False)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"upstream {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
    rss = [int(line.split()[1]) for line in proc.stderr.splitlines() if line.startswith("MAXRSS")]
    return elapsed, (rss[-1] / 1024 if rss else float("nan")), proc.stdout


def cmd_cli(a: argparse.Namespace) -> None:
    d = Path(a.dir)
    raw, home = d / f"d{a.size}", d / f"home{a.size}"
    env = {**os.environ, "UPSTREAM_HOME": str(home), "UPSTREAM_PSEUDO_KEY": os.environ.get("UPSTREAM_PSEUDO_KEY",
                                                                                           "bench-loop-key")}
    subprocess.run(["rm", "-rf", str(home)], check=True)
    steps = [
        ("synth", ["synth", "--residents", str(a.size), "--seed", str(a.seed), "--out", str(raw), "--defect-rate",
                   "0.01", "--programme-effect", str(a.effect), "--workers", "2"]),
        ("run", ["run", "--raw", str(raw), *(["--train-sample", "200000"] if a.size > 300_000 else [])]),
        ("actions import", ["actions", "import", "--file", str(raw / "programme_actions.csv")]),
        ("evaluate", ["evaluate", "--seed", str(a.seed)]),
    ]
    rows = []
    for name, args in steps:
        secs, rss, out = _cli(args, env)
        rows.append((name, secs, rss))
        print(f"{name:<15} {secs:8.1f} s  peak {rss:8.0f} MiB", flush=True)
        if name == "evaluate":
            print(out)
    truth = json.loads((raw / "_truth" / "programme.json").read_text())["crisis_12m"]
    report = sorted((home / "evaluation").glob("*/evaluation.json"))[-1]
    est = json.loads(report.read_text())["crisis_12m"]
    rr, rd = est["risk_ratio"], est["risk_difference"]
    covers = rr["ci_low"] <= truth["risk_ratio"] <= rr["ci_high"]
    excludes_1 = not rr["ci_low"] <= 1 <= rr["ci_high"]
    print(f"\ntrue ATT: RR {truth['risk_ratio']:.4f}, RD {truth['risk_difference']:+.4f}, treated {truth['n_treated']}")
    print(f"estimate: RR {rr['estimate']:.4f} [{rr['ci_low']:.4f}, {rr['ci_high']:.4f}], RD {rd['estimate']:+.4f} "
          f"[{rd['ci_low']:+.4f}, {rd['ci_high']:+.4f}], n_treated {est['n_treated']}, n_comparison {est['n_comparison']}")
    print(f"CI covers the true RR: {covers}; CI excludes 1: {excludes_1}")
    print(f"load: {os.getloadavg()}")


def cmd_seeds(a: argparse.Namespace) -> None:
    """Coverage over seeds: generate -> ingest -> import -> evaluate(crisis only), direct calls."""
    import shutil

    from expectations.ingest import ingest_delivery
    from loop.actions import import_actions
    from loop.evaluate import crisis_only
    from synthetic.generate import generate_delivery
    from upstream.settings import Settings

    results = []
    for seed in range(a.first_seed, a.first_seed + a.n):
        started = time.perf_counter()
        base = Path(a.dir) / f"seed{seed}"
        shutil.rmtree(base, ignore_errors=True)
        raw, home = base / "raw", base / "home"
        generate_delivery(raw, residents=a.size, seed=seed, programme_effect=a.effect, workers=a.workers)
        settings = Settings(home=home)
        ingest_delivery(raw, home / "weeks" / "2026-W47" / "ingest", settings)
        import_actions(raw / "programme_actions.csv", settings)
        est = crisis_only(settings, seed=seed, n_boot=a.bootstrap)
        truth = json.loads((raw / "_truth" / "programme.json").read_text())["crisis_12m"]
        rr = est.rr
        covers = rr[1] <= truth["risk_ratio"] <= rr[2]
        covers_rd = est.rd[1] <= truth["risk_difference"] <= est.rd[2]
        results.append({"seed": seed, "true_rr": truth["risk_ratio"], "true_rd": truth["risk_difference"],
                        "rr": rr, "rd": est.rd, "covers_rr": covers, "covers_rd": covers_rd,
                        "excludes_1": not rr[1] <= 1 <= rr[2], "n_treated": est.n_treated,
                        "n_comparison": est.n_comparison, "seconds": time.perf_counter() - started})
        print(json.dumps(results[-1]), flush=True)
        shutil.rmtree(base, ignore_errors=True)
    n_cov = sum(r["covers_rr"] for r in results)
    print(f"\nsize {a.size}, effect {a.effect}: CI of the risk ratio covers the true ATT in {n_cov} of {len(results)}; "
          f"risk difference {sum(r['covers_rd'] for r in results)} of {len(results)}; "
          f"CI excludes 1 in {sum(r['excludes_1'] for r in results)}; load {os.getloadavg()}")


def cmd_retruth(a: argparse.Namespace) -> None:
    """Coverage of an earlier ``seeds`` log against the truth as generated NOW (the estimates are the logged
    ones: only the truth's computation changed; check that with ``seeds --first-seed S --n 1``)."""
    import shutil

    from synthetic.generate import generate_delivery

    rows = [json.loads(line) for line in Path(a.log).read_text().splitlines() if line.startswith("{")]
    covered = covered_rd = 0
    for r in rows:
        base = Path(a.dir) / f"truth{r['seed']}"
        shutil.rmtree(base, ignore_errors=True)
        generate_delivery(base, residents=a.size, seed=r["seed"], programme_effect=a.effect, workers=1)
        truth = json.loads((base / "_truth" / "programme.json").read_text())["crisis_12m"]
        shutil.rmtree(base, ignore_errors=True)
        cov = r["rr"][1] <= truth["risk_ratio"] <= r["rr"][2]
        cov_rd = r["rd"][1] <= truth["risk_difference"] <= r["rd"][2]
        covered, covered_rd = covered + cov, covered_rd + cov_rd
        print(json.dumps({"seed": r["seed"], "old_true_rr": r["true_rr"], "true_rr": truth["risk_ratio"],
                          "true_rd": truth["risk_difference"], "rr": r["rr"], "covers_rr": cov,
                          "covers_rd": cov_rd}), flush=True)
    est = [r["rr"][0] for r in rows]
    print(f"\nsize {a.size}, effect {a.effect}: CI of the risk ratio covers the true ATT in {covered} of {len(rows)}; "
          f"risk difference {covered_rd} of {len(rows)}; mean estimate {sum(est) / len(est):.4f}; load {os.getloadavg()}")


def cmd_import(a: argparse.Namespace) -> None:
    """N valid action rows for residents of the delivery, imported into a copy-free home (rows appended)."""
    import numpy as np
    import polars as pl

    from loop.actions import import_actions
    from upstream.settings import Settings

    settings = Settings(home=Path(a.home))
    # residents ingest accepted (the re-identification map), so every row is valid
    nhs = pl.read_parquet(settings.reid_map_path)["nhs_number"].to_numpy()
    rng = np.random.default_rng(0)
    weeks = [f"2026-W{w:02d}" for w in range(1, 48)]
    acts = np.array(["contacted", "offered", "accepted", "declined"])
    n = a.rows
    frame = pl.DataFrame({"nhs_number": nhs[rng.integers(0, len(nhs), n)],
                          "week": np.array(weeks)[rng.integers(0, len(weeks), n)],
                          "action": acts[rng.integers(0, len(acts), n)]})
    frame = frame.with_columns(pl.when(pl.col("action") == "contacted").then(None).otherwise(pl.lit("telecare"))
                               .alias("offer"), pl.lit(None, dtype=pl.String).alias("reason"))
    path = Path(a.home) / f"bench_actions_{n}.csv"
    frame.write_csv(path)
    start = time.perf_counter()
    result = import_actions(path, settings)
    secs = time.perf_counter() - start
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"import {n:,} rows: {secs:.1f} s, {result.rows_new:,} new (duplicates in the file collapse), "
          f"peak RSS {rss:.0f} MiB, load {os.getloadavg()}")


def cmd_outcomes(a: argparse.Namespace) -> None:
    """A year of weekly lists (K residents each, 60% kept from the week before) -> follow_up."""
    from datetime import UTC, date, datetime, timedelta

    import numpy as np
    import polars as pl

    from loop.evaluate import latest_clean_dir
    from loop.outcomes import follow_up
    from upstream.settings import Settings
    from upstream.store import get_engine, published_weeks, risk_lists, score_runs

    settings = Settings(home=Path(a.home))
    clean = latest_clean_dir(settings)
    people = pl.read_parquet(clean / "residents.parquet", columns=["person_id", "locality"]).with_columns(
        pl.col("locality").fill_null("Unknown"))
    rng = np.random.default_rng(1)
    engine = get_engine(settings.db_url)
    first = date.fromisoformat(a.first_monday)
    listed = rng.choice(len(people), a.listed, replace=False)
    with engine.begin() as conn:
        for k in range(a.weeks):
            t = first + timedelta(days=7 * k)
            y, w, _ = t.isocalendar()
            week = f"{y}-W{w:02d}"
            run_id = f"bench-{week}"
            keep = listed[rng.random(len(listed)) < 0.6]
            listed = np.unique(np.concatenate([keep, rng.choice(len(people), a.listed - len(keep))]))[: a.listed]
            now = datetime.now(UTC)
            conn.execute(score_runs.insert(), [{"run_id": run_id, "week": week, "index_date": t, "target": "crisis",
                                                "model_name": "bench", "model_version": "0", "status": "complete",
                                                "n_scored": len(people), "started_at": now, "finished_at": now}])
            sub = people[listed.tolist()]
            conn.execute(risk_lists.insert(), [
                {"run_id": run_id, "week": week, "locality": loc, "rank": i, "person_id": pid, "score": 0.5,
                 "band": "high", "section": "top", "change_points": None, "why_listed": "Among the highest risks", "what_changed": None, "suggested_offers": "", "offer_evidence": "", "top_reasons": "", "age_band": "75-79", "gp_practice": None, "reasons": []}
                for i, (pid, loc) in enumerate(sub.iter_rows())])
            conn.execute(published_weeks.insert(), [{"week": week, "run_id": run_id, "index_date": t,
                                                     "published_at": now}])
    from models.labels import data_end

    end = data_end(clean)
    print(f"{a.weeks} weeks of {a.listed:,} listed published; data end {end}; load {os.getloadavg()}", flush=True)
    # the catch-up: every window closed a week before the data end (the first run after a year of lists)
    for label, until in (("catch-up (a year of lists)", end - timedelta(days=7)),
                         ("weekly run (windows closed in the last week)", end),
                         ("weekly run with nothing new", end)):
        start = time.perf_counter()
        result = follow_up(clean, settings, data_end=until)
        secs = time.perf_counter() - start
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"{label}: {result.listings:,} listings, {result.new_rows:,} outcome rows, {result.pending:,} "
              f"pending, {secs:.1f} s, peak RSS so far {rss:.0f} MiB (whole process), load {os.getloadavg()}",
              flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("cli")
    c.add_argument("size", type=int)
    c.add_argument("--effect", type=float, default=0.3)
    c.add_argument("--seed", type=int, default=1)
    c.add_argument("--dir", required=True)
    s = sub.add_parser("seeds")
    s.add_argument("size", type=int)
    s.add_argument("--n", type=int, default=20)
    s.add_argument("--first-seed", type=int, default=1)
    s.add_argument("--effect", type=float, default=0.3)
    s.add_argument("--bootstrap", type=int, default=200)
    s.add_argument("--workers", type=int, default=1)
    s.add_argument("--dir", required=True)
    r = sub.add_parser("retruth")
    r.add_argument("size", type=int)
    r.add_argument("--log", required=True)
    r.add_argument("--effect", type=float, default=0.3)
    r.add_argument("--dir", required=True)
    i = sub.add_parser("import")
    i.add_argument("--home", required=True)
    i.add_argument("--rows", type=int, default=100_000)
    o = sub.add_parser("outcomes")
    o.add_argument("--home", required=True)
    o.add_argument("--weeks", type=int, default=52)
    o.add_argument("--listed", type=int, default=5000)
    o.add_argument("--first-monday", default="2025-06-02")
    a = p.parse_args()
    {"cli": cmd_cli, "seeds": cmd_seeds, "retruth": cmd_retruth, "import": cmd_import, "outcomes": cmd_outcomes}[a.cmd](a)


if __name__ == "__main__":
    main()
