"""Evaluation plots written as PNG files for MLflow (matplotlib's Agg backend: no display needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from models.metrics import calibration_curve, net_benefit


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _series(y: np.ndarray, predictions: dict[str, np.ndarray], rows: dict[str, np.ndarray] | None):
    """(label, outcomes, predictions) per series; a series scored on some test rows only (``rows``) is paired
    with those rows' outcomes and says so in its label."""
    for name, p in predictions.items():
        picked = (rows or {}).get(name)
        if picked is None:
            yield name, y, p
        else:
            yield f"{name} (sample of {len(picked):,})", y[picked], p


def calibration_plot(y: np.ndarray, predictions: dict[str, np.ndarray], path: Path,
                     rows: dict[str, np.ndarray] | None = None) -> Path:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 5))
    top = 0.0
    for name, y_name, p in _series(y, predictions, rows):
        curve = calibration_curve(y_name, p)
        ax.plot(curve["predicted"], curve["observed"], marker="o", label=name)
        top = max(top, curve["predicted"].max(), curve["observed"].max())
    ax.plot([0, top], [0, top], ls="--", color="grey", label="perfect")
    ax.set(xlabel="mean predicted risk (decile)", ylabel="observed event rate", title="Calibration (test set)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def decision_curve_plot(y: np.ndarray, predictions: dict[str, np.ndarray], path: Path,
                        rows: dict[str, np.ndarray] | None = None) -> Path:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    curve = None
    for name, y_name, p in _series(y, predictions, rows):
        curve = net_benefit(y_name, p)
        ax.plot(curve["threshold"], curve["model"], label=name)
    if curve is not None:
        ax.plot(curve["threshold"], curve["treat_all"], ls="--", color="grey", label="act on everyone")
        ax.axhline(0, color="black", lw=0.8, label="act on no one")
        ax.set_ylim(min(-0.01, float(np.nanmin(curve["model"]))), float(np.mean(y)) * 1.1 + 1e-3)
    ax.set(xlabel="threshold probability", ylabel="net benefit", title="Decision curve (test set)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def fairness_plot(table: pl.DataFrame, path: Path) -> Path:
    """AUROC by group with the overall AUROC line; groups too small to audit are left out."""
    plt = _pyplot()
    rows = table.filter((pl.col("dimension") != "overall") & pl.col("auditable"))
    overall = table.filter(pl.col("dimension") == "overall")["auroc"][0]
    labels = [f"{d}: {g}" for d, g in zip(rows["dimension"], rows["group"], strict=True)]
    fig, ax = plt.subplots(figsize=(6, 0.3 * max(len(labels), 4) + 1))
    ax.barh(range(len(labels)), rows["auroc"].to_list(), color="#005eb8")
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    if overall is not None:
        ax.axvline(overall, color="black", ls="--", label=f"overall {overall:.3f}")
        ax.legend(fontsize=8)
    ax.set(xlabel="AUROC", title="Fairness audit: AUROC by group (test set)", xlim=(0.5, 1.0))
    ax.invert_yaxis()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
