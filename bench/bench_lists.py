"""Benchmark: are the weekly lists ones a locality team can act on? (issue 10's "Measured" list)

Runs the real weekly flow twice on a synthetic delivery (the comparison week C = T - 7 days with training,
then T scoring only), then checks the published week-T lists AGAINST THE RAW DELIVERY AND THE GENERATOR'S
TRUTH, never with the project's cohort code:
1. exclusion violations: listed people who at T are under 18, inpatients, care-home residents (open
   residential/nursing service or a CAREHOME_COD code in the 12 months before T), in long-term care or in
   reablement, each computed here from the raw files (rows the generator recorded as injected defects are
   left out: ingest rightly quarantines them). Goal: 0.
2. list quality: crisis in the 12 months after T (``_truth/risk_<T>.parquet``) among listed people, against
   the same-size list per locality drawn from the generator's true probabilities within the same cohort
   (truth-eligible and not excluded by 1.); the same ratio for the rising section. Goal >= 0.85.
3. what changed: share of new/rising rows whose ``what_changed`` names an event (type and date) that is in
   the raw delivery for that person in [C, T) (a service's end counts: its ``event_end_date``). Goal >= 95%.
4. offers: share of listed people with >= 1 suggested offer; people per offer and locality (suppressed).
5. weekly flow time (goal < 5 min at 280k).

    .venv/bin/python bench/bench_lists.py --raw /work/data-i10/d280k --home /work/data-i10/home280 \\
        --index-date 2025-11-17 --opt-out-share 0.005

The delivery must have ``_truth/risk_<T>.parquet`` (the generator writes T = extract - 1 and 2 years).
``--opt-out-share`` writes ``opt_outs.csv`` into the delivery (a seeded sample of residents) so the opt-out
path runs at scale; the bench then checks no opted-out person is listed.
"""

from __future__ import annotations

import argparse
import csv
import os
import re
import subprocess
import time
from datetime import date, datetime, timedelta
from pathlib import Path

import polars as pl

from upstream.cli import no_phone_home

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference"
CARE_HOME_CODES = REFERENCE / "opensafely_disparities-comparison" / "nhsd-primary-care-domain-refsets-carehome_cod.csv"
LONG_TERM = ("Long Term Support: Nursing Care", "Long Term Support: Residential Care", "Long Term Support: Community")
CARE_HOME = LONG_TERM[:2]
REABLEMENT = "Short Term Support: ST-Max"
EMERGENCY = ("21", "22", "23", "24", "25", "28", "2A", "2B", "2C", "2D")
MONTHS = {datetime(2000, m, 1).strftime("%B"): m for m in range(1, 13)}


def _read(raw: Path, name: str, defects: pl.DataFrame) -> pl.DataFrame:
    path = raw / f"{name}.parquet"
    frame = pl.read_parquet(path) if path.exists() else pl.read_csv(raw / f"{name}.csv", try_parse_dates=True)
    bad = defects.filter(pl.col("source") == name)["row_index"]
    return frame.with_row_index("_row").filter(~pl.col("_row").is_in(bad.implode())).drop("_row")


def _shown(n: int) -> str:
    if 1 <= n <= 7:
        return "<8"
    return str(5 * round(n / 5))


def write_opt_outs(raw: Path, share: float) -> int:
    residents = pl.read_parquet(raw / "residents.parquet", columns=["nhs_number"]).unique()
    sample = residents.sample(fraction=share, seed=10).sort("nhs_number")
    sample.write_csv(raw / "opt_outs.csv")
    return sample.height


def run_weeks(raw: Path, home: Path, T: date, C: date, train: str, only_t: bool = False) -> list[str]:
    from pipelines.prefect_server import prefect_api, prepare_environment

    prepare_environment()
    from pipelines.flows import weekly

    lines = []
    with prefect_api(with_ui=False):
        weeks = [("comparison week C", C, train), ("week T", T, "never")]
        for label, index_date, mode in weeks[1:] if only_t else weeks:
            load = os.getloadavg()[0]
            started = time.perf_counter()
            result = weekly(raw_dir=str(raw), index_date=index_date, train=mode, home=str(home))
            total = time.perf_counter() - started
            steps = ", ".join(f"{k} {v:.1f} s" for k, v in result["timings"].items())
            lines.append(f"{label} ({index_date}, train={mode}): {result['n_scored']:,} scored in {total:.1f} s "
                         f"(ratio to 300 s: {total / 300:.2f}; load before {load:.1f}); {steps}")
            print(lines[-1], flush=True)
    return lines


def published_lists(home: Path, T: date) -> pl.DataFrame:
    import sqlalchemy as sa

    from pipelines.scoring import iso_week
    from upstream.store import get_engine, published_weeks, risk_lists

    engine = get_engine(f"sqlite:///{home / 'upstream.db'}")
    week = iso_week(T)
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(risk_lists.c.person_id, risk_lists.c.locality, risk_lists.c.section, risk_lists.c.what_changed,
                      risk_lists.c.suggested_offers, risk_lists.c.rank, risk_lists.c.why_listed,
                      risk_lists.c.offers_this_week, risk_lists.c.offers_waiting)
            .join(published_weeks, published_weeks.c.run_id == risk_lists.c.run_id)
            .where(published_weeks.c.week == week)
        ).all()
    lists = pl.DataFrame([dict(r._mapping) for r in rows], infer_schema_length=None)
    reid = pl.read_parquet(home / "restricted" / "reid_map.parquet")
    return lists.join(reid, on="person_id", how="left")


def independent_exclusions(raw: Path, T: date, defects: pl.DataFrame) -> pl.DataFrame:
    """nhs_number -> which exclusions hold at T, from the raw files only."""
    residents = _read(raw, "residents", defects)
    spells = _read(raw, "hospital_spells", defects)
    sc = _read(raw, "social_care_events", defects)
    gp = _read(raw, "gp_events", defects)
    with CARE_HOME_CODES.open() as fh:
        care_codes = [row["code"].strip() for row in csv.DictReader(fh)]
    dob = pl.col("date_of_birth")
    age = T.year - dob.dt.year() - ((dob.dt.month() * 100 + dob.dt.day()) > T.month * 100 + T.day).cast(pl.Int32)
    under = residents.filter(age < 18).select("nhs_number").with_columns(pl.lit("under_18").alias("why"))
    inpatient = spells.filter((pl.col("admission_date") < T) & (pl.col("discharge_date").is_null()
                                                                 | (pl.col("discharge_date") >= T)))
    open_service = sc.filter((pl.col("event_type") == "Service") & (pl.col("event_start_date") <= T)
                             & (pl.col("event_end_date").is_null() | (pl.col("event_end_date") >= T)))
    care_code = gp.filter(pl.col("snomed_code").is_in(care_codes) & (pl.col("event_date") < T)
                          & (pl.col("event_date") >= T - timedelta(days=365)))
    parts = [
        under,
        inpatient.select("nhs_number").with_columns(pl.lit("inpatient").alias("why")),
        open_service.filter(pl.col("service_type").is_in(CARE_HOME)).select("nhs_number")
        .with_columns(pl.lit("care_home_service").alias("why")),
        care_code.select("nhs_number").with_columns(pl.lit("care_home_code").alias("why")),
        open_service.filter(pl.col("service_type").is_in(LONG_TERM)).select("nhs_number")
        .with_columns(pl.lit("long_term_care").alias("why")),
        open_service.filter(pl.col("service_type") == REABLEMENT).select("nhs_number")
        .with_columns(pl.lit("reablement").alias("why")),
    ]
    return pl.concat(parts).unique()


def _parse_day(text: str) -> date:
    return datetime.strptime(text, "%d %b %Y").date()


DAY = r"\d{1,2} [A-Z][a-z]{2} \d{4}"


def named_events(text: str | None) -> list[tuple[str, date | tuple[int, int] | int]]:
    """(kind, date) pairs named in a what_changed text (a month for bereavement, an age for birthdays)."""
    if not text:
        return []
    found: list[tuple[str, date | tuple[int, int] | int]] = []
    for part in text.split("; "):
        days = [_parse_day(d) for d in re.findall(DAY, part)]
        if m := re.match(r"household bereavement in (\w+) (\d{4})", part):
            found.append(("death_in_household", (int(m.group(2)), MONTHS[m.group(1)])))
        elif m := re.match(r"turned (\d+)", part):
            found.append(("birthday", int(m.group(1))))
        elif "emergency admission" in part and "fall" not in part:
            found += [("emergency_admission", d) for d in days]
        elif "hospital admission" in part:
            found += [("admission", d) for d in days]
        elif "discharged from hospital" in part:
            found += [("discharge", d) for d in days]
        elif "A&E attendance" in part:
            found += [("ae", d) for d in days]
        elif "fall" in part:
            found += [("fall", d) for d in days]
        elif "GP contact" in part or "first recorded" in part:
            found += [("gp", d) for d in days]
        elif any(w in part for w in ("reablement ended", "long-term support ended", "care-home placement ended")):
            found += [("service_end", d) for d in days]
        elif any(w in part for w in ("request for care support", "reablement started", "equipment provided",
                                      "support for social isolation")):
            found += [("social_care", d) for d in days]
    return found


def verify_events(rows: pl.DataFrame, raw: Path, C: date, T: date, defects: pl.DataFrame) -> tuple[int, int, int]:
    """(rows naming at least one real event, rows naming any dated event, rows) for new/rising rows."""
    ids = set(rows["nhs_number"].drop_nulls())
    residents = _read(raw, "residents", defects)
    spells = _read(raw, "hospital_spells", defects).filter(pl.col("nhs_number").is_in(ids))
    ae = _read(raw, "ae_attendances", defects).filter(pl.col("nhs_number").is_in(ids))
    gp = _read(raw, "gp_events", defects).filter(pl.col("nhs_number").is_in(ids))
    sc = _read(raw, "social_care_events", defects).filter(pl.col("nhs_number").is_in(ids))
    deaths = _read(raw, "deaths", defects)
    real: dict[str, set] = {}

    def add(frame: pl.DataFrame, kind: str, column: str) -> None:
        for nhs, d in frame.select("nhs_number", column).iter_rows():
            if d is not None and C <= d < T:
                real.setdefault(nhs, set()).add((kind, d))

    add(spells.filter(pl.col("admission_method").is_in(EMERGENCY)), "emergency_admission", "admission_date")
    add(spells, "admission", "admission_date")
    add(spells.filter(pl.col("admission_date") < C), "discharge", "discharge_date")
    add(ae, "ae", "arrival_date")
    for kind_frame, column in ((gp, "event_date"), (ae, "arrival_date"), (spells, "admission_date")):
        add(kind_frame, "fall", column)  # a fall is named by date; any record of that person that day
    add(gp, "gp", "event_date")
    add(sc, "social_care", "event_start_date")
    add(sc.filter(pl.col("event_type") == "Service"), "service_end", "event_end_date")
    died = residents.select("nhs_number", "uprn", "date_of_death").join(
        deaths.group_by("nhs_number").agg(pl.col("date_of_death").min().alias("_d")), on="nhs_number", how="left"
    ).with_columns(pl.min_horizontal("date_of_death", "_d").alias("died"))
    mine = died.filter(pl.col("nhs_number").is_in(ids)).select("nhs_number", "uprn")
    others = died.filter(pl.col("died").is_not_null() & (pl.col("died") >= C) & (pl.col("died") < T))
    for nhs, d in mine.join(others.select(pl.col("nhs_number").alias("other"), "uprn", "died"), on="uprn")\
            .filter(pl.col("other") != pl.col("nhs_number")).select("nhs_number", "died").iter_rows():
        real.setdefault(nhs, set()).add(("death_in_household", (d.year, d.month)))
    dob = dict(residents.select("nhs_number", "date_of_birth").filter(pl.col("nhs_number").is_in(ids)).iter_rows())
    verified = dated = 0
    for nhs, text in rows.select("nhs_number", "what_changed").iter_rows():
        events = named_events(text)
        if events:
            dated += 1
        ok = False
        for kind, when in events:
            if kind == "birthday":
                b = dob.get(nhs)
                ok = ok or (b is not None and T.year - b.year == when and C <= date(T.year, b.month, b.day) < T)
            else:
                ok = ok or (kind, when) in real.get(nhs, set())
        verified += ok
    return verified, dated, rows.height


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--raw", type=Path, required=True)
    parser.add_argument("--home", type=Path, required=True)
    parser.add_argument("--index-date", type=date.fromisoformat, required=True)
    parser.add_argument("--opt-out-share", type=float, default=0.0)
    parser.add_argument("--train", default="always")
    parser.add_argument("--skip-runs", action="store_true", help="only measure an already published week")
    parser.add_argument("--only-week-t", action="store_true", help="re-run week T only (C already published)")
    args = parser.parse_args()
    no_phone_home()
    os.environ.setdefault("UPSTREAM_PSEUDO_KEY", "bench-key-not-secret")
    T = args.index_date
    C = T - timedelta(days=7)
    print("uptime:", subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())
    if args.opt_out_share and not args.skip_runs:
        print(f"opt_outs.csv: {write_opt_outs(args.raw, args.opt_out_share):,} NHS numbers written")
    if not args.skip_runs:
        run_weeks(args.raw, args.home, T, C, args.train, args.only_week_t)
    defects = pl.read_parquet(args.raw / "_truth" / "defects.parquet")
    lists = published_lists(args.home, T)
    excluded = independent_exclusions(args.raw, T, defects)
    listed = lists.select("nhs_number").unique()
    violations = excluded.join(listed, on="nhs_number", how="semi")
    print(f"\nlisted at T: {lists.height:,} rows ({listed.height:,} people) in {lists['locality'].n_unique()} localities")
    by_why = dict(violations.group_by("why").len().iter_rows())
    print(f"1. exclusion violations (independent, from the raw delivery): {violations['nhs_number'].n_unique()} "
          f"{by_why or ''}")
    if (args.raw / "opt_outs.csv").exists():
        opted = pl.read_csv(args.raw / "opt_outs.csv", infer_schema=False)
        print(f"   opted-out people listed: {listed.join(opted, on='nhs_number', how='semi').height} "
              f"(of {opted.height:,} opt-outs)")

    truth = pl.read_parquet(args.raw / "_truth" / f"risk_{T.isoformat()}.parquet")
    residents = _read(args.raw, "residents", defects).select("nhs_number", "locality")
    cohort = (truth.filter(pl.col("eligible")).join(residents, on="nhs_number", how="inner")
              .join(excluded.select("nhs_number").unique(), on="nhs_number", how="anti"))
    if (args.raw / "opt_outs.csv").exists():
        cohort = cohort.join(pl.read_csv(args.raw / "opt_outs.csv", infer_schema=False), on="nhs_number", how="anti")
    scored = lists.join(truth.select("nhs_number", "y_crisis", "p_crisis"), on="nhs_number", how="left")

    def quality(rows: pl.DataFrame, label: str) -> None:
        oracle_hits = oracle_n = 0
        for locality, n in rows.group_by("locality").len().iter_rows():
            best = cohort.filter(pl.col("locality") == locality).sort("p_crisis", descending=True).head(n)
            oracle_hits += int(best["y_crisis"].sum())
            oracle_n += best.height
        listed_rate = float(rows["y_crisis"].mean() or 0.0)
        oracle_rate = oracle_hits / oracle_n if oracle_n else float("nan")
        print(f"2. list quality ({label}, n={rows.height:,}): crisis rate {listed_rate:.3f} vs oracle same-size "
              f"list {oracle_rate:.3f}: ratio {listed_rate / oracle_rate:.3f}")

    quality(scored, "whole list")
    for section in ("rising", "new", "top"):
        part = scored.filter(pl.col("section") == section)
        if part.height:
            quality(part, f"{section} section")

    drifted = lists.filter(pl.col("why_listed").str.starts_with("Not on last week's list"))
    print(f"   sections: {dict(lists.group_by('section').len().sort('section').iter_rows())}; top rows not on last "
          f"week's list that entered only because others left: {drifted.height:,}")

    changed = lists.filter(pl.col("section").is_in(["new", "rising"]))
    verified, dated, n = verify_events(changed, args.raw, C, T, defects)
    print(f"3. what_changed: {verified:,} of {n:,} new/rising rows name an event that happened in [C, T) "
          f"({verified / max(n, 1):.1%}); {dated:,} name a dated event ({dated / max(n, 1):.1%})")
    samples = changed.filter(pl.col("what_changed").is_not_null()).head(5)["what_changed"].to_list()
    for text in samples:
        print(f"   e.g. {text}")

    with_offer = (lists["suggested_offers"] != "").mean()
    print(f"4. offers: {with_offer:.1%} of listed people have at least one suggested offer")
    exploded = lists.with_columns(pl.col("suggested_offers").str.split(";")).explode("suggested_offers").filter(
        pl.col("suggested_offers") != "")
    table = exploded.group_by("locality", "suggested_offers").len().sort("locality", "suggested_offers")
    per_locality = lists.group_by("locality").agg(pl.len().alias("listed"),
                                                  (pl.col("suggested_offers") != "").sum().alias("with_offer"))
    for locality, n_listed, n_offer in per_locality.sort("locality").iter_rows():
        offers = {o: _shown(c) for loc, o, c in table.iter_rows() if loc == locality}
        print(f"   {locality}: listed {_shown(n_listed)}, with an offer {_shown(n_offer)}; {offers}")
    from pipelines.scoring import iso_week

    capacity_file = args.home / "lists" / iso_week(T) / "offer_capacity.csv"
    if capacity_file.exists():
        places = pl.read_csv(capacity_file, infer_schema=False)
        print(f"   capacity ({capacity_file.name}, suppressed): offer: weekly places / suggested / with a place / "
              "waiting")
        for locality in places["locality"].unique(maintain_order=True):
            cells = [f"{o}: {c}/{s}/{w}/{q}" for o, c, s, w, q in places.filter(pl.col("locality") == locality)
                     .select("offer", "weekly_capacity", "suggested", "with_place", "waiting").iter_rows()]
            print(f"   {locality}: " + "; ".join(cells))
    # the marks agree with the rule: per locality and offer, places = min(capacity, suggested), in rank order
    exploded_places = lists.with_columns(pl.col("offers_this_week").fill_null("").str.split(";")).explode(
        "offers_this_week").filter(pl.col("offers_this_week") != "")
    worst = exploded_places.group_by("locality", "offers_this_week").len()["len"].max()
    print(f"   most places given for one offer in one locality: {worst}")


if __name__ == "__main__":
    main()
