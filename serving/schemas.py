"""Response models: they are the OpenAPI contract that schemathesis checks the app against."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from pydantic import BaseModel, Field, field_validator


class ErrorOut(BaseModel):
    detail: str


class Health(BaseModel):
    status: str = "ok"


class ReasonOut(BaseModel):
    feature: str | None = None
    value: Any = None
    text: str
    contribution: float | None = None


class ListRowOut(BaseModel):
    rank: int
    person_id: str
    nhs_number: str | None = Field(None, description="Only for locality keys, for their own residents")
    score: float
    band: str
    change_since_last_week: float | None
    new_this_week: bool
    reason_for_listing: str
    reasons: list[ReasonOut]


class RiskListOut(BaseModel):
    locality: str
    week: str
    index_date: date
    model_name: str | None
    model_version: str | None
    count: int
    rows: list[ListRowOut]


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
