"""Typed settings, read from ``UPSTREAM_*`` environment variables and an optional TOML file.

Why one object: every step (ingest, features, training, scoring, serving) must agree on
where data lives and which tracking store is used. Secrets (the pseudonymisation key) come
only from the environment, never from the TOML file. Nothing here touches the disk at import.
"""

from __future__ import annotations

import os
import warnings
from datetime import date
from functools import cache
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import BaseModel, Field, SecretStr, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from upstream.targets import DEFAULT_TARGET, check_target

DEV_PSEUDO_KEY = "upstream-dev-only-key-do-not-use-with-real-data"


class IngestSettings(BaseModel):
    """Table-level checks: warn at or above the first threshold, fail at or above the second."""

    row_count_change_warn: float = 0.10
    row_count_change_fail: float = 0.50
    null_rate_warn: float = 0.01
    null_rate_fail: float = 0.20
    #: Share of spells that are emergency admissions: outside the warn range is unusual,
    #: outside the fail range means a broken admission_method column.
    emergency_share_min: float = 0.20
    emergency_share_max: float = 0.80
    emergency_share_fail_min: float = 0.05
    emergency_share_fail_max: float = 0.95
    #: Dates before this are impossible in a delivery (they are placeholder dates such as 1801-01-01).
    earliest_valid_date: date = date(1900, 1, 1)
    max_age_years: int = 115
    #: GX validates each source in chunks of this many rows (bounds pandas memory; at 1.9M residents it
    #: was also 18% faster than one frame: bench/README.md). None = one frame per source. 4M since issue 15
    #: session 5: without GX's batch fingerprint each chunk's fixed cost (metric graph, result, Data Docs
    #: page) dominates at 1M, and a 4M-row chunk of flag columns is about 50 MB of pandas.
    gx_chunk_rows: int | None = Field(4_000_000, ge=1)
    #: On a Dask cluster, each source is validated in tasks of about this many rows (pipelines.dask_ingest):
    #: one chunk's GX frame on a worker is what bounds a worker's memory in ingest.
    cluster_chunk_rows: int = Field(1_000_000, ge=1)
    #: Local ingest on several cores (``expectations.ingest_pool``): worker processes validate chunks of the
    #: sources, the same chunk functions a cluster runs. None = the cores this process may use when there are
    #: 3 or more, else 1 (on 2 cores the pool's extra CPU ate its gain: ``ingest_pool.ingest_workers``);
    #: 1 = the one-process path. Outputs are identical either way (tested).
    workers: int | None = Field(None, ge=1)
    #: Deliveries with fewer rows than this use the one-process path. The pool costs CPU of its own (a fork
    #: server importing GX, 2.2 CPU s once per process; each chunk re-reads its file and pays GX's fixed
    #: cost; the merge re-reads and sorts): measured (bench/README.md, issue 15 session 6) +5 CPU s at 280k
    #: residents (6.3M rows), slower there even in wall time on a busy 2-core machine; at 1.9M residents
    #: (43M rows) +15% CPU for less wall time. 20M rows is about 900k residents.
    pool_min_rows: int = Field(20_000_000, ge=0)
    #: The pool's share of work: the event sources are cut into chunks of at most 1/(workers x this) of their
    #: rows, handed out largest first, so the GP events (70% of a delivery's rows) are spread over the
    #: workers and no core idles at the end; more chunks cost a re-read of the file and GX's fixed cost each.
    pool_chunks_per_worker: int = Field(2, ge=1)


class GateSettings(BaseModel):
    """Promotion gate for the ``champion`` alias."""

    calibration_slope_min: float = 0.8
    calibration_slope_max: float = 1.2
    max_subgroup_auroc_gap: float = 0.05
    min_auroc_gain: float = 0.0
    #: Calibration-in-the-large on the test date: observed / expected events overall, and in each age band
    #: with at least ``calibration_min_events`` events. A group fails when its O/E is outside the band *and*
    #: its exact Poisson interval excludes 1 (materially and demonstrably miscalibrated, not noise); the
    #: intervals are Bonferroni-widened over the groups judged (5% family-wise, models.gate) and widened for the
    #: training sample behind the expected count (the run's ``train_events``).
    observed_expected_min: float = 0.9
    observed_expected_max: float = 1.1
    age_band_observed_expected_min: float = 0.8
    age_band_observed_expected_max: float = 1.25
    calibration_min_events: int = Field(50, ge=1)


class TrainSettings(BaseModel):
    """How training dates are chosen (models.train.choose_method_dates)."""

    #: Days of data needed before every training index date. None = the longest window of the model inputs
    #: in the feature registry (features.registry.required_history_days), so training and scoring see the
    #: same history. Lower it only knowingly (a delivery with less history): the model card records it.
    min_history_days: int | None = Field(None, ge=0)
    #: Test rows the losing candidate is scored on, for the record (it chose nothing: the choice is made on the
    #: validation date). A fixed random sample of the test date when it has more rows; None = every row. The
    #: chosen model is always tested on every row. MLflow records the rows used (``<kind>_test_n``).
    candidate_test_rows: int | None = Field(200_000, ge=1000)
    #: OpenMP threads for gradient boosting while training (fits, predictions). None = the cores that are idle
    #: when training starts (every core on a quiet machine, 1 on a busy one): scikit-learn's histogram loops
    #: wait at a barrier many times per tree, and on a busy machine every wait costs a time slice, so two
    #: threads cost 7-20x the CPU of one (``models.train.fit_threads``). The model is the same either way.
    fit_threads: int | None = Field(None, ge=1)


class ListSettings(BaseModel):
    """Weekly rising-risk list rules (DESIGN §6)."""

    band_percentile: float = Field(0.80, ge=0.0, le=1.0)
    capacity_per_locality: int = Field(500, ge=1)
    #: A rise of at least this (probability, 0.05 = 5 percentage points) over the lookback lists a person as rising.
    risk_rise_threshold: float = Field(0.05, ge=0.0)
    #: Compare with the published week this many weeks earlier (or the earliest one, while fewer exist).
    rise_lookback_weeks: int = Field(4, ge=1, le=52)
    #: How many reasons scoring keeps per resident (the strongest first): the scores, the list rows and the API
    #: hold exactly these, chosen once at scoring (``pipelines.champion.score_partition``).
    top_reasons: int = Field(3, ge=1, le=10)


class CohortSettings(BaseModel):
    """Who may be on a list at all (DESIGN §6; the rules themselves: ``expectations.cohort``)."""

    #: Adult social care: people younger than this at T are never listed.
    min_age: int = Field(18, ge=0, le=120)


class OffersSettings(BaseModel):
    """The service catalogue (``upstream.offers``): the shipped default unless a council names its own."""

    #: A TOML file declaring the council's offers; None = ``upstream/service_catalogue.toml``.
    catalogue: Path | None = None


LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")


class ServingSettings(BaseModel):
    host: str = "127.0.0.1"
    port: int = 8000
    max_list_limit: int = 5000
    #: Host names the server answers to (Starlette's TrustedHostMiddleware; "*.example.org" wildcards allowed).
    #: Anything else gets 400, so a forged Host header is never reflected in a redirect. The bind host and
    #: the loopback names are always trusted; add the public name of a deployment behind a proxy.
    trusted_hosts: list[str] = []
    #: /docs, /redoc and /openapi.json need a key unless this is set (e.g. for a developer sandbox).
    public_docs: bool = False
    #: Web sign-in session lifetime in hours (the cookie holds a random session id, never the key).
    session_hours: float = Field(8.0, gt=0, le=24)
    #: ``Secure`` on cookies; None = on unless the server is bound to a loopback address (plain-http dev).
    secure_cookies: bool | None = None

    @property
    def allowed_hosts(self) -> list[str]:
        return sorted({*LOOPBACK_HOSTS, self.host, *self.trusted_hosts} - {"0.0.0.0", "::"})

    @property
    def cookies_secure(self) -> bool:
        return self.secure_cookies if self.secure_cookies is not None else self.host not in LOOPBACK_HOSTS


class RetentionSettings(BaseModel):
    """How long each kind of record is kept (docs/governance/retention.md; enforced by ``upstream retention``)."""

    #: Audit of person-level access: 8 years, as for other access audit trails in the NHS Records
    #: Management Code of Practice 2023 (set by the Caldicott Guardian; None keeps it forever).
    audit_days: int | None = Field(8 * 366, ge=30)
    #: Expired or signed-out web sessions are deleted after this many days.
    session_days: int = Field(7, ge=0)
    #: Published weeks (scores and lists) older than this many weeks are deleted; None keeps them.
    #: Two years covers the 12-month outcome window that evaluation needs, with a year to spare.
    score_weeks: int | None = Field(104, ge=60)
    #: The newest published weeks whose scores stay in the database with their reasons (the resident view shows
    #: the latest week's reasons); older weeks move to the parquet history store (``<home>/history``, without
    #: reasons) when a week is published. Two: each week is ~0.9 GiB of SQLite at 1.9M residents, and older
    #: weeks (the rise comparison week, monitoring) read from the history store in seconds (bench/README.md).
    database_score_weeks: int = Field(2, ge=1, le=104)


class MonitoringSettings(BaseModel):
    """Weekly model-health checks (issue 16). PSI thresholds follow the usual credit-risk convention:
    below 0.1 no real shift, 0.1-0.25 worth a look, above 0.25 the population has moved."""

    psi_warn: float = Field(0.10, ge=0.0)
    psi_alert: float = Field(0.25, ge=0.0)
    #: Standardised mean difference of a numeric feature (the covariate-balance thresholds).
    smd_warn: float = Field(0.10, ge=0.0)
    smd_alert: float = Field(0.20, ge=0.0)
    #: Relative change in a source's delivered rows against the previous delivery that raises an alert.
    volume_change_alert: float = Field(0.20, ge=0.0)
    #: Rise (absolute, e.g. 0.02 = 2 percentage points) in a source's quarantine rate that raises an alert.
    quarantine_rate_rise_alert: float = Field(0.02, ge=0.0)
    #: Observed/expected outside [1 - x, 1 + x] on a matured week raises an alert.
    oe_tolerance: float = Field(0.20, ge=0.0)
    #: Realised AUROC this far below the champion's test AUROC raises an alert.
    auroc_drop_alert: float = Field(0.05, ge=0.0)
    #: Weeks shown on the monitoring page (and matured weeks evaluated per run).
    history_weeks: int = Field(12, ge=1, le=520)
    #: The MLflow UI analysts open (links from the run-history page).
    mlflow_ui_url: str = "http://127.0.0.1:5000"


class AlertSettings(BaseModel):
    """Where alerts go. Nothing is sent when neither a webhook nor SMTP is configured.

    ``UPSTREAM_ALERTS__WEBHOOK_URL`` may carry a token (Teams/Slack incoming webhooks do): set it in the
    environment, not the TOML file. ``public_url`` is the address analysts open (links in alerts).
    """

    webhook_url: SecretStr | None = None
    smtp_host: str | None = None
    smtp_port: int = Field(25, ge=1, le=65535)
    smtp_starttls: bool = False
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    email_from: str = "upstream@localhost"
    email_to: list[str] = []
    public_url: str = "http://127.0.0.1:8000"
    timeout_seconds: float = Field(10.0, gt=0, le=120)


class Settings(BaseSettings):
    """All of Upstream's configuration. ``UPSTREAM_HOME`` is the root of everything it writes."""

    model_config = SettingsConfigDict(
        env_prefix="UPSTREAM_", env_nested_delimiter="__", extra="ignore", toml_file=None
    )

    home: Path = Path("./.upstream")
    pseudo_key: SecretStr | None = None
    database_url: str | None = None
    mlflow_tracking_uri: str | None = None
    target: str = DEFAULT_TARGET
    ingest: IngestSettings = IngestSettings()
    gate: GateSettings = GateSettings()
    train: TrainSettings = TrainSettings()
    lists: ListSettings = ListSettings()
    cohort: CohortSettings = CohortSettings()
    offers: OffersSettings = OffersSettings()
    serving: ServingSettings = ServingSettings()
    #: Seconds the Prefect API may stay unreachable before a run is stopped with exit code 2
    #: (pipelines.prefect_server.ApiWatchdog); a server process that exits stops the run at once.
    prefect_api_grace_seconds: float = Field(30.0, gt=0, le=60)
    retention: RetentionSettings = RetentionSettings()
    monitoring: MonitoringSettings = MonitoringSettings()
    alerts: AlertSettings = AlertSettings()
    #: An existing Dask scheduler (``tcp://host:8786``): the weekly flow runs ingest, features, scoring, list
    #: building and outcome follow-up as tasks there (``--dask-address`` overrides). ``home`` must then be on
    #: storage every worker shares (docs/SCALING.md). None: everything runs in the flow's process.
    dask_address: str | None = None

    @field_validator("target")
    @classmethod
    def _declared_target(cls, value: str) -> str:
        # A typo here would otherwise train, score and serve a model nobody can find.
        return check_target(value)

    @field_validator("home")
    @classmethod
    def _absolute_home(cls, value: Path) -> Path:
        # One absolute path everywhere, so MLflow URIs and artefact paths never depend on cwd.
        return value.expanduser().resolve()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config_file = os.environ.get("UPSTREAM_CONFIG")
        if config_file:
            sources.append(_TomlWithoutSecrets(settings_cls, toml_file=Path(config_file)))
        return tuple(sources)

    # Derived locations: one definition each, used by every step.
    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{self.home / 'upstream.db'}"

    @property
    def tracking_uri(self) -> str:
        return self.mlflow_tracking_uri or f"sqlite:///{self.home / 'mlflow.db'}"

    @property
    def artifact_root(self) -> Path:
        return self.home / "mlartifacts"

    @property
    def history_dir(self) -> Path:
        """Published weeks' scores once they leave the database (``pipelines.history_store``)."""
        return self.home / "history"

    @property
    def model_cache_dir(self) -> Path:
        """Things worked out once per model version and kept between processes (TreeSHAP tables)."""
        return self.home / "cache" / "models"

    @property
    def restricted_dir(self) -> Path:
        """Re-identification material lives apart from the analytical data."""
        return self.home / "restricted"

    @property
    def reid_map_path(self) -> Path:
        return self.restricted_dir / "reid_map.parquet"

    def pseudonymisation_key(self) -> bytes:
        """The HMAC key; a missing key falls back to a dev-only default with a loud warning."""
        if self.pseudo_key is not None and self.pseudo_key.get_secret_value():
            return self.pseudo_key.get_secret_value().encode()
        warnings.warn(
            "UPSTREAM_PSEUDO_KEY is not set: using the built-in DEVELOPMENT key. Pseudonyms made with it "
            "are NOT safe for real data. Set UPSTREAM_PSEUDO_KEY in the environment before any real delivery.",
            UserWarning,
            stacklevel=2,
        )
        return DEV_PSEUDO_KEY.encode()


class _TomlWithoutSecrets(TomlConfigSettingsSource):
    """TOML config may not carry secrets: they belong in the environment only."""

    def __call__(self) -> dict:
        data = super().__call__()
        if "pseudo_key" in data:
            raise ValueError("pseudo_key must not be set in the TOML config file; use UPSTREAM_PSEUDO_KEY")
        alerts = data.get("alerts") or {}
        for name in ("webhook_url", "smtp_password"):
            if isinstance(alerts, dict) and alerts.get(name):
                raise ValueError(f"alerts.{name} must not be set in the TOML config file; "
                                 f"use UPSTREAM_ALERTS__{name.upper()} in the environment")
        for name in ("database_url", "mlflow_tracking_uri"):
            if data.get(name) and urlsplit(str(data[name])).password:
                raise ValueError(
                    f"{name} in the TOML config file holds a password; set UPSTREAM_{name.upper()} in the environment"
                )
        return data


@cache
def get_settings() -> Settings:
    """Process-wide settings; tests build ``Settings(...)`` directly instead."""
    return Settings()
