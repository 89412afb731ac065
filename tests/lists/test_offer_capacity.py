"""Offer capacity on a hand-built list and a tiny catalogue: every row keeps the offers that fit; each
offer's weekly places go down the list in rank order (new, rising, top); the rest are on the waiting list;
the per-offer summary (places against people suggested) is suppressed and reaches the CSV and Excel files.

Catalogue: `falls` (2 places a week per locality, 0 in South) and `telecare` (1 place a week).
North's list (rank: person, section, offers that fit):
  1 n1 new     falls; telecare   -> falls place 1 of 2, telecare place 1 of 1
  2 n2 new     falls             -> falls place 2 of 2
  3 r1 rising  telecare; falls   -> both over capacity: waiting
  4..13 t1..t10 top  falls       -> waiting (10 people)
  14 t11 top   (none)
South: 1 s1 new falls -> South has 0 falls places: waiting.
So in North falls is suggested to 13 people: 2 with a place, 11 waiting; telecare to 2: 1 and 1.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from pipelines.lists import attach_details, ration_offers, stage_exports
from upstream.list_row import LIST_ROW
from upstream.offers import CAPACITY_RULE, offer_summary, parse_catalogue

CATALOGUE_TOML = """
[[offer]]
id = "falls"
title = "Falls prevention"
text = "Falls service."
capacity_per_locality = 2
capacity = { South = 0 }
when = [{ all = [{ feature = "falls_12m", op = ">=", value = 1 }] }]

[[offer]]
id = "telecare"
title = "Telecare"
text = "Pendant alarm."
capacity_per_locality = 1
when = [{ all = [{ feature = "lives_alone", op = "==", value = true }] }]
"""


def _catalogue(tmp_path: Path):
    path = tmp_path / "council.toml"
    path.write_text(CATALOGUE_TOML, encoding="utf-8")
    return parse_catalogue(path)


def _list() -> pl.DataFrame:
    north = [("n1", "new", "falls;telecare"), ("n2", "new", "falls"), ("r1", "rising", "telecare;falls")]
    north += [(f"t{i}", "top", "falls") for i in range(1, 11)] + [("t11", "top", "")]
    rows = [("North", rank, pid, section, offers) for rank, (pid, section, offers) in enumerate(north, start=1)]
    rows.append(("South", 1, "s1", "new", "falls"))
    rows.reverse()  # the frame's row order must not matter: places follow the rank
    return pl.DataFrame(rows, schema={"locality": pl.String, "rank": pl.Int64, "person_id": pl.String,
                                      "section": pl.String, "suggested_offers": pl.String}, orient="row")


def test_places_go_down_the_list_in_rank_order(tmp_path: Path) -> None:
    marked = ration_offers(_list(), _catalogue(tmp_path))
    got = {r["person_id"]: (r["suggested_offers"], r["offers_this_week"], r["offers_waiting"])
           for r in marked.to_dicts()}
    assert got["n1"] == ("falls;telecare", "falls;telecare", "")
    assert got["n2"] == ("falls", "falls", "")
    assert got["r1"] == ("telecare;falls", "", "telecare;falls")  # suggestions stay, both are waiting
    assert all(got[f"t{i}"] == ("falls", "", "falls") for i in range(1, 11))
    assert got["t11"] == ("", "", "")
    assert got["s1"] == ("falls", "", "falls")  # South: 0 places
    assert marked.height == 15


def test_offer_summary_counts_are_suppressed(tmp_path: Path) -> None:
    catalogue = _catalogue(tmp_path)
    marked = ration_offers(_list(), catalogue)
    north = offer_summary(marked.filter(pl.col("locality") == "North").to_dicts(), catalogue, "North")
    assert north == [
        # 13 suggested -> 15; 2 with a place -> "<8"; 11 waiting -> 10
        {"offer": "falls", "title": "Falls prevention", "weekly_capacity": 2, "suggested": "15",
         "with_place": "<8", "waiting": "10"},
        {"offer": "telecare", "title": "Telecare", "weekly_capacity": 1, "suggested": "<8", "with_place": "<8",
         "waiting": "<8"},
    ]
    south = offer_summary(marked.filter(pl.col("locality") == "South").to_dicts(), catalogue, "South")
    assert [(s["offer"], s["weekly_capacity"], s["with_place"], s["waiting"]) for s in south] == [
        ("falls", 0, "0", "<8"), ("telecare", 1, "0", "0")]


def test_attach_details_rations_and_the_files_show_it(tmp_path: Path) -> None:
    from openpyxl import load_workbook

    from pipelines.lists import offer_demand

    catalogue = _catalogue(tmp_path)
    base = _list().sort("locality", "rank")
    lists = base.with_columns(
        pl.lit(0.5).alias("score"), pl.lit("high").alias("band"), pl.lit(None, pl.Float64).alias("change_points"),
        pl.lit("why").alias("why_listed"), pl.lit(None, pl.String).alias("what_changed"),
        pl.lit("").alias("offers_this_week"), pl.lit("").alias("offers_waiting"),
        pl.lit("").alias("offer_evidence"), pl.lit("").alias("top_reasons"), pl.lit("75-84").alias("age_band"),
        pl.lit("G1").alias("gp_practice"), pl.lit("[]").alias("reasons"), pl.lit(True).alias("among_highest"),
    )
    offers = base.select("person_id", pl.col("suggested_offers").str.split(";").list.eval(
        pl.element().filter(pl.element() != "")), pl.lit("evidence").alias("offer_evidence"))
    done = attach_details(lists.with_columns(pl.lit("").alias("suggested_offers")),
                          offers=offers, catalogue=catalogue)
    assert dict(zip(done["person_id"], done["offers_waiting"], strict=True))["r1"] == "telecare;falls"

    summary = offer_demand(done, catalogue, ["North", "South"])
    staging = stage_exports(done, tmp_path / "lists" / "2026-W48", ["North", "South"], offers=summary)
    csv = pl.read_csv(staging / "north.csv", infer_schema=False)
    assert csv.columns == [c.name for c in LIST_ROW if c.name != "nhs_number"]
    assert csv.filter(pl.col("person_id") == "n2")["offers_this_week"].item() == "falls"
    capacity = pl.read_csv(staging / "offer_capacity.csv", infer_schema=False)
    assert capacity.rows() == [("North", "falls", "Falls prevention", "2", "15", "<8", "10"),
                               ("North", "telecare", "Telecare", "1", "<8", "<8", "<8"),
                               ("South", "falls", "Falls prevention", "0", "<8", "0", "<8"),
                               ("South", "telecare", "Telecare", "1", "0", "0", "0")]
    book = load_workbook(staging / "north.xlsx")
    assert book.sheetnames == ["North", "Offers"]
    offers_sheet = book["Offers"]
    assert [c.value for c in offers_sheet[1]] == ["Offer id", "Offer", "Weekly places", "Suggested to",
                                                   "With a place this week", "Waiting list (over capacity)"]
    assert [c.value for c in offers_sheet[2]] == ["falls", "Falls prevention", 2, "15", "<8", "10"]
    headings = [c.value for c in book["North"][1]]
    assert "Offer this week" in headings and "Waiting list" in headings


def test_the_rule_is_declared_in_words() -> None:
    assert "new, then rising, then top" in CAPACITY_RULE and "waiting list" in CAPACITY_RULE
