"""Small builders the tests share."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from shared.keys import ACTIVE_DOC_ID
from shared.model_registry import MODELS
from shared.runtime import Runtime, build_runtime
from shared.serving.api import create_app
from shared.settings import Settings
from shared.stores.documents import DocumentStore
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


def before_pointer_write(monkeypatch: pytest.MonkeyPatch, store: DocumentStore, tenant: str,
                         action: Callable[[], object]) -> None:
    """Runs `action` once, just before the next write of `tenant`'s active-version pointer
    (by whichever store method writes it): another switch landing between a switch's read of
    the pointer and its write, which the switch must not overwrite."""
    fired = False

    def hook(name: str) -> None:
        real = getattr(store, name)

        def write(container: str, doc: dict[str, Any], *rest: Any) -> Any:
            nonlocal fired
            pointer = container == MODELS and (doc["id"], doc["pk"]) == (ACTIVE_DOC_ID, tenant)
            if pointer and not fired:
                fired = True
                action()
            return real(container, doc, *rest)

        monkeypatch.setattr(store, name, write)

    for name in ("upsert", "create", "replace_if"):
        hook(name)
