"""Settings, read once from ``SPIRE_*`` environment variables and validated at start-up."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from phantom_spire.cti.enrichment.http import ProviderConfig
from phantom_spire.errors import ConfigError

__all__ = ["Settings"]


class Settings(BaseSettings):
    """Every option of the engine. Each field maps to ``SPIRE_<NAME>``."""

    model_config = SettingsConfigDict(env_prefix="SPIRE_", frozen=True)

    data_dir: Path = Field(default=Path("data"), description="Folder of the embedded SQLite store.")
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL of the store; absent means SQLite in data_dir.",
    )
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = Field(default=8, description="Concurrent task executions per worker process.")
    lease_seconds: float = Field(default=30.0, description="A claim expires unless renewed.")
    heartbeat_seconds: float = Field(default=10.0, description="How often a lease is renewed.")
    reaper_seconds: float = Field(default=5.0, description="How often expired leases are swept.")
    poll_seconds: float = Field(default=0.5, description="Idle worker poll interval.")
    default_timeout_ms: int = Field(default=3_600_000, description="Task timeout when none given.")
    ingest_batch_size: int = Field(default=500, description="Indicators written per transaction.")
    fetch_max_bytes: int = Field(
        default=1 << 30, description="Largest feed downloaded from a URL, in bytes."
    )
    fetch_timeout_seconds: float = 60.0
    run_workers: bool = Field(default=True, description="`spire serve` also runs a worker pool.")
    stop_grace_seconds: float = Field(
        default=30.0, description="A cancelled or paused handler is forced to stop after this."
    )
    key_pepper: str | None = Field(
        default=None,
        description="Hex secret mixed into stored API-key hashes (HMAC); the same on every node.",
    )
    audit_key: str | None = Field(
        default=None,
        description="Hex secret keying the audit hash chain (HMAC), kept outside the database.",
    )
    rate_limit: str = Field(
        default="1200/minute", description="Requests per API key, e.g. '1200/minute'."
    )
    classification_levels: str = Field(
        default="UNCLASSIFIED,CONFIDENTIAL,SECRET,TOP SECRET",
        description="Classification levels, lowest first.",
    )
    template_dir: Path | None = Field(
        default=None, description="Folder of the user's workflow templates (*.yaml)."
    )
    scheduler_poll_seconds: float = Field(
        default=1.0, gt=0, description="How often the scheduler looks for due schedules."
    )
    run_scheduler: bool = Field(default=True, description="Run the scheduler beside the worker.")
    aging_points_per_minute: float = Field(
        default=10.0,
        ge=0,
        description="Effective priority a queued task gains per minute of waiting (0: off).",
    )
    enrichment_providers: list[ProviderConfig] = Field(
        default_factory=list,
        description=(
            "HTTP reputation providers for indicator_enrichment, as JSON: "
            '[{"name": "vt", "kind": "virustotal"|"abuseipdb", "url": ..., "apiKey": ..., '
            '"rateLimit": "4/minute", "timeoutSeconds": 10, "cacheTtlSeconds": 3600}].'
        ),
    )
    warning_lists: list[Path] = Field(
        default_factory=list,
        description="MISP warninglist files checked on every ingested indicator by default.",
    )
    enrichment_warning_lists: list[Path] = Field(
        default_factory=list,
        description="MISP warninglist files or folders checked by indicator_enrichment.",
    )

    @model_validator(mode="after")
    def _check_timing(self) -> Settings:
        if self.workers < 1:
            raise ConfigError(f"SPIRE_WORKERS={self.workers}, but at least 1 worker is needed")
        if self.heartbeat_seconds >= self.lease_seconds:
            raise ConfigError(
                f"SPIRE_HEARTBEAT_SECONDS={self.heartbeat_seconds} must be shorter than "
                f"SPIRE_LEASE_SECONDS={self.lease_seconds}, or leases expire between heartbeats"
            )
        return self

    @property
    def pepper_bytes(self) -> bytes | None:
        return _hex_setting("SPIRE_KEY_PEPPER", self.key_pepper)

    @property
    def audit_key_bytes(self) -> bytes | None:
        return _hex_setting("SPIRE_AUDIT_KEY", self.audit_key)

    @property
    def resolved_database_url(self) -> str:
        """The store URL: ``database_url`` or the embedded SQLite file in ``data_dir``."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'spire.db').resolve()}"


def _hex_setting(name: str, value: str | None) -> bytes | None:
    if not value:
        return None
    try:
        raw = bytes.fromhex(value)
    except ValueError:
        raise ConfigError(
            f"{name} must be hexadecimal, got {len(value)} characters that are not"
        ) from None
    if len(raw) < 16:
        raise ConfigError(f"{name} must hold at least 16 bytes (32 hex digits), got {len(raw)}")
    return raw
