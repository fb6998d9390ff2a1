"""What a very active user costs the request read, with and without the hidden-set cap.

    python -m bench.serve.hidden_read [--sizes 100,1000,10000,50000] [--reads 300]

Every recommendation reads the user's recent items and the union of their seen / purchased /
disliked items in one round trip (`RedisOnlineState.read_ranking_with`). For a user who has
seen n distinct items (and nothing else), this writes them twice on a private redis-server:
as an uncapped plain set (what the state held before `RECO_ONLINE_HIDDEN_LIMIT`, the
baseline) and through the feedback path's own update, which keeps the newest `hidden_limit`
items. It prints the median read time of each and their ratio, measured in the same run.
"""

from __future__ import annotations

import argparse
import statistics
import time

import redis

from shared.online_state import OnlineConfig, OnlineUpdate, RedisOnlineState, user_state_keys
from tests.services import redis_server

BATCH = 500  # events per update call, as a feedback batch would bring them


def _sizes(text: str) -> list[int]:
    try:
        sizes = [int(s) for s in text.split(",")]
    except ValueError as err:
        raise argparse.ArgumentTypeError(
            f"sizes must be comma-separated integers: {text!r}"
        ) from err
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"sizes must be positive, got {text!r}")
    return sizes


def median_read_us(online: RedisOnlineState, user: str, reads: int) -> float:
    times = []
    for _ in range(reads):
        t0 = time.perf_counter()
        online.read_ranking_with("t1", user, "missing")
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e6


def run(client: redis.Redis, n: int, reads: int, config: OnlineConfig) -> tuple[float, float, int]:
    """(uncapped µs, capped µs, items the capped read returned) for a user who saw n items."""
    online = RedisOnlineState(client, config)
    items = [f"item{i}" for i in range(n)]
    for start in range(0, n, 10_000):
        client.sadd(user_state_keys("t1", "plain")["seen"], *items[start:start + 10_000])
    now = time.time() - n
    updates = [OnlineUpdate("t1", f"e{i}", "capped", item, now + i, False, "seen", 0.0)
               for i, item in enumerate(items)]
    for start in range(0, n, BATCH):
        online.apply(updates[start:start + BATCH])
    hidden = len(online.read_ranking_with("t1", "capped", "missing")[0].hidden)
    return median_read_us(online, "plain", reads), median_read_us(online, "capped", reads), hidden


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--sizes", type=_sizes, default=_sizes("100,1000,10000,50000"),
                    help="distinct items the user has seen, comma-separated")
    ap.add_argument("--reads", type=int, default=300, help="reads timed per case")
    args = ap.parse_args(argv)
    config = OnlineConfig()
    print(f"request read (recent + hidden union + candidates key), median of {args.reads}, "
          f"hidden limit {config.hidden_limit}")
    print(f"{'items seen':>10} {'uncapped µs':>12} {'capped µs':>10} {'ratio':>7} {'kept':>6}")
    with redis_server() as port:
        client = redis.Redis(port=port)
        for n in args.sizes:
            client.flushdb()
            plain, capped, kept = run(client, n, args.reads, config)
            print(f"{n:>10,} {plain:>12,.0f} {capped:>10,.0f} {plain / capped:>6.1f}x {kept:>6,}")
        client.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
