"""Read-side queries over the operational DB.

Every query reaches ``scores`` and ``risk_lists`` through ``published_weeks``, so rows of a run
that failed or is still being written are never served (ARCHITECTURE: publishing is a pointer swap).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from upstream.store import LIST_ROW_COLUMNS, cohort_funnels, published_weeks, risk_lists, score_runs, scores


@dataclass(frozen=True)
class PublishedWeek:
    week: str
    run_id: str
    index_date: date
    model_name: str | None
    model_version: str | None


def published(conn: Connection, week: str | None = None) -> PublishedWeek | None:
    """The published run for ``week``, or the latest published week when ``week`` is None."""
    query = (
        sa.select(
            published_weeks.c.week,
            published_weeks.c.run_id,
            published_weeks.c.index_date,
            score_runs.c.model_name,
            score_runs.c.model_version,
        )
        .select_from(published_weeks.outerjoin(score_runs, score_runs.c.run_id == published_weeks.c.run_id))
        .order_by(published_weeks.c.week.desc())
        .limit(1)
    )
    if week is not None:
        query = query.where(published_weeks.c.week == week)
    row = conn.execute(query).first()
    return PublishedWeek(**row._mapping) if row else None


def recent_weeks(conn: Connection, up_to: str, n: int) -> list[PublishedWeek]:
    """The ``n`` published weeks ending at ``up_to``, oldest first (for trend charts)."""
    rows = conn.execute(
        sa.select(
            published_weeks.c.week,
            published_weeks.c.run_id,
            published_weeks.c.index_date,
            sa.null().label("model_name"),
            sa.null().label("model_version"),
        )
        .where(published_weeks.c.week <= up_to)
        .order_by(published_weeks.c.week.desc())
        .limit(n)
    ).all()
    return [PublishedWeek(**row._mapping) for row in reversed(rows)]


def localities(conn: Connection, run_id: str) -> list[str]:
    """Localities scored in a published run."""
    rows = conn.execute(
        sa.select(scores.c.locality).where(scores.c.run_id == run_id).distinct().order_by(scores.c.locality)
    ).all()
    return [row.locality for row in rows]


def locality_known(conn: Connection, run_id: str, locality: str) -> bool:
    """Whether the run scored anyone in ``locality`` (an empty list is still a valid answer)."""
    found = conn.execute(
        sa.select(sa.literal(1)).where(scores.c.run_id == run_id, scores.c.locality == locality).limit(1)
    ).first()
    return found is not None


#: A list row's stored columns, as declared once in upstream.store / upstream.list_row (the structured reasons
#: are not part of the shown row; the locality is the caller's).
_LIST_FIELDS = tuple(name for name in LIST_ROW_COLUMNS if name not in ("locality", "reasons"))


@dataclass(frozen=True)
class ListFilter:
    """Cuts a team makes: a section, an offer id, a GP practice (None = all)."""

    section: str | None = None
    offer: str | None = None
    gp_practice: str | None = None


def _list_conditions(run_id: str, week: str, locality: str, cut: ListFilter) -> list:
    conditions = [risk_lists.c.run_id == run_id, risk_lists.c.week == week, risk_lists.c.locality == locality]
    if cut.section:
        conditions.append(risk_lists.c.section == cut.section)
    if cut.gp_practice:
        conditions.append(risk_lists.c.gp_practice == cut.gp_practice)
    if cut.offer:
        # ids are ";"-separated: match whole ids only ("telecare" must not match "telecare_plus")
        padded = sa.literal(";") + risk_lists.c.suggested_offers + sa.literal(";")
        conditions.append(padded.like(f"%;{cut.offer};%"))
    return conditions


def _published_lists():
    return risk_lists.join(
        published_weeks,
        sa.and_(published_weeks.c.run_id == risk_lists.c.run_id, published_weeks.c.week == risk_lists.c.week),
    )


def list_rows(
    conn: Connection,
    run_id: str,
    week: str,
    locality: str,
    limit: int | None = None,
    offset: int = 0,
    cut: ListFilter | None = None,
) -> tuple[list[dict], int]:
    """The published list for one locality and week, in rank order: (one page of rows, total matching).

    ``limit`` None = every row from ``offset``: lists are bounded (capacity plus risers), and a silently
    cut list is the failure this API must never have.
    """
    conditions = _list_conditions(run_id, week, locality, cut or ListFilter())
    total = conn.execute(
        sa.select(sa.func.count()).select_from(_published_lists()).where(*conditions)
    ).scalar_one()
    query = (
        sa.select(*(risk_lists.c[name] for name in _LIST_FIELDS))
        .select_from(_published_lists())
        .where(*conditions)
        .order_by(risk_lists.c.rank)
        .offset(offset)
    )
    if limit is not None:
        query = query.limit(limit)
    rows = [dict(zip(_LIST_FIELDS, row, strict=True)) for row in conn.execute(query).all()]
    return rows, int(total)


def list_facets(conn: Connection, run_id: str, week: str, locality: str) -> dict[str, list[str]]:
    """The GP practices and offers present in a published list (for the web page's filters)."""
    rows = conn.execute(
        sa.select(risk_lists.c.gp_practice, risk_lists.c.suggested_offers)
        .select_from(_published_lists())
        .where(*_list_conditions(run_id, week, locality, ListFilter()))
    ).all()
    practices = sorted({r.gp_practice for r in rows if r.gp_practice})
    offers = sorted({o for r in rows for o in (r.suggested_offers or "").split(";") if o})
    return {"gp_practices": practices, "offers": offers}


def offer_places(conn: Connection, run_id: str, week: str, locality: str, settings: Any) -> list[dict]:
    """Per offer, the weekly places against the people suggested, with a place and waiting, over the WHOLE
    published list (not a filtered page): ``upstream.offers.offer_summary`` (suppressed) of the stored marks.
    Empty when the council's catalogue file cannot be read: the list itself must still be shown."""
    from upstream.errors import UpstreamError
    from upstream.offers import load_catalogue, offer_summary

    try:
        catalogue = load_catalogue(settings)
    except UpstreamError:
        return []

    rows = conn.execute(
        sa.select(risk_lists.c.suggested_offers, risk_lists.c.offers_this_week, risk_lists.c.offers_waiting)
        .select_from(_published_lists())
        .where(*_list_conditions(run_id, week, locality, ListFilter()))
    ).all()
    return offer_summary([dict(r._mapping) for r in rows], catalogue, locality)


def section_counts(conn: Connection, run_id: str, week: str, locality: str, cut: ListFilter) -> dict[str, int]:
    """Rows per section of a published list under a filter (the section part of ``cut`` is ignored)."""
    base = ListFilter(offer=cut.offer, gp_practice=cut.gp_practice)
    rows = conn.execute(
        sa.select(risk_lists.c.section, sa.func.count().label("n"))
        .select_from(_published_lists())
        .where(*_list_conditions(run_id, week, locality, base))
        .group_by(risk_lists.c.section)
    ).all()
    return {row.section: int(row.n) for row in rows}


def cohort_funnel(conn: Connection, run_id: str, week: str, locality: str) -> list[dict]:
    """A published week's (already suppressed) cohort funnel for one locality, in order."""
    rows = conn.execute(
        sa.select(cohort_funnels.c.step, cohort_funnels.c.label, cohort_funnels.c.people)
        .where(cohort_funnels.c.run_id == run_id, cohort_funnels.c.week == week, cohort_funnels.c.locality == locality)
        .order_by(cohort_funnels.c.position)
    ).all()
    return [dict(row._mapping) for row in rows]


def resident_history(conn: Connection, person_id: str) -> list[dict]:
    """A resident's published scores, newest week first."""
    rows = conn.execute(
        sa.select(
            published_weeks.c.week,
            published_weeks.c.index_date,
            scores.c.locality,
            scores.c.score,
            scores.c.band,
            scores.c.reasons,
            scores.c.in_long_term_care,
        )
        .select_from(scores.join(published_weeks, published_weeks.c.run_id == scores.c.run_id))
        .where(scores.c.person_id == person_id)
        .order_by(published_weeks.c.week.desc())
    ).all()
    return [dict(row._mapping) for row in rows]


def band_counts(conn: Connection, run_id: str) -> list[tuple[str, str, int]]:
    """(locality, band, residents) for a published run; suppression is applied by the caller."""
    rows = conn.execute(
        sa.select(scores.c.locality, scores.c.band, sa.func.count().label("n"))
        .where(scores.c.run_id == run_id)
        .group_by(scores.c.locality, scores.c.band)
        .order_by(scores.c.locality, scores.c.band)
    ).all()
    return [(row.locality, row.band, int(row.n)) for row in rows]


def score_histogram(conn: Connection, run_id: str, locality: str, bins: int = 10) -> list[int]:
    """Residents per equal-width score bin in [0, 1], counted in the database."""
    # Thresholds in a CASE, not CAST/FLOOR, so SQLite and PostgreSQL bin identically.
    bin_expr = sa.case(*[(scores.c.score < (i + 1) / bins, i) for i in range(bins - 1)], else_=bins - 1)
    rows = conn.execute(
        sa.select(bin_expr.label("b"), sa.func.count().label("n"))
        .where(scores.c.run_id == run_id, scores.c.locality == locality)
        .group_by(bin_expr)
    ).all()
    counts = [0] * bins
    for row in rows:
        counts[max(0, min(bins - 1, int(row.b)))] += int(row.n)
    return counts


def new_entries(conn: Connection, weeks: list[PublishedWeek], locality: str) -> list[tuple[str, int, int]]:
    """(week, new this week, listed) for each given published week."""
    out = []
    for pw in weeks:
        row = conn.execute(
            sa.select(
                sa.func.count().label("listed"),
                sa.func.coalesce(sa.func.sum(sa.case((risk_lists.c.section == "new", 1), else_=0)), 0).label("new"),
            ).where(risk_lists.c.run_id == pw.run_id, risk_lists.c.week == pw.week, risk_lists.c.locality == locality)
        ).one()
        out.append((pw.week, int(row.new), int(row.listed)))
    return out
