"""Training with temporal validation, two calibrated models, baselines, fairness audit and the gate.

The flow of one ``upstream train`` run:

1. pick dates from the data (``choose_method_dates``): the test index date is the latest (Monday) whose
   12-month outcome window is fully observed; the validation date is a year earlier (its outcome window
   ends at the test date); fitting dates are earlier still (their outcome windows end by the validation
   date), and every training date has the full history the features look back over
   (``features.registry.required_history_days``), so training sees what scoring sees;
2. features at each date (``features.build.build_features``, strictly before T) joined to labels after T;
3. fit a standardised logistic regression and a HistGradientBoosting model on the fitting dates, each
   Platt (sigmoid) calibrated on a 20% person-level hold-out of the training rows;
4. choose between them on the validation date: the better AUROC among the candidates whose calibration-in-the-
   large (overall and by age band, the gate's own check) holds there, then refit the chosen kind on the fitting
   dates plus the validation date (the most recent year the data allows);
5. evaluate it and four one-feature baselines on the test date, which is used only for the reported
   metrics and the gate; audit fairness;
6. log everything to MLflow, register ``upstream-<target>``, apply the promotion gate, write the card.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import polars as pl
from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from expectations.cohort import Clean, CleanRead, has_clean_source, scan_clean
from features.registry import MODEL_FEATURES
from models.bundle import FeatureEncoder, UpstreamModel
from models.fairness import fairness_audit
from models.gate import calibration_in_the_large
from models.impute import MedianImputer
from models.labels import (
    EVENT_DATE_COLUMNS,
    FORWARD_SOURCES,
    OUTCOME_WINDOW,
    build_labels,
    data_end,
    data_start,
    eligible_people,
)
from models.metrics import auroc, calibration_slope_intercept, evaluate
from models.params import CALIBRATION, HGB_PARAMS, LR_PARAMS
from models.tracking import TrainingData, TrainingRecord, log_and_register
from upstream.errors import UpstreamError
from upstream.settings import CohortSettings, Settings
from upstream.targets import TARGETS, check_target

log = logging.getLogger(__name__)
_A, _B, _R = TypeVar("_A"), TypeVar("_B"), TypeVar("_R")

#: Columns of the feature table that identify a row rather than describe a person.
ID_COLUMNS = ("person_id", "index_date")
#: Simple one-feature baselines (issue 5 item 3): name -> feature column.
BASELINES = {
    "age_only": "age",
    "efi_only": "efi",
    "hfrs_only": "hfrs",
    "prior_emergency_admissions": "emergency_admissions_12m",
}
MAX_TRAIN_DATES = 4
TRAIN_DATE_STEP = timedelta(days=91)


@dataclass
class TrainResult:
    """What one training run produced; the MLflow run holds the full detail."""

    target: str
    run_id: str
    model_name: str
    version: str
    alias: str
    gate_reasons: list[str]
    chosen: str
    metrics: dict[str, float]
    candidates: dict[str, dict[str, float]]
    baselines: dict[str, dict[str, float]]
    fairness: pl.DataFrame
    train_dates: list[date]
    test_date: date
    n_train: int
    n_test: int
    seconds: float
    timings: dict[str, float] = field(default_factory=dict)


def _monday_on_or_before(day: date) -> date:
    return day - timedelta(days=day.weekday())


def choose_dates(
    clean_dir: Path,
    index_date: date,
    train_dates: list[date] | None = None,
    test_date: date | None = None,
) -> tuple[list[date], date]:
    """Test date = latest Monday whose outcome window ends by both the data end and ``index_date``.

    Training dates step back a quarter at a time from ``test - 365 days`` (their outcome windows end by the
    test date) while at least 12 months of history precede them; at least one is always used.
    """
    observed_until = min(data_end(clean_dir) + timedelta(days=1), index_date)  # exclusive
    if test_date is None:
        test_date = _monday_on_or_before(observed_until - OUTCOME_WINDOW)
    elif test_date + OUTCOME_WINDOW > observed_until:
        raise UpstreamError(
            f"test date {test_date} has no complete 12-month outcome window before {observed_until}"
        )
    if train_dates is None:
        first_data = data_start(clean_dir)
        latest = test_date - OUTCOME_WINDOW
        if latest <= first_data:
            raise UpstreamError(
                f"not enough history: data start {first_data}, but training needs an index date before "
                f"{latest} with a full outcome window before the test date {test_date}"
            )
        train_dates = [latest]
        while len(train_dates) < MAX_TRAIN_DATES:
            candidate = train_dates[-1] - TRAIN_DATE_STEP
            if candidate - OUTCOME_WINDOW < first_data:
                break
            train_dates.append(candidate)
        if latest - OUTCOME_WINDOW < first_data:
            log.warning("training date %s has less than 12 months of history before it", latest)
    bad = [d for d in train_dates if d + OUTCOME_WINDOW > test_date]
    if bad:
        raise UpstreamError(f"training dates {bad} have outcome windows overlapping the test date {test_date}")
    return sorted(train_dates), test_date


@dataclass(frozen=True)
class MethodDates:
    """Index dates of one training run (see the module docstring for why each is where it is)."""

    fit: list[date]
    validation: date
    test: date
    history_days: int

    @property
    def train(self) -> list[date]:
        """Dates the final model is trained on: the fitting dates and the validation date."""
        return sorted([*self.fit, self.validation])


def default_history_days(settings: Settings | None = None) -> int:
    """History needed before a training date: the setting, else the registry's longest model-input window."""
    if settings is not None and settings.train.min_history_days is not None:
        return settings.train.min_history_days
    from features.registry import required_history_days

    return required_history_days()


def choose_method_dates(clean_dir: Path, index_date: date, history_days: int,
                        test_date: date | None = None) -> MethodDates:
    """Test, validation and fitting dates, each with a full outcome window and ``history_days`` of history.

    Fitting dates step back a quarter at a time from ``validation - 365 days`` (at most ``MAX_TRAIN_DATES``).
    A delivery too short for this is refused with the exact span it would need, rather than silently
    training on dates whose features are truncated.
    """
    _, test_date = choose_dates(clean_dir, index_date, train_dates=[date.min], test_date=test_date)
    first_data = data_start(clean_dir)
    validation = test_date - OUTCOME_WINDOW
    fit: list[date] = []
    candidate = validation - OUTCOME_WINDOW
    while len(fit) < MAX_TRAIN_DATES and candidate - timedelta(days=history_days) >= first_data:
        fit.append(candidate)
        candidate -= TRAIN_DATE_STEP
    if not fit:
        needed = validation - OUTCOME_WINDOW - timedelta(days=history_days)
        span_years = ((test_date + OUTCOME_WINDOW) - needed).days / 365
        raise UpstreamError(
            f"not enough history to train soundly: the data start {first_data}, but a training date needs "
            f"{history_days} days of history (the longest feature window) and its outcome year must end before "
            f"the validation date {validation}, whose year ends before the test date {test_date}: data from "
            f"{needed} or earlier are needed (about {span_years:.1f} years in all). Generate a longer delivery "
            f"(`upstream synth --years 6`), or set UPSTREAM_TRAIN__MIN_HISTORY_DAYS knowingly."
        )
    return MethodDates(fit=sorted(fit), validation=validation, test=test_date, history_days=history_days)


def model_feature_names(frame: pl.DataFrame) -> list[str]:
    """Model inputs from the feature registry, in its order; for frames without a registry, every
    numeric or boolean column except identifiers."""
    names = [n for n in MODEL_FEATURES if n in frame.columns]
    if names:
        return names
    return [
        n for n, t in frame.schema.items()
        if n not in ID_COLUMNS and n not in TARGETS and (t.is_numeric() or t == pl.Boolean)
    ]


#: First guess of the share of a date's living, registered people who are in the list cohort (about 0.79 in the
#: county worlds: adults not already known to services). It only sizes the first draw; a short draw is topped up.
COHORT_SHARE_GUESS = 0.7
#: Extra people judged in each slice of the draw, so a small date rarely needs a second slice.
DRAW_SLACK = 1000


def draw_order(clean_dir: Clean, day: date, seed: int) -> pl.Series:
    """The living, registered people at ``day`` in a seeded random order (the draw of :func:`draw_from_cohort`)."""
    return (eligible_people(clean_dir, day).select("person_id").collect().get_column("person_id").sort()
            .sample(fraction=1.0, shuffle=True, seed=seed))


def _slice_size(wanted: int, share: float) -> int:
    """How many people of the order to judge for ``wanted`` more cohort members, at a cohort share ``share``."""
    return int(wanted / share * 1.05) + DRAW_SLACK


def draw_from_cohort(clean_dir: Clean, day: date, n: int, seed: int, cohort: CohortSettings | None,
                     order: pl.Series | None = None) -> pl.Series | None:
    """``n`` people drawn uniformly from the list cohort at ``day`` (all living, registered people without
    ``cohort``), in the order drawn; None when there are no more than ``n`` of them (the date is used whole).

    Why not draw from the whole cohort's table: at county scale a training date samples 200k of about 1.5M, and
    judging the cohort rules for everyone only to keep 13% of them was wasted work. The living, registered
    people (two small files) are put in a seeded random order and the cohort is judged for a leading slice of
    that order only, topped up until ``n`` are in it: the first ``n`` cohort members of a uniform random
    order are a uniform random sample of the cohort. ``order`` is :func:`draw_order`'s, when already made.
    """
    from expectations.cohort import cohort_at, in_cohort

    order = draw_order(clean_dir, day, seed) if order is None else order
    if order.len() <= n:
        return None
    if cohort is None:
        return order.head(n)
    kept: list[pl.Series] = []
    have, start, share = 0, 0, COHORT_SHARE_GUESS
    while have < n and start < order.len():
        size = min(order.len() - start, _slice_size(n - have, share))
        chunk = order.slice(start, size)
        listable = in_cohort(cohort_at(clean_dir, day, cohort, people=chunk)).get_column("person_id")
        chunk = chunk.filter(chunk.is_in(listable.implode()))
        kept.append(chunk)
        have, start, share = have + chunk.len(), start + size, max(chunk.len() / size, 0.01)
    if have <= n:  # the whole order was needed: the cohort is no larger than the sample
        return None
    return pl.concat(kept).head(n)


def training_events(frame: pl.DataFrame, target: str) -> int:
    """People with an event in training rows: the sample size behind the model's level (models.gate's O/E
    interval). People, not rows: one person's overlapping outcome windows on nearby dates are one event."""
    events = frame.filter(pl.col(target).cast(pl.Boolean))
    return events.get_column("person_id").n_unique() if "person_id" in events.columns else events.height


#: Sources read whole by :func:`read_for_dates`: a household is other people, so household size and bereavement
#: read everyone's addresses and deaths, and the draw's order reads everyone's registration.
WHOLE_SOURCES = ("residents", "deaths", "addresses", "opt_outs")


def read_for_dates(clean_dir: Path, dates: list[date], people: pl.Series | None,
                   whole: CleanRead | None = None) -> CleanRead:
    """Every clean source read once for builds at ``dates`` (cohort, labels, features) of ``people`` only.

    The event sources keep only ``people``'s records (every feature, label and cohort rule of a person reads that
    person's own events) dated before the last date, or before the end of its outcome window for the sources the
    labels read forward (``models.labels.FORWARD_SOURCES``): no build at these dates reads a later record. The
    filters run in the scan, so the rows dropped are never held. The sources in :data:`WHOLE_SOURCES` are read
    whole (or taken from ``whole``, a read of them alone: ``read_for_dates(clean_dir, dates, None)`` with no
    event source is ``read_whole``). A build for someone outside ``people`` reads the files
    (``expectations.cohort.clean_for``)."""
    from expectations.cohort import of_people

    last = max(dates)
    scans = {}
    for source in (s for s in EVENT_DATE_COLUMNS if s not in WHOLE_SOURCES):
        if not has_clean_source(clean_dir, source):
            continue  # the readers treat it as they would without this read (empty, or an error)
        until = last + OUTCOME_WINDOW if source in FORWARD_SOURCES else last
        scans[source] = of_people(scan_clean(clean_dir, source).filter(pl.col(EVENT_DATE_COLUMNS[source]) < until),
                                  people)
    whole = read_whole(clean_dir) if whole is None else whole
    frames = dict(zip(scans, pl.collect_all(list(scans.values())), strict=True))
    return CleanRead(Path(clean_dir), whole.frames | frames, people)


def read_whole(clean_dir: Path) -> CleanRead:
    """The sources of :data:`WHOLE_SOURCES` read into memory (everyone's records); the event sources are still
    read from the files."""
    from features.build import with_address_periods

    present = [s for s in WHOLE_SOURCES if has_clean_source(clean_dir, s)]
    collected = pl.collect_all([scan_clean(clean_dir, s) for s in present])
    return with_address_periods(CleanRead(Path(clean_dir), dict(zip(present, collected, strict=True)), None))


def _sampled_dates(clean_dir: Path, dates: list[date], sample: int, seed: int,
                   cohort: CohortSettings | None, whole: CleanRead) -> list[pl.DataFrame]:
    """:func:`assemble`'s sampled dates, from one read of the files (:func:`read_for_dates`).

    The people read are the first slice of each date's draw (all the draw usually judges, and a superset of the
    people drawn); a date whose draw needs a top-up judges and builds its extra people from the files."""
    orders = [draw_order(whole, day, seed + i) for i, day in enumerate(dates)]
    first_slices = [order.head(_slice_size(sample, COHORT_SHARE_GUESS) if cohort is not None else sample)
                    for order in orders]
    data = read_for_dates(clean_dir, dates, pl.concat(first_slices).unique(), whole)
    frames = []
    for i, day in enumerate(dates):
        drawn = draw_from_cohort(data, day, sample, seed + i, cohort, order=orders[i])
        frames.append(_date_rows(data, day, drawn, cohort))
    return frames


def _date_rows(clean: Clean, day: date, drawn: pl.Series | None, cohort: CohortSettings | None) -> pl.DataFrame:
    """Feature rows joined to label rows at ``day``: the whole date's list cohort when ``drawn`` is None, else the
    people drawn, in the order drawn."""
    from features.build import build_features

    if drawn is None:
        labels = build_labels(clean, day)
        if cohort is not None:
            from expectations.cohort import cohort_at, in_cohort

            labels = labels.join(in_cohort(cohort_at(clean, day, cohort)).select("person_id"),
                                 on="person_id", how="semi")
        features = build_features(clean, day)
        return features.join(labels, on="person_id", how="inner", maintain_order="left")
    labels = pl.DataFrame({"person_id": drawn}).join(build_labels(clean, day, people=drawn), on="person_id",
                                                     how="inner", maintain_order="left")
    features = build_features(clean, day, people=drawn)
    frame = labels.join(features, on="person_id", how="inner", maintain_order="left")
    return frame.select(*features.columns, pl.exclude(features.columns))


def assemble(clean_dir: Path, dates: list[date], *, sample: int | None = None, seed: int = 0,
             cohort: CohortSettings | None = None) -> pl.DataFrame:
    """Feature rows (before T) joined to label rows (after T) for each date; optional per-date sample.

    With ``cohort``, only the people the weekly list may show at T (``expectations.cohort``: adults by
    default, not in hospital, a care home or already known to services): the model is trained and tested
    on the population it will rank, so the gate judges it there.

    A sampled date draws its people first (:func:`draw_from_cohort`) and builds the cohort, labels and
    features only for them: each drawn person's row is exactly their row in the whole date's table. Rows come
    in the order drawn, so the same seed gives the same rows in the same order (HGB's early-stopping split
    depends on row order). The sampled dates are built from one read of the files (:func:`_sampled_dates`).
    """
    return pl.concat(assemble_dates(clean_dir, dates, sample=sample, seed=seed, cohort=cohort), how="vertical_relaxed")


def assemble_dates(clean_dir: Path, dates: list[date], *, sample: int | None = None, seed: int = 0,
                   cohort: CohortSettings | None = None, whole: CleanRead | None = None) -> list[pl.DataFrame]:
    """:func:`assemble`'s rows, one frame per date. ``whole`` (:func:`read_whole`) lets several calls share one
    read of the whole-population sources; a whole date streams its events from the files."""
    whole = read_whole(clean_dir) if whole is None else whole
    if sample is None:
        return [_date_rows(whole, day, None, cohort) for day in dates]
    return _sampled_dates(clean_dir, dates, sample, seed, cohort, whole)


def _frame_fingerprint(frame: pl.DataFrame) -> str:
    digest = int(frame.hash_rows(seed=0).cast(pl.UInt64).sum() or 0) & (2**64 - 1)
    return f"{digest:016x}-{frame.height}"


def files_fingerprint(clean_dir: Path) -> dict[str, str]:
    """SHA-256 (first 16 hex) of every clean file: which exact delivery trained this model."""
    out = {}
    for path in sorted(Path(clean_dir).glob("*.parquet")):
        h = hashlib.sha256()
        with path.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
        out[path.name] = h.hexdigest()[:16]
    return out


def _logistic(seed: int) -> Pipeline:
    return Pipeline([
        ("impute", MedianImputer(strategy="median", add_indicator=True, keep_empty_features=True)),
        ("scale", StandardScaler()),
        ("model", LogisticRegression(random_state=seed, **LR_PARAMS)),
    ])


def _hgb(seed: int) -> HistGradientBoostingClassifier:
    return HistGradientBoostingClassifier(random_state=seed, **HGB_PARAMS)


def calibration_holdout(train: pl.DataFrame, fraction: float, seed: int) -> np.ndarray:
    """Rows whose *person* falls in the calibration hold-out (a person is never on both sides)."""
    if "person_id" in train.columns:
        bucket = train.get_column("person_id").hash(seed).to_numpy() % 10_000
    else:
        bucket = np.random.default_rng(seed).integers(0, 10_000, train.height)
    return bucket < int(fraction * 10_000)


def anchor_in_the_large(calibrated: CalibratedClassifierCV, x: np.ndarray, y: np.ndarray) -> float:
    """Shift the Platt intercept so the mean prediction over all training rows equals their event rate; returns
    the shift (log-odds added to every prediction).

    Why: the hold-out sets both Platt parameters, and a 20% person-level hold-out's event rate strays from all
    rows' by chance: at 6,000 residents by SD 7% (0.86-1.16 over 40 hold-out seeds), so a first model
    over-predicted by 7-9% on the very dates it was fitted on and failed the gate's observed/expected
    (bench/README.md, issue 12 session 7). The slope still comes from the hold-out (it needs scores the base
    model did not see); the level is one number, which every training row estimates better. A sigmoid
    calibrator predicts expit(-(a f + b)), so lowering b by d adds d to every log-odds, ranking unchanged.
    """
    p = np.clip(calibrated.predict_proba(x)[:, 1], 1e-12, 1 - 1e-12)
    z, target, shift = np.log(p / (1 - p)), float(y.mean()), 0.0
    for _ in range(50):  # Newton on mean(expit(z + shift)) = target: monotone, converges in a few steps
        q = 1 / (1 + np.exp(-(z + shift)))
        gap, slope = float(q.mean()) - target, float((q * (1 - q)).mean())
        if abs(gap) < 1e-12 or slope == 0:
            break
        shift -= gap / slope
    for member in calibrated.calibrated_classifiers_:
        for calibrator in member.calibrators:
            calibrator.b_ = calibrator.b_ - shift
    return shift


CANDIDATE_KINDS = ("logistic", "hgb")


def fit_candidates(train: pl.DataFrame, features: list[str], target: str, seed: int = 0,
                   kinds: tuple[str, ...] = CANDIDATE_KINDS) -> dict[str, UpstreamModel]:
    """Both models on the same encoded training matrix, each Platt-calibrated on a person-level hold-out, its
    level then anchored on all training rows (:func:`anchor_in_the_large`).

    Why a hold-out rather than k-fold cross-fitting: it needs one fit per model instead of k + 1, which is
    what keeps training on 280k residents inside the 5-minute budget on two cores. 20% of a population is
    plenty for Platt's slope; its level, which a small population's hold-out sets partly by chance, is
    anchored on every training row instead.
    """
    encoder = FeatureEncoder.fit(train, features)
    x = encoder.transform(train)
    y = train.get_column(target).cast(pl.Int8).to_numpy()
    if y.min() == y.max():
        raise UpstreamError(f"training data has only one outcome class for {target}: cannot train")
    calib = calibration_holdout(train, CALIBRATION["holdout_fraction"], seed)
    if y[calib].min() == y[calib].max() or y[~calib].min() == y[~calib].max():
        raise UpstreamError(f"too few {target} events to train and calibrate: need events on both sides")
    with np.errstate(all="ignore"):
        reference = np.nanmedian(x, axis=0)
    reference = np.where(np.isnan(reference), 0.0, reference)
    models = {}
    for kind, make in (("logistic", _logistic), ("hgb", _hgb)):
        if kind not in kinds:
            continue
        started = time.perf_counter()
        base = make(seed).fit(x[~calib], y[~calib])
        estimator = CalibratedClassifierCV(FrozenEstimator(base), method=CALIBRATION["method"]).fit(
            x[calib], y[calib])
        shift = anchor_in_the_large(estimator, x, y)
        models[kind] = UpstreamModel(
            kind=kind, target=target, encoder=encoder, estimator=estimator, reference=reference,
            training={"fit_seconds": time.perf_counter() - started, "rows": len(y), "event_rate": float(y.mean()),
                      "calibration_shift": shift},
        )
    return models


def fit_baselines(train: pl.DataFrame, test: pl.DataFrame, target: str) -> dict[str, np.ndarray]:
    """One-feature logistic models fitted on training data, so their calibration can be compared too."""
    y = train.get_column(target).cast(pl.Int8).to_numpy()
    out = {}
    for name, column in BASELINES.items():
        if column not in train.columns or column not in test.columns:
            continue
        pipe = Pipeline([("impute", MedianImputer(strategy="median", keep_empty_features=True)),
                         ("model", LogisticRegression())])
        pipe.fit(train.select(pl.col(column).cast(pl.Float64)).to_numpy(), y)
        out[name] = pipe.predict_proba(test.select(pl.col(column).cast(pl.Float64)).to_numpy())[:, 1]
    return out


def candidate_test_rows(n_test: int, limit: int | None, seed: int) -> np.ndarray | None:
    """Sorted row positions of a fixed random sample of ``limit`` test rows (same seed, same rows), or None
    when every row is to be used."""
    if limit is None or n_test <= limit:
        return None
    return np.sort(np.random.default_rng([seed, 20_151]).choice(n_test, size=limit, replace=False))


def choose_candidate(validation_metrics: dict[str, dict[str, float]]) -> str:
    """The candidate with the best validation AUROC among those whose calibration-in-the-large held on the
    validation date (``calibration_misfits == 0``); if none held, the best AUROC (the gate will say why)."""
    calibrated = [k for k, m in validation_metrics.items() if m["calibration_misfits"] == 0] or list(validation_metrics)
    return max(calibrated, key=lambda k: validation_metrics[k]["auroc"])


def fit_threads(setting: int | None) -> int:
    """OpenMP threads for gradient boosting: the setting, else the cores idle now (this process counts as one
    of the 1-minute load average, since it is about to run).

    Why: HistGradientBoosting synchronises its OpenMP threads many times per tree; with more runnable threads
    than free cores each synchronisation waits for a descheduled thread, so on a busy machine two threads cost
    7-20x the CPU of one (bench/README, issue 15 session 5), while on an idle 2-core machine two threads should
    fit up to twice as fast. The thread count never changes the model (the histograms are summed per feature,
    not split across threads; checked bit for bit in tests/models/test_train_registry.py).
    """
    if setting is not None:
        return setting
    cores = os.cpu_count() or 1
    idle = cores - os.getloadavg()[0] + 1
    return max(1, min(cores, int(idle)))


def side_by_side(first: Callable[[], _A], second: Callable[[], _B]) -> tuple[_A, _B]:
    """``first()`` and ``second()``, two independent pieces of work, on two threads (on one with a single core).

    Why: after the fits, the training step's evaluation (the chosen model's predictions, bootstrap and fairness
    audit; the losing candidate's and the baselines' figures for the record) ran on one core while the other
    was idle. Each piece is a pure function of its inputs (seeded bootstraps), so running them side by side
    changes no figure (tests/models/test_train_registry.py). Each thread runs OpenMP code (gradient boosting's
    predictions) on one thread: two OpenMP teams on two busy cores would wait for each other (bench/README,
    issue 15 session 5). Most of this work is numpy and polars, which release the GIL."""
    if (os.cpu_count() or 1) < 2:
        return first(), second()

    def one_openmp_thread(work: Callable[[], _R]) -> _R:
        with threadpool_limits(limits=1, user_api="openmp"):
            return work()

    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="train-eval") as pool:
        a, b = pool.submit(one_openmp_thread, first), pool.submit(one_openmp_thread, second)
        return a.result(), b.result()


def train_on_frames(
    train: pl.DataFrame,
    test: pl.DataFrame,
    target: str,
    settings: Settings,
    *,
    features: list[str] | None = None,
    context: dict[str, Any] | None = None,
    seed: int = 0,
    n_boot: int = 200,
    validation: pl.DataFrame | None = None,
) -> TrainResult:
    """Everything after data assembly: fit, choose, evaluate, audit, log, register, gate, card.

    Split out so it can be run on any labelled feature frames (hand-made in tests, or assembled from a
    delivery by :func:`train_and_register`). Candidates are fitted on ``train`` and compared on
    ``validation``; the chosen kind is refitted on both. Without a validation frame, a 20% person-level
    split of ``train`` (not the calibration hold-out's people) stands in for it. ``test`` is never used
    to choose.
    """

    check_target(target, UpstreamError)
    threads = fit_threads(settings.train.fit_threads)
    log.info("gradient boosting with %d OpenMP thread(s)", threads)
    with threadpool_limits(limits=threads, user_api="openmp"):
        return _train_on_frames(train, test, target, settings, features=features, context=context, seed=seed,
                                n_boot=n_boot, validation=validation, threads=threads)


def _train_on_frames(train: pl.DataFrame, test: pl.DataFrame, target: str, settings: Settings, *,
                     features: list[str] | None, context: dict[str, Any] | None, seed: int, n_boot: int,
                     validation: pl.DataFrame | None, threads: int) -> TrainResult:
    started = time.perf_counter()
    context = dict(context or {})
    features = features or model_feature_names(train)
    timings: dict[str, float] = {"hgb_threads": float(threads)}  # logged with the timings: they depend on it

    t = time.perf_counter()
    if validation is None:
        held = calibration_holdout(train, 0.2, seed + 7919)
        fit_frame, validation = train.filter(pl.Series(~held)), train.filter(pl.Series(held))
        final_frame = train
    else:
        fit_frame, final_frame = train, pl.concat([train, validation], how="vertical_relaxed")
    candidates = fit_candidates(fit_frame, features, target, seed=seed)
    y_val = validation.get_column(target).to_numpy().astype(bool)
    validation_metrics = {}
    age_column = [c for c in ("age",) if c in validation.columns]
    fit_events = training_events(fit_frame, target)
    for kind, m in candidates.items():
        p_val = m.predict_proba(validation)
        # The gate judges calibration-in-the-large overall and by age band: a candidate that already fails it on
        # the validation date would be refused, so it is chosen only if every candidate fails it. Only those rows
        # are needed, so only the age column is audited (the other dimensions' AUROCs were computed for nothing).
        misfits = calibration_in_the_large(fairness_audit(validation.select(age_column), y_val, p_val), settings.gate,
                                           fit_events)
        validation_metrics[kind] = {"auroc": auroc(y_val, p_val),
                                    "calibration_slope": calibration_slope_intercept(y_val, p_val)[0],
                                    "calibration_misfits": float(len(misfits))}
    chosen = choose_candidate(validation_metrics)
    final = fit_candidates(final_frame, features, target, seed=seed, kinds=(chosen,))[chosen]
    timings["fit_seconds"] = time.perf_counter() - t

    t = time.perf_counter()
    y_test = test.get_column(target).to_numpy().astype(bool)
    # The losing candidates' test rows are for the record (the card's comparison table); they chose nothing, so
    # at county scale they are scored on a fixed random sample of the test date (HGB on 1.32M rows was most of
    # the 25 CPU s of predictions at 1.9M), and the chosen kind's fitting-date candidate is not scored at all
    # (the refit replaced it).
    record_rows = candidate_test_rows(test.height, settings.train.candidate_test_rows, seed)
    record_frame = test if record_rows is None else test[record_rows]
    y_record = y_test if record_rows is None else y_test[record_rows]
    losers = [kind for kind in candidates if kind != chosen]

    def chosen_on_test() -> tuple[np.ndarray, dict[str, float], pl.DataFrame]:
        p = final.predict_proba(test)
        return p, evaluate(y_test, p, n_boot=n_boot, seed=seed), fairness_audit(test, y_test, p)

    def for_the_record() -> tuple[dict[str, np.ndarray], dict[str, dict[str, float]], dict[str, np.ndarray],
                                  dict[str, dict[str, float]]]:
        loser_p = {kind: candidates[kind].predict_proba(record_frame) for kind in losers}
        loser_m = {kind: evaluate(y_record, p, n_boot=n_boot, seed=seed) for kind, p in loser_p.items()}
        baseline_p = fit_baselines(final_frame, test, target)
        baseline_m = {name: evaluate(y_test, p, n_boot=max(n_boot // 2, 50), seed=seed)
                      for name, p in baseline_p.items()}
        return loser_p, loser_m, baseline_p, baseline_m

    (p_chosen, chosen_metrics, fairness), (loser_p, loser_m, baseline_predictions, baseline_metrics) = side_by_side(
        chosen_on_test, for_the_record)
    predictions = {chosen: p_chosen, **loser_p}
    prediction_rows = {kind: record_rows for kind in losers if record_rows is not None}
    candidate_metrics = {kind: chosen_metrics if kind == chosen else loser_m[kind] for kind in candidates}
    for kind, m in validation_metrics.items():
        candidate_metrics[kind] |= {f"validation_{k}": v for k, v in m.items()}
    metrics = {f"test_{k}": v for k, v in candidate_metrics[chosen].items() if not k.startswith("validation_")}
    metrics["validation_auroc"] = validation_metrics[chosen]["auroc"]
    metrics["train_events"] = float(training_events(final_frame, target))  # the gate's O/E interval needs it
    timings["evaluate_seconds"] = time.perf_counter() - t
    train = final_frame

    data = TrainingData(
        features=features,
        n_train=train.height,
        n_test=test.height,
        train_event_rate=float(train.get_column(target).cast(pl.Float64).mean()),
        test_event_rate=float(y_test.mean()),
        train_fingerprint=_frame_fingerprint(train.select([*features, target])),
        test_fingerprint=_frame_fingerprint(test.select([*features, target])),
        seed=seed,
        train_dates=list(context.get("train_dates", [])),
        test_date=context.get("test_date"),
        index_date=context.get("index_date"),
        sample=context.get("sample"),
        clean_dir=context.get("clean_dir"),
        data_files=context.get("data_files", {}),
        fit_dates=list(context.get("fit_dates", [])),
        validation_date=context.get("validation_date"),
        history_days=context.get("history_days"),
        population=context.get("population"),
    )
    t = time.perf_counter()
    outcome = log_and_register(
        settings,
        TrainingRecord(
            target=target,
            chosen=chosen,
            bundle=final,
            example_source=test,
            metrics=metrics,
            candidate_metrics=candidate_metrics,
            baseline_metrics=baseline_metrics,
            fairness=fairness,
            y_test=y_test,
            predictions=predictions | {f"baseline: {n}": p for n, p in baseline_predictions.items() if n == "age_only"},
            prediction_rows=prediction_rows,
            data=data,
            timings=timings,
        ),
    )
    timings["mlflow_seconds"] = time.perf_counter() - t
    return TrainResult(
        target=target,
        run_id=outcome.run_id,
        model_name=outcome.model_name,
        version=outcome.version,
        alias=outcome.alias,
        gate_reasons=outcome.reasons,
        chosen=chosen,
        metrics=metrics,
        candidates=candidate_metrics,
        baselines=baseline_metrics,
        fairness=fairness,
        train_dates=data.train_dates,
        test_date=data.test_date,
        n_train=train.height,
        n_test=test.height,
        seconds=time.perf_counter() - started,
        timings=timings,
    )


def train_and_register(
    clean_dir: Path,
    target: str,
    index_date: date,
    settings: Settings,
    *,
    sample: int | None = None,
    test_date: date | None = None,
    seed: int = 0,
) -> TrainResult:
    """Train on earlier index dates, test on the latest fully observed one, register and gate.

    ``sample`` caps the number of people per training date (the test date is always evaluated in full,
    so the gate sees the population the model will score).
    """
    clean_dir = Path(clean_dir)
    check_target(target, UpstreamError)
    if not (clean_dir / "residents.parquet").exists():
        raise UpstreamError(f"{clean_dir} is not a clean data directory (no residents.parquet); run `upstream ingest`")
    started = time.perf_counter()
    dates = choose_method_dates(clean_dir, index_date, default_history_days(settings), test_date)
    log.info("fitting dates %s, validation date %s, test date %s (history %d days)",
             dates.fit, dates.validation, dates.test, dates.history_days)
    cohort = settings.cohort
    # One read for all dates: the fitting dates and the validation date are drawn together (date i with seed + i,
    # the validation date last), and the test date, whole, shares the read of the whole-population sources.
    whole = read_whole(clean_dir)
    *fit_frames, validation = assemble_dates(clean_dir, [*dates.fit, dates.validation], sample=sample, seed=seed,
                                             cohort=cohort, whole=whole)
    train = pl.concat(fit_frames, how="vertical_relaxed")
    (test,) = assemble_dates(clean_dir, [dates.test], cohort=cohort, whole=whole)
    del whole
    assemble_seconds = time.perf_counter() - started
    context = {
        "train_dates": dates.train,
        "fit_dates": dates.fit,
        "validation_date": dates.validation,
        "history_days": dates.history_days,
        "population": f"list cohort at each date (expectations.cohort, min age {settings.cohort.min_age})",
        "test_date": dates.test,
        "index_date": index_date,
        "clean_dir": str(clean_dir.resolve()),
        "sample": sample,
        "data_files": files_fingerprint(clean_dir),
    }
    result = train_on_frames(train, test, target, settings, context=context, seed=seed, validation=validation)
    result.timings["assemble_seconds"] = assemble_seconds
    result.seconds = time.perf_counter() - started
    return result
