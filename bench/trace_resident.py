"""Follow one resident from `upstream run` to `GET /residents/{id}/score`: stops, files, returns
(`python bench/trace_resident.py`; docs/ARCHITECTURE.md shows the result).

Method (issue 14, sessions 2 and 3), written out by reading the executed code path:
- the resident is scored and listed (section "top") in the first published week, then read through the API;
- a stop is a function of ours that holds the resident's rows or decides something they depend on (the
  index date, settings, the model, reasons, the list), in the order the run executes them;
- a coordinator (a flow body, `publish_run`, the route) is listed when entered and again only where it
  resumes with work of its own on the row; calls a step makes to shared helpers (the contract's reader
  `scan_clean`, the cohort's predicates, store tables, path helpers) belong to that step;
- bookkeeping that does not touch the resident (run records, artifacts, monitoring, outcome follow-up,
  list files) is left out, as are calls that run only for `new`/`rising` people (`what_changed`);
- consecutive stops in one file merge; a return is a stop in a file already visited.
"""
from collections import Counter

COMMON_START = """upstream/cli.py main
pipelines/cli_run.py run_weekly
pipelines/flows.py weekly (Settings built once for the run's tasks)
pipelines/weeks.py resolve_index_date (the run's date, once)
expectations/ingest.py delivery_extract_date (the one _delivery.json reader)
pipelines/flows.py ingest flow + ingest_task (date and Settings passed in)
pipelines/delivery.py run_ingest (week of the run's date; dates checked against the extract date)
expectations/ingest.py delivery_extract_date + ingest_delivery
pipelines/flows.py build_features flow + features_task
pipelines/partitions.py build_partition_features
features/build.py build_features"""

SCORE = """pipelines/flows.py score flow + score_task
pipelines/champion.py score_partition (asks for the top lists.top_reasons)
models/registry.py champion_or_none
pipelines/scoring.py score_features + encode_reasons (reasons -> JSON text, the one encoding)
pipelines/flows.py store_scores_task
pipelines/champion.py scored_model_identity
pipelines/score_history.py store_scores
pipelines/scoring.py combine_partitions + assign_bands
pipelines/score_history.py start_score_run + write_scores (text stored as it is)
pipelines/flows.py publish_lists + publish_task
pipelines/publish.py publish_run
upstream/offers.py load_catalogue"""

SERVE = """serving/app.py resident_score (module-level route)
serving/deps.py CurrentPrincipal -> require_principal
serving/queries.py resident_history (reasons decoded once, for the response)
serving/app.py resident_score: record_access
serving/audit.py record_access"""

before = "\n".join([COMMON_START, """pipelines/delivery.py opted_out_people (reads opt_outs.parquet itself)""", SCORE, """expectations/cohort.py cohort_at
pipelines/score_history.py load_scores_for_lists + previous_published + comparison_published
pipelines/lists.py build_lists
pipelines/weeks.py week_features
upstream/offers.py ServiceCatalogue.match
pipelines/score_history.py load_reasons (stored text)
pipelines/lists.py attach_details (decodes, trims, re-encodes reasons; decodes again for the words)
pipelines/publish.py publish_run: opted_out_people for publish_week
pipelines/delivery.py opted_out_people (second read)
pipelines/score_history.py publish_week""", SERVE])

after = "\n".join([COMMON_START, """expectations/cohort.py opted_out_people (through scan_clean, the one clean reader)""", SCORE, """expectations/cohort.py cohort_at + opted_out_people (the week's people, read together)
pipelines/score_history.py load_scores_for_lists + previous_published + comparison_published
pipelines/lists.py build_lists
pipelines/weeks.py week_features
upstream/offers.py ServiceCatalogue.match
pipelines/score_history.py load_reasons (stored text)
pipelines/lists.py attach_details (stores the text as it is; reasons_in_words decodes only the texts)
pipelines/score_history.py publish_week (opted_out passed in)""", SERVE])


def count(text: str) -> tuple[list[str], int, Counter]:
    stops: list[str] = []
    for line in text.splitlines():
        file = line.split()[0]
        if not stops or stops[-1] != file:
            stops.append(file)
    seen: set[str] = set()
    returns = 0
    for file in stops:
        returns += file in seen
        seen.add(file)
    return stops, returns, Counter(stops)


if __name__ == "__main__":
    for name, text in (("before (main ecc2dac)", before), ("after (i14c)", after)):
        stops, returns, entered = count(text)
        print(f"{name}: {len(stops)} stops in {len(set(stops))} files, {returns} returns; "
              f"most entered: {entered.most_common(3)}")
        print("  " + " -> ".join(stops))
