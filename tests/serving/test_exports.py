"""CSV/Excel renderings of the declared list row: columns by role, values shown with sense, spreadsheet
formula injection neutralised, and a workbook a team can filter (frozen header, autofilter, formats)."""

from __future__ import annotations

import csv
import io

import openpyxl

from serving.exports import to_csv, to_xlsx
from upstream.list_row import LIST_ROW, change_text, risk_text

ROW = {
    "rank": 1,
    "section": "rising",
    "person_id": "0123456789abcdef",
    "nhs_number": "9990000018",
    "age_band": "75-84",
    "gp_practice": "G82001",
    "score": 0.123456,
    "band": "high",
    "change_points": 12.3,
    "why_listed": "Risk up 12.3 points in 4 weeks",
    "what_changed": "emergency admission on 12 Nov 2026",
    "suggested_offers": "falls_prevention;telecare",
    "offers_this_week": "falls_prevention",
    "offers_waiting": "telecare",
    "offer_evidence": "falls_prevention: 2 falls",
    "top_reasons": "=HYPERLINK(\"http://x\"); lives alone",
}
NAMES = [c.name for c in LIST_ROW]


def test_csv_columns_values_and_formula_guard():
    rows = list(csv.reader(io.StringIO(to_csv([ROW], with_nhs=True))))
    assert rows[0] == NAMES
    assert rows[0][:4] == ["rank", "section", "nhs_number", "person_id"]
    assert rows[1] == ["1", "rising", "9990000018", "0123456789abcdef", "75-84", "G82001", "12.3%", "high", "12.3",
                       "Risk up 12.3 points in 4 weeks", "emergency admission on 12 Nov 2026",
                       "falls_prevention;telecare", "falls_prevention", "telecare", "falls_prevention: 2 falls",
                       "'=HYPERLINK(\"http://x\"); lives alone"]
    assert "nhs_number" not in to_csv([ROW], with_nhs=False).splitlines()[0]


def test_risk_and_change_are_shown_with_sense():
    assert risk_text(0.9999999998) == "> 99%"
    assert risk_text(1.0) == "> 99%"
    assert risk_text(0.991) == "> 99%"
    assert risk_text(0.99) == "99.0%"
    assert risk_text(0.0099) == "< 1%"
    assert risk_text(0.01) == "1.0%"
    assert risk_text(0.12345) == "12.3%"
    assert change_text(0.0) == "0.0 pts" and change_text(-4.0) == "-4.0 pts" and change_text(12.3) == "+12.3 pts"
    assert change_text(None) == ""


def test_xlsx_is_a_usable_workbook():
    book = openpyxl.load_workbook(io.BytesIO(to_xlsx([ROW], with_nhs=True, sheet_title="North 2026-W48")))
    sheet = book.active
    assert sheet.title == "North 2026-W48"
    assert [c.value for c in sheet[1]] == [c.heading for c in LIST_ROW]
    assert sheet.freeze_panes == "A2"
    assert sheet.auto_filter.ref == "A1:P2"
    row = [c.value for c in sheet[2]]
    assert row[2] == "9990000018"  # NHS number stays text (no leading-zero or float mangling)
    assert row[6] == 0.123456 and sheet.cell(2, 7).number_format == '[<0.01]"< 1%";[>0.99]"> 99%";0.0%'
    assert row[8] == 12.3 and sheet.cell(2, 9).number_format == "+0.0;-0.0;0.0"
    # In a workbook the cell is typed as a string, never a formula, so it is not evaluated.
    assert row[-1] == '=HYPERLINK("http://x"); lives alone' and sheet.cell(2, 16).data_type == "s"
    widths = {c.heading: sheet.column_dimensions[openpyxl.utils.get_column_letter(i + 1)].width
              for i, c in enumerate(LIST_ROW)}
    assert widths["What changed"] > widths["Rank"]


def test_csv_formula_guard_covers_tab_and_carriage_return():
    # OWASP CSV injection: Excel skips a leading tab or CR and then evaluates "=...".
    for text in ("\t=1+1", "\r=1+1"):
        row = {**ROW, "top_reasons": text}
        last_cell = list(csv.reader(io.StringIO(to_csv([row], with_nhs=False), newline="")))[1][-1]
        assert last_cell == "'" + text


def test_xlsx_sheet_title_cut_at_an_apostrophe_still_opens():
    # A locality whose 31st character is "'" (allowed by the locality pattern): cut to Excel's 31
    # characters the title would end with an apostrophe, which Excel and xlsxwriter refuse (a 500).
    locality = "A" * 30 + "'s Patch"
    book = to_xlsx([ROW], with_nhs=False, sheet_title=f"{locality} 2026-W48")
    assert openpyxl.load_workbook(io.BytesIO(book)).active.title == "A" * 30
