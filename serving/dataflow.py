"""The data-flow description of docs/governance/data-flow.md, generated from the code's own declarations.

Why generated: a data-flow diagram written by hand drifts from the code the day a column or a route is
added, and a Caldicott Guardian signs what the document says. This reads the ingest contract
(``expectations.contract.SOURCES``), the operational tables (``upstream.store.metadata``), the served routes
(``serving.app``) and the audit's person-level declaration (``serving.audit``); a test fails when the
committed document differs from what this prints. Regenerate with ``python -m serving.dataflow``.
"""

from __future__ import annotations

from pathlib import Path

DOC_PATH = Path(__file__).resolve().parent.parent / "docs" / "governance" / "data-flow.md"

#: Who reads each operational table (the one place this is stated; the test checks every table is listed).
TABLE_READERS = {
    "score_runs": "weekly flow (writes); API (model version of a published week)",
    "scores": "weekly flow (writes; keeps the newest `retention.database_score_weeks` weeks, older weeks move to "
    "`history/`); API: resident score route and summary counts",
    "score_summaries": "weekly flow (residents by locality, band and score tenth of a week moved to `history/`: "
    "counts only); API and web pages: summary and histogram of older weeks (suppressed when shown)",
    "published_weeks": "weekly flow (pointer swap); API: which week is served",
    "risk_lists": "weekly flow (writes); API and web pages: list routes and downloads",
    "cohort_funnels": "weekly flow (writes suppressed counts only); API and web page: the cohort funnel of a locality",
    "api_keys": "`upstream keys` (admin, writes); API: every authenticated request (hash compared)",
    "audit_log": "API (appends one row per person-level access or refusal); admin keys through /audit",
    "weekly_runs": "weekly flow (state, step timings, delivery row counts, model and MLflow run ids; no personal data); "
    "analysts' run-history page",
    "monitoring_results": "weekly flow (drift, volume and performance checks: aggregates only); analysts' monitoring page",
    "actions": "locality keys and `upstream actions import` (write, pseudonymised, audited); API: /actions; "
    "`upstream evaluate`",
    "listing_outcomes": "weekly flow (outcome follow-up of everyone ever listed); `upstream evaluate`; "
    "aggregates only on pages",
    "web_sessions": "web sign-in (writes the hash of a session id); API: requests with the session cookie",
}
IDENTIFYING_KINDS = {"nhs_number": "direct identifier: replaced by a keyed pseudonym (HMAC-SHA256) at ingest",
                     "lsoa11": "small-area geography (about 1,500 residents): quasi-identifier",
                     "date": "dates of events and birth: quasi-identifiers"}


def _sources() -> list[str]:
    from expectations.contract import OPTIONAL_SOURCES, SOURCES

    lines = ["| source | what it is | columns | identifying columns and their treatment |", "|---|---|---|---|"]
    for source in [*SOURCES.values(), *OPTIONAL_SOURCES.values()]:
        identifying = [f"`{c.name}` ({IDENTIFYING_KINDS[c.kind]})" for c in source.columns if c.kind in IDENTIFYING_KINDS]
        lines.append(
            f"| `{source.name}` | {source.description} | {len(source.columns)}: "
            f"{', '.join(f'`{c.name}`' for c in source.columns)} | {'; '.join(identifying) or '–'} |"
        )
    return lines


def _tables() -> list[str]:
    from upstream.store import metadata

    lines = ["| table | columns | who reads or writes it |", "|---|---|---|"]
    for name, table in sorted(metadata.tables.items()):
        lines.append(f"| `{name}` | {', '.join(f'`{c.name}`' for c in table.columns)} | "
                     f"{TABLE_READERS.get(name, '**undeclared: add to serving.dataflow.TABLE_READERS**')} |")
    return lines


def _routes() -> list[str]:
    from serving.app import create_app
    from serving.audit import is_person_level
    from upstream.settings import Settings

    app = create_app(Settings(home=Path("/nonexistent-upstream-home")))  # construction reads nothing
    lines = ["| method | route | person-level (audited) | who may call it |", "|---|---|---|---|"]
    # The OpenAPI schema lists every served operation, web pages included (the schema test counts them).
    for path, operations in sorted(app.openapi()["paths"].items()):
        person_level = is_person_level(path)
        if path == "/health":
            who = "anyone (liveness only, no data)"
        elif path == "/audit":
            who = "admin keys (the audit names people: reading it is itself audited)"
        elif path in ("/ui/login", "/ui/logout"):
            who = "anyone (sign-in form; CSRF-protected)"
        elif person_level:
            who = "locality keys for their localities (with NHS numbers); analyst and admin keys (pseudonymised)"
        elif path == "/ui":
            who = "any key (the localities it may see)"
        else:
            who = "any key (aggregates: small-number suppression applies)"
        for method in sorted(operations):
            lines.append(f"| {method.upper()} | `{path}` | {'yes' if person_level else 'no'} | {who} |")
    return lines


def data_flow_markdown() -> str:
    """The whole document (deterministic: same code, same text)."""
    from upstream.settings import Settings

    s = Settings(home=Path("/UPSTREAM_HOME"))
    parts = [
        "# Data flow (generated)",
        "",
        "Generated by `python -m serving.dataflow` from the code's own declarations (ingest contract, "
        "operational tables, served routes). Do not edit by hand: a test fails when this file and the code differ.",
        "",
        "## 1. What arrives: one delivery per week (`upstream ingest`)",
        "",
        "Each source is a CSV file in the delivery directory. Every row is validated (Great Expectations); bad rows "
        "are quarantined with their reason, and NHS numbers are replaced by `person_id` before anything is written.",
        "An optional `opt_outs` file (one `nhs_number` per row) removes those people from every person-level output.",
        "",
        *_sources(),
        "",
        "## 2. Where it is kept (all under `UPSTREAM_HOME`)",
        "",
        "| location | holds | who reads it |",
        "|---|---|---|",
        f"| `{s.restricted_dir.relative_to(s.home)}/` | the re-identification map (`person_id` -> NHS number) | "
        "the API only, for locality keys and their own residents |",
        "| `clean/`, `quarantine/` | validated, pseudonymised rows; rejected rows with their reason | "
        "feature build; data engineers |",
        "| `weeks/<week>/features/` | each scored resident's model inputs at the week's index date (`person_id`, "
        "locality, features; opted-out people left out) | scoring, lists, monitoring; the API's resident route, to "
        "work out the reasons of a resident the week's run did not explain (one resident, after the key's scope "
        "check, audited) |",
        f"| `{s.model_cache_dir.relative_to(s.home)}/` | per model version, tables derived from the model's trees "
        "(no person-level data) | scoring, lists and the API (reasons) |",
        f"| `{Path(s.tracking_uri.removeprefix('sqlite:///')).name}`, `{s.artifact_root.relative_to(s.home)}/` | "
        "MLflow: models, raw metrics and raw fairness tables (data scientists only), model cards (suppressed) | "
        "training, scoring; the API reads the card and suppresses metrics |",
        f"| `{s.history_dir.relative_to(s.home)}/` | published weeks' scores once they leave the database "
        "(`person_id`, week, locality, score, band; no reasons), parquet; deleted with their week by retention and "
        "for opted-out people | the API's resident route (history); monitoring of matured weeks |",
        f"| `{Path(s.db_url.removeprefix('sqlite:///')).name}` (or PostgreSQL) | the operational tables below | "
        "see below |",
        "",
        "## 3. Operational tables",
        "",
        *_tables(),
        "",
        "## 4. What leaves: the API and web pages (`upstream serve`)",
        "",
        *_routes(),
        "",
        "Docs (`/docs`, `/redoc`, `/openapi.json`) need a key unless `serving.public_docs` is set.",
        "",
    ]
    return "\n".join(parts)


if __name__ == "__main__":
    print(data_flow_markdown(), end="")
