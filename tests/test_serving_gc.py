"""A serving process collects young objects less often and freezes what a version load leaves
behind, so the collector stops re-examining the loaded version on every older-generation pass
(real Redis, the Cosmos-protocol server, Azurite, a published version)."""

from __future__ import annotations

import gc
import weakref

import redis

from shared.serving import gc_settings
from tests.test_serving_support import azure_runtime, publish_catalogue


def test_a_loaded_version_is_frozen_and_young_collections_are_rarer(
    redis_client: redis.Redis, cosmos_endpoint: str, azurite_connection: str
) -> None:
    gc.set_threshold(700, 10, 10)
    runtime = azure_runtime(redis_client, cosmos_endpoint, azurite_connection)
    assert gc.get_threshold() == gc_settings.THRESHOLDS
    publish_catalogue(runtime)
    runtime.recommender.warm("default")
    data = runtime.recommender.models.current("default")
    assert data is not None and data.complete
    assert gc.get_freeze_count() > 0
    tracked = {id(o) for o in gc.get_objects()}  # frozen objects are not listed
    assert id(data.item_ids) not in tracked and id(data.index) not in tracked


def test_cycles_left_by_a_dropped_version_are_collected_at_the_next_load() -> None:
    class Node:
        other: object = None

    a, b = Node(), Node()
    a.other, b.other = b, a
    gc_settings.settle_after_load()  # frozen with the "version" that held them
    alive = weakref.ref(a)
    del a, b
    gc.collect()  # an ordinary collection skips frozen objects
    assert alive() is not None
    gc_settings.settle_after_load()  # the next load: unfrozen, collected, the rest frozen
    assert alive() is None
