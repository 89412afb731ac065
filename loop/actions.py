"""Actions: what a locality team did for a listed person in a week (DESIGN §9).

One declaration (``ACTIONS``, ``OFFER_REQUIRED``, ``REASON_REQUIRED``) drives the bulk import, the API
and the evaluation. Rows are validated one by one like ingest; a file with any bad row commits nothing
(a half-imported case-management export would silently bias the evaluation), and the report names each
bad row's line and reason. Stored pseudonymised (``person_id``): analysts read actions without NHS numbers.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

import polars as pl
import sqlalchemy as sa

from expectations.identifiers import nhs_number_valid_expr
from expectations.pseudonymise import pseudonymise
from upstream.errors import BadFileError, UpstreamError
from upstream.settings import Settings
from upstream.store import actions as actions_table
from upstream.store import get_engine

#: The actions a team can record, and what each means.
ACTIONS: dict[str, str] = {
    "contacted": "the team contacted the person (or their carer)",
    "offered": "an offer from the service catalogue was made",
    "accepted": "the person accepted the offer",
    "declined": "the person declined the offer",
    "not_appropriate": "the team judged the listing not appropriate (reason required)",
}
OFFER_REQUIRED = frozenset({"offered", "accepted", "declined"})
REASON_REQUIRED = frozenset({"not_appropriate"})
IMPORT_COLUMNS = ("nhs_number", "week", "action", "offer", "reason")
ISO_WEEK = re.compile(r"^(\d{4})-W(\d{2})$")
MAX_REASON = 500
#: How many bad rows the error message itself lists (all of them are in the rejected-rows report).
SHOWN_BAD_ROWS = 10


def offer_ids(settings: Settings) -> frozenset[str]:
    """Offer ids of the service catalogue in force (upstream/offers.py): the one list of what can be offered."""
    from upstream.offers import load_catalogue

    return frozenset(load_catalogue(settings).ids)


def week_monday(week: str) -> date:
    """Monday of an ISO week ``YYYY-Www``; ValueError when it is not one."""
    m = ISO_WEEK.match(week)
    if not m:
        raise ValueError(f"not an ISO week (YYYY-Www): {week!r}")
    return date.fromisocalendar(int(m.group(1)), int(m.group(2)), 1)


def _valid_week_expr(column: str) -> pl.Expr:
    def ok(value: str | None) -> bool:
        try:
            week_monday(value or "")
        except ValueError:
            return False
        return True

    return pl.col(column).map_elements(ok, return_dtype=pl.Boolean, skip_nulls=False)


def validate_actions(raw: pl.DataFrame, offers: frozenset[str], known_people: pl.DataFrame, key: bytes,
                     source: str) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Split rows into (valid, rejected). Valid rows are pseudonymised; rejected rows keep their line and reason.

    ``known_people``: ``person_id, locality`` of residents the service knows (latest ingest).
    """
    missing = [c for c in IMPORT_COLUMNS if c not in raw.columns]
    if missing:
        raise BadFileError(source, f"missing column(s) {', '.join(missing)}; expected {', '.join(IMPORT_COLUMNS)}")
    df = raw.select(IMPORT_COLUMNS).with_columns(pl.all().cast(pl.String).str.strip_chars())
    df = df.with_columns(pl.when(pl.col(c) == "").then(None).otherwise(pl.col(c)).alias(c) for c in IMPORT_COLUMNS)
    df = df.with_row_index("line", offset=2)  # line 1 is the header
    df = df.with_columns(
        pseudonymise(df["nhs_number"].fill_null(""), key).alias("person_id"),
    ).join(known_people, on="person_id", how="left")
    action_ok = pl.col("action").is_in(list(ACTIONS))
    reasons = [
        (pl.col("nhs_number").is_null(), "nhs_number is empty"),
        (~nhs_number_valid_expr("nhs_number").fill_null(False), "nhs_number is not a valid NHS number"),
        (pl.col("_known").is_null(), "nhs_number is not a resident in the latest delivery"),
        (pl.col("week").is_null(), "week is empty"),
        (~_valid_week_expr("week"), "week is not an ISO week (YYYY-Www)"),
        (pl.col("action").is_null(), "action is empty"),
        (~action_ok, f"action is not one of {', '.join(ACTIONS)}"),
        (action_ok & pl.col("action").is_in(list(OFFER_REQUIRED)) & pl.col("offer").is_null(),
         "offer is required for offered/accepted/declined"),
        (pl.col("offer").is_not_null() & ~pl.col("offer").is_in(sorted(offers)),
         f"offer is not in the service catalogue ({', '.join(sorted(offers))})"),
        (action_ok & pl.col("action").is_in(list(REASON_REQUIRED)) & pl.col("reason").is_null(),
         "reason is required for not_appropriate"),
        (pl.col("reason").str.len_chars() > MAX_REASON, f"reason is longer than {MAX_REASON} characters"),
    ]
    # the first failing rule is the row's reason (most basic first)
    reason_expr = pl.lit(None, dtype=pl.String)
    for cond, text in reversed(reasons):
        reason_expr = pl.when(cond.fill_null(False)).then(pl.lit(text)).otherwise(reason_expr)
    df = df.with_columns(reason_expr.alias("rejected_reason"))
    rejected = df.filter(pl.col("rejected_reason").is_not_null()).select("line", *IMPORT_COLUMNS, "rejected_reason")
    valid = (df.filter(pl.col("rejected_reason").is_null())
             .select("person_id", "week", "action", "offer", "reason", "locality")
             .unique(subset=["person_id", "week", "action", "offer"], keep="first", maintain_order=True))
    return valid, rejected


def known_people(settings: Settings) -> pl.DataFrame:
    """``person_id, locality, _known`` of residents in the latest ingested week (what the service knows)."""
    weeks = settings.home / "weeks"
    cleans = sorted(weeks.glob("*/ingest/clean/residents.parquet")) if weeks.exists() else []
    if not cleans:
        raise UpstreamError(f"no ingested delivery under {weeks}: run `upstream run` (or `upstream ingest`) first")
    return (pl.read_parquet(cleans[-1], columns=["person_id", "locality"])
            .with_columns(pl.col("locality").fill_null("Unknown"), pl.lit(True).alias("_known")))


@dataclass
class ImportResult:
    rows_in: int
    rows_valid: int
    rows_rejected: int
    rows_new: int  # valid rows not already recorded (re-importing a file is harmless)
    rejected_report: Path | None


def import_actions(path: Path, settings: Settings) -> ImportResult:
    """Validate every row of a case-management export and store all of it, or nothing."""
    path = Path(path)
    if not path.is_file():
        raise BadFileError(str(path), "file not found")
    try:
        raw = pl.read_csv(path, infer_schema=False)
    except (pl.exceptions.ComputeError, pl.exceptions.NoDataError) as exc:
        raise BadFileError(str(path), f"not a readable CSV ({str(exc).splitlines()[0]})") from exc
    valid, rejected = validate_actions(raw, offer_ids(settings), known_people(settings),
                                       settings.pseudonymisation_key(), str(path))
    if len(rejected):
        report = _write_rejected(rejected, path, settings)
        shown = "; ".join(f"line {r['line']}: {r['rejected_reason']}"
                          for r in rejected.head(SHOWN_BAD_ROWS).iter_rows(named=True))
        more = f" (and {len(rejected) - SHOWN_BAD_ROWS} more)" if len(rejected) > SHOWN_BAD_ROWS else ""
        raise BadFileError(str(path), f"{len(rejected)} of {len(raw)} rows rejected, nothing imported: {shown}{more}."
                           f" All rejected rows with reasons: {report}")
    new = store_actions(valid, f"import:{path.name}", settings)
    return ImportResult(rows_in=len(raw), rows_valid=len(raw),
                        rows_rejected=0, rows_new=new, rejected_report=None)


def _write_rejected(rejected: pl.DataFrame, path: Path, settings: Settings) -> Path:
    """Rejected rows carry NHS numbers: they go to the restricted area, not next to the analytical data."""
    out = settings.restricted_dir / "actions_rejected"
    out.mkdir(parents=True, exist_ok=True)
    target = out / f"{path.stem}-{datetime.now(UTC):%Y%m%dT%H%M%S}.csv"
    rejected.write_csv(target)
    return target


def store_actions(valid: pl.DataFrame, source: str, settings: Settings,
                  also: Callable[[sa.Connection], object] | None = None) -> int:
    """Insert rows not recorded yet, in ONE transaction (all or nothing). Returns how many were new.

    ``also`` runs inside the same transaction (the API's audit row: an action is never stored unaudited).
    """
    if valid.is_empty() and also is None:
        return 0
    engine = get_engine(settings.db_url)
    t = actions_table
    weeks = valid["week"].unique().to_list()
    with engine.begin() as conn:
        existing = pl.DataFrame(
            conn.execute(sa.select(t.c.person_id, t.c.week, t.c.action, t.c.offer).where(t.c.week.in_(weeks)))
            .all(), schema={"person_id": pl.String, "week": pl.String, "action": pl.String, "offer": pl.String},
            orient="row")
        new = valid.join(existing, on=["person_id", "week", "action", "offer"], how="anti", nulls_equal=True)
        now = datetime.now(UTC)
        rows = [dict(r, source=source, recorded_at=now) for r in new.iter_rows(named=True)]
        for start in range(0, len(rows), 5000):
            conn.execute(t.insert(), rows[start:start + 5000])
        if also is not None:
            also(conn)
    return len(rows)


def read_actions(settings: Settings, weeks: tuple[str, str] | None = None,
                 localities: list[str] | None = None) -> pl.DataFrame:
    """Recorded actions (pseudonymised), optionally for a week range and some localities."""
    t = actions_table
    q = sa.select(t.c.person_id, t.c.week, t.c.action, t.c.offer, t.c.reason, t.c.locality, t.c.source,
                  t.c.recorded_at)
    if weeks is not None:
        q = q.where(t.c.week >= weeks[0], t.c.week <= weeks[1])
    if localities is not None:
        q = q.where(t.c.locality.in_(localities))
    with get_engine(settings.db_url).connect() as conn:
        rows = conn.execute(q.order_by(t.c.week, t.c.id)).all()
    return pl.DataFrame(rows, schema={"person_id": pl.String, "week": pl.String, "action": pl.String,
                                      "offer": pl.String, "reason": pl.String, "locality": pl.String,
                                      "source": pl.String, "recorded_at": pl.Datetime(time_zone="UTC")},
                        orient="row")


def action_problem(action: str, offer: str | None, reason: str | None, offers: frozenset[str]) -> str | None:
    """The rule of ``validate_actions`` for one row (the API's check); None when the action is valid."""
    if action not in ACTIONS:
        return f"action is not one of {', '.join(ACTIONS)}"
    if action in OFFER_REQUIRED and not offer:
        return "offer is required for offered/accepted/declined"
    if offer and offer not in offers:
        return f"offer is not in the service catalogue ({', '.join(sorted(offers))})"
    if action in REASON_REQUIRED and not reason:
        return "reason is required for not_appropriate"
    if reason and len(reason) > MAX_REASON:
        return f"reason is longer than {MAX_REASON} characters"
    return None
