"""One boundary for score history: in the whole code base, only ``pipelines/score_history.py`` touches its
tables, and only it opens the history store (``pipelines/history_store.py``)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pipelines

ROOT = Path(pipelines.__file__).resolve().parent.parent
#: Where score history is declared (the tables) and read or written (the boundary and the store it owns).
ALLOWED = {"upstream/store.py", "pipelines/score_history.py", "pipelines/history_store.py"}

SCORE_HISTORY_TABLES = {"score_runs", "scores", "published_weeks", "risk_lists", "cohort_funnels"}


#: SQL written as text against a score-history table ("FROM scores", "join risk_lists"...).
_RAW_SQL = re.compile(r"\b(from|join|into|update)\s+(" + "|".join(sorted(SCORE_HISTORY_TABLES | {"score_summaries"}))
                      + r")\b", re.IGNORECASE)
_SQL_VERB = re.compile(r"\b(select|delete|insert|update)\b", re.IGNORECASE)  # "estimated from scores" is prose


def _store_tables_imported(path: Path) -> set[str]:
    """Names of score-history tables a module imports from ``upstream.store`` (anywhere in the file), the
    history store module if it imports it, and tables named in raw SQL strings."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module == "pipelines.history_store":
            found.add("history_store")
        if isinstance(node, ast.Import) and any(a.name == "pipelines.history_store" for a in node.names):
            found.add("history_store")
        if isinstance(node, ast.ImportFrom) and node.module == "pipelines" and any(
            a.name == "history_store" for a in node.names
        ):
            found.add("history_store")
        if (isinstance(node, ast.Constant) and isinstance(node.value, str) and _SQL_VERB.search(node.value)
                and (sql := _RAW_SQL.search(node.value))):
            found.add(sql.group(2).lower())
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
    assert _store_tables_imported(package / "score_history.py") == SCORE_HISTORY_TABLES | {"history_store"}


def _code_files() -> list[Path]:
    """Every Python file of the product: not the tests or the benches, which synthesise stored weeks directly
    (fixtures at scale), nor the virtual environment."""
    return [p for p in sorted(ROOT.rglob("*.py"))
            if not ({".venv", "tests", "bench", ".git"} & set(p.relative_to(ROOT).parts))]


def test_nothing_outside_the_boundary_reads_score_history():
    """The API (serving/queries.py and the routes), the loop, retention, benches: all through score_history."""
    offenders = {str(p.relative_to(ROOT)): tables for p in _code_files()
                 if str(p.relative_to(ROOT)) not in ALLOWED and (tables := _store_tables_imported(p))}
    assert offenders == {}


def test_the_guard_catches_a_direct_read(tmp_path):
    """The three ways in: a table imported from upstream.store, the history store imported, raw SQL."""
    for source, expected in (
        ("from upstream.store import scores\n", {"scores"}),
        ("from upstream import store\nstore.risk_lists.select()\n", {"risk_lists"}),
        ("from pipelines.history_store import HistoryStore\n", {"history_store"}),
        ("q = 'SELECT score FROM scores WHERE person_id = ?'\n", {"scores"}),
        ("note = 'AUROC estimated from scores'\n", set()),
    ):
        path = tmp_path / "offender.py"
        path.write_text(source)
        assert _store_tables_imported(path) == expected, source


def test_the_score_row_is_the_scores_table_row():
    """``scoring.SCORE_ROW`` (what scoring makes and score_history writes) and the stored table agree."""
    from pipelines.scoring import SCORE_COLUMNS, SCORE_ROW
    from upstream.store import scores

    assert set(SCORE_ROW.names()) == {c.name for c in scores.columns} - {"run_id"}
    assert set(SCORE_COLUMNS) == set(SCORE_ROW.names()) - {"band"}  # band is added across partitions
