"""Model card (Markdown and HTML) for each registered version.

Why both: Markdown is what the API returns and what reviewers read in MLflow; HTML is for people who
open the artefact in a browser. Both render the same context, so they cannot disagree.
"""

from __future__ import annotations

import html
from typing import Any

import polars as pl

from upstream.disclosure import suppress_count

INTENDED_USE = (
    "Rank residents of one council / ICS area by their risk of a {outcome} in the next 12 months, so that "
    "locality teams can offer proactive, preventive support to people at rising risk (DESIGN §6). It is a "
    "prioritisation aid for professionals, not a diagnosis, and must not be used to deny or ration care."
)
OUTCOMES = {
    "crisis": "crisis (emergency admission, new long-term care, care-home move, or death)",
    "emergency_admission": "emergency hospital admission",
    "care_escalation": "new long-term social care service or care-home admission",
}
LIMITATIONS = [
    "Trained and validated on one area's linked records; performance elsewhere is unknown until re-validated.",
    "Temporal validation only: the test year is the latest fully observed one, and drift after it is not measured.",
    "Only recorded activity is visible: people who do not use services look low-risk (inverse care law).",
    "Prescriptions are not in the data contract, so the eFI polypharmacy deficit is always absent.",
    "Ethnicity is not a model input; it is audited. Groups with fewer than 100 events (or non-events) are reported"
    " but not gated on. The gate compares each group's AUROC with the model's AUROC among comparable people"
    " (within-group pairs, standardised to the group's age mix; age bands: pooled within-band), not with the"
    " overall AUROC, which case mix alone would put out of reach for younger or less deprived groups.",
    "Calibration is Platt scaling fitted on training years; recheck calibration when service patterns change.",
    "Reasons are attributions of the model, not causes: for the gradient-boosted model they compare each person "
    "with a typical (median) resident one feature at a time.",
]
HEADLINE = [
    ("test_auroc", "AUROC"), ("test_auprc", "AUPRC"), ("test_brier", "Brier score"),
    ("test_calibration_slope", "calibration slope"), ("test_calibration_intercept", "calibration intercept"),
    ("test_ppv_top5", "PPV, top 5%"), ("test_sensitivity_top5", "sensitivity, top 5%"),
    ("test_ppv_top20", "PPV, top 20%"), ("test_sensitivity_top20", "sensitivity, top 20%"),
]


#: Fairness table columns; the gate compares "AUROC" with "gate reference AUROC" (see models.fairness).
FAIRNESS_COLUMNS = ["dimension", "group", "n", "events", "event rate", "observed/expected", "AUROC",
                    "gate reference AUROC", "FPR", "FNR"]


def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def card_context(
    *, target: str, version: str, run_id: str, alias: str, chosen: str, metrics: dict[str, float],
    candidate_metrics: dict[str, dict[str, float]], baseline_metrics: dict[str, dict[str, float]],
    fairness: pl.DataFrame, context: dict[str, Any], gate: dict[str, Any], codelists: dict[str, str],
) -> dict[str, Any]:
    """Everything the card shows, as plain values (dates and numbers already formatted)."""
    headline = [(label, _fmt(metrics.get(key))) for key, label in HEADLINE]
    ci = f"{_fmt(metrics.get('test_auroc_ci_low'))}–{_fmt(metrics.get('test_auroc_ci_high'))}"
    comparison = [
        (name, _fmt(m.get("auroc")), _fmt(m.get("auprc")), _fmt(m.get("calibration_slope")),
         _fmt(m.get("ppv_top20")), _fmt(m.get("sensitivity_top20")))
        for name, m in [*candidate_metrics.items(), *((f"baseline: {b}", m) for b, m in baseline_metrics.items())]
    ]
    fairness_rows = [
        (r["dimension"], r["group"], _count(r["n"]), _count(r["events"]), _fmt(r["event_rate"]),
         _fmt(r["observed_expected"]), _fmt(r["auroc"]), _fmt(r.get("gate_reference_auroc")), _fmt(r["fpr"]),
         _fmt(r["fnr"]))
        for r in fairness.iter_rows(named=True)
    ]
    return {
        "title": f"Model card: upstream-{target}, version {version}",
        "target": target,
        "version": version,
        "run_id": run_id,
        "alias": alias,
        "chosen": {"hgb": "HistGradientBoostingClassifier (Platt-calibrated)",
                   "logistic": "Logistic regression on standardised inputs (Platt-calibrated)"}.get(chosen, chosen),
        "intended_use": INTENDED_USE.format(outcome=OUTCOMES.get(target, target)),
        "data": [
            ("training index dates", ", ".join(str(d) for d in context.get("train_dates", [])) or "–"),
            ("model chosen on (validation date)", str(context.get("validation_date", "–"))),
            ("test index date (metrics and gate only)", str(context.get("test_date", "–"))),
            ("history before every training date", f"{context.get('history_days', '–')} days"),
            ("population", str(context.get("population", "everyone alive and registered at each date"))),
            ("training rows", str(context.get("n_train"))),
            ("test rows (people)", str(context.get("n_test"))),
            ("event rate, train / test", f"{_fmt(context.get('train_event_rate'))} / {_fmt(context.get('test_event_rate'))}"),
            ("model inputs", str(len(context.get("features", [])))),
            ("data fingerprint (train/test)", f"{context.get('train_fingerprint')} / {context.get('test_fingerprint')}"),
            ("code lists", f"{len(codelists)} lists, versions in data/codelist_versions.json"),
        ],
        "headline": headline,
        "auroc_ci": ci,
        "comparison": comparison,
        "fairness": fairness_rows,
        "gate": gate,
        "limitations": LIMITATIONS,
        "features": context.get("features", []),
    }


def _count(n: int) -> str:
    """Counts on the card are aggregate outputs shown to every API key: small-number suppression applies."""
    shown = suppress_count(int(n))
    return "<8" if shown is None else str(shown)


def _md_table(header: list[str], rows: list[tuple]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def render_markdown(c: dict[str, Any]) -> str:
    gate = c["gate"]
    reasons = "\n".join(f"- {r}" for r in gate["reasons"]) or "- passed all gate checks"
    return f"""# {c['title']}

Registry alias: **{c['alias']}** · MLflow run `{c['run_id']}` · model: {c['chosen']}

## Intended use
{c['intended_use']}

## Data
{_md_table(["item", "value"], c['data'])}

Outcome window: 12 months from each index date; features use only events before it.

## Metrics (temporal test set)
AUROC 95% bootstrap CI: {c['auroc_ci']}

{_md_table(["metric", "value"], c['headline'])}

### Against simple baselines
{_md_table(["model", "AUROC", "AUPRC", "calibration slope", "PPV top 20%", "sensitivity top 20%"], c['comparison'])}

## Fairness (SPARRA-style audit, list threshold = top 20%)
{_md_table(FAIRNESS_COLUMNS, c['fairness'])}

## Promotion gate
Checks: {", ".join(f"{k}={'pass' if v else 'fail'}" for k, v in gate['checks'].items())}

{reasons}

## Limitations
{chr(10).join(f"- {x}" for x in c['limitations'])}
"""


def render_html(c: dict[str, Any]) -> str:
    e = html.escape

    def table(header: list[str], rows: list[tuple]) -> str:
        head = "".join(f"<th>{e(h)}</th>" for h in header)
        body = "".join("<tr>" + "".join(f"<td>{e(str(v))}</td>" for v in row) + "</tr>" for row in rows)
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"

    gate = c["gate"]
    reasons = "".join(f"<li>{e(r)}</li>" for r in gate["reasons"]) or "<li>passed all gate checks</li>"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{e(c['title'])}</title>
<style>body{{font-family:Arial,sans-serif;max-width:60rem;margin:2rem auto;color:#212b32}}
table{{border-collapse:collapse;margin:1rem 0}}td,th{{border:1px solid #d8dde0;padding:.3rem .6rem;text-align:left}}
th{{background:#f0f4f5}}h1,h2{{color:#005eb8}}</style></head><body>
<h1>{e(c['title'])}</h1>
<p>Registry alias: <strong>{e(c['alias'])}</strong> · MLflow run <code>{e(c['run_id'])}</code> · model: {e(c['chosen'])}</p>
<h2>Intended use</h2><p>{e(c['intended_use'])}</p>
<h2>Data</h2>{table(["item", "value"], c['data'])}
<h2>Metrics (temporal test set)</h2><p>AUROC 95% bootstrap CI: {e(c['auroc_ci'])}</p>
{table(["metric", "value"], c['headline'])}
<h3>Against simple baselines</h3>
{table(["model", "AUROC", "AUPRC", "calibration slope", "PPV top 20%", "sensitivity top 20%"], c['comparison'])}
<h2>Fairness (SPARRA-style audit, list threshold = top 20%)</h2>
{table(FAIRNESS_COLUMNS, c['fairness'])}
<h2>Promotion gate</h2><ul>{reasons}</ul>
<h2>Limitations</h2><ul>{"".join(f"<li>{e(x)}</li>" for x in c['limitations'])}</ul>
</body></html>
"""
