"""Publishing a stored run: the week's lists (cohort, sections, words, offers), their files, and the
atomic swap that makes them what teams see (``score_history.publish_week``)."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import polars as pl

from pipelines.champion import ModelExplainer
from pipelines.explain import reasons_for, run_model
from pipelines.lists import attach_details, build_lists, funnel_rows, list_sizes, locality_file_stem, offer_demand
from pipelines.score_history import (
    PublishedWeek,
    ScoreRun,
    comparison_published,
    history_store,
    load_reasons,
    load_run_list_members,
    load_run_scores,
    load_scores_for_lists,
    previous_published,
    publish_week,
    settle_history,
    stage_history,
)
from pipelines.weeks import clean_dir_of, lists_dir, week_features, week_root
from upstream.settings import Settings
from upstream.store import get_engine


@dataclass(frozen=True)
class PublishedLists:
    week: str
    run_id: str
    replaced_run_id: str | None
    sizes: list[dict[str, Any]]
    files: list[Path]
    funnel: list[dict[str, Any]] = field(default_factory=list)
    offers: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class ListInputs:
    """What building a week's lists reads from the store, read once by the flow process: the run's scores,
    the rise comparison week's scores and last week's list (all localities; split per locality to fan out)."""

    current: pl.DataFrame
    last: PublishedWeek | None
    comparison: PublishedWeek | None
    comparison_scores: pl.DataFrame | None
    previous_list: pl.DataFrame | None

    @property
    def localities(self) -> list[str]:
        """Every scored locality (a locality with nobody listed still gets its funnel and empty files)."""
        return sorted(self.current["locality"].unique().to_list())

    def per_locality(self) -> dict[str, ListInputs]:
        """Each locality's share, split in one pass: its scored people, their rise comparison scores, and
        last week's rows of the locality or of its people (a person listed elsewhere last week, who has
        moved, was still on last week's list)."""
        where = self.current.select("person_id", pl.col("locality").alias("_now"))
        current = self.current.partition_by("locality", as_dict=True)
        comparison = (
            None if self.comparison_scores is None
            else self.comparison_scores.join(where, on="person_id").partition_by("_now", as_dict=True)
        )
        previous = None
        if self.previous_list is not None:
            previous = self.previous_list.join(where, on="person_id", how="left")
        shares: dict[str, ListInputs] = {}
        for (locality,), mine in current.items():
            prev = None if previous is None else previous.filter(
                (pl.col("locality") == locality) | (pl.col("_now") == locality)).drop("_now")
            comp = None
            if comparison is not None:
                found = comparison.get((locality,))
                comp = (found.drop("_now") if found is not None
                        else self.comparison_scores.clear())  # type: ignore[union-attr]
            shares[str(locality)] = ListInputs(mine, self.last, self.comparison, comp, prev)
        return shares


def list_inputs(run: ScoreRun, settings: Settings) -> ListInputs:
    """The store reads of list building (``score_history``), in the process that owns the store."""
    engine = get_engine(settings.db_url)
    last = previous_published(engine, run.index_date, run.week)
    comparison = comparison_published(engine, run.index_date, run.week, settings.lists.rise_lookback_weeks)
    return ListInputs(
        current=load_scores_for_lists(engine, run.run_id, history_store(settings)),
        last=last,
        comparison=comparison,
        comparison_scores=load_run_scores(engine, comparison.run_id, history_store(settings)) if comparison else None,
        previous_list=load_run_list_members(engine, last.run_id) if last else None,
    )


def _features_of(
    settings: Settings, index_date: date, people: pl.DataFrame | None, locality: str | None = None
) -> pl.DataFrame | None:
    """A week's features (``weeks.week_features``), only ``people``'s rows when given; a locality's own
    feature partition when the week was built per locality (no need to read every locality's)."""
    if locality is not None and people is not None:
        own = week_root(settings, index_date) / "features" / f"{locality_file_stem(locality)}.parquet"
        if own.exists():
            return pl.read_parquet(own).join(people, on="person_id", how="semi")
    features = week_features(settings, index_date)
    if features is None or people is None:
        return features
    return features.join(people, on="person_id", how="semi")


def build_week_lists(
    run: ScoreRun, settings: Settings, inputs: ListInputs, clean_dir: Path, *, one_locality: bool = False
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The week's lists with every word filled (cohort, sections, what changed, offers, reasons), and the
    cohort they were drawn from. The whole population, or with ``one_locality`` one locality's share
    (``inputs.of_locality``, ``clean_dir`` that locality's partition): every rule is per locality and per
    person, so the per-locality lists stacked are the whole-population lists. Reads the store only for
    the listed people's reasons: scoring stored none, so the listed people are explained here (``pipelines.explain``)."""
    from expectations.cohort import cohort_at
    from pipelines.what_changed import what_changed
    from upstream.offers import load_catalogue

    catalogue = load_catalogue(settings)
    engine = get_engine(settings.db_url)
    current, last, comparison = inputs.current, inputs.last, inputs.comparison
    cohort = cohort_at(clean_dir, run.index_date, settings.cohort)
    lists = build_lists(
        current,
        settings.lists,
        cohort,
        index_date=run.index_date,
        comparison_scores=inputs.comparison_scores,
        comparison_date=comparison.index_date if comparison else None,
        previous_list=inputs.previous_list,
    )
    scored = current.select("person_id") if one_locality else None
    locality = current["locality"][0] if one_locality and current.height else None
    features_now = _features_of(settings, run.index_date, scored, locality)
    offers = catalogue.match(features_now.join(lists.select("person_id"), on="person_id", how="semi")) \
        if features_now is not None else None
    model = _run_model_or_none(run, settings)
    # The model that scored the run explains the listed people and their changes (not whatever is champion by
    # now), every row they need in one call (``ModelExplainer.prime``).
    explainer = ModelExplainer(model) if hasattr(getattr(model, "bundle", model), "contributions") else None
    changes: dict[str, str] = {}
    if features_now is not None:
        questions = []
        for section, against in (("new", last), ("rising", comparison)):
            people = lists.filter(pl.col("section") == section).select("person_id")
            if against is None or people.height == 0:
                continue
            questions.append((section, against, people, _features_of(settings, against.index_date, scored)))
        if explainer is not None:
            explainer.prime([features_now.join(lists.select("person_id"), on="person_id", how="semi")]
                            + [before.join(people, on="person_id", how="semi")
                               for _, _, people, before in questions if before is not None])
        for section, against, people, features_before in questions:
            # New people who could not be listed last week (in hospital, in reablement...): what ended that is
            # the change in their own situation. The cohort at C from this week's delivery (history before C).
            excluded_before = None
            if section == "new":
                before = cohort_at(clean_dir, against.index_date, settings.cohort).join(people, on="person_id")
                excluded_before = dict(before.filter(pl.col("exclusion_reason").is_not_null())
                                       .select("person_id", "exclusion_reason").iter_rows())
            changes.update(what_changed(features_now, features_before, people, clean_dir, run.index_date,
                                        against.index_date, explainer, excluded_before))
    listed = lists["person_id"].to_list()
    # Scoring explained nobody (pipelines.explain): the listed people are explained here, with the run's model.
    reasons = reasons_for(listed, load_reasons(engine, run.run_id, listed), features_now,
                          explainer if explainer is not None and hasattr(explainer.bundle, "explain_json") else model,
                          settings.lists.top_reasons, run.week)
    lists = attach_details(lists, reasons=reasons, offers=offers, changes=changes, catalogue=catalogue)
    return lists, cohort


def _run_model_or_none(run: ScoreRun, settings: Settings) -> Any:
    """The model version that scored ``run`` (``pipelines.explain.run_model``), or None when the registry has
    no such version (runs written by hand in tests; "what changed" then reads the features alone)."""
    from upstream.errors import UpstreamError

    try:
        return run_model(settings, run.model_name, run.model_version)
    except UpstreamError:
        return None


def publish_run(run: ScoreRun, settings: Settings, before_commit: Callable[[], None] | None = None) -> PublishedLists:
    """Build the week's lists (cohort, sections, words, offers), export them and publish atomically."""
    inputs = list_inputs(run, settings)
    lists, cohort = build_week_lists(run, settings, inputs, clean_dir_of(settings, run.index_date))
    funnel = funnel_rows(cohort, settings.cohort, inputs.localities)
    return publish_lists_built(run, settings, lists, funnel, inputs.localities, inputs.current, before_commit)


def publish_lists_built(
    run: ScoreRun,
    settings: Settings,
    lists: pl.DataFrame,
    funnel: list[dict[str, Any]],
    localities: list[str],
    current: pl.DataFrame,
    before_commit: Callable[[], None] | None = None,
) -> PublishedLists:
    """Export and publish lists already built, with their cohort funnel (``lists.funnel_rows``): the whole
    population's, or stacked from localities built on a cluster. ``current`` is the run's scores as list
    building read them (``list_inputs``), kept for the history store after the commit.

    Order: list files are staged, then the DB transaction publishes (lists, funnel, removal of opted-out
    people from every stored week), then the staged files take the week's place. Any failure before the
    commit leaves the DB and the files of the last good run.
    """
    from expectations.cohort import opted_out_people
    from pipelines.lists import commit_exports, stage_exports
    from upstream.offers import load_catalogue

    catalogue = load_catalogue(settings)  # a broken council catalogue fails before anything is written
    engine = get_engine(settings.db_url)
    opted_out = opted_out_people(clean_dir_of(settings, run.index_date))
    week_dir = lists_dir(settings, run.week)
    offer_places = offer_demand(lists, catalogue, localities)
    staging = stage_exports(lists, week_dir, localities, funnel, offer_places)
    try:
        replaced = publish_week(
            engine,
            week=run.week,
            run_id=run.run_id,
            index_date=run.index_date,
            lists=lists,
            funnel=funnel,
            opted_out=opted_out,
            before_commit=before_commit,
        )
    except BaseException:
        # The run stays "complete" but unpublished, so a retry can publish it; it is cleared when the
        # week is next published.
        shutil.rmtree(staging, ignore_errors=True)
        raise
    files = commit_exports(staging, week_dir)
    # After the commit: weeks past the database's newest few move to the history store. A failure here fails
    # the step (the week is published; the moved-or-not weeks are served as before) and a retry or the next
    # publish finishes the move.
    history = history_store(settings)
    stage_history(history, PublishedWeek(run.week, run.run_id, run.index_date), current, opted_out)
    settle_history(engine, history, settings.retention.database_score_weeks, opted_out)
    return PublishedLists(run.week, run.run_id, replaced, list_sizes(lists, localities), files,
                          [{k: r[k] for k in ("locality", "step", "label", "shown")} for r in funnel],
                          offer_places)
