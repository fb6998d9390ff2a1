"""A small load generator that records what each answer was (status, source) per second, for
the resilience modes: `python -m bench.serve.drive URL USERS SECONDS CONCURRENCY OUT.json`."""

from __future__ import annotations

import asyncio
import json
import random
import sys
import time
from collections import Counter, defaultdict

import httpx


async def worker(client: httpx.AsyncClient, base: str, users: int, until: float, start: float,
                 timeline: dict[int, Counter[str]]) -> None:
    while time.monotonic() < until:
        user = random.randrange(users)
        try:
            r = await client.get(f"{base}/api/recommendations/u{user}?k=10")
            label = f"{r.status_code}:{r.json().get('source', '-')}" if r.status_code == 200 \
                else str(r.status_code)
        except Exception as exc:  # a connection error counts as a failure
            label = f"error:{type(exc).__name__}"
        # counted in the second the answer arrived: a request sent just before Redis stops is
        # answered (degraded) after it stopped
        timeline[int(time.monotonic() - start)][label] += 1


async def main(base: str, users: int, seconds: float, concurrency: int, out: str) -> None:
    timeline: dict[int, Counter[str]] = defaultdict(Counter)
    start = time.monotonic()
    print("started", flush=True)  # the bench times its phases from this line
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=10) as client:
        await asyncio.gather(*(worker(client, base, users, start + seconds, start, timeline)
                               for _ in range(concurrency)))
    with open(out, "w") as f:
        json.dump({str(k): dict(v) for k, v in sorted(timeline.items())}, f)


if __name__ == "__main__":
    url, n_users, secs, conc, path = sys.argv[1:6]
    asyncio.run(main(url, int(n_users), float(secs), int(conc), path))
