"""Publishing a stored run: the week's lists (cohort, sections, words, offers), their files, and the
atomic swap that makes them what teams see (``score_history.publish_week``)."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from pipelines.champion import explainer_or_none
from pipelines.delivery import opted_out_people
from pipelines.lists import attach_details, build_lists, funnel_rows, list_sizes, offer_demand
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
from pipelines.weeks import clean_dir_of, lists_dir, week_features
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


def publish_run(run: ScoreRun, settings: Settings, before_commit: Callable[[], None] | None = None) -> PublishedLists:
    """Build the week's lists (cohort, sections, words, offers), export them and publish atomically.

    Order: list files are staged, then the DB transaction publishes (lists, funnel, removal of opted-out
    people from every stored week), then the staged files take the week's place. Any failure before the
    commit leaves the DB and the files of the last good run.
    """
    from expectations.cohort import cohort_at
    from pipelines.lists import commit_exports, stage_exports
    from pipelines.what_changed import what_changed
    from upstream.offers import load_catalogue

    catalogue = load_catalogue(settings)  # a broken council catalogue fails before anything is written
    engine = get_engine(settings.db_url)
    clean_dir = clean_dir_of(settings, run.index_date)
    cohort = cohort_at(clean_dir, run.index_date, settings.cohort)
    current = load_scores_for_lists(engine, run.run_id)
    last = previous_published(engine, run.index_date, run.week)
    comparison = comparison_published(engine, run.index_date, run.week, settings.lists.rise_lookback_weeks)
    lists = build_lists(
        current,
        settings.lists,
        cohort,
        index_date=run.index_date,
        comparison_scores=load_run_scores(engine, comparison.run_id, history_store(settings)) if comparison else None,
        comparison_date=comparison.index_date if comparison else None,
        previous_list=load_run_list_members(engine, last.run_id) if last else None,
    )
    features_now = week_features(settings, run.index_date)
    offers = catalogue.match(features_now.join(lists.select("person_id"), on="person_id", how="semi")) \
        if features_now is not None else None
    changes: dict[str, str] = {}
    if features_now is not None:
        explainer = explainer_or_none(settings)
        for section, against in (("new", last), ("rising", comparison)):
            people = lists.filter(pl.col("section") == section).select("person_id")
            if against is None or people.height == 0:
                continue
            # New people who could not be listed last week (in hospital, in reablement...): what ended that is
            # the change in their own situation. The cohort at C from this week's delivery (history before C).
            excluded_before = None
            if section == "new":
                before = cohort_at(clean_dir, against.index_date, settings.cohort).join(people, on="person_id")
                excluded_before = dict(before.filter(pl.col("exclusion_reason").is_not_null())
                                       .select("person_id", "exclusion_reason").iter_rows())
            changes.update(what_changed(features_now, week_features(settings, against.index_date), people,
                                        clean_dir, run.index_date, against.index_date, explainer,
                                        excluded_before))
    lists = attach_details(
        lists, settings.lists, reasons=load_reasons(engine, run.run_id, lists["person_id"].to_list()),
        offers=offers, changes=changes, catalogue=catalogue,
    )
    localities = sorted(current["locality"].unique().to_list())
    funnel = funnel_rows(cohort, settings.cohort, localities)
    week_dir = lists_dir(settings, run.week)
    offer_places = offer_demand(lists, catalogue, localities)
    staging = stage_exports(lists, week_dir, localities, funnel, offer_places)
    opted_out = opted_out_people(clean_dir)
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
