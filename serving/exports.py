"""CSV and Excel renderings of a weekly list: the same declared row and writers as the files on disk
(``upstream.list_row``), so an API download and ``lists/<week>/<locality>.csv`` cannot differ."""

from __future__ import annotations

from upstream.list_row import to_csv_text, write_xlsx

XLSX_MEDIA_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def to_csv(rows: list[dict], with_nhs: bool) -> str:
    return to_csv_text(rows, reidentified=with_nhs)


def to_xlsx(rows: list[dict], with_nhs: bool, sheet_title: str, offer_summary: list[dict] | None = None) -> bytes:
    return write_xlsx(rows, reidentified=with_nhs, sheet_title=sheet_title, offer_summary=offer_summary)
