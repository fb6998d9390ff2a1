"""The objects one process builds once and every request or trigger reuses."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from shared.feedback.process import CategoryOf, process_batch
from shared.model_registry import ActiveModels
from shared.online_state import OnlineState, build_online_state, config_from
from shared.serving import gc_settings
from shared.serving.recommender import Recommender
from shared.settings import ConfigurationError, Settings, get_settings
from shared.stores.events import DirectSink, EventHubSink, EventSink
from shared.stores.factory import Backends, build_backends


@dataclass
class Runtime:
    settings: Settings
    backends: Backends
    active: ActiveModels
    recommender: Recommender
    sink: EventSink
    online: OnlineState


def build_event_sink(
    settings: Settings, backends: Backends, online: OnlineState | None = None,
    category_of: CategoryOf | None = None,
) -> EventSink:
    if settings.eventhub_connection_string or settings.eventhub_namespace:
        from azure.eventhub import EventHubProducerClient

        if settings.eventhub_connection_string:
            producer = EventHubProducerClient.from_connection_string(
                settings.eventhub_connection_string, eventhub_name=settings.eventhub_name,
                retry_total=0,  # EventHubSink retries, with a timeout per send
            )
        else:
            from azure.identity import DefaultAzureCredential

            producer = EventHubProducerClient(
                str(settings.eventhub_namespace), settings.eventhub_name, DefaultAzureCredential(),
                retry_total=0,
            )
        return EventHubSink(producer, max_retries=settings.eventhub_max_retries,
                            send_timeout=settings.eventhub_send_timeout_seconds,
                            default_tenant=settings.default_tenant)
    return DirectSink(lambda bodies: process_batch(
        backends.store, bodies, online, category_of=category_of,
        default_tenant=settings.default_tenant,
    ))


def build_runtime(settings: Settings, backends: Backends) -> Runtime:
    gc_settings.for_serving()
    active = ActiveModels(backends.store, settings.active_version_refresh_seconds)
    online = build_online_state(backends.cache, config_from(settings))
    recommender = Recommender.from_settings(settings, backends, active, online)
    sink = build_event_sink(settings, backends, online, recommender.category_of)
    return Runtime(settings, backends, active, recommender, sink, online)


@lru_cache(maxsize=1)
def get_runtime() -> Runtime:
    """Raises ConfigurationError (not cached: the next call tries again) when a setting, a
    JSON-valued one included, cannot be used."""
    settings = get_settings()
    try:
        return build_runtime(settings, build_backends(settings))
    except ValueError as exc:
        raise ConfigurationError.of(exc) from None
