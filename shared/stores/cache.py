"""Hot cache: byte values by key, read on every request.

Redis in Azure (bounded pool, short timeouts so a slow cache never stalls a request);
an in-process LRU when no Redis is configured.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol

import redis
import redis.asyncio as aredis

from shared.stores.errors import BackendError


class PoolExhausted(BackendError):
    """No pooled connection became free in time: this process is saturated, the backend may be
    fine. Not a backend failure (circuit breakers do not count it)."""


class BadReply(BackendError):
    """Redis answered with an error for this call's keys (a key of the wrong type: WRONGTYPE).
    The backend is fine and other keys read well: not a backend failure (circuit breakers do
    not count it); the request reads the store, whose write-back replaces the key."""


class HotCache(Protocol):
    name: str

    def get(self, key: str) -> bytes | None: ...
    async def get_async(self, key: str) -> bytes | None:
        """`get` for the event loop: never blocks it."""
        ...
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

    async def get_async(self, key: str) -> bytes | None:
        return self.get(key)  # in memory: nothing to wait for

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


NO_CONNECTION = "No connection available."  # redis-py's message when a blocking pool times out


def redis_error(what: str, exc: redis.RedisError) -> BackendError:
    """The error to raise for a failed Redis call: pool waits are our saturation, not Redis."""
    if isinstance(exc, redis.ConnectionError) and str(exc) == NO_CONNECTION:
        return PoolExhausted(f"{what}: no free Redis connection (this process is saturated)")
    if isinstance(exc, redis.ResponseError):
        return BadReply(f"{what}: Redis refused a key: {exc}")
    return BackendError(f"{what} failed: {exc}")


def _pack(commands: Sequence[tuple[Any, ...]]) -> bytes | None:
    """The commands in RESP, as redis-py packs them, when every argument is a str, bytes or
    int (None otherwise: redis-py packs them). redis-py's packer costs ~2 µs a command, most
    of a small read's client-side work."""
    out: list[bytes] = []
    for command in commands:
        out.append(b"*%d\r\n" % len(command))
        for arg in command:
            if isinstance(arg, str):
                arg = arg.encode()
            elif type(arg) is int:
                arg = b"%d" % arg
            elif not isinstance(arg, bytes):
                return None
            out.append(b"$%d\r\n%b\r\n" % (len(arg), arg))
    return b"".join(out)


class AsyncRedis:
    """redis.asyncio connection pools, one per event loop (a connection belongs to the loop that
    opened it: uvicorn and the Functions host run one loop, test clients one per request).

    `pipelined` sends commands in one round trip on one pooled connection and returns the raw
    replies (bytes, lists), without redis-py's pipeline bookkeeping: it is the request path.
    Requests queue for a connection in FIFO order at a gate as wide as the pool (the pool's own
    wait wakes waiters in no particular order, which starved some requests for seconds), for at
    most the pool timeout; the socket timeout then covers only Redis's answer, and with at most
    pool-size reads in flight the event loop cannot fall that far behind on its own.
    """

    def __init__(self, make_pool: Callable[[], aredis.BlockingConnectionPool]) -> None:
        self._make = make_pool
        self._pools: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, tuple[aredis.BlockingConnectionPool, asyncio.Semaphore]
        ] = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()

    def _for_loop(self) -> tuple[aredis.BlockingConnectionPool, asyncio.Semaphore]:
        loop = asyncio.get_running_loop()
        entry = self._pools.get(loop)
        if entry is None:
            with self._lock:
                entry = self._pools.get(loop)
                if entry is None:
                    pool = self._make()
                    entry = self._pools[loop] = (pool, asyncio.Semaphore(pool.max_connections))
        return entry

    async def pipelined(self, commands: Sequence[tuple[Any, ...]]) -> list[Any]:
        """Replies of `commands`, one round trip; raises PoolExhausted or BackendError."""
        packed = _pack(commands)
        if packed is None:  # an argument _pack does not handle: redis-py's own packer
            return await self.pipelined_packed(commands, len(commands))
        return await self.pipelined_packed(packed, len(commands))

    async def pipelined_packed(self, packed: bytes | Sequence[tuple[Any, ...]],
                               replies: int) -> list[Any]:
        """`pipelined` for commands already packed as RESP bytes, `replies` of them (a request
        path's fixed read); from `pipelined`, also commands `_pack` declined, which redis-py's
        packer then packs."""
        pool, gate = self._for_loop()
        try:
            async with asyncio.timeout(pool.timeout):
                await gate.acquire()
        except TimeoutError:
            raise PoolExhausted("redis read: no free Redis connection in time "
                                "(this process is saturated)") from None
        try:
            try:
                conn = await pool.get_connection()
            except redis.RedisError as exc:
                raise redis_error("redis read", exc) from exc
            try:
                async with asyncio.timeout(conn.socket_timeout):
                    payload = (packed if isinstance(packed, bytes)
                               else conn.pack_commands(packed))
                    try:
                        await conn.send_packed_command(payload, check_health=False)
                        first = await conn.read_response(timeout=math.inf)
                    except (redis.ConnectionError, OSError):
                        # A pooled connection Redis closed meanwhile (a restart, an idle
                        # timeout): one fresh connection, as redis-py's own retry would do.
                        await conn.disconnect(nowait=True)
                        await conn.send_packed_command(payload, check_health=False)
                        first = await conn.read_response(timeout=math.inf)
                    return [first, *[await conn.read_response(timeout=math.inf)
                                     for _ in range(replies - 1)]]
            except BaseException as exc:
                # A reply may still be on its way: never hand this connection out again as is.
                await conn.disconnect(nowait=True)
                if isinstance(exc, redis.RedisError):
                    raise redis_error("redis read", exc) from exc
                if isinstance(exc, TimeoutError):
                    raise BackendError("redis read timed out") from exc
                raise
            finally:
                await pool.release(conn)
        finally:
            gate.release()


class RedisCache:
    """Redis with a bounded, blocking pool: under load requests wait for a connection.

    `aio` is the asyncio side of the same settings, for the async request path (None: the
    request path calls the sync client in a thread).
    """

    name = "redis"

    def __init__(self, client: redis.Redis, write_chunk: int = 1000,
                 aio: AsyncRedis | None = None) -> None:
        self.client = client
        self.aio = aio
        self._chunk = write_chunk

    def get(self, key: str) -> bytes | None:
        try:
            value = self.client.get(key)
        except redis.RedisError as exc:
            raise redis_error("redis get", exc) from exc
        return _as_bytes(value)

    async def get_async(self, key: str) -> bytes | None:
        if self.aio is None:
            return await asyncio.to_thread(self.get, key)
        (value,) = await self.aio.pipelined([("GET", key)])
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
