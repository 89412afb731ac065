"""End to end on a generated delivery from the *alternative* world (isolation, bereavement and deprivation
drive risk; frailty and falls much less): generate -> ingest -> train_and_register -> compare with the
generator's oracle. Nothing in models/ knows which world it is given, so getting close to this world's
oracle shows the pipeline learns the drivers rather than having them built in.
"""

from __future__ import annotations

from datetime import date, timedelta

import polars as pl
import pytest

from expectations.pseudonymise import pseudonymise
from models.labels import build_labels
from models.metrics import auroc
from models.registry import load_model
from models.train import train_and_register
from upstream.settings import Settings

pytestmark = pytest.mark.slow
RESIDENTS = 6000
KEY = "test-key-not-secret"


@pytest.fixture(scope="module")
def alt_world(tmp_path_factory):
    from expectations.ingest import ingest_delivery
    from synthetic.generate import generate_delivery

    root = tmp_path_factory.mktemp("alt")
    generate_delivery(root / "raw", residents=RESIDENTS, seed=5, world="alt")
    settings = Settings(home=root / "home", pseudo_key=KEY)
    ingest_delivery(root / "raw", root / "out", settings)
    clean = root / "out" / "clean"
    result = train_and_register(clean, "crisis", date(2026, 11, 23), settings)
    return root, clean, settings, result


def _truth(root, day: date) -> pl.DataFrame:
    truth = pl.read_parquet(root / "raw" / "_truth" / f"risk_{day}.parquet").filter(pl.col("eligible"))
    return truth.with_columns(pseudonymise(truth["nhs_number"], KEY.encode()).alias("person_id"))


def test_temporal_split_is_picked_from_the_data(alt_world):
    _, _, _, result = alt_world
    # Data end 2026-11-22: the latest Monday whose 12-month window is fully observed is 2025-11-17.
    assert result.test_date == date(2025, 11, 17)
    assert result.train_dates and all(d + timedelta(days=365) <= result.test_date for d in result.train_dates)
    # The model is chosen on a validation date a year before the test date (its outcome year ends at the test
    # date), fitted on earlier dates whose outcome years end by the validation date, and refitted on all.
    *fit, validation = result.train_dates
    assert validation == result.test_date - timedelta(days=365)
    assert len(fit) >= 1 and all(d + timedelta(days=365) <= validation for d in fit)
    # Every training date has two years of data before it (the 24-month features): 6-year delivery from
    # about 2020-11-23, so the earliest fitting date is on or after 2022-11-23.
    assert min(fit) >= date(2022, 11, 23)


def test_first_run_on_a_6000_resident_world_gets_a_champion(alt_world):
    _, _, _, result = alt_world
    assert result.alias == "champion", result.gate_reasons


def test_labels_match_generator_outcomes(alt_world):
    root, clean, _, result = alt_world
    truth = _truth(root, result.test_date)
    labels = build_labels(clean, result.test_date)
    joined = labels.join(truth, on="person_id", how="full", coalesce=True)
    assert labels.height == truth.height == joined.height  # same population
    for target in ("emergency_admission", "care_escalation", "crisis"):
        assert (joined[target] == joined[f"y_{target}"]).all(), target


def test_close_to_the_alt_world_oracle(alt_world):
    root, clean, settings, result = alt_world
    truth = _truth(root, result.test_date)
    from expectations.cohort import cohort_at, in_cohort
    from features.build import build_features

    # The test population is the list cohort at the test date (adults not already known to services).
    cohort = in_cohort(cohort_at(clean, result.test_date, settings.cohort)).select("person_id")
    assert cohort.height == result.n_test
    frame = (build_features(clean, result.test_date).join(truth, on="person_id", how="inner")
             .join(cohort, on="person_id", how="semi"))
    assert frame["age"].min() >= settings.cohort.min_age
    model = load_model("crisis", settings, result.alias)
    p = model.predict_proba(frame)
    model_auroc = auroc(frame["y_crisis"].to_numpy(), p)
    oracle = auroc(frame["y_crisis"].to_numpy(), frame["p_crisis"].to_numpy())
    assert model_auroc == pytest.approx(result.metrics["test_auroc"], abs=1e-9)
    # ~5.8k training rows: within 0.06 of the oracle here; the 0.03 goal is measured at 280k (bench/).
    assert model_auroc > oracle - 0.06, (model_auroc, oracle)
    # In this world age explains little: the model must find the other drivers to beat age by far.
    assert model_auroc > result.baselines["age_only"]["auroc"] + 0.05
    reasons = {r["feature"] for rs in model.explain(frame.sort(pl.Series(-p)).head(200), 3) for r in rs}
    assert reasons & {"lives_alone", "bereaved_3m", "bereaved_6m", "bereaved_12m", "imd_decile"}, reasons


def test_a_sampled_training_date_holds_the_full_dates_rows_of_the_people_drawn(alt_world):
    """Training samples people per date before it builds their features (``assemble``): the rows it gets must
    be exactly the unsampled date's rows for the people drawn, all of them in the list cohort at that date."""
    from expectations.cohort import cohort_at, in_cohort
    from models.train import assemble

    _, clean, settings, result = alt_world
    day = result.train_dates[0]
    full = assemble(clean, [day], cohort=settings.cohort)
    sampled = assemble(clean, [day], sample=800, seed=3, cohort=settings.cohort)
    assert full.height > 2 * 800
    assert sampled.height == 800 and sampled.get_column("person_id").n_unique() == 800
    drawn = full.join(sampled.select("person_id"), on="person_id", how="semi")
    assert sampled.sort("person_id").equals(drawn.sort("person_id"))
    # The rows come in the order drawn: the same seed gives the same rows in the same order (HGB's early
    # stopping split depends on the row order).
    assert sampled.equals(assemble(clean, [day], sample=800, seed=3, cohort=settings.cohort))
    assert not sampled.get_column("person_id").is_sorted()
    listable = in_cohort(cohort_at(clean, day, settings.cohort)).get_column("person_id")
    assert sampled.get_column("person_id").is_in(listable.implode()).all()
    other = assemble(clean, [day], sample=800, seed=4, cohort=settings.cohort)
    assert not other.get_column("person_id").equals(sampled.get_column("person_id"))


def test_training_dates_read_once_give_each_date_the_rows_its_own_build_from_the_files_gives(alt_world):
    """Training reads the clean files once for all its sampled dates (``read_for_dates``: the people of every
    date's draw, events up to the last date or the end of its outcome window) and builds each date's cohort,
    labels and features from that read. Each date must draw the same people, in the same order, as a draw from
    the files, and each drawn person must get the row the whole date's build from the files gives them."""
    from models.train import WHOLE_SOURCES, assemble, draw_from_cohort, read_for_dates

    _, clean, settings, result = alt_world
    dates = result.train_dates  # the fitting dates and the validation date
    assert len(dates) >= 3
    sampled = assemble(clean, dates, sample=800, seed=3, cohort=settings.cohort)
    assert sampled.height == 800 * len(dates)
    for i, day in enumerate(dates):
        rows = sampled.filter(pl.col("index_date") == day)
        from_files = draw_from_cohort(clean, day, 800, 3 + i, settings.cohort)
        assert rows.get_column("person_id").equals(from_files, check_names=False), day
        full = assemble(clean, [day], cohort=settings.cohort)  # unsampled: every build reads the files
        assert rows.sort("person_id").equals(full.join(rows.select("person_id"), on="person_id", how="semi")
                                             .sort("person_id")), day
    # The read really is cut: later events and other people's events are not held, and the whole-population
    # sources are.
    some = sampled.get_column("person_id").unique()
    read = read_for_dates(clean, dates, some)
    last = max(dates)
    assert read.frames["gp_events"]["event_date"].max() < last
    assert read.frames["ae_attendances"]["arrival_date"].max() < last
    assert last <= read.frames["hospital_spells"]["admission_date"].max() < last + timedelta(days=365)
    assert read.frames["gp_events"]["person_id"].is_in(some.implode()).all()
    all_gp = pl.scan_parquet(clean / "gp_events.parquet").select(pl.len()).collect().item()
    assert read.frames["gp_events"].height < all_gp / 2
    residents = pl.scan_parquet(clean / "residents.parquet").select(pl.len()).collect().item()
    assert "residents" in WHOLE_SOURCES and read.frames["residents"].height == residents


def test_a_short_first_slice_of_the_draw_is_topped_up_to_exactly_the_sample(alt_world, monkeypatch):
    """The cohort is judged for a leading slice of the drawn order, topped up when the slice holds too few
    cohort members. With the first slice sized for a cohort of everyone (share guess 1, no slack) it must be
    short here (children and people known to services are not in the cohort), and the sample must still be
    exactly its size, distinct people, every one in the cohort with their full-date row. A sample no smaller
    than the cohort is the whole date."""
    import models.train as train
    from models.labels import eligible_people

    _, clean, settings, result = alt_world
    day = result.train_dates[0]
    full = train.assemble(clean, [day], cohort=settings.cohort)
    living = eligible_people(clean, day).collect().height
    n = full.height - 3
    monkeypatch.setattr(train, "COHORT_SHARE_GUESS", 1.0)
    monkeypatch.setattr(train, "DRAW_SLACK", 0)
    assert int(n * 1.05) * full.height / living < n - 100  # the first slice's expected cohort members fall short
    almost = train.assemble(clean, [day], sample=n, seed=1, cohort=settings.cohort)
    assert almost.height == n and almost.get_column("person_id").n_unique() == n
    assert almost.sort("person_id").equals(full.join(almost.select("person_id"), on="person_id", how="semi")
                                           .sort("person_id"))
    assert train.assemble(clean, [day], sample=full.height, seed=1, cohort=settings.cohort).equals(full)


def test_labels_and_cohort_for_some_people_are_their_rows_of_the_full_date(alt_world):
    """A sampled training date labels and judges the cohort rules only for the people drawn: each of them must
    get exactly the row the whole date gives them. The people chosen include every outcome and every exclusion
    reason present, so a restriction that lost someone's own records would show."""
    from expectations.cohort import REASON_COLUMN, cohort_at

    _, clean, settings, result = alt_world
    day = result.train_dates[0]
    labels = build_labels(clean, day)
    cohort = cohort_at(clean, day, settings.cohort)
    # Half of the people, plus every excluded person and everyone with an outcome (the events the restriction
    # must keep), in no particular order.
    interesting = pl.concat([
        cohort.filter(pl.col(REASON_COLUMN).is_not_null()).get_column("person_id"),
        labels.filter(pl.col("crisis")).get_column("person_id"),
        labels.get_column("person_id").sample(fraction=0.5, seed=2),
    ]).unique().shuffle(seed=9)
    assert cohort.get_column(REASON_COLUMN).drop_nulls().n_unique() >= 2
    for target in ("emergency_admission", "care_escalation", "crisis"):
        assert labels.filter(pl.col("person_id").is_in(interesting.implode()))[target].sum() > 0, target
    assert interesting.len() < labels.height
    expected_labels = labels.filter(pl.col("person_id").is_in(interesting.implode()))
    assert build_labels(clean, day, people=interesting).equals(expected_labels)
    expected_cohort = cohort.filter(pl.col("person_id").is_in(interesting.implode()))
    assert cohort_at(clean, day, settings.cohort, people=interesting).equals(expected_cohort)
