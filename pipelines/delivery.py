"""Ingest as a weekly step: file the delivery under the run's week, validate it against its own extract date."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Any

from pipelines.scoring import iso_week
from pipelines.weeks import week_root
from upstream.settings import Settings


def run_ingest(raw_dir: Path, index_date: date, settings: Settings) -> tuple[Path, dict[str, Any]]:
    """Validate, pseudonymise and quarantine the delivery into ``weeks/<week>/ingest``.

    The run's ``index_date`` (resolved once, in the flow) names the week. Ingest's date checks ("no event
    in the future", ages) use the day the *data* describes: the delivery's extract date from its manifest,
    else the later of the index date and today. A backdated run (T before the extract) must keep rows dated
    between T and the extract: a spell discharged after T is the record that says the person was in
    hospital at T, and features, labels and the cohort already look only before T. Quarantining those rows
    as "future" would drop exactly the people the list must exclude.
    """
    from expectations.ingest import ingest_delivery

    out_dir, data_date, previous = ingest_target(raw_dir, index_date, settings)
    summary = ingest_delivery(Path(raw_dir), out_dir, settings, as_of=data_date, previous_summary=previous)
    return out_dir, summary


def ingest_target(raw_dir: Path, index_date: date, settings: Settings) -> tuple[Path, date, dict[str, Any] | None]:
    """Where a week's ingest goes, the date its checks use (see ``run_ingest``), and the summary it is
    compared with: the same for a local and a fanned-out ingest."""
    from expectations.ingest import delivery_extract_date

    out_dir = week_root(settings, index_date) / "ingest"
    data_date = delivery_extract_date(Path(raw_dir)) or max(index_date, date.today())
    return out_dir, data_date, previous_validation_summary(settings, iso_week(index_date))


def previous_validation_summary(settings: Settings, week: str) -> dict[str, Any] | None:
    """The latest earlier week's validation summary, for ingest's row-count-change checks."""
    weeks = settings.home / "weeks"
    if not weeks.exists():
        return None
    earlier = sorted(
        p for p in weeks.iterdir() if p.name < week and (p / "ingest" / "validation_summary.json").exists()
    )
    if not earlier:
        return None
    return json.loads((earlier[-1] / "ingest" / "validation_summary.json").read_text())


def read_validation_summary(ingest_dir: Path) -> dict[str, Any]:
    path = Path(ingest_dir) / "validation_summary.json"
    return json.loads(path.read_text()) if path.exists() else {}


def validation_rows(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per source for the validation artifact (row counts are not person-level)."""
    rows = []
    for source, info in summary.items():
        if not isinstance(info, dict) or "rows_in" not in info:
            continue
        checks = info.get("checks") or []
        failed = [c for c in checks if isinstance(c, dict) and c.get("success") is False]
        rows.append(
            {
                "source": source,
                "rows_in": info.get("rows_in"),
                "rows_valid": info.get("rows_valid"),
                "rows_quarantined": info.get("rows_quarantined"),
                "checks": len(checks),
                "checks_failed": len(failed),
            }
        )
    return rows
