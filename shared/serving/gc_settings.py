"""The cyclic garbage collector's settings for a serving process.

A loaded version holds hundreds of thousands of container objects (item metadata dicts, id
lists, category tuples) that live until the next version, and each request allocates a few
hundred short-lived ones. With CPython's defaults (a young collection every 700 allocations,
and older ones re-examining every long-lived object) collection was the largest single cost of
a request under load: `python -m bench.serve.run` gave the full path about 2,100 req/s with
the defaults and 2,560-2,750 with these settings, the bare endpoint about 3,200 and 3,900-4,420
(runs on the same shared machine, whose speed varies by tens of percent).

So: a young collection every 10,000 allocations (reference counting frees almost everything a
request allocates; only reference cycles wait for the collector), and after each version load
the survivors are frozen: the collector skips frozen objects, while reference counting still
frees them when a version is dropped. Each load first unfreezes, so cycles left by a dropped
version are collected then.
"""

from __future__ import annotations

import gc
import threading

THRESHOLDS = (10_000, 20, 20)  # young, middle, old generation (CPython's: 700, 10, 10)
_lock = threading.Lock()


def for_serving() -> None:
    """Sets the thresholds (idempotent; a process that serves calls it when it starts)."""
    gc.set_threshold(*THRESHOLDS)


def settle_after_load() -> None:
    """Collects what a load left behind and freezes the rest (one full collection: tens of
    milliseconds with a large version, once per load, on the loading thread)."""
    with _lock:
        gc.unfreeze()
        gc.collect()
        gc.freeze()
