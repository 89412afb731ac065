"""MLflow pyfunc wrapper around :class:`models.bundle.UpstreamModel`.

Why pyfunc rather than the sklearn flavour: the registered artefact must carry the feature encoding
and the reason logic, not just the estimator, so anything that loads a version scores and explains
it exactly as training evaluated it.
"""

from __future__ import annotations

from typing import Any

import mlflow.pyfunc
import numpy as np
import pandas as pd
import polars as pl

from models.bundle import UpstreamModel


class UpstreamPyfunc(mlflow.pyfunc.PythonModel):
    def __init__(self, bundle: UpstreamModel) -> None:
        self.bundle = bundle

    def predict(
        self,
        context: mlflow.pyfunc.PythonModelContext | None,
        model_input: pd.DataFrame,
        params: dict[str, Any] | None = None,
    ) -> pd.DataFrame:
        """Risk per row. Typed so MLflow validates inputs against the signature (and does not warn)."""
        frame = pl.from_pandas(pd.DataFrame(model_input))
        return pd.DataFrame({"risk": np.asarray(self.bundle.predict_proba(frame))})


def example_frame(features: pl.DataFrame, names: list[str], rows: int = 5) -> pd.DataFrame:
    """Input example in the signature's types: numbers as double (nullable), flags as bool."""
    head = features.head(rows).select(names)
    casts = [
        pl.col(n).cast(pl.Float64) if head.schema[n].is_numeric() else pl.col(n)
        for n in names
    ]
    return head.select(casts).to_pandas()
