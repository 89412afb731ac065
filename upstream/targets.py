"""The outcomes a model can be trained to predict: declared once, here.

Why in ``upstream`` (not ``models.labels``, which builds them): settings validate ``target`` against this
list, and the CLI, the API's query enum and the model card all read it, without importing polars-heavy
modules. ``models.labels`` computes exactly these columns (a test holds the two together).
"""

from __future__ import annotations

from enum import StrEnum

#: target -> what the model card says the model predicts (DESIGN §5), in the order labels are built
TARGETS: dict[str, str] = {
    "emergency_admission": "emergency hospital admission",
    "care_escalation": "new long-term social care service or care-home admission",
    "crisis": "crisis (emergency admission, new long-term care, care-home move, or death)",
}

#: the target of a fresh install (settings.target)
DEFAULT_TARGET = "crisis"

#: the same names as an enum, for typed query parameters (FastAPI shows them as choices)
Target = StrEnum("Target", {name: name for name in TARGETS})


def check_target(name: str, error: type[Exception] = ValueError) -> str:
    """``name`` if it is a declared target; otherwise ``error`` (a ValueError for settings validation, an
    UpstreamError where a command reports it) that lists the choices."""
    if name not in TARGETS:
        raise error(f"unknown target {name!r}; choose one of {', '.join(TARGETS)}")
    return name
