"""Small builders the tests share."""

from __future__ import annotations

from fastapi.testclient import TestClient

from shared.runtime import Runtime, build_runtime
from shared.serving.api import create_app
from shared.settings import Settings
from shared.stores.factory import Backends
from training.interactions import Interactions


def tiny_interactions() -> Interactions:
    """Three users, five items: item 'a' most popular, then 'b', ..."""
    rows = [
        ("u1", "a"), ("u1", "b"),
        ("u2", "a"), ("u2", "c"), ("u2", "d"),
        ("u3", "a"), ("u3", "b"), ("u3", "e"),
        ("u4", "b"), ("u4", "c"),
    ]
    return Interactions.from_columns([u for u, _ in rows], [i for _, i in rows],
                                     timestamps=list(range(len(rows))))


def runtime_on(settings: Settings, backends: Backends) -> Runtime:
    return build_runtime(settings, backends)


def client_for(runtime: Runtime) -> TestClient:
    return TestClient(create_app(lambda: runtime), raise_server_exceptions=False)
