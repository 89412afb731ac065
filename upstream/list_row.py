"""ONE declaration of a weekly list row: the columns, their order, headings, formats and widths.

The files written to disk (``lists/<week>/<locality>.csv|.xlsx``), the API's JSON, CSV and Excel, and the
web page all take their columns from :data:`LIST_ROW`, and every value is shown through :func:`risk_text`,
:func:`change_text` and friends below, so a team sees the same list, with the same words and numbers,
wherever it opens it. ``nhs_number`` exists only in exports for a locality role (DESIGN §7).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Literal

ColumnFormat = Literal["integer", "text", "risk", "points", "long_text"]

#: Section ids in the order a team should see them, with their headings.
SECTIONS: tuple[tuple[str, str], ...] = (
    ("new", "New this week"),
    ("rising", "Rising risk"),
    ("top", "Highest risk"),
)
SECTION_IDS: tuple[str, ...] = tuple(s for s, _ in SECTIONS)
#: Separator of offer ids in ``suggested_offers`` (a cell a spreadsheet filter can search).
OFFER_SEPARATOR = ";"
#: Separator of reasons and changes inside one text cell.
TEXT_SEPARATOR = "; "


@dataclass(frozen=True)
class ListColumn:
    name: str
    heading: str
    format: ColumnFormat
    #: Excel column width in characters.
    width: int
    description: str
    #: Only in exports for a caller allowed to re-identify (locality role).
    reidentified: bool = False


LIST_ROW: tuple[ListColumn, ...] = (
    ListColumn("rank", "Rank", "integer", 6, "Position in the locality's list: new, then rising, then top; "
               "highest risk first within each section."),
    ListColumn("section", "Section", "text", 9, "new (not on last week's list, and their own risk put them on "
               "it), rising (risk rose by at least the configured points over the lookback) or top (among the "
               "highest risks, up to capacity); the rules: docs/LISTS.md \"Sections\"."),
    ListColumn("nhs_number", "NHS number", "text", 12, "Re-identified NHS number (locality role exports only).",
               reidentified=True),
    ListColumn("person_id", "Person id", "text", 18, "Pseudonymised person id."),
    ListColumn("age_band", "Age band", "text", 8, "Age band at the index date."),
    ListColumn("gp_practice", "GP practice", "text", 10, "ODS code of the registered GP practice."),
    ListColumn("risk_percent", "Risk", "risk", 8, "Predicted risk of crisis in the next 12 months, "
               "one decimal; below 1% shown as \"< 1%\", above 99% as \"> 99%\" (never 100%)."),
    ListColumn("band", "Band", "text", 10, "Risk band within the locality: very high, high, moderate, low."),
    ListColumn("change_points", "Change (points)", "points", 10, "Change in risk, in percentage points, "
               "since the comparison week; empty when the person was not scored then."),
    ListColumn("why_listed", "Why listed", "long_text", 34, "Why the person is on the list, in words."),
    ListColumn("what_changed", "What changed", "long_text", 46, "For new and rising people: the changes since "
               "the comparison week that moved the risk most, with dates."),
    ListColumn("suggested_offers", "Suggested offers", "text", 22, "Offer ids from the service catalogue that "
               "fit, ';'-separated; empty when none fits."),
    ListColumn("offers_this_week", "Offer this week", "text", 22, "Of the suggested offers, those with a place "
               "this week (within the offer's weekly capacity for the locality, given in list order)."),
    ListColumn("offers_waiting", "Waiting list", "text", 22, "Of the suggested offers, those over this week's "
               "capacity for the locality: people higher on the list took the places (waiting list)."),
    ListColumn("offer_evidence", "Offer evidence", "long_text", 46, "Why each suggested offer fits, or that "
               "no offer fits."),
    ListColumn("top_reasons", "Top reasons", "long_text", 50, "The features raising the risk most, in words."),
)
LIST_COLUMNS: tuple[str, ...] = tuple(c.name for c in LIST_ROW)
COLUMNS_BY_NAME: dict[str, ListColumn] = {c.name: c for c in LIST_ROW}


#: Per offer and locality, the week's places against the people it was suggested to (the list page, the
#: Excel "Offers" sheet, ``lists/<week>/offer_capacity.csv`` and the API's JSON all show these). People
#: counts are small-number suppressed ("<8", others rounded to 5); the capacity is the catalogue's number.
OFFER_SUMMARY: tuple[tuple[str, str], ...] = (
    ("offer", "Offer id"),
    ("title", "Offer"),
    ("weekly_capacity", "Weekly places"),
    ("suggested", "Suggested to"),
    ("with_place", "With a place this week"),
    ("waiting", "Waiting list (over capacity)"),
)


def section_rules(rules: Any) -> dict[str, str]:
    """THE rule of each section in words (``rules``: ``settings.ListSettings``): docs, code comments and
    tests read it here. ``pipelines.lists.build_lists`` implements exactly this."""
    top_share = 100 - rules.band_percentile * 100
    return {
        "new": "not on last week's list, and their own risk put them on it: either their risk now reaches last "
               "week's entry level in the locality (the lowest risk among last week's "
               f"{rules.capacity_per_locality} highest, so they would have been listed last week with this "
               "week's risk: something in their own record or situation changed), or they are rising. Someone "
               "who only moved up because others left the list is `top`, not `new`. There is no `new` on the "
               "very first list (nothing to compare with), nor in a locality that had no list last week",
        "rising": f"risk up by at least {rules.risk_rise_threshold * 100:.0f} points "
                  f"(`UPSTREAM_LISTS__RISK_RISE_THRESHOLD`) since the published week {rules.rise_lookback_weeks} "
                  "weeks earlier (`UPSTREAM_LISTS__RISE_LOOKBACK_WEEKS`; the earliest published week while fewer "
                  "exist), whatever their rank; already on last week's list (otherwise `new`)",
        "top": f"the {rules.capacity_per_locality} highest risks (`UPSTREAM_LISTS__CAPACITY_PER_LOCALITY`) in the "
               f"locality's top {top_share:.0f}% (`UPSTREAM_LISTS__BAND_PERCENTILE`), neither new nor rising. "
               "This includes people who were not on last week's list but entered only because others left it "
               "(their risk is below last week's entry level): `why_listed` says so (\"Not on last week's list; "
               "among the 500 highest risks in North (others left the list)\")",
    }


def columns(reidentified: bool) -> tuple[ListColumn, ...]:
    """The row's columns for one caller: with ``nhs_number`` only when they may re-identify."""
    return tuple(c for c in LIST_ROW if reidentified or not c.reidentified)


def risk_text(score: float | None) -> str:
    """A probability shown with sense: "< 1%", "> 99%", otherwise one decimal ("23.4%"); never "100%"."""
    if score is None or (isinstance(score, float) and math.isnan(score)):
        return ""
    percent = 100.0 * float(score)
    if percent < 1.0:
        return "< 1%"
    if percent > 99.0:
        return "> 99%"
    return f"{round(percent, 1):.1f}%"


def change_points(change: float | None) -> float | None:
    """A change in probability as percentage points, one decimal, never "-0.0"."""
    if change is None or (isinstance(change, float) and math.isnan(change)):
        return None
    points = round(100.0 * float(change), 1)
    return 0.0 if points == 0 else points


def change_text(points: float | None) -> str:
    """"+12.3 pts", "-4.0 pts", "0.0 pts" (no "-0.0"), or "" when there is nothing to compare."""
    if points is None:
        return ""
    return "0.0 pts" if points == 0 else f"{points:+.1f} pts"


def age_band(age: int | None) -> str:
    """Bands used by adult social care reporting: 18-64, 65-74, 75-84, 85+."""
    if age is None:
        return ""
    if age < 18:
        return "under 18"
    if age < 65:
        return "18-64"
    if age < 75:
        return "65-74"
    if age < 85:
        return "75-84"
    return "85+"


def display_row(row: dict[str, Any], reidentified: bool) -> dict[str, Any]:
    """One stored list row as the values every rendering shows, in declared order."""
    out: dict[str, Any] = {}
    for column in columns(reidentified):
        value = row.get(column.name)
        if column.name == "risk_percent":
            value = risk_text(row.get("score"))
        out[column.name] = value
    return out


# --- renderings shared by the files on disk and the API ------------------------------------------------------


def _safe_cell(value: Any) -> Any:
    """Neutralise spreadsheet formula injection: text starting with = + - @ (or tab / CR, which Excel skips
    before reading a formula, per OWASP) would be evaluated."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def to_csv_text(rows: list[dict[str, Any]], reidentified: bool) -> str:
    """The list as CSV: the declared columns (names as headers, so scripts can rely on them), shown values."""
    import csv
    import io

    cols = columns(reidentified)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow([c.name for c in cols])
    for row in rows:
        shown = display_row(row, reidentified)
        writer.writerow(["" if shown[c.name] is None else _safe_cell(shown[c.name]) for c in cols])
    return buffer.getvalue()


#: Excel number formats. Risk stays a number (sortable, filterable) but is SHOWN as the CSV/web show it.
RISK_EXCEL_FORMAT = '[<0.01]"< 1%";[>0.99]"> 99%";0.0%'
POINTS_EXCEL_FORMAT = '+0.0;-0.0;0.0'


def write_xlsx(rows: list[dict[str, Any]], reidentified: bool, sheet_title: str,
               offer_summary: list[dict[str, Any]] | None = None) -> bytes:
    """The list as one Excel sheet: headings, frozen header row, autofilter, declared widths and formats.

    ``offer_summary`` (rows of :data:`OFFER_SUMMARY`, counts already suppressed) adds a second sheet,
    "Offers", with each offer's weekly places against the people it was suggested to."""
    import io

    import xlsxwriter

    cols = columns(reidentified)
    buffer = io.BytesIO()
    workbook = xlsxwriter.Workbook(buffer, {"in_memory": True, "strings_to_formulas": False,
                                            "strings_to_urls": False, "strings_to_numbers": False})
    # Excel's limits: 31 characters, none of []:*?/\ and no apostrophe at either end.
    title = re.sub(r"[\[\]:*?/\\]", " ", sheet_title)[:31].strip("'").strip() or "list"
    sheet = workbook.add_worksheet(title)
    header = workbook.add_format({"bold": True, "text_wrap": True, "valign": "top", "bottom": 1})
    formats = {
        "integer": workbook.add_format({"num_format": "0", "valign": "top"}),
        "text": workbook.add_format({"valign": "top"}),
        "risk": workbook.add_format({"num_format": RISK_EXCEL_FORMAT, "valign": "top"}),
        "points": workbook.add_format({"num_format": POINTS_EXCEL_FORMAT, "valign": "top"}),
        "long_text": workbook.add_format({"text_wrap": True, "valign": "top"}),
    }
    for c, column in enumerate(cols):
        sheet.write_string(0, c, column.heading, header)
        sheet.set_column(c, c, column.width, formats[column.format])
    for r, row in enumerate(rows, start=1):
        shown = display_row(row, reidentified)
        for c, column in enumerate(cols):
            value = row.get("score") if column.format == "risk" else shown[column.name]
            if value is None or value == "":
                continue
            if column.format in ("integer", "risk", "points"):
                sheet.write_number(r, c, float(value), formats[column.format])
            else:
                # typed as a string cell, never a formula: no prefix needed (unlike CSV)
                sheet.write_string(r, c, str(value), formats[column.format])
    sheet.freeze_panes(1, 0)
    sheet.autofilter(0, 0, max(len(rows), 1), len(cols) - 1)
    if offer_summary is not None:
        offers = workbook.add_worksheet("Offers")
        for c, (key, heading) in enumerate(OFFER_SUMMARY):
            offers.write_string(0, c, heading, header)
            offers.set_column(c, c, 34 if key == "title" else 16)
        for r, summary in enumerate(offer_summary, start=1):
            for c, (key, _) in enumerate(OFFER_SUMMARY):
                value = summary.get(key)
                if isinstance(value, int) and not isinstance(value, bool):
                    offers.write_number(r, c, value, formats["integer"])
                else:  # suppressed counts are text ("<8"): never a number a reader could sum
                    offers.write_string(r, c, "" if value is None else str(value), formats["text"])
        offers.freeze_panes(1, 0)
    workbook.close()
    return buffer.getvalue()
