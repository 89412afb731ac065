"""CSV/Excel renderings: columns by role, and spreadsheet formula injection neutralised."""

from __future__ import annotations

import csv
import io

import openpyxl

from serving.exports import to_csv, to_xlsx

ROW = {
    "rank": 1,
    "person_id": "0123456789abcdef",
    "nhs_number": "9990000018",
    "score": 0.123456,
    "band": "high",
    "change_since_last_week": None,
    "new_this_week": True,
    "reason_for_listing": "both",
    "reasons": [{"text": "=HYPERLINK(\"http://x\")"}, {"text": "lives alone"}],
}


def test_csv_columns_rounding_and_formula_guard():
    rows = list(csv.reader(io.StringIO(to_csv([ROW], with_nhs=True))))
    assert rows[0] == ["rank", "person_id", "nhs_number", "score", "band", "change_since_last_week",
                       "new_this_week", "reason_for_listing", "reasons"]
    assert rows[1] == ["1", "0123456789abcdef", "9990000018", "0.1235", "high", "", "yes", "both",
                       "'=HYPERLINK(\"http://x\"); lives alone"]
    assert "nhs_number" not in to_csv([ROW], with_nhs=False).splitlines()[0]


def test_xlsx_keeps_text_as_text():
    sheet = openpyxl.load_workbook(io.BytesIO(to_xlsx([ROW], with_nhs=True, sheet_title="North 2026-W48"))).active
    assert sheet.title == "North 2026-W48"
    row = [c.value for c in sheet[2]]
    assert row[2] == "9990000018"  # NHS number stays text (no leading-zero or float mangling)
    assert row[3] == 0.1235
    # In a workbook the cell is typed as a string, never a formula, so it is not evaluated.
    assert row[-1] == '=HYPERLINK("http://x"); lives alone' and sheet.cell(2, 9).data_type == "s"


def test_csv_formula_guard_covers_tab_and_carriage_return():
    # OWASP CSV injection: Excel skips a leading tab or CR and then evaluates "=...".
    for text in ("\t=1+1", "\r=1+1"):
        row = {**ROW, "reasons": [{"text": text}]}
        last_cell = to_csv([row], with_nhs=False).rstrip("\n").rsplit(",", 1)[1]
        assert last_cell == "'" + text


def test_xlsx_sheet_title_cut_at_an_apostrophe_still_opens():
    # A locality whose 31st character is "'" (allowed by the locality pattern): cut to Excel's 31
    # characters the title would end with an apostrophe, which Excel and xlsxwriter refuse (a 500).
    locality = "A" * 30 + "'s Patch"
    book = to_xlsx([ROW], with_nhs=False, sheet_title=f"{locality} 2026-W48")
    assert openpyxl.load_workbook(io.BytesIO(book)).active.title == "A" * 30
