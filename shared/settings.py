"""The one place that reads configuration.

Names are Azure app-setting names (the same in `infra/`, `local.settings.json.example` and
the README). Which backend each role uses follows from what is set: with nothing set,
everything runs embedded (in-process cache, SQLite, local folder, direct event calls).
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from pathlib import Path
from typing import Any

from pydantic import AliasChoices, Field, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.ids import check_tenant

SCHEDULE_PATTERN = (r"^(?:[0-9A-Za-z*/,-]+ +){5}[0-9A-Za-z*/,-]+$"  # NCRONTAB, seconds first
                    r"|^(?:[0-9]+\.)?[0-9]{1,2}:[0-9]{2}:[0-9]{2}$")  # TimeSpan [d.]hh:mm:ss

# Where an address belongs, the address alone (field -> pattern, the rule in words)
_ADDRESS_RULES = {
    "cosmos_endpoint": (r"https?://[^\s;@]+", "must be the account's https:// endpoint URL "
                        "alone, not a connection string"),
    "redis_host": (r"[A-Za-z0-9.\-]+", "must be a host name alone, without scheme, password, "
                   "port or path"),
}

# NCRONTAB fields: name, lowest, highest, names (month and weekday names count from lowest)
_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_WEEKDAYS = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")
_CRON_FIELDS: list[tuple[str, int, int, tuple[str, ...]]] = [
    ("second", 0, 59, ()), ("minute", 0, 59, ()), ("hour", 0, 23, ()), ("day", 1, 31, ()),
    ("month", 1, 12, _MONTHS), ("day of week", 0, 6, _WEEKDAYS),
]


def _cron_value(token: str, name: str, low: int, names: tuple[str, ...]) -> int:
    if token.upper() in names:
        return low + names.index(token.upper())
    if not token.isdigit():
        raise ValueError(f"{name}: {token!r} is not a number")
    return int(token)


def schedule_problem(value: str) -> str | None:
    """What is out of range in a schedule that has the right shape (None: nothing), so that a
    value the Functions host would refuse is refused here, naming the field."""
    if ":" in value:  # TimeSpan [d.]hh:mm:ss
        hh, mm, ss = (int(x) for x in value.rsplit(".", 1)[-1].split(":"))
        return None if hh < 24 and mm < 60 and ss < 60 else "a TimeSpan needs hh < 24, mm < 60"
    try:
        for text, (name, low, high, names) in zip(value.split(), _CRON_FIELDS, strict=True):
            for part in text.split(","):
                span, _, step = part.partition("/")
                if step and (not step.isdigit() or int(step) < 1):
                    raise ValueError(f"{name}: step {step!r} must be a whole number >= 1")
                if span != "*":
                    first, _, last = span.partition("-")
                    lo = _cron_value(first, name, low, names)
                    hi = _cron_value(last, name, low, names) if last else lo
                    if not low <= lo <= hi <= high:
                        raise ValueError(f"{name}: {span!r} is outside {low}-{high}")
    except ValueError as exc:
        return str(exc)
    return None


def _comma_list(text: str) -> list[str]:
    """The names of a comma-separated setting, blanks dropped."""
    return [t.strip() for t in text.split(",") if t.strip()]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        case_sensitive=False, extra="ignore", populate_by_name=True, env_ignore_empty=True,
        allow_inf_nan=False,  # an "inf" timeout or budget would mean never
    )

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
    redis_port: int = Field(6379, alias="REDIS_PORT", ge=1, le=65535)
    redis_ssl: bool = Field(False, alias="REDIS_SSL")
    redis_username: str | None = Field(None, alias="REDIS_USERNAME")  # identity's object id
    redis_password: str | None = Field(None, alias="REDIS_PASSWORD")  # access key, if not Entra
    redis_max_connections: int = Field(64, alias="REDIS_MAX_CONNECTIONS", ge=1)
    redis_timeout_seconds: float = Field(0.25, alias="REDIS_TIMEOUT_SECONDS", gt=0)
    # how long a request may wait for a free pooled connection (saturation, not a Redis failure)
    redis_pool_timeout_seconds: float = Field(2.0, alias="REDIS_POOL_TIMEOUT_SECONDS", gt=0)
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
    eventhub_consumer_group: str = Field("$Default", alias="EVENTHUB_CONSUMER_GROUP")
    eventhub_max_retries: int = Field(5, alias="EVENTHUB_MAX_RETRIES", ge=0)
    eventhub_send_timeout_seconds: float = Field(10.0, alias="EVENTHUB_SEND_TIMEOUT_SECONDS",
                                                 gt=0)

    # Online state (recent items, seen/purchased/disliked, trending) and feedback de-duplication
    online_recent_limit: int = Field(50, alias="RECO_ONLINE_RECENT_LIMIT", ge=1, le=1000)
    online_hidden_limit: int = Field(1000, alias="RECO_ONLINE_HIDDEN_LIMIT", ge=1, le=100_000)
    online_user_ttl_seconds: int = Field(30 * 86400, alias="RECO_ONLINE_USER_TTL_SECONDS", ge=60)
    feedback_dedupe_ttl_seconds: int = Field(
        3 * 86400, alias="RECO_FEEDBACK_DEDUPE_TTL_SECONDS", ge=3600
    )
    trending_window_hours: int = Field(48, alias="RECO_TRENDING_WINDOW_HOURS", ge=1, le=24 * 14)
    trending_half_life_hours: float = Field(6.0, alias="RECO_TRENDING_HALF_LIFE_HOURS", gt=0)
    trending_read_cache_seconds: float = Field(5.0, alias="RECO_TRENDING_READ_CACHE_SECONDS", ge=0)

    # Serving: business rules, experiments, diversity, resilience (see README "HTTP API")
    rules: str | None = Field(None, alias="RECO_RULES")  # JSON: per-tenant pinned/boosted items
    rules_file: Path | None = Field(None, alias="RECO_RULES_FILE")  # the same JSON in a file
    experiments: str | None = Field(None, alias="RECO_EXPERIMENTS")  # JSON list of experiments
    diversity_max_share: float = Field(0.5, alias="RECO_DIVERSITY_MAX_SHARE", gt=0, le=1)
    breaker_failures: int = Field(5, alias="RECO_BREAKER_FAILURES", ge=1)
    breaker_reset_seconds: float = Field(5.0, alias="RECO_BREAKER_RESET_SECONDS", gt=0)
    read_retry_attempts: int = Field(2, alias="RECO_READ_RETRY_ATTEMPTS", ge=1, le=5)
    model_load_wait_seconds: float = Field(10.0, alias="RECO_MODEL_LOAD_WAIT_SECONDS", ge=0)
    max_threads: int = Field(16, alias="RECO_MAX_THREADS", ge=1, le=256)  # request threads

    # Retraining
    # NCRONTAB's six fields, or a TimeSpan (dedicated plans): the host refuses anything else
    retrain_schedule: str = Field("0 0 3 * * *", alias="RETRAIN_SCHEDULE",
                                  pattern=SCHEDULE_PATTERN)
    retrain_tenants: str | None = Field(None, alias="RETRAIN_TENANTS")  # comma separated
    retrain_window_days: int = Field(180, alias="RETRAIN_WINDOW_DAYS", ge=1)
    retrain_gate_tolerance: float = Field(0.02, alias="RETRAIN_GATE_TOLERANCE", ge=0, lt=1)
    retrain_tuning_seconds: float = Field(60.0, alias="RETRAIN_TUNING_SECONDS", gt=0)
    retrain_max_function_rows: int = Field(2_000_000, alias="RETRAIN_MAX_FUNCTION_ROWS", ge=1)
    retrain_lease_seconds: int = Field(3600, alias="RETRAIN_LEASE_SECONDS", ge=30)
    fill_chunk_users: int = Field(1000, alias="RECO_FILL_CHUNK_USERS", ge=1)
    fill_store_concurrency: int = Field(8, alias="RECO_FILL_STORE_CONCURRENCY", ge=1, le=256)
    # large-data handoff
    databricks_job_id: int | None = Field(None, alias="DATABRICKS_JOB_ID", ge=1)
    mlflow_tracking_uri: str | None = Field(None, alias="MLFLOW_TRACKING_URI")

    # Telemetry: nothing is sent unless this is set
    appinsights_connection_string: str | None = Field(
        None, alias="APPLICATIONINSIGHTS_CONNECTION_STRING"
    )

    @field_validator("cosmos_endpoint", "redis_host")
    @classmethod
    def _address_alone(cls, value: str | None, info: ValidationInfo) -> str | None:
        # never quote the value: a connection string pasted here carries the key
        pattern, rule = _ADDRESS_RULES[str(info.field_name)]
        if value is not None and not re.fullmatch(pattern, value):
            raise ValueError(f"{rule} (the value is not repeated)")
        return value

    @field_validator("api_key")
    @classmethod
    def _key_is_ascii(cls, value: str | None) -> str | None:
        if value is not None and not (value.isascii() and value.isprintable()):
            raise ValueError("must be printable ASCII (a header cannot carry other characters "
                             "reliably, so no request could match it)")
        return value

    @field_validator("default_tenant", "retrain_tenants")
    @classmethod
    def _tenant_ids(cls, value: str | None, info: ValidationInfo) -> str | None:
        """Tenants follow the tenant rule wherever they are named (a tenant "shop:v1" would
        share cache keys with tenant "shop"'s version "v1"); RETRAIN_TENANTS is a list."""
        if value is None:
            return None
        listed = info.field_name == "retrain_tenants"
        for tenant in _comma_list(value) if listed else [value]:
            check_tenant(tenant)
        return value

    @field_validator("retrain_schedule")
    @classmethod
    def _schedule_in_range(cls, value: str) -> str:
        problem = schedule_problem(value)
        if problem:
            raise ValueError(problem)
        return value

    @property
    def sqlite_file(self) -> Path:
        return self.sqlite_path or self.data_dir / "store.sqlite3"

    @property
    def artifacts_folder(self) -> Path:
        return self.artifacts_dir or self.data_dir / "artifacts"

    @property
    def retrain_tenant_list(self) -> list[str]:
        """Tenants the timer retrains; the default tenant alone when none are listed."""
        names = _comma_list(self.retrain_tenants or "")
        return names or [self.default_tenant]

    @property
    def mlflow_uri(self) -> str:
        """A workspace when MLFLOW_TRACKING_URI is set, else a local file store."""
        return self.mlflow_tracking_uri or (self.data_dir / "mlruns").resolve().as_uri()


class ConfigurationError(RuntimeError):
    """A setting this process cannot run with; the message names it in one sentence."""

    @classmethod
    def of(cls, exc: ValueError) -> ConfigurationError:
        if isinstance(exc, ValidationError):  # pydantic's several lines: one clause per field
            text = "; ".join(f"{'.'.join(map(str, e['loc'])).upper()}: {e['msg']}"
                             for e in exc.errors())
        else:
            text = str(exc)
        return cls(f"configuration: {text}")


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Settings for this process, read once; tests build `Settings(...)` directly instead."""
    try:
        return Settings()
    except ValueError as exc:
        raise ConfigurationError.of(exc) from None


def parse_json_setting(text: str | None, name: str, kind: type, shape: str) -> Any | None:
    """A JSON-valued setting: None when empty, else the value, which must be a `kind`.

    Raises ValueError naming the setting, so a bad value stops start-up with a sentence.
    """
    if not text or not text.strip():
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{name} is not valid JSON: {exc}") from None
    if not isinstance(value, kind):
        raise ValueError(f"{name} must be {shape}")
    return value
