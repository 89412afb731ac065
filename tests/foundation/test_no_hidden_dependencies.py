"""No hidden dependencies: every package we ship and depend on is always there, so nothing may act as if not.

An ``except ImportError`` around one of our own imports turns a broken install into quietly different
behaviour (a CLI command that vanishes, reasons that lose their words), and ``pytest.importorskip`` on our
own packages turns a broken import into a skipped end-to-end test instead of a red one. The source is
scanned with ``ast`` so that neither can come back unnoticed.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from upstream.cli import COMMANDS, build_parser

ROOT = Path(__file__).resolve().parents[2]
#: the packages the wheel ships (pyproject.toml [tool.hatch.build.targets.wheel]) plus the tests
PROJECT_PACKAGES = ("upstream", "synthetic", "expectations", "features", "models", "pipelines", "serving")
SCANNED = (*PROJECT_PACKAGES, "tests")
IMPORT_ERRORS = {"ImportError", "ModuleNotFoundError"}


def _caught_names(handler: ast.ExceptHandler) -> set[str]:
    kinds = handler.type
    nodes = kinds.elts if isinstance(kinds, ast.Tuple) else [kinds] if kinds is not None else []
    return {n.id if isinstance(n, ast.Name) else n.attr for n in nodes if isinstance(n, ast.Name | ast.Attribute)}


def hidden_dependencies(source: str) -> list[tuple[int, str]]:
    """(line, what) for each import fallback or importorskip of a project package in ``source``."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ExceptHandler) and _caught_names(node) & IMPORT_ERRORS:
            found.append((node.lineno, "except ImportError fallback"))
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "importorskip"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and str(node.args[0].value).split(".")[0] in PROJECT_PACKAGES
        ):
            found.append((node.lineno, f"importorskip({node.args[0].value!r})"))
    return found


def test_the_scanner_finds_each_kind_of_fallback() -> None:
    source = (
        "try:\n    import models.registry\nexcept ImportError:\n    registry = None\n"
        "try:\n    import x\nexcept (ValueError, ModuleNotFoundError):\n    pass\n"
        "steps = pytest.importorskip('pipelines.steps')\n"
        "pw = pytest.importorskip('playwright')\n"  # a third-party extra may be optional: not flagged
        "try:\n    f()\nexcept ValueError:\n    pass\n"
    )
    assert hidden_dependencies(source) == [
        (3, "except ImportError fallback"),
        (7, "except ImportError fallback"),
        (9, "importorskip('pipelines.steps')"),
    ]


def test_no_source_file_hides_a_dependency() -> None:
    offenders = [
        f"{path.relative_to(ROOT)}:{line}: {what}"
        for package in SCANNED
        for path in sorted((ROOT / package).rglob("*.py"))
        for line, what in hidden_dependencies(path.read_text(encoding="utf-8"))
    ]
    assert offenders == []


def test_every_cli_command_is_registered() -> None:
    """A command whose module fails to import is an error, never a command missing from ``--help``."""
    listed = re.findall(r"^    (\S+)\s", build_parser().format_help(), flags=re.MULTILINE)
    assert sorted(listed) == sorted(COMMANDS)


def _models_imports(path: Path) -> tuple[set[str], list[int]]:
    """(models.* modules imported at module level, lines of models.* imports inside functions)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    top = {
        node.module for node in tree.body
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("models.")
    }
    top |= {
        f"models.{alias.name}" for node in tree.body
        if isinstance(node, ast.ImportFrom) and node.module == "models" for alias in node.names
    }
    nested = [
        inner.lineno
        for fn in ast.walk(tree) if isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef)
        for inner in ast.walk(fn)
        if isinstance(inner, ast.ImportFrom) and inner.module and inner.module.split(".")[0] == "models"
    ]
    return top, nested


def test_models_package_has_no_import_cycle_hidden_in_functions() -> None:
    """train -> tracking -> registry is one-way: no models module imports another inside a function (only the
    CLI defers its import, to keep ``upstream --help`` fast), and the module-level graph has no cycle."""
    graph: dict[str, set[str]] = {}
    hidden: list[str] = []
    for path in sorted((ROOT / "models").glob("*.py")):
        module = f"models.{path.stem}"
        graph[module], nested = _models_imports(path)
        if path.stem != "cli":
            hidden += [f"{module}:{line}" for line in nested]
    assert hidden == []

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        return any(n == goal or (n not in seen and reaches(n, goal, seen | {n})) for n in graph.get(start, ()))

    assert [m for m in graph if reaches(m, m, set())] == []
    assert "models.registry" in graph["models.tracking"] and "models.tracking" not in graph["models.registry"]


def _imported_modules(path: Path, ours: set[str]) -> set[str]:
    """Our modules ``path`` imports anywhere in the file: at module level and inside functions alike."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
        else:
            continue
        found |= {name for name in names if name in ours}
    return found


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan): each is an import cycle."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        for other in graph[module]:
            if other not in index:
                visit(other)
                low[module] = min(low[module], low[other])
            elif other in stack:
                low[module] = min(low[module], index[other])
        if low[module] == index[module]:
            group = []
            while True:
                other = stack.pop()
                group.append(other)
                if other == module:
                    break
            if len(group) > 1:
                cycles.append(sorted(group))

    for module in graph:
        if module not in index:
            visit(module)
    return cycles


def test_import_cycles_are_found() -> None:
    assert import_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert import_cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_anywhere_not_even_through_imports_inside_functions() -> None:
    """An import inside a function may defer a heavy library; it must not hide a cycle between our modules
    (score_history -> run_guard -> score_history was one: the lock now knows nothing of the score tables)."""
    paths = {
        ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"): path
        for package in (*PROJECT_PACKAGES, "loop")
        for path in sorted((ROOT / package).rglob("*.py"))
    }
    graph = {module: _imported_modules(path, set(paths)) - {module} for module, path in paths.items()}
    assert len(graph) > 100 and "pipelines.run_guard" in graph["pipelines.score_history"]
    assert import_cycles(graph) == []


#: MLflow calls that read or change the process-wide tracking store (the fluent API), which the API and tests share.
FLUENT_MLFLOW = re.compile(
    r"\bmlflow\.(set_tracking_uri|set_registry_uri|set_experiment|start_run|end_run|log_\w+|set_tag|set_tags"
    r"|autolog|\w+\.log_model|\w+\.autolog)\("
)


def test_no_process_wide_mlflow_state() -> None:
    """Our code writes and reads MLflow through clients bound to the settings' store (``models.registry.client_for``,
    ``models.tracking.RunLog``), never through the fluent API's process-wide tracking URI."""
    assert FLUENT_MLFLOW.search("    mlflow.set_tracking_uri(uri)") and FLUENT_MLFLOW.search("mlflow.pyfunc.log_model(")
    assert not FLUENT_MLFLOW.search("mlflow.pyfunc.save_model(") and not FLUENT_MLFLOW.search("client.log_batch(")
    offenders = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for package in (*PROJECT_PACKAGES, "loop")
        for path in sorted((ROOT / package).rglob("*.py"))
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1)
        if FLUENT_MLFLOW.search(line) and not line.lstrip().startswith("#")
    ]
    assert offenders == []
