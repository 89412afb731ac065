"""The governance pack stays true to the code: the data-flow description is regenerated from the code's
declarations, every table says who reads it, and the retention document names the settings that exist."""

from __future__ import annotations

from pathlib import Path

from serving.dataflow import DOC_PATH, TABLE_READERS, data_flow_markdown
from upstream.settings import RetentionSettings
from upstream.store import metadata

GOVERNANCE = Path(__file__).resolve().parents[2] / "docs" / "governance"


def test_data_flow_document_matches_the_code():
    assert DOC_PATH.read_text() == data_flow_markdown(), "run: uv run python -m serving.dataflow > " + str(DOC_PATH)


def test_every_operational_table_declares_its_readers():
    assert set(metadata.tables) <= set(TABLE_READERS), set(metadata.tables) - set(TABLE_READERS)
    assert "undeclared" not in data_flow_markdown()


def test_governance_pack_is_complete_and_names_real_settings():
    names = {p.name for p in GOVERNANCE.glob("*.md")}
    assert {"README.md", "dpia.md", "data-flow.md", "legal-basis.md", "retention.md", "privacy-notice.md",
            "equality-impact.md"} <= names
    retention = (GOVERNANCE / "retention.md").read_text()
    for setting in RetentionSettings.model_fields:
        assert f"UPSTREAM_RETENTION__{setting.upper()}" in retention, setting
