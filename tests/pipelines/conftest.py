"""Fixtures for the pipeline tests: hand-made score frames with worked-out expectations."""

from __future__ import annotations

import json

import polars as pl
import pytest

from upstream.settings import Settings


def reasons_json(*texts: str) -> str:
    return json.dumps(
        [{"feature": f"f{i}", "value": i, "text": t, "contribution": 1.0 / (i + 1)} for i, t in enumerate(texts)]
    )


def score_frame(rows: list[tuple[str, str, float, bool]]) -> pl.DataFrame:
    """(person_id, locality, score, in_long_term_care) -> the frame scoring produces."""
    return pl.DataFrame(
        {
            "person_id": [r[0] for r in rows],
            "locality": [r[1] for r in rows],
            "score": [r[2] for r in rows],
            "in_long_term_care": [r[3] for r in rows],
            "reasons": [reasons_json("lives alone", "2 falls in last 12 months", "aged 87") for _ in rows],
        }
    )


def latest_artifact(key: str) -> dict:
    """The newest artifact with ``key`` from the running Prefect API (plain HTTP: the 3.8 client's
    filter call sends nulls the server rejects)."""
    import httpx
    from prefect.settings import PREFECT_API_URL

    response = httpx.post(
        f"{PREFECT_API_URL.value()}/artifacts/filter",
        json={"artifacts": {"key": {"any_": [key]}}, "sort": "CREATED_DESC", "limit": 1, "offset": 0},
        timeout=30,
    )
    response.raise_for_status()
    found = response.json()
    assert found, f"no artifact {key!r}"
    return found[0]


@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings(home=tmp_path / "home")
