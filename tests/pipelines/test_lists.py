"""Bands, list rules, suppression and export, on hand-made frames with hand-worked answers."""

from __future__ import annotations

import json

import polars as pl
import pytest

from pipelines.lists import build_lists, export_lists, list_sizes, locality_file_stem
from pipelines.scoring import assign_bands, combine_partitions, iso_week
from tests.pipelines.conftest import score_frame
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


@pytest.fixture
def week_two() -> pl.DataFrame:
    # Locality A: p0..p9 score 0.1..1.0; p9 is in long-term care.
    rows = [(f"p{i}", "A", (i + 1) / 10, i == 9) for i in range(10)]
    # Locality B: q0..q4 scores 0.5, 0.4, 0.3, 0.2, 0.1.
    rows += [(f"q{i}", "B", (5 - i) / 10, False) for i in range(5)]
    return assign_bands(score_frame(rows))


def test_list_rules(week_two):
    rules = ListSettings(band_percentile=0.6, capacity_per_locality=1, risk_rise_threshold=0.05, top_reasons=2)
    previous_scores = pl.DataFrame(
        {
            "person_id": ["p0", "p3", "p5", "q0", "p9"],
            "score": [0.05, 0.30, 0.58, 0.30, 0.10],
        }
    )
    previous_members = pl.DataFrame({"person_id": ["p8", "q0"]})
    lists = build_lists(week_two, rules, previous_scores, previous_members)

    # A: percentile >= 0.6 -> p6 (0.6), p7 (0.7), p8 (0.8), p9 (0.9, in LTC: excluded).
    #    Capacity 1 -> only p8 by band. Rises: p0 +0.05 (reaches the threshold), p3 +0.10; p5 +0.02 does not;
    #    p9 rose 0.9 but is in long-term care.
    a = lists.filter(pl.col("locality") == "A").sort("rank")
    assert a["person_id"].to_list() == ["p8", "p3", "p0"]
    assert a["rank"].to_list() == [1, 2, 3]
    assert a["reason_for_listing"].to_list() == ["top_band", "risk_rise", "risk_rise"]
    assert a["new_this_week"].to_list() == [False, True, True]
    assert a["change_since_last_week"][0] is None
    assert a["change_since_last_week"][1:].to_list() == pytest.approx([0.1, 0.05])

    # B: percentiles 0.8 (q0), 0.6 (q1) -> both in band, capacity 1 -> q0, which also rose 0.2 -> "both".
    b = lists.filter(pl.col("locality") == "B")
    assert b["person_id"].to_list() == ["q0"]
    assert b["reason_for_listing"].to_list() == ["both"]
    assert b["new_this_week"].to_list() == [False]

    # Only the top 2 reasons are kept.
    assert [r["text"] for r in json.loads(a["reasons"][0])] == ["lives alone", "2 falls in last 12 months"]


def test_first_week_everyone_is_new_and_nobody_has_a_change(week_two):
    lists = build_lists(week_two, ListSettings(capacity_per_locality=500))
    # Default band: percentile >= 0.8 -> A: p8 (p9 excluded); B: q0.
    assert sorted(lists["person_id"].to_list()) == ["p8", "q0"]
    assert lists["new_this_week"].all()
    assert lists["change_since_last_week"].is_null().all()


def test_list_sizes_are_suppressed():
    listed = pl.DataFrame(
        {
            "locality": ["A"] * 13 + ["B"] * 3,
            "reason_for_listing": ["top_band"] * 10 + ["risk_rise"] * 3 + ["both"] * 3,
            "new_this_week": [True] * 13 + [False] * 3,
        }
    )
    sizes = {row["locality"]: row for row in list_sizes(listed, ["A", "B", "C"])}
    # A: 13 listed -> 15; 10 top band -> 10; 3 risen -> <8; 13 new -> 15.
    assert sizes["A"] == {"locality": "A", "listed": "15", "top_band": "10", "risk_rise": "<8", "new_this_week": "15"}
    assert sizes["B"]["listed"] == "<8" and sizes["B"]["new_this_week"] == "0"
    assert sizes["C"]["listed"] == "0"


def test_export_writes_csv_and_excel_and_replaces_the_week(tmp_path, week_two):
    rules = ListSettings(capacity_per_locality=500)
    lists = build_lists(week_two, rules)
    week_dir = tmp_path / "lists" / "2026-W48"
    export_lists(lists, week_dir, ["A", "B", "Empty Town"])
    assert sorted(p.name for p in week_dir.iterdir()) == [
        "a.csv",
        "a.xlsx",
        "b.csv",
        "b.xlsx",
        "empty-town.csv",
        "empty-town.xlsx",
    ]
    csv = pl.read_csv(week_dir / "a.csv")
    assert csv["person_id"].to_list() == ["p8"]
    assert csv["top_reasons"][0] == "lives alone; 2 falls in last 12 months; aged 87"
    xlsx = pl.read_excel(week_dir / "a.xlsx", engine="openpyxl")
    assert xlsx["person_id"].to_list() == ["p8"]
    assert xlsx["band"].to_list() == ["high"]
    assert pl.read_csv(week_dir / "empty-town.csv").height == 0

    # Re-export with one locality only: the week is replaced wholesale, no staging left behind.
    export_lists(lists.filter(pl.col("locality") == "B"), week_dir, ["B"])
    assert sorted(p.name for p in week_dir.iterdir()) == ["b.csv", "b.xlsx"]
    assert [p.name for p in week_dir.parent.iterdir()] == ["2026-W48"]


def test_locality_file_stem():
    assert locality_file_stem("Medway North") == "medway-north"
    assert locality_file_stem("../etc/passwd") == "etc-passwd"
    assert locality_file_stem("!!!") == "unknown"
