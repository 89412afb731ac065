"""The command line's console (issue 16): quiet by default, everything with ``-v``.

By default a user sees one line per weekly step (the ``upstream.steps`` logger), a progress bar while a
weekly run is under way (only on a terminal), Upstream's own warnings (each text once), and errors from
anyone. Prefect's per-task INFO lines, MLflow's and Great Expectations' chatter and third-party Python
warnings are hidden; they still reach Prefect's API (the UI keeps every log line) because only this
console handler filters, not the loggers. With ``-v`` every record is shown at DEBUG.

Colour and the live bar come from rich only when stderr is a terminal: piped output (CI, ``| wc -l``,
a log file) gets plain text with no escape codes.
"""

from __future__ import annotations

import io
import logging
import os
import re
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stderr
from typing import Any

#: Our packages: their warnings are shown by default; third-party ones need -v.
OWN_PACKAGES = ("upstream", "synthetic", "expectations", "features", "models", "pipelines", "serving")
#: Loggers shown at INFO by default: the per-step lines, and the API's access log when serving.
SHOWN_AT_INFO = ("upstream.steps", "upstream.console", "upstream.serving.access")
#: The weekly steps, in order (``pipelines.flows.weekly`` logs one ``upstream.steps`` record per step).
WEEKLY_STEPS = ("ingest", "features", "train", "score", "publish", "monitor")

console_log = logging.getLogger("upstream.console")
#: Set by the quiet console, for steps that must silence a library's bare prints (see ``quiet_prints``).
QUIET_ENV = "UPSTREAM_CONSOLE_QUIET"
ANSI_CODES = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


@contextmanager
def quiet_prints() -> Iterator[None]:
    """Swallow bare ``print(..., file=sys.stderr)`` from a library (MLflow's model-registry notes) while the
    quiet console is on. Logging is unaffected: the console handler keeps the original stream."""
    if os.environ.get(QUIET_ENV) != "1":
        yield
        return
    with redirect_stderr(io.StringIO()):
        yield


def _own(name: str) -> bool:
    return name.split(".", 1)[0] in OWN_PACKAGES


class QuietFilter(logging.Filter):
    """Default console policy: step lines, our warnings (each text once), anyone's errors."""

    def __init__(self) -> None:
        super().__init__()
        self._seen: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name == "py.warnings":
            # Our own warnings, each text once. Colour-coded ones are MLflow's developer notes attributed to
            # our calling line; the filters below should already drop them, but a library may reset them.
            if ANSI_CODES.search(record.getMessage()):
                return False
            text = warning_text(record)
            if text in self._seen:
                return False
            self._seen.add(text)
            return True
        if record.name in SHOWN_AT_INFO or record.name.startswith("upstream.serving.access"):
            return True
        if record.levelno >= logging.ERROR and not record.name.startswith("prefect"):
            return True  # Prefect's own ERROR lines repeat the exception the CLI reports in one line
        if record.levelno >= logging.WARNING and _own(record.name):
            text = record.getMessage()
            if text in self._seen:
                return False
            self._seen.add(text)
            return True
        return False


class StepHandler(logging.Handler):
    """Prints step lines; on a terminal also drives a rich progress bar over the weekly steps."""

    def __init__(self, stream: Any, verbose: bool) -> None:
        super().__init__()
        from rich.console import Console

        self.tty = bool(getattr(stream, "isatty", lambda: False)())
        # No colour, no live display, no wrapping when piped: plain lines a log or `wc -l` can use.
        self.console = Console(
            file=stream, force_terminal=self.tty, no_color=not self.tty, highlight=False, soft_wrap=True
        )
        self.verbose = verbose
        self.progress: Any = None
        self.task: Any = None

    def _bar(self, week: str) -> None:
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        if self.progress is None:
            self.progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                TextColumn("{task.completed}/{task.total} steps"),
                TimeElapsedColumn(),
                console=self.console,
                transient=True,
            )
            self.progress.start()
        if self.task is not None:
            self.progress.remove_task(self.task)
        self.task = self.progress.add_task(f"weekly run {week}", total=len(WEEKLY_STEPS))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            week = getattr(record, "week", None)
            if self.tty and record.name == "upstream.steps" and week and getattr(record, "starting", False):
                self._bar(week)
                return
            if getattr(record, "starting", False):
                return  # the bar's start marker: nothing to print without a terminal
            text = self.format(record)
            self.console.print(text, markup=False)
            if self.progress is not None and record.name == "upstream.steps" and self.task is not None:
                self.progress.advance(self.task)
                if getattr(record, "step", None) == WEEKLY_STEPS[-1]:
                    self.stop()
        except Exception:  # a display fault must never fail a run
            self.handleError(record)

    def stop(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None
            self.task = None

    def close(self) -> None:
        self.stop()
        super().close()


def warning_text(record: logging.LogRecord) -> str:
    """The text of a captured Python warning, without the file path, line number and source line."""
    first = record.getMessage().splitlines()[0] if record.getMessage() else ""
    match = re.search(r":\d+: \w+: (.*)$", first)
    return ANSI_CODES.sub("", match.group(1) if match else first)


class _Format(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        if record.name == "py.warnings" and not self.verbose:
            return f"warning: {warning_text(record)}"
        if record.name in SHOWN_AT_INFO and record.levelno < logging.WARNING:
            return record.getMessage()
        if record.levelno >= logging.WARNING and not self.verbose:
            return f"{record.levelname.lower()}: {record.getMessage()}"
        return super().format(record)

    def __init__(self, verbose: bool) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")
        self.verbose = verbose


def quiet_environment(verbose: bool) -> None:
    """Before any third-party import: tone down libraries that configure their own loggers at import."""
    if not verbose:
        os.environ[QUIET_ENV] = "1"
        # MLflow logs through its own handler: only errors; no tqdm bar for each artefact download.
        os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "ERROR")
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        # Prefect's console handler (its logging.yml): keep its records for the API, not for the console.
        os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "WARNING")


def configure_console(verbose: bool, stream: Any = None) -> StepHandler:
    """Install the console handler on the root logger (replacing any) and the warnings policy."""
    quiet_environment(verbose)
    stream = stream or sys.stderr
    root = logging.getLogger()
    for existing in list(root.handlers):
        # Replace a previous console (or a plain basicConfig handler); leave others alone (pytest's capture).
        plain = type(existing) is logging.StreamHandler and existing.stream in (sys.stderr, sys.stdout)
        if isinstance(existing, StepHandler) or plain:
            root.removeHandler(existing)
    handler = StepHandler(stream, verbose)
    handler.setFormatter(_Format(verbose))
    if not verbose:
        handler.addFilter(QuietFilter())
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    for name in SHOWN_AT_INFO:
        logging.getLogger(name).setLevel(logging.INFO)
    logging.captureWarnings(True)
    if not verbose:
        # Third-party warnings (MLflow's CloudPickle/pip notes, pydantic, GX) are for developers: -v shows them.
        warnings.simplefilter("ignore")
        own = r"^(" + "|".join(OWN_PACKAGES) + r")(\.|$)"
        warnings.filterwarnings("default", module=own)
        # MLflow's developer notes come colour-coded and are attributed to our calling line (stacklevel):
        # a message starting with an escape code is one of them, never ours.
        warnings.filterwarnings("ignore", message="\x1b")
    return handler

