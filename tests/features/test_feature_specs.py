"""Runs every worked example in ``features/specs.py`` (the ones the data dictionary shows)."""

from __future__ import annotations

from pathlib import Path

import pytest

from features.build import build_features
from features.registry import FEATURES
from features.specs import SPEC_T, SPECS, Spec
from tests.features.conftest import write_clean


@pytest.mark.parametrize("spec", SPECS, ids=[f"{s.feature}: {s.behaviour}" for s in SPECS])
def test_spec(spec: Spec, tmp_path: Path) -> None:
    assert spec.feature in FEATURES
    tables = {source: list(rows) for source, rows in spec.tables.items()}
    named = {row["person_id"] for row in tables.get("residents", [])}
    tables["residents"] = tables.get("residents", []) + [
        {"person_id": person} for person in sorted(spec.expected) if person not in named
    ]
    features = build_features(write_clean(tmp_path, **tables), SPEC_T)
    got = dict(features.select("person_id", spec.feature).iter_rows())
    for person, expected in spec.expected.items():
        if isinstance(expected, float):
            assert got[person] == pytest.approx(expected), person
        else:
            assert got[person] == expected, person
