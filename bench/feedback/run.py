"""Feedback throughput: events/s through the trigger's handler, next to raw Redis writes.

    python -m bench.feedback.run [--events 50000] [--batch 100] [--repeats 3]

The handler path is `process_batch` on the embedded SQLite store and a real redis-server
(started here on a free port): validation, dead-letter check, one SQLite transaction and one
pipelined Redis round trip per batch. The baseline, measured in the same run on the same
server, pipelines the same Redis commands on the same keys (markers, recent, sets, trending)
with no validation, no store and no exactly-once check. Stages are also timed alone so the
cost of each is visible. Medians over `--repeats` runs, each on a fresh store and empty Redis.
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import redis

from shared.feedback.process import create_events, online_update, parse_event, process_batch
from shared.feedback.schema import FeedbackEvent
from shared.online_state import (
    ALL_CATEGORIES,
    HOUR,
    MemoryOnlineState,
    OnlineConfig,
    RedisOnlineState,
    trending_key,
    user_state_keys,
)
from shared.stores.cache import LruCache
from shared.stores.documents import SqliteStore
from tests.services import redis_server

KINDS = ["view"] * 6 + ["click"] * 2 + ["add_to_cart", "purchase", "impression", "dislike"]
TARGET = 20_000


def make_bodies(n: int, seed: int = 7) -> list[bytes]:
    """Realistic events: two tenants, 20k users, 5k items, a mix of types and categories."""
    rng = random.Random(seed)
    now = datetime.now(UTC)
    out = []
    for i in range(n):
        kind = rng.choice(KINDS)
        event: dict[str, object] = {
            "eventId": f"ev-{seed}-{i:08d}", "tenant": rng.choice(("shop", "news")),
            "userId": f"user{rng.randrange(20_000)}", "itemId": f"item{rng.randrange(5_000)}",
            "type": kind, "timestamp": (now - timedelta(seconds=rng.randrange(86_400))).isoformat(),
            "context": {"category": f"cat{rng.randrange(20)}"},
        }
        if kind == "impression":
            event["recommendationId"] = f"rec{rng.randrange(10**9)}"
            event["position"] = rng.randrange(10)
            event["context"] = {"modelVersion": "v1", "variant": rng.choice("AB")}
        out.append(json.dumps(event).encode())
    return out


def batches(bodies: list[bytes], size: int) -> list[list[bytes]]:
    return [bodies[i:i + size] for i in range(0, len(bodies), size)]


def timed(fn: Callable[[], object]) -> float:
    """Wall time of fn. The bench holds every event in memory at once, which a trigger never
    does: freezing what exists keeps the garbage collector from rescanning it all the time."""
    gc.collect()
    gc.freeze()
    t0 = time.perf_counter()
    fn()
    elapsed = time.perf_counter() - t0
    gc.unfreeze()
    return elapsed


def raw_redis(client: redis.Redis, events: list[list[FeedbackEvent]], cfg: OnlineConfig) -> None:
    """The same keys written by plain pipelined commands: what Redis alone costs."""
    for batch in events:
        pipe = client.pipeline(transaction=False)
        for e in batch:
            u = online_update(e)
            if u is None:
                continue
            keys = user_state_keys(u.tenant, u.user_id)
            pipe.zadd(keys["applied"], {u.event_id: time.time() + cfg.dedupe_ttl_seconds},
                      nx=True)
            pipe.expire(keys["applied"], cfg.dedupe_ttl_seconds)
            if u.recent:
                pipe.zadd(keys["recent"], {u.item_id: u.timestamp}, gt=True)
                pipe.zremrangebyrank(keys["recent"], 0, -(cfg.recent_limit + 1))
                pipe.expire(keys["recent"], cfg.user_ttl_seconds)
            if u.user_set:
                pipe.zadd(keys[u.user_set], {u.item_id: u.timestamp}, gt=True)
                pipe.zremrangebyrank(keys[u.user_set], 0, -(cfg.hidden_limit + 1))
                pipe.expire(keys[u.user_set], cfg.user_ttl_seconds)
            if u.trend_weight:
                hour = int(u.timestamp // HOUR)
                expire_at = (hour + 1 + cfg.trending_window_hours) * HOUR
                for cat in (ALL_CATEGORIES, u.category):
                    if cat:
                        key = trending_key(u.tenant, cat, hour)
                        pipe.zincrby(key, u.trend_weight, u.item_id)
                        pipe.expireat(key, expire_at)
        pipe.execute()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=50_000)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    bodies = make_bodies(args.events)
    groups = batches(bodies, args.batch)
    parsed = [[e for b in g if isinstance(e := parse_event(b), FeedbackEvent)] for g in groups]
    cfg = OnlineConfig()
    n = len(bodies)
    results: dict[str, list[float]] = {}

    def record(name: str, seconds: float) -> None:
        results.setdefault(name, []).append(n / seconds)

    with redis_server() as port, tempfile.TemporaryDirectory() as tmp:
        client = redis.Redis(port=port)
        for r in range(args.repeats):
            client.flushdb()
            record("raw pipelined Redis (baseline)", timed(lambda: raw_redis(client, parsed, cfg)))

            client.flushdb()
            store = SqliteStore(Path(tmp) / f"handler{r}.sqlite3")
            online = RedisOnlineState(client, cfg)
            record("handler: SQLite + Redis", timed(
                lambda: [process_batch(store, g, online) for g in groups]))  # noqa: B023
            replay = timed(lambda: [process_batch(store, g, online) for g in groups])  # noqa: B023
            record("handler, same batches again", replay)

            memory = MemoryOnlineState(LruCache(), cfg)
            store2 = SqliteStore(Path(tmp) / f"embedded{r}.sqlite3")
            record("handler: SQLite + in-process state", timed(
                lambda: [process_batch(store2, g, memory) for g in groups]))  # noqa: B023

            record("  stage: validation only", timed(
                lambda: [[parse_event(b) for b in g] for g in groups]))
            store3 = SqliteStore(Path(tmp) / f"store{r}.sqlite3")
            docs = [[e.to_document() for e in g] for g in parsed]
            record("  stage: to_document only", timed(
                lambda: [[e.to_document() for e in g] for g in parsed]))
            record("  stage: SQLite create_many only", timed(
                lambda: [create_events(store3, d) for d in docs]))  # noqa: B023
            client.flushdb()
            updates = [[u for e in g if (u := online_update(e))] for g in parsed]
            record("  stage: Redis apply only", timed(
                lambda: [online.apply(u) for u in updates]))  # noqa: B023
        client.close()

    base = statistics.median(results["raw pipelined Redis (baseline)"])
    print(f"{n:,} events in batches of {args.batch}, median of {args.repeats} runs, 1 process")
    print(f"{'path':<38} {'events/s':>10} {'vs raw Redis':>13}")
    for name, rates in results.items():
        median = statistics.median(rates)
        print(f"{name:<38} {median:>10,.0f} {median / base:>12.2f}x")
    handler = statistics.median(results["handler: SQLite + Redis"])
    verdict = "meets" if handler >= TARGET else "misses"
    print(f"handler on the embedded store path: {handler:,.0f} events/s, {verdict} the "
          f"{TARGET:,}/s target")


if __name__ == "__main__":
    main()
