"""Analyst pages (issue 16): the weekly run history and model monitoring, with plots.

For ``analyst`` and ``admin`` keys only (locality teams see their lists, not the pipeline). Nothing here
is person-level: run states, timings, row counts (suppressed like every count of people) and monitoring
measures. Plots are matplotlib PNGs inlined as ``data:`` images: the pages' Content-Security-Policy
forbids inline styles, which matplotlib's SVG needs, but allows ``data:`` images.

GX Data Docs are named by their path on the server, not served: they can quote unexpected values from
the raw, identifiable delivery (e.g. an invalid NHS number), which analysts may not see.

The pages are a module-level router whose routes name what they need (``OptionalPrincipal``,
``SettingsDep``, ``EngineDep`` from ``serving.deps``).
"""


import base64
import io
from collections import defaultdict
from functools import lru_cache
from typing import Any

import sqlalchemy as sa
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from serving.deps import EngineDep, OptionalPrincipal, SettingsDep
from serving.keys import Principal
from serving.web import _REDIRECT, _html_error, error_page, render
from upstream.disclosure import suppress_count
from upstream.settings import Settings
from upstream.store import monitoring_results, weekly_runs

ANALYST_ROLES = ("analyst", "admin")
HISTORY_RUNS = 52
MAX_FEATURE_LINES = 8


def shown_count(n: int | None) -> str:
    """A row count as published: suppressed (1-7 -> "<8") and rounded to 5, like every count of people."""
    if n is None:
        return ""
    value = suppress_count(int(n))
    return "<8" if value is None else f"{value:,}"


def png_data_uri(figure: Any) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=96, bbox_inches="tight")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def line_chart(series: dict[str, list[tuple[str, float]]], title: str, ylabel: str, lines: dict[str, float]) -> str | None:
    """Weeks on x, one line per series, dashed horizontal threshold lines; None when there is nothing to plot."""
    series = {k: v for k, v in series.items() if v}
    if not series:
        return None
    from matplotlib.figure import Figure  # no pyplot: thread-safe, no global state

    weeks = sorted({w for points in series.values() for w, _ in points})
    x = {w: i for i, w in enumerate(weeks)}
    figure = Figure(figsize=(6.4, 3.2))
    ax = figure.add_subplot()
    for name, points in sorted(series.items()):
        points = sorted(points)
        ax.plot([x[w] for w, _ in points], [v for _, v in points], marker="o", label=name)
    for label, level in lines.items():
        ax.axhline(level, linestyle="--", linewidth=1, color="#d5281b" if "alert" in label else "#ffb81c", label=label)
    ax.set_xticks(range(len(weeks)), [w[2:] for w in weeks], rotation=45, fontsize=8)
    ax.set_title(title, fontsize=11)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return png_data_uri(figure)


def monitoring_rows(conn: sa.Connection, weeks: int) -> list[dict[str, Any]]:
    chosen = conn.execute(
        sa.select(monitoring_results.c.week).distinct().order_by(monitoring_results.c.week.desc()).limit(weeks)
    ).scalars().all()
    if not chosen:
        return []
    rows = conn.execute(
        sa.select(monitoring_results).where(monitoring_results.c.week.in_(chosen)).order_by(monitoring_results.c.week)
    ).mappings().all()
    return [dict(r) for r in rows]


def monitoring_charts(rows: list[dict[str, Any]], settings: Settings) -> list[tuple[str, str]]:
    """(caption, data URI) for each plot of the monitoring page."""
    m = settings.monitoring
    by: dict[tuple[str, str], dict[str, list[tuple[str, float]]]] = defaultdict(lambda: defaultdict(list))
    for r in rows:
        if r["value"] is not None:
            by[(r["kind"], r["metric"])][r["subject"]].append((r["week"], float(r["value"])))
    latest_week = max((r["week"] for r in rows), default=None)

    def top(series: dict[str, list[tuple[str, float]]]) -> dict[str, list[tuple[str, float]]]:
        """The features that moved most in the latest week (a plot of 40 lines helps nobody)."""
        last = {k: max((v for w, v in pts if w == latest_week), default=0.0) for k, pts in series.items()}
        keep = sorted(last, key=lambda k: -last[k])[:MAX_FEATURE_LINES]
        return {k: series[k] for k in keep}

    charts = [
        (
            "Feature drift against the champion's training reference (PSI, the features that moved most)",
            line_chart(top(by[("feature_drift", "psi")]), "Feature drift (PSI)", "PSI",
                       {"warn": m.psi_warn, "alert": m.psi_alert}),
        ),
        (
            "Shift in the mean of numeric features (standardised mean difference)",
            line_chart(top(by[("feature_drift", "smd")]), "Feature mean shift (SMD)", "SMD",
                       {"warn": m.smd_warn, "alert": m.smd_alert}),
        ),
        (
            "Score distribution against the reference and against the previous week (PSI)",
            line_chart(dict(by[("score_drift", "psi")]), "Score drift (PSI)", "PSI",
                       {"warn": m.psi_warn, "alert": m.psi_alert}),
        ),
        (
            "Model performance: AUROC estimated from scores (calibrated model) and realised where outcomes matured",
            line_chart({**by[("performance", "expected_auroc")], **by[("performance", "auroc")]},
                       "AUROC by week", "AUROC", {}),
        ),
        (
            "Observed / expected events for weeks whose 12-month outcomes are known",
            line_chart(dict(by[("performance", "o_e")]), "Observed / expected", "O/E",
                       {"alert (low)": 1 - m.oe_tolerance, "alert (high)": 1 + m.oe_tolerance}),
        ),
        (
            "Rows delivered: relative change against the previous delivery, per source",
            line_chart(dict(by[("volume", "relative_change")]), "Delivery volume change", "relative change",
                       {"alert": m.volume_change_alert}),
        ),
        (
            "Quarantine rate: rise against the previous delivery, per source",
            line_chart(dict(by[("quarantine", "rate_rise")]), "Quarantine rate rise", "rise (share of rows)",
                       {"alert": m.quarantine_rate_rise_alert}),
        ),
    ]
    return [(caption, uri) for caption, uri in charts if uri]


@lru_cache(maxsize=512)
def _experiment_of(tracking_uri: str, run_id: str) -> str | None:
    try:
        from mlflow.tracking import MlflowClient

        return MlflowClient(tracking_uri).get_run(run_id).info.experiment_id
    except Exception:  # a link is a convenience: never fail the page for it
        return None


def mlflow_link(settings: Settings, run_id: str | None) -> str | None:
    if not run_id:
        return None
    experiment = _experiment_of(settings.tracking_uri, run_id)
    if experiment is None:
        return None
    return f"{settings.monitoring.mlflow_ui_url.rstrip('/')}/#/experiments/{experiment}/runs/{run_id}"


#: Every status the pages answer is in the OpenAPI schema (schemathesis checks it).
PAGE_RESPONSES = {**_REDIRECT, **_html_error(403, "Analyst and admin keys only")}

#: The analyst pages under /ui: run history and monitoring.
operations_pages = APIRouter(prefix="/ui", tags=["web pages"])


def refuse(principal: Principal | None) -> Response | None:
    if principal is None:
        return RedirectResponse("/ui/login", status_code=303)
    if principal.role not in ANALYST_ROLES:
        return error_page(principal, 403, "The run history and monitoring pages are for analyst and admin keys.")
    return None


@operations_pages.get("/runs", response_class=HTMLResponse, responses=PAGE_RESPONSES)
def runs_page(request: Request, principal: OptionalPrincipal, settings: SettingsDep, engine: EngineDep) -> Response:
    """Each weekly run: state, timings per step, delivery counts and quarantine, model, links."""
    if (refused := refuse(principal)) is not None:
        return refused
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(weekly_runs).order_by(weekly_runs.c.started_at.desc()).limit(HISTORY_RUNS)
        ).mappings().all()
    runs = []
    for r in rows:
        delivery = r["delivery"] or {}
        runs.append(
            {
                **dict(r),
                "seconds": sum((r["timings"] or {}).values()),
                "delivery_rows": [
                    {
                        "source": source,
                        "rows_in": shown_count(c.get("rows_in")),
                        "rows_quarantined": shown_count(c.get("rows_quarantined")),
                        "rate": (c.get("rows_quarantined", 0) / c["rows_in"]) if c.get("rows_in") else 0.0,
                    }
                    for source, c in sorted(delivery.items())
                ],
                "training_link": mlflow_link(settings, r["training_run_id"]),
                "monitoring_link": mlflow_link(settings, r["monitoring_run_id"]),
            }
        )
    # request=: after the issue-13 merge, render() uses it for the sign-out form's CSRF token
    return render("runs.html", request=request, principal=principal, runs=runs)


@operations_pages.get("/monitoring", response_class=HTMLResponse, responses=PAGE_RESPONSES)
def monitoring_page(
    request: Request, principal: OptionalPrincipal, settings: SettingsDep, engine: EngineDep
) -> Response:
    """Model health week by week: drift, score distribution, delivery volumes, performance."""
    if (refused := refuse(principal)) is not None:
        return refused
    with engine.connect() as conn:
        rows = monitoring_rows(conn, settings.monitoring.history_weeks)
    latest = max((r["week"] for r in rows), default=None)
    flagged = [r for r in rows if r["week"] == latest and r["status"] in ("warn", "alert")]
    flagged.sort(key=lambda r: (r["status"] != "alert", r["kind"], r["subject"]))
    return render(
        "monitoring.html",
        request=request,
        principal=principal,
        latest=latest,
        model_version=next((r["model_version"] for r in rows if r["week"] == latest), None),
        flagged=flagged,
        charts=monitoring_charts(rows, settings),
        settings=settings.monitoring,
    )
