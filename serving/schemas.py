"""Response models: they are the OpenAPI contract that schemathesis checks the app against."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from pydantic import BaseModel, Field, field_validator

#: Path and query patterns every router checks against (declared once: the API, the web pages and forms).
WEEK_PATTERN = r"^\d{4}-W(0[1-9]|[1-4]\d|5[0-3])$"
PERSON_ID_PATTERN = r"^[0-9a-f]{16,64}$"

#: What each refusal means, as documented in the OpenAPI schema and sent by the app's error handlers.
ERROR_TEXT = {
    401: "Missing, invalid or revoked API key",
    403: "The key's role or locality scope does not allow this",
    404: "Not found, or not visible to this key (the two are indistinguishable on purpose)",
    503: "The audit log could not be written, so no person-level data is served; retry shortly",
}


class ErrorOut(BaseModel):
    detail: str


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The ``responses=`` of a JSON route: each code with its meaning, so schemathesis checks every answer."""
    return {code: {"model": ErrorOut, "description": ERROR_TEXT[code]} for code in codes}


class Health(BaseModel):
    status: str = "ok"


class ReasonOut(BaseModel):
    feature: str | None = None
    value: Any = None
    text: str
    contribution: float | None = None


class ListRowOut(BaseModel):
    """One list row: exactly the columns of ``upstream.list_row.LIST_ROW`` (the files and the page show the same)."""

    rank: int
    section: str = Field(description="new, rising or top")
    nhs_number: str | None = Field(None, description="Only for locality keys, for their own residents")
    person_id: str
    age_band: str
    gp_practice: str | None
    risk_percent: str = Field(description='Risk with sense: "< 1%", "> 99%", otherwise one decimal')
    band: str
    change_points: float | None = Field(description="Percentage points since the comparison week")
    why_listed: str
    what_changed: str | None
    suggested_offers: str = Field(description="Offer ids, ';'-separated; empty when no offer fits")
    offers_this_week: str | None = Field(description="Of the suggested offers, those with a place this week")
    offers_waiting: str | None = Field(description="Of the suggested offers, those over this week's capacity")
    offer_evidence: str
    top_reasons: str


class OfferPlacesOut(BaseModel):
    """One offer's weekly places against the people on the whole list it was suggested to (suppressed)."""

    offer: str
    title: str
    weekly_capacity: int
    suggested: str = Field(description='People it fits: "<8" for 1-7, others rounded to 5')
    with_place: str
    waiting: str


class RiskListOut(BaseModel):
    locality: str
    week: str
    index_date: date
    model_name: str | None
    model_version: str | None
    total: int = Field(description="Rows on the list (after any section/offer/practice filter)")
    offset: int
    count: int = Field(description="Rows in this response")
    partial: bool = Field(description="True when this response holds fewer rows than total (a page)")
    next_offset: int | None = Field(description="Offset of the next page, null on the last one")
    rows: list[ListRowOut]
    offers: list[OfferPlacesOut] = Field(
        default_factory=list, description="Per offer: weekly places against people suggested (upstream.offers)")


class FunnelStep(BaseModel):
    step: str = Field(description='"residents", an exclusion reason id (expectations.cohort), or "in_cohort"')
    label: str
    people: int | None = Field(description="Suppressed: null = 1-7, others rounded to the nearest 5")
    shown: str


class CohortFunnelOut(BaseModel):
    locality: str
    week: str
    index_date: date
    rule: str
    steps: list[FunnelStep]


class HistoryPoint(BaseModel):
    week: str
    index_date: date
    score: float
    band: str


class ResidentScoreOut(BaseModel):
    person_id: str
    nhs_number: str | None = Field(None, description="Only for locality keys, for their own residents")
    locality: str
    week: str
    index_date: date
    score: float
    band: str
    in_long_term_care: bool
    reasons: list[ReasonOut]
    reasons_note: str | None = Field(
        None, description="Why no reasons are given for this week when they cannot be worked out (e.g. the "
        "week's features are no longer kept); absent when reasons are given")
    history: list[HistoryPoint]


class ModelCardOut(BaseModel):
    target: str
    model_name: str
    version: str
    run_id: str | None
    metrics: dict[str, float]
    model_card: str | None = Field(None, description="Model card, Markdown")
    alias: str | None = None
    chosen_model: str | None = None
    test_date: str | None = None
    train_dates: str | None = None
    gate_reasons: str | None = None


class SummaryCell(BaseModel):
    locality: str
    band: str
    residents: int | None = Field(description="Rounded to the nearest 5; null when 1-7 (suppressed)")


class SummaryOut(BaseModel):
    week: str
    index_date: date
    rule: str
    cells: list[SummaryCell]


class AuditRow(BaseModel):
    at: datetime
    key_id: str
    role: str
    route: str
    person_id: str | None
    locality: str | None
    week: str | None
    status_code: int
    format: str | None = Field(None, description="json | csv | xlsx | html for what was served; null for refusals")
    subject_hash: str | None = Field(None, description="Keyed hash of a refused request's subject as given")

    @field_validator("at")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        # SQLite returns naive datetimes; they were written in UTC, so say so (RFC 3339 needs an offset).
        return value if value.tzinfo else value.replace(tzinfo=UTC)
