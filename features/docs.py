"""Render the Markdown data dictionary from the feature registry (the only source of its content)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from features.registry import FEATURES, MODEL_FEATURES, NOTES, Feature
from features.specs import SPEC_T, SPECS

DEFAULT_PATH = Path(__file__).resolve().parents[1] / "docs" / "data_dictionary.md"


def _codelist_cell(feature: Feature) -> str:
    return "<br>".join(
        f"`{c.filename}` ({len(c.codes())} codes; {c.source}; sha256 {c.version})" for c in feature.codelists
    )


def _no_window(feature: Feature) -> str:
    """Event features without a window look at the whole history before T (or state at T)."""
    if feature.source in ("residents", "derived"):
        return ""
    return "at T" if "at T" in feature.aggregation else "all history before T"  # "open at T", "... at UPRN at T"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_data_dictionary() -> str:
    lines = [
        "# Upstream feature data dictionary",
        "",
        "Generated from `features/registry.py` by `upstream docs`; do not edit by hand.",
        "",
        "## Notes",
        "",
        *[f"- {note}" for note in NOTES],
        "",
        f"Model inputs ({len(MODEL_FEATURES)}), in order: " + ", ".join(f"`{n}`" for n in MODEL_FEATURES) + ".",
        "",
    ]
    groups: dict[str, list[Feature]] = {}
    for feature in FEATURES.values():
        groups.setdefault(feature.group, []).append(feature)
    for group, features in groups.items():
        lines += [
            f"## {group}",
            "",
            "| Feature | Type | Model input | Source | Window | Aggregation | Code lists | Values | If none recorded "
            "| Description |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for f in features:
            window = f"{f.window_days} days ({f.window_text})" if f.window_days else _no_window(f)
            values = ", ".join(f"`{v}`" for v in f.value_set)
            lines.append(
                f"| `{f.name}` | {f.dtype} | {'yes' if f.model_input else 'no'} | {_cell(f.source)} | {window} | "
                f"{_cell(f.aggregation)} | {_cell(_codelist_cell(f))} | {_cell(values)} | {_markdown_value(f.if_none_recorded)} "
                f"| {_cell(f.description)} |"
            )
        lines.append("")
    return "\n".join(lines + _worked_examples())


def _markdown_value(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, float):
        return f"{value:.4f}".rstrip("0").rstrip(".") if value != int(value) else f"{value:.1f}"
    return str(value)


def _worked_examples() -> list[str]:
    """The spec tests (features.specs), one behaviour each: rows in, values out, the working shown."""
    lines = [
        "## Worked examples",
        "",
        f"Each example is also a test (`tests/features/test_feature_specs.py`), at index date T = {SPEC_T}. "
        "Rows show only the columns that matter; every other column is neutral (residents alive and "
        "registered since 2000; spells emergency, method 21; A&E walk-in).",
        "",
    ]
    for spec in SPECS:
        lines += [f"### `{spec.feature}`: {spec.behaviour}", ""]
        for source, rows in spec.tables.items():
            columns = list(dict.fromkeys(c for row in rows for c in row))
            lines += [f"`{source}`", "", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
            lines += ["| " + " | ".join(_cell(_markdown_value(row.get(c))) for c in columns) + " |" for row in rows]
            lines.append("")
        lines += ["| person_id | " + spec.feature + " |", "|---|---|"]
        lines += [f"| {person} | {_markdown_value(value)} |" for person, value in spec.expected.items()]
        lines += ["", f"Why: {spec.arithmetic}", ""]
    return lines


def write_data_dictionary(path: Path = DEFAULT_PATH) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_data_dictionary(), encoding="utf-8")
    return path
