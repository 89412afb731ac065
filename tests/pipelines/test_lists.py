"""Bands, list rules, suppression and export, on hand-made frames with hand-worked answers."""

from __future__ import annotations

import json
from datetime import date

import polars as pl
import pytest

from pipelines.lists import attach_details, build_lists, export_lists, funnel_rows, list_sizes, locality_file_stem
from pipelines.scoring import assign_bands, combine_partitions, iso_week
from tests.pipelines.conftest import reasons_json, score_frame
from upstream.settings import ListSettings


def test_bands_by_locality_percentile():
    # 20 residents, distinct scores: percentile = (rank - 1) / 20.
    # 0.20 -> 0.95 very high; 0.17..0.19 -> 0.80..0.90 high; 0.11..0.16 -> 0.50..0.75 moderate; rest low.
    frame = score_frame([(f"a{i:02d}", "A", i / 100, False) for i in range(1, 21)])
    # A second locality with much lower scores still has its own top band.
    frame = pl.concat([frame, score_frame([("b1", "B", 0.001, False), ("b2", "B", 0.002, False)])])
    banded = assign_bands(frame)
    band = dict(zip(banded["person_id"], banded["band"], strict=True))
    assert band["a20"] == "very high"
    assert [band[f"a{i}"] for i in (17, 18, 19)] == ["high"] * 3
    assert [band[f"a{i}"] for i in range(11, 17)] == ["moderate"] * 6
    assert {band[f"a{i:02d}"] for i in range(1, 11)} == {"low"}
    # B: 2 residents -> percentiles 0 and 0.5.
    assert band["b2"] == "moderate" and band["b1"] == "low"


def test_combining_partitions_is_order_independent_and_rejects_duplicates():
    a = score_frame([("a1", "A", 0.3, False), ("a2", "A", 0.1, False)])
    b = score_frame([("b1", "B", 0.2, False)])
    assert combine_partitions([a, b]).equals(combine_partitions([b, a]))
    with pytest.raises(ValueError, match="more than one partition"):
        combine_partitions([a, a])


def test_iso_week_key():
    from datetime import date

    assert iso_week(date(2026, 11, 23)) == "2026-W48"
    assert iso_week(date(2026, 11, 29)) == "2026-W48"  # Sunday: same week
    assert iso_week(date(2027, 1, 1)) == "2026-W53"


T = date(2026, 11, 23)
FOUR_WEEKS_AGO = date(2026, 10, 26)


@pytest.fixture
def week_two() -> pl.DataFrame:
    # Locality A: p0..p9 score 0.1..1.0. Locality B: q0..q4 scores 0.5, 0.4, 0.3, 0.2, 0.1.
    rows = [(f"p{i}", "A", (i + 1) / 10, False) for i in range(10)]
    rows += [(f"q{i}", "B", (5 - i) / 10, False) for i in range(5)]
    return assign_bands(score_frame(rows))


def cohort_frame(excluded: dict[str, str] | None = None, ages: dict[str, int] | None = None) -> pl.DataFrame:
    """Everyone of week_two in the cohort (aged 70, practice G1) except ``excluded`` (person -> reason)."""
    people = [f"p{i}" for i in range(10)] + [f"q{i}" for i in range(5)]
    excluded, ages = excluded or {}, ages or {}
    return pl.DataFrame({
        "person_id": people,
        "locality": ["A"] * 10 + ["B"] * 5,
        "gp_practice": ["G1"] * 15,
        "age": [ages.get(p, 70) for p in people],
        "exclusion_reason": [excluded.get(p) for p in people],
    }, schema={"person_id": pl.String, "locality": pl.String, "gp_practice": pl.String, "age": pl.Int32,
               "exclusion_reason": pl.String})


def last_week(rows: list[tuple[str, str, float, bool | None, str]]) -> pl.DataFrame:
    """Last week's published list rows: (person_id, locality, score, among_highest, section)."""
    return pl.DataFrame(rows, schema={"person_id": pl.String, "locality": pl.String, "score": pl.Float64,
                                      "among_highest": pl.Boolean, "section": pl.String}, orient="row")


def test_sections_order_and_words(week_two):
    rules = ListSettings(band_percentile=0.6, capacity_per_locality=1, risk_rise_threshold=0.05, top_reasons=2)
    comparison = pl.DataFrame({"person_id": ["p0", "p3", "p5", "q0", "p9", "p8"],
                               "score": [0.05, 0.30, 0.58, 0.30, 0.10, 0.9]})
    # Last week: A listed p7 by rank (0.85: A's entry level) and p3 as a riser; B listed q0 by rank.
    previous_list = last_week([("p7", "A", 0.85, True, "top"), ("p3", "A", 0.30, False, "rising"),
                               ("q0", "B", 0.30, True, "top")])
    # p9 (1.0, rose 0.9) is an inpatient: excluded whatever their risk or rise.
    cohort = cohort_frame({"p9": "inpatient"}, ages={"p8": 86, "p0": 64})
    lists = build_lists(week_two, rules, cohort, index_date=T, comparison_scores=comparison,
                        comparison_date=FOUR_WEEKS_AGO, previous_list=previous_list)

    # A (p9 excluded): percentile >= 0.6 -> p6, p7, p8 (p9 excluded); capacity 1 -> p8 is top.
    #   Rises: p0 +0.05 (reaches the threshold), p3 +0.10; p5 +0.02 does not; p8 fell 0.0 -> top only.
    #   Not on last week's list: p8 (0.9 >= A's entry level 0.85: their own risk) and p0 (rising): both new;
    #   p3 was listed last week and is rising; nobody else.
    #   Order: new (p8 0.9, p0 0.1), then rising (p3).
    a = lists.filter(pl.col("locality") == "A").sort("rank")
    assert a["person_id"].to_list() == ["p8", "p0", "p3"]
    assert a["section"].to_list() == ["new", "new", "rising"]
    assert a["rank"].to_list() == [1, 2, 3]
    assert a["change_points"].to_list() == [0.0, 5.0, 10.0]
    assert a["why_listed"].to_list() == [
        "New this week; the highest risk in A",
        "New this week; Risk up 5.0 points in 4 weeks",
        "Risk up 10.0 points in 4 weeks",
    ]
    assert a["age_band"].to_list() == ["85+", "18-64", "65-74"]
    assert a["gp_practice"].to_list() == ["G1"] * 3

    # B: percentiles 0.8 (q0), 0.6 (q1) -> capacity 1 -> q0, on last week's list, rose 0.2 -> rising.
    b = lists.filter(pl.col("locality") == "B")
    assert b["person_id"].to_list() == ["q0"]
    assert b["section"].to_list() == ["rising"]
    assert b["why_listed"].to_list() == ["Risk up 20.0 points in 4 weeks; the highest risk in B"]


def test_first_list_has_no_new_section_and_no_change(week_two):
    lists = build_lists(week_two, ListSettings(capacity_per_locality=500), cohort_frame(), index_date=T)
    # Default band: percentile >= 0.8 -> A: p8, p9; B: q0.
    assert sorted(lists["person_id"].to_list()) == ["p8", "p9", "q0"]
    assert set(lists["section"]) == {"top"}
    assert lists["change_points"].is_null().all()
    assert lists.filter(pl.col("person_id") == "p9")["why_listed"].item() == "Among the 2 highest risks in A"


def test_attach_details_words_offers_and_changes(week_two):
    rules = ListSettings(capacity_per_locality=500, top_reasons=2)
    lists = build_lists(week_two, rules, cohort_frame(), index_date=T,
                        previous_list=last_week([("p9", "A", 0.85, True, "top"), ("q0", "B", 0.5, True, "top")]))
    offers = pl.DataFrame({"person_id": ["p8"], "suggested_offers": [["falls_prevention", "telecare"]],
                           "offer_evidence": ["falls_prevention: 2 falls | telecare: lives alone"]})
    # The reasons are the ones scoring kept: its top ``lists.top_reasons`` (2 here), stored as JSON text.
    kept = reasons_json("lives alone", "2 falls in last 12 months")
    stored = lists.select("person_id", pl.lit(kept).alias("reasons"))
    done = attach_details(lists, reasons=stored, offers=offers,
                          changes={"p8": "emergency admission on 12 Nov 2026", "p9": "not shown: p9 is top"})
    row = {r["person_id"]: r for r in done.to_dicts()}
    assert row["p8"]["section"] == "new" and row["p9"]["section"] == "top"
    assert row["p8"]["suggested_offers"] == "falls_prevention;telecare"
    assert row["p8"]["what_changed"] == "emergency admission on 12 Nov 2026"
    assert row["p9"]["what_changed"] is None  # only new and rising rows say what changed
    assert row["p9"]["suggested_offers"] == "" and row["p9"]["offer_evidence"].startswith("No offer")
    assert row["p8"]["top_reasons"] == "lives alone; 2 falls in last 12 months"  # top 2 reasons only
    assert len(json.loads(row["p8"]["reasons"])) == 2
    assert row["p8"]["reasons"] == kept  # the stored text as it is: not decoded and encoded again


def test_list_sizes_are_suppressed():
    listed = pl.DataFrame(
        {
            "locality": ["A"] * 13 + ["B"] * 3,
            "section": ["top"] * 10 + ["rising"] * 3 + ["new"] * 3,
            "suggested_offers": ["telecare"] * 12 + [""] + [""] * 3,
        }
    )
    sizes = {row["locality"]: row for row in list_sizes(listed, ["A", "B", "C"])}
    # A: 13 listed -> 15; 10 top -> 10; 3 rising -> <8; 0 new -> 0; 12 with an offer -> 10.
    assert sizes["A"] == {"locality": "A", "listed": "15", "new": "0", "rising": "<8", "top": "10",
                          "with_offer": "10"}
    assert sizes["B"]["listed"] == "<8" and sizes["B"]["new"] == "<8"
    assert sizes["C"]["listed"] == "0"


def test_funnel_rows_are_suppressed_and_ordered():
    from upstream.settings import CohortSettings

    # 40 residents of A: 3 under 18, 9 inpatients, 28 in the cohort.
    cohort = pl.DataFrame({"person_id": [f"a{i}" for i in range(40)], "locality": ["A"] * 40,
                           "exclusion_reason": ["under_min_age"] * 3 + ["inpatient"] * 9 + [None] * 28},
                          schema={"person_id": pl.String, "locality": pl.String, "exclusion_reason": pl.String})
    rows = [r for r in funnel_rows(cohort, CohortSettings(), ["A", "B"]) if r["locality"] == "A"]
    assert [r["step"] for r in rows] == ["residents", "under_min_age", "inpatient", "care_home",
                                         "open_long_term_service_or_reablement", "last_year_of_life",
                                         "opted_out", "in_cohort"]
    assert [r["shown"] for r in rows] == ["40", "<8", "10", "0", "0", "0", "0", "30"]
    assert rows[1]["people"] is None and rows[1]["label"] == "Under 18"


def test_export_writes_the_declared_row_as_csv_and_excel(tmp_path, week_two):
    from openpyxl import load_workbook

    from upstream.list_row import LIST_ROW

    rules = ListSettings(capacity_per_locality=500)
    lists = attach_details(build_lists(week_two, rules, cohort_frame(), index_date=T))
    week_dir = tmp_path / "lists" / "2026-W48"
    export_lists(lists, week_dir, ["A", "B", "Empty Town"])
    assert sorted(p.name for p in week_dir.iterdir()) == [
        "a.csv", "a.xlsx", "b.csv", "b.xlsx", "empty-town.csv", "empty-town.xlsx",
    ]
    csv = pl.read_csv(week_dir / "a.csv", infer_schema=False)
    # on disk: pseudonymised, so every declared column but the NHS number
    assert csv.columns == [c.name for c in LIST_ROW if c.name != "nhs_number"]
    assert csv["person_id"].to_list() == ["p9", "p8"]
    assert csv["risk_percent"].to_list() == ["> 99%", "90.0%"]  # score 1.0 is never "100%"
    assert csv["top_reasons"][0] == "lives alone; 2 falls in last 12 months; aged 87"
    sheet = load_workbook(week_dir / "a.xlsx").active
    assert sheet.freeze_panes == "A2"
    assert sheet.auto_filter.ref is not None and sheet.auto_filter.ref.startswith("A1:")
    headings = [cell.value for cell in sheet[1]]
    assert headings[:3] == ["Rank", "Section", "Person id"]
    risk_col = headings.index("Risk") + 1
    assert sheet.cell(row=3, column=risk_col).value == pytest.approx(0.9)
    assert sheet.cell(row=3, column=risk_col).number_format == '[<0.01]"< 1%";[>0.99]"> 99%";0.0%'
    assert sheet.column_dimensions["A"].width > 0
    assert pl.read_csv(week_dir / "empty-town.csv").height == 0

    # Re-export with one locality only: the week is replaced wholesale, no staging left behind.
    export_lists(lists.filter(pl.col("locality") == "B"), week_dir, ["B"])
    assert sorted(p.name for p in week_dir.iterdir()) == ["b.csv", "b.xlsx"]
    assert [p.name for p in week_dir.parent.iterdir()] == ["2026-W48"]


def test_locality_file_stem():
    assert locality_file_stem("Medway North") == "medway-north"
    assert locality_file_stem("../etc/passwd") == "etc-passwd"
    assert locality_file_stem("!!!") == "unknown"
