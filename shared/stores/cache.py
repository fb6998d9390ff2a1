"""Hot cache: byte values by key, read on every request.

Redis in Azure (bounded pool, short timeouts so a slow cache never stalls a request);
an in-process LRU when no Redis is configured.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from typing import Protocol

import redis

from shared.stores.errors import BackendError


class HotCache(Protocol):
    name: str

    def get(self, key: str) -> bytes | None: ...
    def get_many(self, keys: list[str]) -> list[bytes | None]: ...
    def set_many(self, items: Mapping[str, bytes], ttl_seconds: int | None = None) -> None: ...
    def delete(self, keys: Iterable[str]) -> int: ...
    def delete_prefix(self, prefix: str) -> int: ...
    def ping(self) -> bool: ...


class LruCache:
    """Thread-safe in-process LRU with optional per-entry expiry."""

    name = "lru"

    def __init__(self, max_entries: int = 100_000) -> None:
        self._max = max_entries
        self._data: OrderedDict[str, tuple[bytes, float | None]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> bytes | None:
        with self._lock:
            entry = self._data.get(key)
            if entry is None:
                return None
            value, expires = entry
            if expires is not None and expires < time.monotonic():
                del self._data[key]
                return None
            self._data.move_to_end(key)
            return value

    def get_many(self, keys: list[str]) -> list[bytes | None]:
        return [self.get(k) for k in keys]

    def set_many(self, items: Mapping[str, bytes], ttl_seconds: int | None = None) -> None:
        expires = time.monotonic() + ttl_seconds if ttl_seconds else None
        with self._lock:
            for key, value in items.items():
                self._data[key] = (value, expires)
                self._data.move_to_end(key)
            while len(self._data) > self._max:
                self._data.popitem(last=False)

    def delete(self, keys: Iterable[str]) -> int:
        with self._lock:
            return sum(self._data.pop(k, None) is not None for k in keys)

    def delete_prefix(self, prefix: str) -> int:
        with self._lock:
            doomed = [k for k in self._data if k.startswith(prefix)]
            for k in doomed:
                del self._data[k]
            return len(doomed)

    def ping(self) -> bool:
        return True


def _as_bytes(value: bytes | str | None) -> bytes | None:
    """The client is built without decode_responses, so values arrive as bytes."""
    return value.encode() if isinstance(value, str) else value


class RedisCache:
    """Redis with a bounded, blocking pool: under load requests wait for a connection."""

    name = "redis"

    def __init__(self, client: redis.Redis, write_chunk: int = 1000) -> None:
        self.client = client
        self._chunk = write_chunk

    def get(self, key: str) -> bytes | None:
        try:
            value = self.client.get(key)
        except redis.RedisError as exc:
            raise BackendError(f"redis get failed: {exc}") from exc
        return _as_bytes(value)

    def get_many(self, keys: list[str]) -> list[bytes | None]:
        if not keys:
            return []
        try:
            values = self.client.mget(keys)
        except redis.RedisError as exc:
            raise BackendError(f"redis mget failed: {exc}") from exc
        return [_as_bytes(v) for v in values]

    def set_many(self, items: Mapping[str, bytes], ttl_seconds: int | None = None) -> None:
        try:
            pipe = self.client.pipeline(transaction=False)
            for n, (key, value) in enumerate(items.items(), start=1):
                pipe.set(key, value, ex=ttl_seconds)
                if n % self._chunk == 0:
                    pipe.execute()
            pipe.execute()
        except redis.RedisError as exc:
            raise BackendError(f"redis write failed: {exc}") from exc

    def delete(self, keys: Iterable[str]) -> int:
        batch = list(keys)
        if not batch:
            return 0
        try:
            return int(self.client.unlink(*batch))
        except redis.RedisError as exc:
            raise BackendError(f"redis delete failed: {exc}") from exc

    def delete_prefix(self, prefix: str) -> int:
        removed = 0
        try:
            batch: list[bytes] = []
            for key in self.client.scan_iter(match=f"{prefix}*", count=1000):
                batch.append(key)
                if len(batch) >= 1000:
                    removed += int(self.client.unlink(*batch))
                    batch.clear()
            if batch:
                removed += int(self.client.unlink(*batch))
        except redis.RedisError as exc:
            raise BackendError(f"redis delete failed: {exc}") from exc
        return removed

    def ping(self) -> bool:
        try:
            return bool(self.client.ping())
        except redis.RedisError:
            return False
