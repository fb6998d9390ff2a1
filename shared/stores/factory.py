"""Builds each backend once per process from settings: Azure when configured, embedded if not."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import redis
import redis.asyncio as aredis

from shared.settings import Settings, get_settings
from shared.stores.artifacts import ArtifactStore, BlobArtifactStore, LocalArtifactStore
from shared.stores.cache import AsyncRedis, HotCache, LruCache, RedisCache
from shared.stores.documents import CosmosStore, DocumentStore, SqliteStore
from shared.stores.redis_auth import EntraTokenProvider


@dataclass
class Backends:
    """The stores one process talks to; serving, feedback and training all share them."""

    cache: HotCache
    store: DocumentStore
    artifacts: ArtifactStore


def _credential() -> Any:
    from azure.identity import DefaultAzureCredential

    return DefaultAzureCredential()


def build_cache(settings: Settings) -> HotCache:
    if not settings.redis_host:
        return LruCache(settings.lru_max_entries)
    auth: dict[str, Any] = {"username": settings.redis_username,
                            "password": settings.redis_password}
    if settings.redis_password is None and settings.redis_username:
        # Entra ID: the identity's object id is the user name, a refreshed token the password.
        auth = {"credential_provider": EntraTokenProvider(_credential(), settings.redis_username)}
    # Two different waits: the socket timeouts say how long Redis may take to answer (a
    # breaker counts those failures); the pool timeout how long a request may queue for a free
    # connection when this process is busy, which says nothing about Redis (never counted).
    common: dict[str, Any] = {
        "host": settings.redis_host,
        "port": settings.redis_port,
        **auth,
        "max_connections": settings.redis_max_connections,
        "timeout": settings.redis_pool_timeout_seconds,
        "socket_timeout": settings.redis_timeout_seconds,
        "socket_connect_timeout": settings.redis_timeout_seconds,
        "health_check_interval": 30,
    }
    pool = redis.BlockingConnectionPool(
        connection_class=redis.SSLConnection if settings.redis_ssl else redis.Connection,
        **common,
    )

    def async_pool() -> aredis.BlockingConnectionPool:
        return aredis.BlockingConnectionPool(
            connection_class=aredis.SSLConnection if settings.redis_ssl else aredis.Connection,
            **common,
        )

    return RedisCache(redis.Redis(connection_pool=pool), aio=AsyncRedis(async_pool))


def build_store(settings: Settings) -> DocumentStore:
    if not settings.cosmos_endpoint:
        return SqliteStore(settings.sqlite_file)
    from azure.cosmos import CosmosClient

    credential: Any = settings.cosmos_key or _credential()
    client = CosmosClient(
        settings.cosmos_endpoint,
        credential=credential,
        connection_verify=settings.cosmos_verify_tls,
        enable_endpoint_discovery=settings.cosmos_verify_tls,
        connection_timeout=settings.cosmos_timeout_seconds,
    )
    if settings.cosmos_create_containers:
        database = client.create_database_if_not_exists(settings.cosmos_database)
        CosmosStore.create_containers(database)
    else:
        database = client.get_database_client(settings.cosmos_database)
    return CosmosStore(database, settings.cosmos_timeout_seconds)


def build_artifacts(settings: Settings) -> ArtifactStore:
    if settings.artifacts_connection_string or settings.artifacts_account_url:
        from azure.storage.blob import BlobServiceClient

        if settings.artifacts_connection_string:
            service = BlobServiceClient.from_connection_string(settings.artifacts_connection_string)
        else:
            service = BlobServiceClient(str(settings.artifacts_account_url), _credential())
        store = BlobArtifactStore(service.get_container_client(settings.artifacts_container))
        if settings.artifacts_connection_string:
            store.ensure_container()  # key auth may create it; with RBAC, infra does
        return store
    return LocalArtifactStore(settings.artifacts_folder)


def build_backends(settings: Settings) -> Backends:
    return Backends(build_cache(settings), build_store(settings), build_artifacts(settings))


@lru_cache(maxsize=1)
def get_backends() -> Backends:
    """The process-wide backends: clients are created once and reused by every request."""
    return build_backends(get_settings())
