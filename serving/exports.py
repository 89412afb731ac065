"""CSV and Excel renderings of a weekly list (what locality teams paste into their case tools)."""

from __future__ import annotations

import csv
import io

from upstream.store import LIST_ROW_COLUMNS

XLSX_MEDIA_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"

BASE_COLUMNS = [c for c in LIST_ROW_COLUMNS if c != "locality"]


def _columns(with_nhs: bool) -> list[str]:
    return [*BASE_COLUMNS[:2], "nhs_number", *BASE_COLUMNS[2:]] if with_nhs else list(BASE_COLUMNS)


def _flat(row: dict, with_nhs: bool) -> list:
    change = row["change_since_last_week"]
    values = [
        row["rank"],
        row["person_id"],
        round(float(row["score"]), 4),
        row["band"],
        None if change is None else round(float(change), 4),
        "yes" if row["new_this_week"] else "no",
        row["reason_for_listing"],
        "; ".join(r["text"] for r in row["reasons"]),
    ]
    if with_nhs:
        values.insert(2, row.get("nhs_number"))
    return values


def _safe_cell(value):
    # Neutralise spreadsheet formula injection: text starting with = + - @ (or tab / CR, which Excel
    # skips before reading the formula, per OWASP) would be evaluated.
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def to_csv(rows: list[dict], with_nhs: bool) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(_columns(with_nhs))
    for row in rows:
        writer.writerow(["" if v is None else _safe_cell(v) for v in _flat(row, with_nhs)])
    return buffer.getvalue()


def to_xlsx(rows: list[dict], with_nhs: bool, sheet_title: str) -> bytes:
    import xlsxwriter

    buffer = io.BytesIO()
    workbook = xlsxwriter.Workbook(buffer, {"in_memory": True, "strings_to_formulas": False, "strings_to_urls": False})
    # Excel's limits: 31 characters, and no apostrophe at either end (truncation can leave one at the end).
    sheet = workbook.add_worksheet(sheet_title[:31].strip("'"))
    bold = workbook.add_format({"bold": True})
    columns = _columns(with_nhs)
    for c, name in enumerate(columns):
        sheet.write_string(0, c, name, bold)
    for r, row in enumerate(rows, start=1):
        for c, value in enumerate(_flat(row, with_nhs)):
            if value is None:
                continue
            if isinstance(value, int | float) and not isinstance(value, bool):
                sheet.write_number(r, c, value)
            else:
                sheet.write_string(r, c, str(value))
    sheet.set_column(0, len(columns) - 1, 14)
    sheet.set_column(len(columns) - 1, len(columns) - 1, 60)
    workbook.close()
    return buffer.getvalue()
