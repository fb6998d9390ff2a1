"""The one place that reads configuration.

Names are Azure app-setting names (the same in `infra/`, `local.settings.json.example` and
the README). Which backend each role uses follows from what is set: with nothing set,
everything runs embedded (in-process cache, SQLite, local folder, direct event calls).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(case_sensitive=False, extra="ignore", populate_by_name=True)

    # General
    default_tenant: str = Field("default", alias="RECO_DEFAULT_TENANT")
    data_dir: Path = Field(Path(".data"), alias="RECO_DATA_DIR")
    api_key: str | None = Field(None, alias="RECO_API_KEY")  # optional local API key
    candidates_per_user: int = Field(100, alias="RECO_CANDIDATES_PER_USER", ge=10, le=1000)
    cache_ttl_seconds: int = Field(7 * 24 * 3600, alias="RECO_CACHE_TTL_SECONDS", ge=60)
    active_version_refresh_seconds: float = Field(
        10.0, alias="RECO_ACTIVE_VERSION_REFRESH_SECONDS", ge=0
    )

    # Hot cache: Azure Managed Redis when REDIS_HOST is set
    redis_host: str | None = Field(None, alias="REDIS_HOST")
    redis_port: int = Field(6379, alias="REDIS_PORT")
    redis_ssl: bool = Field(False, alias="REDIS_SSL")
    redis_username: str | None = Field(None, alias="REDIS_USERNAME")  # identity's object id
    redis_password: str | None = Field(None, alias="REDIS_PASSWORD")  # access key, if not Entra
    redis_max_connections: int = Field(64, alias="REDIS_MAX_CONNECTIONS", ge=1)
    redis_timeout_seconds: float = Field(0.25, alias="REDIS_TIMEOUT_SECONDS", gt=0)
    lru_max_entries: int = Field(100_000, alias="RECO_LRU_MAX_ENTRIES", ge=1)

    # Document store: Cosmos DB for NoSQL when COSMOS_ENDPOINT is set
    cosmos_endpoint: str | None = Field(None, alias="COSMOS_ENDPOINT")
    cosmos_key: str | None = Field(None, alias="COSMOS_KEY")  # else managed identity
    cosmos_database: str = Field("recommender", alias="COSMOS_DATABASE")
    cosmos_create_containers: bool = Field(False, alias="COSMOS_CREATE_CONTAINERS")
    cosmos_verify_tls: bool = Field(True, alias="COSMOS_VERIFY_TLS")
    cosmos_timeout_seconds: float = Field(2.0, alias="COSMOS_TIMEOUT_SECONDS", gt=0)
    sqlite_path: Path | None = Field(None, alias="RECO_SQLITE_PATH")

    # Model artifacts: Blob Storage when an account URL or connection string is set
    artifacts_account_url: str | None = Field(None, alias="ARTIFACTS_ACCOUNT_URL")
    artifacts_connection_string: str | None = Field(None, alias="ARTIFACTS_CONNECTION_STRING")
    artifacts_container: str = Field("models", alias="ARTIFACTS_CONTAINER")
    artifacts_dir: Path | None = Field(None, alias="RECO_ARTIFACTS_DIR")

    # Feedback events: Event Hubs when the trigger's connection is set. The trigger binding
    # and the producer share one setting prefix, so identity-based config is written once.
    eventhub_namespace: str | None = Field(
        None, alias="EventHubConnection__fullyQualifiedNamespace"
    )
    eventhub_connection_string: str | None = Field(
        None, validation_alias=AliasChoices("EventHubConnection", "EVENTHUB_CONNECTION_STRING")
    )
    eventhub_name: str = Field("feedback", alias="EVENTHUB_NAME")

    # Retraining
    retrain_schedule: str = Field("0 0 3 * * *", alias="RETRAIN_SCHEDULE")

    # Telemetry: nothing is sent unless this is set
    appinsights_connection_string: str | None = Field(
        None, alias="APPLICATIONINSIGHTS_CONNECTION_STRING"
    )

    @property
    def sqlite_file(self) -> Path:
        return self.sqlite_path or self.data_dir / "store.sqlite3"

    @property
    def artifacts_folder(self) -> Path:
        return self.artifacts_dir or self.data_dir / "artifacts"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Settings for this process, read once; tests build `Settings(...)` directly instead."""
    return Settings()
