"""The trained model as one picklable object: encoding, calibrated estimator, and reasons.

Why one object: scoring must encode features exactly as training did (same columns, same category
levels, same missing-value handling) and explain the same base model. Bundling them means
the registry version *is* the whole recipe; nothing is re-derived at scoring time.

Encoding: numeric and boolean columns become floats (null -> NaN; HGB handles NaN natively, the
logistic pipeline imputes the training median and adds a missing indicator). String columns are
one-hot encoded with the levels seen in training (unseen levels -> all zeros). Age also gets
piecewise-linear terms (``AGE_KNOTS``). Every encoded column remembers its source feature, so reasons are
always reported per feature, never per dummy or age term.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from models.reasons import Reason, top_reasons, top_reasons_json
from models.treeshap import expected_value, tree_shap_values

#: The age feature and the knots (years) of the piecewise-linear terms max(age - k, 0) encoded beside it.
#: Why: risk of crisis is nearly flat in age up to about 50 and steepens after 65 and again after 80; with
#: age as one straight line on the log-odds the logistic model over-predicted ages 45-64 (observed/expected
#: 0.84 on a date it was fitted on) and under-predicted 75-84 and 85+ (1.18, 1.16), and the gate's
#: calibration by age band refused it (bench/README.md, issue 12 session 3). Hinges keep the model linear
#: (exact reasons still add up) and the terms are summed back into "age" for reasons.
AGE_FEATURE = "age"
AGE_KNOTS: tuple[int, ...] = (50, 65, 80)


@dataclass
class FeatureEncoder:
    """Turns a polars feature frame into the float matrix the estimators were fitted on."""

    features: list[str]
    numeric: list[str] = field(default_factory=list)
    levels: dict[str, list[str]] = field(default_factory=dict)
    columns: list[str] = field(default_factory=list)
    source_of: list[str] = field(default_factory=list)
    age_knots: tuple[int, ...] = ()  # empty in bundles registered before the age terms existed

    @staticmethod
    def age_term(knot: int) -> str:
        return f"{AGE_FEATURE}_over_{knot}"

    @classmethod
    def fit(cls, frame: pl.DataFrame, features: list[str]) -> FeatureEncoder:
        enc = cls(features=list(features))
        for name in features:
            dtype = frame.schema[name]
            if dtype.is_numeric() or dtype == pl.Boolean:
                enc.numeric.append(name)
                enc.columns.append(name)
                enc.source_of.append(name)
                if name == AGE_FEATURE:
                    enc.age_knots = AGE_KNOTS
                    enc.columns += [enc.age_term(k) for k in AGE_KNOTS]
                    enc.source_of += [name] * len(AGE_KNOTS)
            else:
                values = frame.get_column(name).cast(pl.String).drop_nulls().unique().sort().to_list()
                enc.levels[name] = values
                for value in values:
                    enc.columns.append(f"{name}={value}")
                    enc.source_of.append(name)
        return enc

    def transform(self, frame: pl.DataFrame) -> np.ndarray:
        missing = [f for f in self.features if f not in frame.columns]
        if missing:
            from upstream.errors import UpstreamError

            raise UpstreamError(f"feature frame lacks model inputs: {', '.join(missing)}")
        exprs: list[pl.Expr] = []
        for name in self.features:
            if name in self.levels:
                col = pl.col(name).cast(pl.String)
                exprs += [(col == v).fill_null(False).cast(pl.Float64).alias(f"{name}={v}") for v in self.levels[name]]
            else:
                exprs.append(pl.col(name).cast(pl.Float64).fill_nan(None).alias(name))
                if name == AGE_FEATURE:
                    exprs += [(pl.col(name).cast(pl.Float64) - k).clip(lower_bound=0).alias(self.age_term(k))
                              for k in self.age_knots]
        return frame.select(exprs).select(self.columns).to_numpy().astype(np.float64, copy=False)

    def group_matrix(self) -> np.ndarray:
        """(encoded columns x features) 0/1 matrix: sums encoded contributions back to features."""
        index = {name: i for i, name in enumerate(self.features)}
        m = np.zeros((len(self.columns), len(self.features)))
        for j, source in enumerate(self.source_of):
            m[j, index[source]] = 1.0
        return m

    def sum_by_feature(self, per_column: np.ndarray, columns: list[int] | None = None) -> np.ndarray:
        """Encoded contributions (rows x ``columns``, default every encoded column) summed into their features.

        WHY not ``per_column @ group_matrix()``: BLAS picks its kernel, blocking and thread split by the
        number of rows, so a person's sum could differ in the last digit between a county-sized block, a
        list's few hundred people and one person looked up in the API (measured: gemv for one row, edge
        kernels for odd row counts). Here every person's terms are added left to right from 0.0 in column
        order, whatever the block, which is also what the BLAS kernel does for the rows it runs in full.
        """
        index = {name: i for i, name in enumerate(self.features)}
        chosen = range(len(self.columns)) if columns is None else columns
        out = np.zeros((per_column.shape[0], len(self.features)))
        for position, column in enumerate(chosen):
            out[:, index[self.source_of[column]]] += per_column[:, position]
        return out


@dataclass
class UpstreamModel:
    """A fitted, calibrated classifier plus everything needed to score and explain it.

    ``kind`` is ``"logistic"`` or ``"hgb"``. ``estimator`` is a fitted ``CalibratedClassifierCV`` around
    one frozen base model (calibrated on a hold-out), so there is one base model to explain. ``reference`` holds the encoded training
    medians; reasons no longer use it (exact contributions need no reference person), but registered
    bundles pickled with it must still load, so the field stays.
    """

    kind: str
    target: str
    encoder: FeatureEncoder
    estimator: Any
    reference: np.ndarray
    training: dict[str, Any] = field(default_factory=dict)

    @property
    def feature_names(self) -> list[str]:
        return list(self.encoder.features)

    def predict_proba(self, features: pl.DataFrame) -> np.ndarray:
        """Calibrated probability of the target for each row."""
        x = self.encoder.transform(features)
        if self.kind == "logistic":
            fast = _logistic_proba(self.estimator, x)
            if fast is not None:
                return fast
        return self.estimator.predict_proba(x)[:, 1]

    @property
    def base_estimator(self) -> Any:
        """The uncalibrated model (calibration is a monotone map of its log-odds)."""
        inner = self.estimator.calibrated_classifiers_[0].estimator
        from sklearn.frozen import FrozenEstimator

        return inner.estimator if isinstance(inner, FrozenEstimator) else inner

    def contributions(self, x: np.ndarray) -> np.ndarray:
        """Exact additive contributions per row and feature, on the base model's raw log-odds (rows x features).

        Raw margin, before calibration: Platt scaling is a monotone map of this margin, so the ranking of
        reasons is the same, and only on the raw margin do contributions add up exactly:
        ``raw_base() + contributions(x).sum(axis=1) == base_estimator.decision_function(x)`` for every row.

        Logistic: the model's own terms, coefficient x standardised value (missing indicators and one-hot
        dummies summed into their feature); ``raw_base`` is the intercept. Gradient boosting: exact
        (path-dependent) TreeSHAP values, the values the maintained ``shap`` package's ``TreeExplainer``
        gives for scikit-learn's HistGradientBoosting (tests compare them), computed by
        ``models.treeshap`` because shap explains one person at a time (11-24x the CPU, minutes at county
        scale); a one-hot feature's contribution is the sum of its dummies' values. ``raw_base`` is the
        training-count-weighted mean raw output. This replaces occlusion against a "typical person",
        whose per-feature effects did not add up to the person's score.
        """
        if self.kind == "logistic":
            pipe = self.base_estimator
            imputer, scaler, lr = pipe.named_steps["impute"], pipe.named_steps["scale"], pipe.named_steps["model"]
            z = scaler.transform(imputer.transform(x))
            per_col = z * lr.coef_[0]
            n_base = x.shape[1]
            base = self.encoder.sum_by_feature(per_col[:, :n_base])
            # Missing-value indicators come after the imputed columns, in imputer.indicator_.features_.
            if per_col.shape[1] > n_base:
                ind_features = imputer.indicator_.features_
                base += self.encoder.sum_by_feature(per_col[:, n_base:], [int(j) for j in ind_features])
            return base
        return self.encoder.sum_by_feature(tree_shap(self.base_estimator, x))

    def raw_base(self) -> float:
        """The constant that, added to a row's contributions, gives the base model's raw log-odds."""
        if self.kind == "logistic":
            return float(self.base_estimator.named_steps["model"].intercept_[0])
        return expected_value(self.base_estimator)

    def explain(self, features: pl.DataFrame, top_n: int = 3) -> list[list[Reason]]:
        """Top ``top_n`` risk-raising features per row, with registry reason texts (models.reasons)."""
        return top_reasons(self.contributions(self.encoder.transform(features)), features, self.encoder.features, top_n)

    def explain_json(self, features: pl.DataFrame, top_n: int, encode: Callable[[Reason], str]) -> list[str]:
        """``explain`` as one JSON array per row, each reason as ``encode`` writes it (see ``top_reasons_json``)."""
        contributions = self.contributions(self.encoder.transform(features))
        return top_reasons_json(contributions, features, self.encoder.features, top_n, encode)


def _standardised_inputs(imputer: Any, scaler: Any, x: np.ndarray) -> np.ndarray | None:
    """What the logistic pipeline's last step sees (impute the median, add missing indicators, standardise),
    built in ONE array in the layout the pipeline's own steps give, with the same floating-point operations.

    WHY: the pipeline makes three full copies of the encoded matrix on the way (the imputer's input copy, its
    ``hstack`` with the indicators, the scaler's copy): at 1.87M rows scikit-learn's ``predict_proba`` took
    3.65 s on fresh memory (as in a weekly run), this 0.37 s (bench/README.md, issue 15 session 6). Here the medians are written where values are missing (sklearn
    assigns the same medians to the same cells), the indicators are the same 0/1 columns, and the scaler's
    ``-= mean_`` then ``/= scale_`` run in place, as sklearn runs them. None for a pipeline this does not
    know (another imputing strategy or missing-value marker, sparse input): the caller then uses sklearn."""
    if (
        not isinstance(x, np.ndarray) or x.ndim != 2 or x.dtype != np.float64
        or not (isinstance(imputer.missing_values, float) and np.isnan(imputer.missing_values))
        or not getattr(imputer, "keep_empty_features", False)
        or getattr(scaler, "with_mean", None) is not True or getattr(scaler, "with_std", None) is not True
        or len(imputer.statistics_) != x.shape[1]
    ):
        return None
    missing = np.isnan(x)
    indicated = imputer.indicator_.features_ if imputer.add_indicator else np.empty(0, dtype=int)
    n_base = x.shape[1]
    # sklearn's hstack of two F-ordered arrays is F-ordered (numpy keeps the inputs' layout): same here, so
    # the matrix product below runs the same BLAS kernel on the same memory and rounds every row alike.
    order = "F" if x.flags.f_contiguous and not x.flags.c_contiguous else "C"
    z = np.empty((x.shape[0], n_base + len(indicated)), dtype=np.float64, order=order)
    z[:, :n_base] = x
    np.copyto(z[:, :n_base], imputer.statistics_.astype(np.float64), where=missing)
    if len(indicated):
        z[:, n_base:] = missing[:, indicated]
    z -= scaler.mean_
    z /= scaler.scale_
    return z


def _logistic_proba(calibrated: Any, x: np.ndarray) -> np.ndarray | None:
    """The calibrated logistic model's probabilities with ``_standardised_inputs``, bit for bit what
    ``calibrated.predict_proba(x)[:, 1]`` gives (tests compare on fitted models): the logistic step, the
    calibrators and their averaging are scikit-learn's own code, handed the matrix the pipeline would build.
    None when the model is not the pipeline this knows (then the caller predicts through scikit-learn)."""
    import copy

    from sklearn.frozen import FrozenEstimator
    from sklearn.pipeline import Pipeline

    pipelines = []
    for member in getattr(calibrated, "calibrated_classifiers_", []):
        inner = member.estimator.estimator if isinstance(member.estimator, FrozenEstimator) else member.estimator
        if not isinstance(inner, Pipeline) or list(inner.named_steps) != ["impute", "scale", "model"]:
            return None
        pipelines.append(inner)
    if not pipelines or any(p is not pipelines[0] for p in pipelines):
        return None  # one frozen base model behind every calibrator: the only shape training makes
    pipe = pipelines[0]
    z = _standardised_inputs(pipe.named_steps["impute"], pipe.named_steps["scale"], x)
    if z is None:
        return None
    # The same calibrated model with its pipeline's last step in the pipeline's place (shallow copies: the
    # fitted parts are shared, nothing is refitted or changed).
    shortcut = copy.copy(calibrated)
    shortcut.calibrated_classifiers_ = []
    for member in calibrated.calibrated_classifiers_:
        step = copy.copy(member)
        step.estimator = pipe.named_steps["model"]
        shortcut.calibrated_classifiers_.append(step)
    return shortcut.predict_proba(z)[:, 1]


def tree_shap(model: Any, x: np.ndarray) -> np.ndarray:
    """Exact TreeSHAP values (rows x encoded columns) of a fitted HistGradientBoostingClassifier's raw margin.

    Computed by ``models.treeshap`` (the same values as ``shap.TreeExplainer``, checked in the tests,
    11-24x less CPU because it works leaf by leaf for everyone at once).
    """
    return tree_shap_values(model, x)
