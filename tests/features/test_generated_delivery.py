"""Features on a generated delivery, through the real ingest (skipped until both are importable).

- HFRS per person is identical to comorbidipy.hfrs given the RAW delivery's codes (cut to the same
  2-year window, nhs_number pseudonymised with the same key), exercising its own normalisation;
- the population is exactly the generator's ground-truth ``eligible`` people at the truth date.
"""

from __future__ import annotations

from datetime import timedelta

import polars as pl
import pytest

from expectations import ingest
from features.build import build_features
from features.registry import FEATURES
from synthetic import generate
from tests.features.test_hfrs_comorbidipy import comorbidipy_hfrs


@pytest.fixture(scope="module")
def delivery(tmp_path_factory: pytest.TempPathFactory) -> dict:
    from upstream.settings import Settings

    root = tmp_path_factory.mktemp("generated")
    raw, out = root / "raw", root / "out"
    generate.generate_delivery(raw, residents=3000, seed=11)
    settings = Settings(home=root / "home")
    ingest.ingest_delivery(raw, out, settings, build_docs=False)
    truth_files = sorted((raw / "_truth").glob("risk_*.parquet"))
    assert truth_files, "generator wrote no risk truth file"
    truth = pl.read_parquet(truth_files[-1])
    index_date = truth["index_date"][0]
    return {"raw": raw, "clean": out / "clean", "truth": truth, "index_date": index_date,
            "key": settings.pseudonymisation_key()}


def test_population_is_the_generator_eligible_set(delivery: dict) -> None:
    from expectations.pseudonymise import pseudonymise

    table = build_features(delivery["clean"], delivery["index_date"])
    truth = delivery["truth"].filter(pl.col("eligible"))
    expected = set(pseudonymise(truth["nhs_number"], delivery["key"]).to_list())
    assert set(table["person_id"]) == expected


def test_hfrs_matches_comorbidipy_on_raw_codes(delivery: dict) -> None:
    from expectations.pseudonymise import pseudonymise

    T = delivery["index_date"]
    days = FEATURES["hfrs"].window_days
    assert days is not None
    raw = pl.read_parquet(delivery["raw"] / "hospital_spells.parquet").with_columns(
        pl.col("admission_date").cast(pl.Date)
    )
    window = raw.filter((pl.col("admission_date") < T) & (pl.col("admission_date") >= T - timedelta(days=days)))
    window = window.with_columns(pseudonymise(window["nhs_number"], delivery["key"]).alias("id"))
    long = pl.concat([
        window.select("id", pl.col("primary_diagnosis").alias("code")),
        window.select("id", pl.col("secondary_diagnoses").fill_null("").str.split(",").alias("code"))
        .explode("code").filter(pl.col("code").str.strip_chars() != ""),
    ]).to_pandas()
    theirs = comorbidipy_hfrs(long)
    table = build_features(delivery["clean"], T)
    ours = dict(zip(table["person_id"], table["hfrs"], strict=True))
    compared = [p for p in ours if p in theirs]
    assert len(compared) > 50 and sum(theirs[p] > 0 for p in compared) > 20
    assert {p: (ours[p], theirs[p]) for p in compared if round(ours[p], 1) != theirs[p]} == {}
    assert all(ours[p] == 0.0 for p in set(ours) - set(theirs))


def test_generated_codes_are_recognised(delivery: dict) -> None:
    table = build_features(delivery["clean"], delivery["index_date"])
    assert table.columns == list(FEATURES)
    # the generator draws codes from the shipped lists, so frailty and falls must show up
    assert table["efi"].max() > 0 and table["falls_12m"].sum() > 0 and table["hfrs"].max() > 0
    assert table["lives_alone"].any() and not table["lives_alone"].all()


def test_no_future_leakage_on_generated_data(delivery: dict, tmp_path_factory: pytest.TempPathFactory) -> None:
    from tests.features.test_no_future_leakage import truncate

    T = delivery["index_date"]
    past = tmp_path_factory.mktemp("past") / "clean"
    truncate(delivery["clean"], past, T)
    assert build_features(delivery["clean"], T).equals(build_features(past, T), null_equal=True)


def test_without_the_address_history_the_snapshot_leaks_moves_after_t(
    delivery: dict, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """The generator moves people, so the check above has teeth: from the residents file's extract-time address
    alone, household features at T differ from what was known at T."""
    import os

    from tests.features.test_no_future_leakage import truncate

    # Three years before the first training date: the moves that change a household (into a care home, out
    # of a shared home after a death) are rare at 3,000 residents, and this leaves five years of them after T.
    T = delivery["index_date"] - timedelta(weeks=3 * 52)
    past = tmp_path_factory.mktemp("past_snapshot") / "clean"
    truncate(delivery["clean"], past, T)
    snapshot = tmp_path_factory.mktemp("snapshot")
    for path in delivery["clean"].glob("*.parquet"):
        if path.stem != "addresses":
            os.symlink(path, snapshot / path.name)
    known = build_features(past, T)
    leaky = build_features(snapshot, T)
    assert known["person_id"].to_list() == leaky["person_id"].to_list()
    address_features = ["household_size", "lives_alone", "imd_decile", "bereaved_12m"]
    differs = pl.DataFrame([~known[c].eq_missing(leaky[c]) for c in address_features]).select(
        pl.any_horizontal(pl.all())
    ).to_series()
    assert differs.sum() > 10, "3,000 residents over 5 years: some household or area changed after T"


def test_features_for_some_people_are_their_rows_of_the_full_table(delivery: dict) -> None:
    """Training builds features only for its sampled people (``people=``): each of them must get exactly the
    row the full build gives them, household and bereavement included, although their co-residents and the
    dead they lived with are not in the sample."""
    full = build_features(delivery["clean"], delivery["index_date"])
    some = full.get_column("person_id").sample(fraction=0.2, seed=5).sort()
    restricted = build_features(delivery["clean"], delivery["index_date"], people=some)
    expected = full.filter(pl.col("person_id").is_in(some.implode()))
    assert restricted.height == some.len() == expected.height
    assert restricted.equals(expected)
    # The check has teeth: some sampled people share a household with people outside the sample, and
    # some have events of every kind, so a restriction that dropped others' rows too early would differ.
    outside = full.filter(~pl.col("person_id").is_in(some.implode()))
    assert expected.filter(pl.col("household_size") > 1).height > 0
    assert outside.height > 0
    for column in ("gp_contacts_12m", "emergency_admissions_12m", "ae_attendances_12m", "hfrs"):
        assert (expected.get_column(column) > 0).sum() > 0, column
