"""Model card (Markdown and HTML) for each registered version.

Why both: Markdown is what the API returns and what reviewers read in MLflow; HTML is for people who
open the artefact in a browser. Both render the same context, so they cannot disagree.
"""

from __future__ import annotations

import html
import math
from typing import Any

import polars as pl

from models.metrics import TOP_FRACTIONS
from upstream.disclosure import (
    RULE_TEXT,
    disclose_rate,
    disclose_ratio,
    disclose_statistic,
    group_disclosable,
    show_count,
    suppress_count,
)
from upstream.targets import TARGETS

INTENDED_USE = (
    "Rank residents of one council / ICS area by their risk of a {outcome} in the next 12 months, so that "
    "locality teams can offer proactive, preventive support to people at rising risk (DESIGN §6). It is a "
    "prioritisation aid for professionals, not a diagnosis, and must not be used to deny or ration care."
)
LIMITATIONS = [
    "Trained and validated on one area's linked records; performance elsewhere is unknown until re-validated.",
    "Temporal validation only: the test year is the latest fully observed one, and drift after it is not measured.",
    "Only recorded activity is visible: people who do not use services look low-risk (inverse care law).",
    "Prescriptions are not in the data contract, so the eFI polypharmacy deficit is always absent.",
    "Ethnicity is not a model input; it is audited. Groups with fewer than 100 events (or non-events) are reported"
    " but not gated on. The gate compares each group's AUROC with the model's AUROC among comparable people"
    " (within-group pairs, standardised to the group's age mix; age bands: pooled within-band), not with the"
    " overall AUROC, which case mix alone would put out of reach for younger or less deprived groups.",
    "Calibration is Platt scaling fitted on a hold-out of the training years' people, its level anchored on every "
    "training row; recheck calibration when service patterns change.",
    "Reasons are attributions of the model, not causes: for the gradient-boosted model they compare each person "
    "with a typical (median) resident one feature at a time.",
]
HEADLINE = [
    ("test_auroc", "AUROC"), ("test_auprc", "AUPRC"), ("test_brier", "Brier score"),
    ("test_calibration_slope", "calibration slope"), ("test_calibration_intercept", "calibration intercept"),
    ("test_ppv_top5", "PPV, top 5%"), ("test_sensitivity_top5", "sensitivity, top 5%"),
    ("test_ppv_top20", "PPV, top 20%"), ("test_sensitivity_top20", "sensitivity, top 20%"),
]


#: Every card rendered under the disclosure rule says so in this line; serving withholds cards without it.
DISCLOSURE_MARKER = "Small numbers:"

#: Fairness table columns; the gate compares "AUROC" with "gate reference AUROC" (see models.fairness).
FAIRNESS_COLUMNS = ["dimension", "group", "n", "events", "event rate", "observed/expected", "AUROC",
                    "gate reference AUROC", "FPR", "FNR"]


def card_context(
    *, target: str, version: str, run_id: str, alias: str, chosen: str, metrics: dict[str, float],
    candidate_metrics: dict[str, dict[str, float]], baseline_metrics: dict[str, dict[str, float]],
    fairness: pl.DataFrame, context: dict[str, Any], gate: dict[str, Any], codelists: dict[str, str],
) -> dict[str, Any]:
    """Everything the card shows, as plain values (dates and numbers already formatted)."""
    # Every number on the card reaches every API key: each goes through upstream.disclosure.
    shown = reader_metrics(metrics)
    # Disclosed values are printed as rounded (a fixed 3 places would add digits the rule removed).
    headline = [(label, _fmt_rate(shown.get(key))) for key, label in HEADLINE]
    ci = f"{_fmt_rate(shown.get('test_auroc_ci_low'))}–{_fmt_rate(shown.get('test_auroc_ci_high'))}"
    comparison = []
    n_test = int(context.get("n_test") or 0)
    for name, m in [*candidate_metrics.items(), *((f"baseline: {b}", m) for b, m in baseline_metrics.items())]:
        # A losing candidate may be scored on a sample of the test date (models.train.candidate_test_rows); a
        # reader comparing rows must see that, not only MLflow's tag.
        rows = int(m.get("n") or 0)
        if name in candidate_metrics and 0 < rows < n_test:
            name = f"{name} (not chosen; a fixed random sample of {show_count(rows)} of {show_count(n_test)} test rows)"
        m = reader_metrics(m, prefix="")
        comparison.append((name, *(_fmt_rate(m.get(k)) for k in
                                   ("auroc", "auprc", "calibration_slope", "ppv_top20", "sensitivity_top20"))))
    fairness_rows = [_fairness_row(r) for r in fairness.iter_rows(named=True)]
    n_train = int(context.get("n_train") or 0)
    train_rate = _rate_from(context.get("train_event_rate"), n_train)
    test_rate = _rate_from(context.get("test_event_rate"), n_test)
    return {
        "title": f"Model card: upstream-{target}, version {version}",
        "target": target,
        "version": version,
        "run_id": run_id,
        "alias": alias,
        "chosen": {"hgb": "HistGradientBoostingClassifier (Platt-calibrated)",
                   "logistic": "Logistic regression on standardised inputs (Platt-calibrated)"}.get(chosen, chosen),
        "intended_use": INTENDED_USE.format(outcome=TARGETS.get(target, target)),
        "data": [
            ("training index dates", ", ".join(str(d) for d in context.get("train_dates", [])) or "–"),
            ("model chosen on (validation date)", str(context.get("validation_date") or "–")),
            ("test index date (metrics and gate only)", str(context.get("test_date") or "–")),
            ("history before every training date", f"{context.get('history_days') or '–'} days"),
            ("population", str(context.get("population") or "everyone alive and registered at each date")),
            ("training rows", show_count(n_train)),
            ("test rows (people)", show_count(n_test)),
            ("event rate, train / test", f"{_fmt_rate(train_rate)} / {_fmt_rate(test_rate)}"),
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
        "disclosure_rule": RULE_TEXT,
    }


def _fmt_rate(value: float | None) -> str:
    """A disclosed value exactly as upstream.disclosure rounded it (3 fixed places could move a rate off the
    rounded count, or add digits to a 2-decimal statistic)."""
    return "–" if value is None else str(value)


def _count(n: int) -> str:
    """Counts on the card are aggregate outputs shown to every API key: small-number suppression applies."""
    return show_count(int(n))


def _rate_from(rate: float | None, n: int) -> float | None:
    """An event rate recomputed from the rounded counts (the exact rate times n would give the exact count)."""
    if rate is None or not math.isfinite(rate) or n <= 0:
        return None
    return disclose_rate(round(rate * n), n)


def _fairness_row(r: dict[str, Any]) -> tuple:
    """One audited group as shown to readers: counts rounded, rates from rounded counts, and no rate or
    statistic at all for a group whose size, events or non-events are suppressed (with its counts rounded,
    an FNR from e.g. 8 of 16 events would otherwise pin n=17, events=16; tests/foundation/test_disclosure.py).
    FN and FP come back exactly from the audit's rates (they were computed from whole counts)."""
    n, events = int(r["n"]), int(r["events"])
    negatives = n - events
    shown = group_disclosable(n, events)
    fnr = disclose_rate(round(r["fnr"] * events), events) if shown and r["fnr"] is not None else None
    fpr = disclose_rate(round(r["fpr"] * negatives), negatives) if shown and r["fpr"] is not None else None
    return (
        r["dimension"], r["group"], _count(n), _count(events), _fmt_rate(disclose_rate(events, n) if shown and n else None),
        _fmt_rate(disclose_statistic(r["observed_expected"], n, events)),
        _fmt_rate(disclose_statistic(r["auroc"], n, events)),
        _fmt_rate(disclose_statistic(r.get("gate_reference_auroc"), n, events)), _fmt_rate(fpr), _fmt_rate(fnr),
    )


def reader_metrics(metrics: dict[str, float], prefix: str = "test_") -> dict[str, float]:
    """Test-set metrics as they may be shown to any key (the API's ``/models/current``, the card).

    Needs ``{prefix}n`` and ``{prefix}event_rate`` to judge the group; without them nothing is shown.
    The count is rounded (dropped when 1-7), the event rate comes from the rounded counts, PPV and
    sensitivity are rounded so their numerators stay hidden, every other statistic gets 2 decimals and is
    withheld when events or non-events are 1-7. Raw values stay in MLflow for data scientists only."""
    n_raw, rate = metrics.get(f"{prefix}n"), metrics.get(f"{prefix}event_rate")
    if n_raw is None or rate is None or not math.isfinite(rate):
        return {}
    n = round(n_raw)
    events = round(rate * n)
    flagged = {name: math.ceil(fraction * n) for name, fraction in TOP_FRACTIONS.items()}
    out: dict[str, float | None] = {}
    for key, value in metrics.items():
        if not key.startswith(prefix):
            continue
        name = key[len(prefix):]
        if name == "n":
            count = suppress_count(n)
            out[key] = None if count is None else float(count)
        elif name == "event_rate":
            out[key] = disclose_rate(events, n) if n and group_disclosable(n, events) else None
        elif name.startswith("ppv_") and name[4:] in flagged:
            out[key] = disclose_ratio(value, flagged[name[4:]]) if group_disclosable(n, events) else None
        elif name.startswith("sensitivity_"):
            out[key] = disclose_ratio(value, events) if group_disclosable(n, events) else None
        elif name.startswith("net_benefit_"):
            out[key] = disclose_ratio(value, n) if group_disclosable(n, events) else None
        else:
            out[key] = disclose_statistic(value, n, events)
    return {k: v for k, v in out.items() if v is not None}


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

{DISCLOSURE_MARKER} {c['disclosure_rule']}.

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
