"""The simulated programme: declared targeting and capacity, action log, and a true ATT from coupled futures."""

from __future__ import annotations

import json
from collections import Counter
from datetime import date, timedelta

import polars as pl
import pytest

from loop.actions import IMPORT_COLUMNS, week_monday
from synthetic.generate import generate_delivery
from synthetic.programme import Programme
from upstream.errors import UpstreamError

END = date(2026, 11, 22)


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """The same population and seed with no effect and with a large effect."""
    base = tmp_path_factory.mktemp("prog")
    out = {}
    for effect in (0.0, 0.6):
        generate_delivery(base / str(effect), residents=3000, seed=11, programme_effect=effect)
        out[effect] = base / str(effect)
    return out


def test_effect_zero_still_runs_the_programme_and_its_true_effect_is_exactly_none(pair):
    truth = json.loads((pair[0.0] / "_truth" / "programme.json").read_text())
    actions = pl.read_csv(pair[0.0] / "programme_actions.csv", infer_schema=False)
    assert truth["crisis_12m"]["n_treated"] > 0
    # same random numbers in both arms and no effect: identical probabilities, not merely close
    assert truth["crisis_12m"]["risk_difference"] == 0.0
    assert truth["crisis_12m"]["risk_ratio"] == 1.0
    assert (actions["action"] == "accepted").sum() == truth["crisis_12m"]["n_treated"]


def test_actions_file_has_the_import_columns_and_one_answer_per_offer(pair):
    actions = pl.read_csv(pair[0.6] / "programme_actions.csv", infer_schema=False)
    assert tuple(actions.columns) == IMPORT_COLUMNS
    offered = actions.filter(pl.col("action") == "offered")
    answers = actions.filter(pl.col("action").is_in(["accepted", "declined"]))
    # each person is offered once, and answers once, in the same week
    assert offered["nhs_number"].n_unique() == len(offered) == len(answers)
    assert sorted(zip(offered["nhs_number"], offered["week"], strict=True)) == sorted(
        zip(answers["nhs_number"], answers["week"], strict=True))
    assert set(actions["offer"]) == {"falls_prevention"}


def test_offers_stay_inside_the_declared_period_and_capacity(pair):
    prog = Programme(effect=0.6, start=Programme.default_start(END))
    actions = pl.read_csv(pair[0.6] / "programme_actions.csv", infer_schema=False)
    weeks = Counter(actions.filter(pl.col("action") == "offered")["week"].to_list())
    mondays = {week_monday(w) for w in weeks}
    assert min(mondays) >= prog.start
    assert max(mondays) <= prog.start + timedelta(weeks=prog.weeks - 1)
    # every 12-month outcome window has closed by the extract date
    assert max(mondays) + timedelta(days=365) <= END
    # 3000 residents in one chunk: 200 per 100k a week = 6 offers a week
    assert set(weeks.values()) == {6}
    assert len(weeks) == prog.weeks


def test_the_effect_lowers_the_true_risk_of_the_treated_and_nothing_before_the_programme_changes(pair):
    truth = json.loads((pair[0.6] / "_truth" / "programme.json").read_text())["crisis_12m"]
    assert truth["risk_ratio"] < 1 and truth["risk_difference"] < 0
    assert truth["risk_treated"] == pytest.approx(truth["risk_untreated"] + truth["risk_difference"])
    # same seed: everything before the first programme week is the same data
    start = Programme.default_start(END)
    spells = [pl.read_parquet(pair[e] / "hospital_spells.parquet").filter(pl.col("admission_date") < start)
              for e in (0.0, 0.6)]
    assert spells[0].equals(spells[1])
    # and the first week's offers (chosen before any effect) are the same people
    first = [pl.read_csv(pair[e] / "programme_actions.csv", infer_schema=False)
             .filter((pl.col("action") == "offered") & (pl.col("week") == pl.col("week").min()))["nhs_number"]
             .sort().to_list() for e in (0.0, 0.6)]
    assert first[0] == first[1]


@pytest.mark.parametrize("effect", [-0.1, 1.0])
def test_effect_outside_zero_to_one_is_refused(tmp_path, effect):
    with pytest.raises(UpstreamError, match="programme-effect"):
        generate_delivery(tmp_path, residents=100, seed=1, programme_effect=effect)


def test_programme_needs_two_years_of_history(tmp_path):
    with pytest.raises(UpstreamError, match="2 years"):
        generate_delivery(tmp_path, residents=100, seed=1, years=1, programme_effect=0.2)


def test_the_programme_offer_is_in_the_shipped_service_catalogue():
    from upstream.offers import DEFAULT_CATALOGUE, parse_catalogue

    assert Programme(effect=0.1, start=END).offer in parse_catalogue(DEFAULT_CATALOGUE).ids
