"""One boundary for score history: in ``pipelines/``, only ``score_history.py`` touches its tables."""

from __future__ import annotations

import ast
from pathlib import Path

import pipelines

SCORE_HISTORY_TABLES = {"score_runs", "scores", "published_weeks", "risk_lists", "cohort_funnels"}


def _store_tables_imported(path: Path) -> set[str]:
    """Names of score-history tables a module imports from ``upstream.store`` (anywhere in the file)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module == "upstream.store":
            found |= {alias.name for alias in node.names} & SCORE_HISTORY_TABLES
        if isinstance(node, ast.Attribute) and node.attr in SCORE_HISTORY_TABLES:
            value = node.value
            if isinstance(value, ast.Name) and value.id == "store":  # `from upstream import store; store.scores`
                found.add(node.attr)
    return found


def test_only_score_history_reads_or_writes_the_score_tables():
    package = Path(pipelines.__file__).parent
    touching = {p.name: tables for p in sorted(package.glob("*.py")) if (tables := _store_tables_imported(p))}
    assert set(touching) == {"score_history.py"}, touching
    # and the guard can see an offender (so an empty result above means something)
    assert _store_tables_imported(package / "score_history.py") == SCORE_HISTORY_TABLES


def test_the_score_row_is_the_scores_table_row():
    """``scoring.SCORE_ROW`` (what scoring makes and score_history writes) and the stored table agree."""
    from pipelines.scoring import SCORE_COLUMNS, SCORE_ROW
    from upstream.store import scores

    assert set(SCORE_ROW.names()) == {c.name for c in scores.columns} - {"run_id"}
    assert set(SCORE_COLUMNS) == set(SCORE_ROW.names()) - {"band"}  # band is added across partitions
