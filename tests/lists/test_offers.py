"""The service catalogue on hand-built feature rows: which offers fit, the evidence in words, capacity,
the override setting and clear errors for a broken council file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl
import pytest

from features.registry import FEATURES
from upstream.errors import UpstreamError
from upstream.offers import DEFAULT_CATALOGUE, NO_OFFER_FITS, load_catalogue, parse_catalogue
from upstream.settings import OffersSettings, Settings

REQUIRED_IDS = (
    "falls_prevention", "reablement", "telecare", "befriending", "bereavement_support", "carers_assessment",
    "dementia_support",
)


def feature_rows(*people: dict[str, Any]) -> pl.DataFrame:
    """A feature table with every registry column: counts 0, flags False, age 70, others null."""

    def default(name: str) -> Any:
        dtype = FEATURES[name].dtype
        if name == "age":
            return 70
        if dtype == pl.Boolean:
            return False
        if dtype == pl.Int32:
            return 0
        if dtype == pl.Float64:
            return 0.0
        return None

    rows = [{name: person.get(name, default(name)) for name in FEATURES} for person in people]
    return pl.DataFrame(rows, schema={n: f.dtype for n, f in FEATURES.items()})


def test_default_catalogue_declares_the_required_offers() -> None:
    catalogue = load_catalogue(Settings())
    assert catalogue.path == DEFAULT_CATALOGUE
    assert catalogue.ids[: len(REQUIRED_IDS)] == REQUIRED_IDS
    for offer in catalogue.offers:
        assert offer.text and offer.title
        assert offer.capacity("North") >= 1
        assert offer.features <= set(FEATURES)


def test_offers_fit_by_rules_with_evidence() -> None:
    catalogue = load_catalogue(Settings())
    features = feature_rows(
        {"person_id": "faller", "falls_12m": 2},
        {"person_id": "alone_faller_80", "lives_alone": True, "falls_12m": 1, "age": 80},
        {"person_id": "alone_faller_has_telecare", "lives_alone": True, "falls_12m": 1, "telecare": True},
        {"person_id": "nothing"},
        {"person_id": "bereaved_carer_dementia", "bereaved_12m": True, "carer": True, "dementia": True},
        {"person_id": "long_stay", "bed_days_12m": 20},
        {"person_id": "long_stay_reabled", "bed_days_12m": 20, "reablement_12m": 1},
        {"person_id": "recent_admission", "emergency_admissions_3m": 1},
    )
    matched = {r["person_id"]: r for r in catalogue.match(features).to_dicts()}
    assert matched["faller"]["suggested_offers"] == ["falls_prevention"]
    assert matched["faller"]["offer_evidence"] == "falls_prevention: 2 falls in the last 12 months"
    assert matched["alone_faller_80"]["suggested_offers"] == ["falls_prevention", "telecare", "befriending"]
    assert matched["alone_faller_80"]["offer_evidence"].split("\n") == [
        "falls_prevention: 1 fall in the last 12 months",
        "telecare: lives alone; 1 fall in the last 12 months",
        "befriending: lives alone; aged 80",
    ]
    # telecare is not suggested to someone who already has it (the "unless" rule)
    assert matched["alone_faller_has_telecare"]["suggested_offers"] == ["falls_prevention"]
    assert matched["nothing"]["suggested_offers"] == []
    assert matched["nothing"]["offer_evidence"] == ""
    assert matched["bereaved_carer_dementia"]["suggested_offers"] == [
        "bereavement_support", "carers_assessment", "dementia_support"]
    # a hidden condition (no reablement yet) is not shown as evidence
    assert matched["long_stay"]["suggested_offers"] == ["reablement"]
    assert matched["long_stay"]["offer_evidence"] == "reablement: 20 days in hospital in the last 12 months"
    assert matched["long_stay_reabled"]["suggested_offers"] == []
    assert matched["recent_admission"]["offer_evidence"] == "reablement: 1 emergency admission in the last 3 months"
    assert NO_OFFER_FITS.startswith("No offer")


def test_council_catalogue_overrides_default_with_capacity(tmp_path: Path) -> None:
    path = tmp_path / "council.toml"
    path.write_text(
        '[[offer]]\nid = "falls_prevention"\ntitle = "Falls"\ntext = "Falls service"\ncapacity_per_locality = 12\n'
        'when = [{all = [{feature = "falls_12m", op = ">=", value = 3}]}]\n'
        '[offer.capacity]\n"North" = 5\n'
    )
    catalogue = load_catalogue(Settings(offers=OffersSettings(catalogue=path)))
    assert catalogue.ids == ("falls_prevention",)
    offer = catalogue.get("falls_prevention")
    assert offer.capacity("North") == 5
    assert offer.capacity("South") == 12
    matched = catalogue.match(feature_rows({"person_id": "a", "falls_12m": 2}, {"person_id": "b", "falls_12m": 3}))
    assert matched["suggested_offers"].to_list() == [[], ["falls_prevention"]]


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ('when = [{all = [{feature = "no_such_feature", op = ">=", value = 1}]}]', "'no_such_feature' is not in"),
        ('when = [{all = [{feature = "falls_12m", op = "=>", value = 1}]}]', "op '=>'"),
        ('when = [{all = [{feature = "lives_alone", op = "==", value = 1}]}]', "needs true or false"),
        ('when = [{all = [{feature = "falls_12m", op = ">=", value = "one"}]}]', "needs a number"),
        ("when = []", "at least one group"),
    ],
)
def test_broken_catalogue_names_file_offer_and_problem(tmp_path: Path, body: str, problem: str) -> None:
    path = tmp_path / "broken.toml"
    path.write_text(f'[[offer]]\nid = "falls_prevention"\ntitle = "Falls"\ntext = "t"\ncapacity_per_locality = 1\n{body}\n')
    with pytest.raises(UpstreamError) as err:
        parse_catalogue(path)
    message = str(err.value)
    assert str(path) in message and "falls_prevention" in message and problem in message


def test_duplicate_offer_and_bad_toml(tmp_path: Path) -> None:
    offer = ('[[offer]]\nid = "telecare"\ntitle = "T"\ntext = "t"\ncapacity_per_locality = 1\n'
             'when = [{all = [{feature = "lives_alone", op = "==", value = true}]}]\n')
    path = tmp_path / "dup.toml"
    path.write_text(offer + offer)
    with pytest.raises(UpstreamError, match="declared twice"):
        parse_catalogue(path)
    path.write_text("[[offer]\nid=")
    with pytest.raises(UpstreamError, match="not valid TOML"):
        parse_catalogue(path)
    with pytest.raises(UpstreamError, match="file not found"):
        parse_catalogue(tmp_path / "missing.toml")
