"""Fixtures: real Redis, a Cosmos-protocol server and Azurite, started once per test run.

Service fixtures are lazy: a test that needs none of them starts none of them.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from shared.runtime import get_runtime
from shared.settings import Settings, get_settings
from shared.stores.artifacts import ArtifactStore, LocalArtifactStore
from shared.stores.cache import HotCache, LruCache
from shared.stores.documents import DocumentStore, SqliteStore
from shared.stores.factory import (
    Backends,
    build_artifacts,
    build_backends,
    build_cache,
    build_store,
)
from tests import services


@pytest.fixture(scope="session")
def redis_port() -> Iterator[int]:
    with services.redis_server() as port:
        yield port


@pytest.fixture(scope="session")
def cosmos_endpoint() -> Iterator[str]:
    with services.cosmos_server() as endpoint:
        yield endpoint


@pytest.fixture(scope="session")
def azurite_connection(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with services.azurite_blob(tmp_path_factory.mktemp("azurite")) as conn:
        yield conn


@pytest.fixture
def redis_client(redis_port: int) -> Iterator[redis.Redis]:
    client = redis.Redis(port=redis_port)
    client.flushdb()
    yield client
    client.close()


def azure_settings(redis_port: int, cosmos_endpoint: str, azurite_connection: str,
                   **extra: object) -> Settings:
    """Settings as an Azure deployment would have them, pointed at the local stand-ins."""
    unique = uuid.uuid4().hex[:12]
    values: dict[str, object] = {
        "REDIS_HOST": "127.0.0.1",
        "REDIS_PORT": redis_port,
        "COSMOS_ENDPOINT": cosmos_endpoint,
        "COSMOS_KEY": services.COSMOS_KEY,
        "COSMOS_DATABASE": f"db{unique}",
        "COSMOS_CREATE_CONTAINERS": True,
        "COSMOS_VERIFY_TLS": False,
        "ARTIFACTS_CONNECTION_STRING": azurite_connection,
        "ARTIFACTS_CONTAINER": f"models{unique}",
        "RECO_ACTIVE_VERSION_REFRESH_SECONDS": 0,
        **extra,
    }
    return Settings(**values)  # type: ignore[arg-type]


def embedded_settings(tmp_path: Path, **extra: object) -> Settings:
    values: dict[str, object] = {
        "RECO_DATA_DIR": tmp_path / "data",
        "RECO_ACTIVE_VERSION_REFRESH_SECONDS": 0,
        **extra,
    }
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture
def azure_backends(redis_client: redis.Redis, cosmos_endpoint: str,
                   azurite_connection: str) -> Backends:
    port = int(redis_client.connection_pool.connection_kwargs["port"])
    return build_backends(azure_settings(port, cosmos_endpoint, azurite_connection))


@pytest.fixture(params=["lru", "redis"])
def cache(request: pytest.FixtureRequest) -> HotCache:
    if request.param == "lru":
        return LruCache(max_entries=1000)
    client: redis.Redis = request.getfixturevalue("redis_client")
    port = int(client.connection_pool.connection_kwargs["port"])
    return build_cache(Settings(REDIS_HOST="127.0.0.1", REDIS_PORT=port))


def fresh_cosmos_store(endpoint: str) -> DocumentStore:
    """A Cosmos store on the stand-in, in a database of its own."""
    return build_store(
        Settings(
            COSMOS_ENDPOINT=endpoint,
            COSMOS_KEY=services.COSMOS_KEY,
            COSMOS_DATABASE=f"db{uuid.uuid4().hex[:12]}",
            COSMOS_CREATE_CONTAINERS=True,
            COSMOS_VERIFY_TLS=False,
        )
    )


@pytest.fixture(params=["sqlite", "cosmos"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> DocumentStore:
    if request.param == "sqlite":
        return SqliteStore(tmp_path / "store.sqlite3")
    return fresh_cosmos_store(request.getfixturevalue("cosmos_endpoint"))


@pytest.fixture(params=["folder", "blob"])
def artifacts(request: pytest.FixtureRequest, tmp_path: Path) -> ArtifactStore:
    if request.param == "folder":
        return LocalArtifactStore(tmp_path / "artifacts")
    conn: str = request.getfixturevalue("azurite_connection")
    return build_artifacts(
        Settings(
            ARTIFACTS_CONNECTION_STRING=conn, ARTIFACTS_CONTAINER=f"c{uuid.uuid4().hex[:12]}"
        )
    )


@pytest.fixture(scope="session")
def function_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """function_app imported once, on embedded settings in a private data folder."""
    mp = pytest.MonkeyPatch()
    mp.setenv("RECO_DATA_DIR", str(tmp_path_factory.mktemp("fa") / "data"))
    mp.setenv("RECO_ACTIVE_VERSION_REFRESH_SECONDS", "0")
    get_settings.cache_clear()
    get_runtime.cache_clear()
    import function_app

    yield function_app
    mp.undo()
    get_settings.cache_clear()
    get_runtime.cache_clear()


@pytest.fixture(scope="session")
def functions(function_app: Any) -> dict[str, Any]:
    """The registered functions by name (get_functions() may be called once per process)."""
    return {f.get_function_name(): f for f in function_app.app.get_functions()}
