"""The retrain pipeline every entry point runs: read, train, publish, switch."""

from __future__ import annotations

import logging

from shared.model_registry import ModelVersion
from shared.runtime import Runtime
from training.events_source import read_events
from training.interactions import Interactions
from training.popularity import train_popularity
from training.publish import publish

log = logging.getLogger(__name__)


def train_and_publish(runtime: Runtime, data: Interactions, tenant: str) -> ModelVersion:
    model = train_popularity(data, runtime.settings.candidates_per_user)
    rows = {"interactions": len(data), "users": data.n_users, "items": data.n_items}
    return publish(runtime.backends, model, tenant, rows, runtime.settings.cache_ttl_seconds)


def retrain_from_events(runtime: Runtime, tenant: str) -> ModelVersion | None:
    """The timer's job: learn from the logged feedback; nothing to learn from is not an error."""
    data = read_events(runtime.backends.store, tenant)
    if data is None:
        log.info("tenant %s: no feedback events yet, keeping the active version", tenant)
        return None
    return train_and_publish(runtime, data, tenant)
