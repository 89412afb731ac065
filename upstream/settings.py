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

DEV_PSEUDO_KEY = "upstream-dev-only-key-do-not-use-with-real-data"


class IngestSettings(BaseModel):
    """Table-level checks: warn above the first threshold, fail above the second."""

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
    #: was also 18% faster than one frame: bench/README.md). None = one frame per source.
    gx_chunk_rows: int | None = Field(1_000_000, ge=1)


class GateSettings(BaseModel):
    """Promotion gate for the ``champion`` alias."""

    calibration_slope_min: float = 0.8
    calibration_slope_max: float = 1.2
    max_subgroup_auroc_gap: float = 0.05
    min_auroc_gain: float = 0.0
    #: Calibration-in-the-large on the test date: observed / expected events overall, and in each age band
    #: with at least ``calibration_min_events`` events. A group fails when its O/E is outside the band *and*
    #: its exact 95% Poisson interval excludes 1 (materially and demonstrably miscalibrated, not noise).
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


class ListSettings(BaseModel):
    """Weekly rising-risk list rules (DESIGN §6)."""

    band_percentile: float = Field(0.80, ge=0.0, le=1.0)
    capacity_per_locality: int = Field(500, ge=1)
    risk_rise_threshold: float = Field(0.05, ge=0.0)
    top_reasons: int = Field(3, ge=1, le=10)


class CohortSettings(BaseModel):
    """Who may be on a list at all (DESIGN §6; the rules themselves: ``expectations.cohort``)."""

    #: Adult social care: people younger than this at T are never listed.
    min_age: int = Field(18, ge=0, le=120)


class OffersSettings(BaseModel):
    """The service catalogue (``upstream.offers``): the shipped default unless a council names its own."""

    #: A TOML file declaring the council's offers; None = ``upstream/service_catalogue.toml``.
    catalogue: Path | None = None


class ServingSettings(BaseModel):
    host: str = "127.0.0.1"
    port: int = 8000
    max_list_limit: int = 5000


class Settings(BaseSettings):
    """All of Upstream's configuration. ``UPSTREAM_HOME`` is the root of everything it writes."""

    model_config = SettingsConfigDict(
        env_prefix="UPSTREAM_", env_nested_delimiter="__", extra="ignore", toml_file=None
    )

    home: Path = Path("./.upstream")
    pseudo_key: SecretStr | None = None
    database_url: str | None = None
    mlflow_tracking_uri: str | None = None
    target: str = "crisis"
    ingest: IngestSettings = IngestSettings()
    gate: GateSettings = GateSettings()
    train: TrainSettings = TrainSettings()
    lists: ListSettings = ListSettings()
    cohort: CohortSettings = CohortSettings()
    offers: OffersSettings = OffersSettings()
    serving: ServingSettings = ServingSettings()

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
