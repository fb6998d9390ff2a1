"""Online state: what a user just did, and what is trending, updated by feedback and read by
serving on every request.

CONTRACT (implementations: Redis, and an in-process one for the embedded defaults).
All keys of one tenant share the hash tag `{t:<tenant>}` so that a per-tenant Lua script or
pipeline stays in one cluster slot.

Writes are exactly-once per event (tenant, user, event id): `apply` marks each event in the
user's `<tag>:u:<userId>:applied` sorted set (event id -> when the mark lapses) and applies that
event's updates only when it was not marked, inside one Lua script per tenant, all tenants'
scripts in one pipeline. A batch re-delivered after a partial failure therefore changes
nothing it already changed. The marks are the user's keys like the rest of their state, so
forgetting the user removes them too.

A deleted user is remembered for FORGOTTEN_MARK_SECONDS (`<tag>:u:<userId>:forgotten`, the
deletion time): feedback sent before the deletion but processed after it, and a cache
write-back racing it, check the mark and keep nothing (`shared/feedback/process.py`,
`shared/serving/recommender.py`).
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections import OrderedDict, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import hiredis
import redis

from shared.feedback.schema import MAX_CLOCK_SKEW
from shared.stores.cache import AsyncRedis, redis_error
from shared.stores.errors import BackendError

RECENT_LIMIT = 50  # recent items kept per user
HIDDEN_LIMIT = 1000  # newest items kept in each of a user's seen / purchased / disliked
# How long a deletion is remembered: Event Hubs keeps events for at most 7 days (Standard), so
# no event sent before the deletion can be delivered after the mark lapses.
FORGOTTEN_MARK_SECONDS = 7 * 86400
ALL_CATEGORIES = "_all"  # the trending bucket every event counts in
HOUR = 3600


def tenant_tag(tenant: str) -> str:
    return f"os:{{t:{tenant}}}"


# `_ranking_commands` in RESP, the user's key prefix and the extra key filled in: every
# request sends these three, and packing them argument by argument cost more than the rest of
# the client's side of the round trip.
_RANKING_RESP = (
    b"*5\r\n$6\r\nZRANGE\r\n$%d\r\n%b:recent\r\n$1\r\n0\r\n$2\r\n-1\r\n$3\r\nREV\r\n"
    b"*5\r\n$6\r\nZUNION\r\n$1\r\n3\r\n"
    b"$%d\r\n%b:seen\r\n$%d\r\n%b:purchased\r\n$%d\r\n%b:disliked\r\n"
    b"*2\r\n$3\r\nGET\r\n$%d\r\n%b\r\n"
)


def ranking_resp(tenant: str, user_id: str, extra_key: str) -> bytes:
    """The request path's read (recent items, hidden items, `extra_key`) as one RESP payload."""
    base = f"{tenant_tag(tenant)}:u:{user_id}".encode()
    extra = extra_key.encode()
    n = len(base)
    # each key's length: the user's prefix plus its role suffix, as in user_state_keys
    return _RANKING_RESP % (n + len(":recent"), base, n + len(":seen"), base,
                            n + len(":purchased"), base, n + len(":disliked"), base,
                            len(extra), extra)


def user_state_keys(tenant: str, user_id: str) -> dict[str, str]:
    """The Redis keys of one user's online state, by role."""
    base = f"{tenant_tag(tenant)}:u:{user_id}"
    return {
        "recent": f"{base}:recent",  # zset item -> last timestamp, trimmed to RECENT_LIMIT
        # zsets item -> last timestamp, trimmed to HIDDEN_LIMIT (plain sets before 2026-12)
        "seen": f"{base}:seen",  # items viewed/clicked/carted/rated
        "purchased": f"{base}:purchased",
        "disliked": f"{base}:disliked",
        "applied": applied_key(tenant, user_id),
    }


def applied_key(tenant: str, user_id: str) -> str:
    """The user's marks of applied events (exactly-once): zset event id -> when it lapses.

    An event is (tenant, user, event id), as in the events store, whose document id is the
    event id within the user's partition: two users' events may share an id.
    """
    return f"{tenant_tag(tenant)}:u:{user_id}:applied"


def forgotten_key(tenant: str, user_id: str) -> str:
    """When the user was deleted (epoch seconds); outlives `forget_user`, which never removes
    it: it is what stops in-flight writes from bringing the user back."""
    return f"{tenant_tag(tenant)}:u:{user_id}:forgotten"


def trending_key(tenant: str, category: str, hour: int) -> str:
    """One hourly bucket (hours since the epoch) of decayed trending scores."""
    return f"{tenant_tag(tenant)}:tr:{category}:{hour}"


def trending_union_key(tenant: str, category: str) -> str:
    """Where the decayed union of the buckets is kept for a few seconds, shared by processes."""
    return f"{tenant_tag(tenant)}:trsum:{category}"


@dataclass(frozen=True)
class UserState:
    recent: list[str] = field(default_factory=list)  # most recent first
    seen: frozenset[str] = frozenset()
    purchased: frozenset[str] = frozenset()
    disliked: frozenset[str] = frozenset()

    @property
    def excluded(self) -> frozenset[str]:
        """Items never to recommend again to this user."""
        return self.purchased | self.disliked


@dataclass(frozen=True, slots=True)
class RankingState:
    """What ranking a user's candidates needs from online state: the recent items (the
    re-ranker's context) and every item not to recommend again (seen, purchased, disliked).

    Read on every recommendation: in Redis the three sets come back as one ZUNION reply."""

    recent: list[str] = field(default_factory=list)  # most recent first
    hidden: frozenset[str] = frozenset()


@dataclass(slots=True)
class OnlineUpdate:
    """What one accepted event changes in online state (built by the feedback processor)."""

    tenant: str
    event_id: str
    user_id: str
    item_id: str
    timestamp: float  # seconds since the epoch
    recent: bool = False  # goes into the user's recent items
    user_set: str | None = None  # "seen", "purchased" or "disliked"
    trend_weight: float = 0.0  # added to the item's trending score (0: none)
    category: str | None = None  # also counted in this category's trending


@dataclass(frozen=True)
class OnlineConfig:
    """Bounds and lifetimes; the settings module fills these in."""

    recent_limit: int = RECENT_LIMIT
    hidden_limit: int = HIDDEN_LIMIT  # bounds what a request reads however active the user
    user_ttl_seconds: int = 30 * 24 * HOUR  # online state of an idle user expires
    dedupe_ttl_seconds: int = 3 * 24 * HOUR  # applied markers; >= trending window, see below
    trending_window_hours: int = 48
    trending_half_life_hours: float = 6.0
    trending_read_cache_seconds: float = 5.0

    def __post_init__(self) -> None:
        # Events older than the window never touch trending; while an event is inside the
        # window its marker is alive, so a replay at any age cannot count twice. An event may
        # be stamped up to the clock skew ahead of its arrival, which keeps it inside the
        # window that much longer than its marker would live with a TTL of the window alone.
        least = self.trending_window_hours * HOUR + int(MAX_CLOCK_SKEW.total_seconds())
        if self.dedupe_ttl_seconds < least:
            raise ValueError(
                "RECO_FEEDBACK_DEDUPE_TTL_SECONDS must cover RECO_TRENDING_WINDOW_HOURS plus "
                f"the events' allowed clock skew ({self.dedupe_ttl_seconds} s < {least} s): "
                "raise it too")

    def decay(self, age_hours: int) -> float:
        return math.pow(0.5, age_hours / self.trending_half_life_hours)


class OnlineState(Protocol):
    name: str

    def read_user(self, tenant: str, user_id: str) -> UserState: ...

    def read_ranking_with(
        self, tenant: str, user_id: str, extra_key: str
    ) -> tuple[RankingState, bytes | None]:
        """What ranking needs of the user's state and the cache value at `extra_key` (the
        candidates), one round trip."""
        ...

    async def read_ranking_with_async(
        self, tenant: str, user_id: str, extra_key: str
    ) -> tuple[RankingState, bytes | None]:
        """`read_ranking_with` for the event loop (never blocks it)."""
        ...

    def trending(
        self, tenant: str, n: int, category: str | None = None
    ) -> list[tuple[str, float]]: ...

    def forget_user(self, tenant: str, user_id: str) -> int:
        """Deletes the user's online state (not the forgotten mark); returns how many
        keys/entries were removed."""
        ...

    def applied_any(self, tenant: str, user_id: str, event_ids: Sequence[str]) -> bool:
        """Whether any of the user's events with these ids was applied (its mark is alive)."""
        ...

    def mark_forgotten(self, tenant: str, user_id: str, at: float) -> None:
        """Remembers for FORGOTTEN_MARK_SECONDS that the user was deleted at `at`."""
        ...

    def forgotten_marks(
        self, users: Sequence[tuple[str, str]]
    ) -> dict[tuple[str, str], float]:
        """When each (tenant, user) that was deleted recently was deleted; one round trip."""
        ...

    def ping(self) -> bool: ...

    def apply(self, updates: Sequence[OnlineUpdate]) -> int:
        """Applies each update exactly once per (tenant, event id); returns how many were new."""
        ...


def _hour(ts: float) -> int:
    return int(ts // HOUR)


def _window_hours(now_hour: int, window_hours: int) -> range:
    """The buckets a trending read sums, newest first: the window's hours and the next one.

    An event may be stamped up to MAX_CLOCK_SKEW ahead of its arrival (a device clock a few
    minutes fast), so near the end of an hour it lands in the next hour's bucket; that bucket
    counts now, at full weight, rather than only once its hour has begun.
    """
    return range(now_hour + 1, now_hour - window_hours, -1)


class _TrendingReadCache:
    """A few seconds of in-process memory for trending reads: they are hot and change slowly."""

    def __init__(self, seconds: float, max_entries: int = 1024) -> None:
        self._seconds = seconds
        self._max = max_entries
        self._data: OrderedDict[tuple[str, str, int], tuple[float, list[tuple[str, float]]]]
        self._data = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[str, str, int]) -> list[tuple[str, float]] | None:
        with self._lock:
            hit = self._data.get(key)
        if hit is None or hit[0] < time.monotonic():
            return None
        return hit[1]

    def put(self, key: tuple[str, str, int], value: list[tuple[str, float]]) -> None:
        if self._seconds <= 0:
            return
        with self._lock:
            self._data[key] = (time.monotonic() + self._seconds, value)
            self._data.move_to_end(key)
            while len(self._data) > self._max:
                self._data.popitem(last=False)


# One script per tenant and batch. KEYS come in sevens per event (the user's marks, recent,
# seen, purchased, disliked, trending bucket, category bucket; unused trending ones repeat the
# marks key so every key is declared and in the tenant's slot); ARGV: mark TTL, recent limit,
# user TTL, now, hidden limit, then per event its id, item, timestamp, trending weight, flags
# (1 recent, 2 seen, 4 trending, 8 category, 16 purchased, 32 disliked), and the bucket's
# expiry time. Recent, seen, purchased and disliked are zsets of item -> latest timestamp,
# trimmed to their limit, oldest first. After the events, every key of each user the batch
# touched gets the user TTL again: the state expires after the user's inactivity, not after
# the last write to one of its sets.
_APPLY_LUA = """
local marker_ttl = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local user_ttl = ARGV[3]
local now = tonumber(ARGV[4])
local hidden_limit = tonumber(ARGV[5])
local expired = {}  -- keys whose expiry this script already set
local users = {}  -- first KEYS index of each user group the batch applied events to
local applied = 0
local a = 6
local function add_newest(key, ts, item, cap)  -- keep the item's latest time, the newest cap
  if redis.call('ZADD', key, 'GT', ts, item) > 0 and redis.call('ZCARD', key) > cap then
    redis.call('ZREMRANGEBYRANK', key, 0, -(cap + 1))
  end
end
local function as_zset(key)  -- a plain set from before the cap: its items become the oldest
  if redis.call('TYPE', key).ok ~= 'set' then return end
  local items = redis.call('SMEMBERS', key)
  redis.call('DEL', key)
  for i = 1, #items, 500 do
    local args = {}
    for j = i, math.min(i + 499, #items) do
      args[#args + 1] = 0
      args[#args + 1] = items[j]
    end
    redis.call('ZADD', key, unpack(args))
  end
end
for k = 1, #KEYS, 7 do
  local marks, event = KEYS[k], ARGV[a]
  local lapses = redis.call('ZSCORE', marks, event)
  if not lapses or tonumber(lapses) <= now then
    redis.call('ZADD', marks, now + marker_ttl, event)
    if not expired[marks] then  -- once per user and batch: drop lapsed marks, keep the rest
      redis.call('ZREMRANGEBYSCORE', marks, '-inf', now)
      redis.call('EXPIRE', marks, marker_ttl)
      expired[marks] = 1
      users[#users + 1] = k
    end
    applied = applied + 1
    local item, ts, w = ARGV[a + 1], ARGV[a + 2], ARGV[a + 3]
    local flags, exat = tonumber(ARGV[a + 4]), ARGV[a + 5]
    if flags % 2 == 1 then add_newest(KEYS[k + 1], ts, item, limit) end
    for bit, offset in pairs({[1] = 2, [4] = 3, [5] = 4}) do  -- seen, purchased, disliked
      if math.floor(flags / (2 ^ bit)) % 2 == 1 then
        as_zset(KEYS[k + offset])
        add_newest(KEYS[k + offset], ts, item, hidden_limit)
      end
    end
    for bit = 2, 3 do
      if math.floor(flags / (2 ^ bit)) % 2 == 1 then
        local key = KEYS[k + bit + 3]
        redis.call('ZINCRBY', key, w, item)
        if not expired[key] then redis.call('EXPIREAT', key, exat); expired[key] = 1 end
      end
    end
  end
  a = a + 6
end
for _, k in ipairs(users) do
  for offset = 1, 4 do redis.call('EXPIRE', KEYS[k + offset], user_ttl) end
end
return applied
"""

_SET_FLAGS = {"seen": 2, "purchased": 16, "disliked": 32}


def _as_str(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _send(conn: Any, payload: bytes, replies: int) -> list[Any]:
    """Sends packed commands on a redis-py connection and reads their replies in order."""
    conn.send_packed_command([payload])
    out: list[Any] = []
    for _ in range(replies):
        try:
            out.append(conn.read_response())
        except redis.ResponseError as exc:  # this command's reply; the connection is fine
            out.append(exc)
    return out


class RedisOnlineState:
    """Online state in the same Redis as the hot cache (the `RedisCache.client`)."""

    name = "redis"

    def __init__(self, client: redis.Redis, config: OnlineConfig | None = None,
                 aio: AsyncRedis | None = None) -> None:
        self.client = client
        self.config = config or OnlineConfig()
        self.aio = aio  # the asyncio side of the same Redis (the async request path)
        self._script = client.register_script(_APPLY_LUA)
        self._trend_cache = _TrendingReadCache(self.config.trending_read_cache_seconds)

    # -- writes ----------------------------------------------------------------------------

    def _script_args(
        self, tenant: str, updates: Sequence[OnlineUpdate], now: float
    ) -> tuple[list[str], list[str | int | float]]:
        """Keys and arguments of one tenant's script (the hot loop of a batch: kept lean)."""
        cfg = self.config
        tag = tenant_tag(tenant)
        keys: list[str] = []
        args: list[str | int | float] = [cfg.dedupe_ttl_seconds, cfg.recent_limit,
                                         cfg.user_ttl_seconds, now, cfg.hidden_limit]
        oldest_hour = _hour(now) - cfg.trending_window_hours + 1
        window = cfg.trending_window_hours + 1
        for u in updates:
            user = f"{tag}:u:{u.user_id}"
            marker = f"{user}:applied"  # applied_key
            hour = int(u.timestamp // HOUR)
            trend = u.trend_weight != 0 and hour >= oldest_hour
            flags = (1 if u.recent else 0) | (_SET_FLAGS[u.user_set] if u.user_set else 0)
            if trend:
                flags |= 4 | (8 if u.category else 0)
            keys += (
                marker, f"{user}:recent", f"{user}:seen", f"{user}:purchased",
                f"{user}:disliked",
                f"{tag}:tr:{ALL_CATEGORIES}:{hour}" if trend else marker,
                f"{tag}:tr:{u.category}:{hour}" if trend and u.category else marker,
            )
            args += (u.event_id, u.item_id, u.timestamp, u.trend_weight, flags,
                     (hour + window) * HOUR)
        return keys, args

    def apply(self, updates: Sequence[OnlineUpdate]) -> int:
        if not updates:
            return 0
        by_tenant: dict[str, list[OnlineUpdate]] = defaultdict(list)
        for u in updates:
            by_tenant[u.tenant].append(u)
        now = time.time()
        calls = [self._script_args(t, group, now) for t, group in by_tenant.items()]
        try:
            results = self._run(calls)
            missing = [c for c, r in zip(calls, results, strict=True)
                       if isinstance(r, redis.exceptions.NoScriptError)]
            if missing:  # first use on this server (or after a restart / SCRIPT FLUSH)
                self.client.script_load(_APPLY_LUA)
                results = [r for r in results
                           if not isinstance(r, redis.exceptions.NoScriptError)]
                results += self._run(missing)
        except redis.RedisError as exc:
            raise BackendError(f"redis online-state update failed: {exc}") from exc
        for r in results:
            if isinstance(r, Exception):
                raise BackendError(f"redis online-state update failed: {r}")
        return sum(int(r) for r in results)

    def _run(self, calls: list[tuple[list[str], list[str | int | float]]]) -> list[Any]:
        """All tenants' scripts in one round trip. The script is exactly-once per event, so
        `_round_trip` may send it again after a dropped connection."""
        return self._round_trip(
            [("EVALSHA", self._script.sha, len(keys), *keys, *args) for keys, args in calls]
        )

    def _round_trip(self, commands: list[tuple[str | int | float, ...]]) -> list[Any]:
        """Idempotent commands (they may be sent again) in one round trip, each packed by
        hiredis in one call: redis-py encodes every argument in Python first, and a feedback
        batch sends ~1,500 of them, which cost more than the rest of the handler's Redis work
        (`bench/feedback`). A command's error reply (NOSCRIPT) is returned in its place."""
        # hiredis's stub types a one-element tuple; it packs any length
        payload = b"".join(hiredis.pack_command(c) for c in commands)  # type: ignore[arg-type]
        pool = self.client.connection_pool
        conn = pool.get_connection()
        try:  # the connection's retry policy, as redis-py's own pipelines use it
            return conn.retry.call_with_retry(
                lambda: _send(conn, payload, len(commands)), lambda _: conn.disconnect()
            )
        except BaseException:
            conn.disconnect()  # unread replies must not reach the connection's next user
            raise
        finally:
            pool.release(conn)

    # -- reads -----------------------------------------------------------------------------

    def _queue_user(self, pipe: Any, tenant: str, user_id: str) -> None:
        keys = user_state_keys(tenant, user_id)
        pipe.zrevrange(keys["recent"], 0, -1)
        for role in ("seen", "purchased", "disliked"):  # ZUNION reads a pre-cap plain set too
            pipe.execute_command("ZUNION", 1, keys[role])

    @staticmethod
    def _user_from(values: Sequence[Any]) -> UserState:
        recent, seen, purchased, disliked = values
        return UserState(
            recent=[_as_str(i) for i in recent],
            seen=frozenset(_as_str(i) for i in seen),
            purchased=frozenset(_as_str(i) for i in purchased),
            disliked=frozenset(_as_str(i) for i in disliked),
        )

    def read_user(self, tenant: str, user_id: str) -> UserState:
        try:
            pipe = self.client.pipeline(transaction=False)
            self._queue_user(pipe, tenant, user_id)
            return self._user_from(pipe.execute())
        except redis.RedisError as exc:
            raise redis_error("redis online-state read", exc) from exc

    @staticmethod
    def _ranking_commands(tenant: str, user_id: str, extra_key: str) -> list[tuple[str, ...]]:
        """Three commands: the user's keys share a slot, so one ZUNION unites the three sets
        (zsets, or plain sets written before they were capped: ZUNION reads both)."""
        keys = user_state_keys(tenant, user_id)
        return [
            ("ZRANGE", keys["recent"], "0", "-1", "REV"),
            ("ZUNION", "3", keys["seen"], keys["purchased"], keys["disliked"]),
            ("GET", extra_key),
        ]

    @staticmethod
    def _ranking_from(values: Sequence[Any]) -> tuple[RankingState, bytes | None]:
        recent, hidden, extra = values
        state = RankingState(
            recent=[_as_str(i) for i in recent] if recent else [],
            hidden=frozenset(_as_str(i) for i in hidden) if hidden else frozenset(),
        )
        return state, (extra.encode() if isinstance(extra, str) else extra)

    def read_ranking_with(
        self, tenant: str, user_id: str, extra_key: str
    ) -> tuple[RankingState, bytes | None]:
        try:
            pipe = self.client.pipeline(transaction=False)
            for command in self._ranking_commands(tenant, user_id, extra_key):
                pipe.execute_command(*command)
            values = pipe.execute()
        except redis.RedisError as exc:
            raise redis_error("redis online-state read", exc) from exc
        return self._ranking_from(values)

    async def read_ranking_with_async(
        self, tenant: str, user_id: str, extra_key: str
    ) -> tuple[RankingState, bytes | None]:
        """`read_ranking_with` on the event loop: the same three commands in one round trip."""
        if self.aio is None:
            return await asyncio.to_thread(self.read_ranking_with, tenant, user_id, extra_key)
        return self._ranking_from(
            await self.aio.pipelined_packed(ranking_resp(tenant, user_id, extra_key), 3)
        )

    def trending(
        self, tenant: str, n: int, category: str | None = None
    ) -> list[tuple[str, float]]:
        cat = category or ALL_CATEGORIES
        cache_key = (tenant, cat, n)
        hit = self._trend_cache.get(cache_key)
        if hit is not None:
            return hit
        now_hour = _hour(time.time())
        weights = {trending_key(tenant, cat, h): self.config.decay(max(now_hour - h, 0))
                   for h in _window_hours(now_hour, self.config.trending_window_hours)}
        dest = trending_union_key(tenant, cat)
        ttl_ms = max(1, int(self.config.trending_read_cache_seconds * 1000))
        try:
            pipe = self.client.pipeline(transaction=True)  # one slot: a MULTI is allowed
            pipe.zunionstore(dest, weights)
            pipe.pexpire(dest, ttl_ms)
            pipe.zrevrange(dest, 0, n - 1, withscores=True)
            rows = pipe.execute()[2]
        except redis.RedisError as exc:
            raise BackendError(f"redis trending read failed: {exc}") from exc
        value = [(_as_str(item), float(score)) for item, score in rows]
        self._trend_cache.put(cache_key, value)
        return value

    def forget_user(self, tenant: str, user_id: str) -> int:
        try:
            return int(self.client.unlink(*user_state_keys(tenant, user_id).values()))
        except redis.RedisError as exc:
            raise BackendError(f"redis delete failed: {exc}") from exc

    def applied_any(self, tenant: str, user_id: str, event_ids: Sequence[str]) -> bool:
        if not event_ids:
            return False
        try:
            lapses = self.client.zmscore(applied_key(tenant, user_id), list(event_ids))
        except redis.RedisError as exc:
            raise BackendError(f"redis read failed: {exc}") from exc
        now = time.time()
        return any(t is not None and t > now for t in lapses)

    def mark_forgotten(self, tenant: str, user_id: str, at: float) -> None:
        try:
            self.client.set(forgotten_key(tenant, user_id), repr(at), ex=FORGOTTEN_MARK_SECONDS)
        except redis.RedisError as exc:
            raise BackendError(f"redis write failed: {exc}") from exc

    def forgotten_marks(
        self, users: Sequence[tuple[str, str]]
    ) -> dict[tuple[str, str], float]:
        """One MGET per tenant (its keys share a slot): a GET per user cost a feedback batch
        more than its Lua update (`bench/feedback`)."""
        by_tenant: dict[str, list[tuple[str, str]]] = defaultdict(list)
        for pair in dict.fromkeys(users):
            by_tenant[pair[0]].append(pair)
        if not by_tenant:
            return {}
        try:
            replies = self._round_trip(
                [("MGET", *(forgotten_key(t, u) for t, u in pairs)) for pairs in by_tenant.values()]
            )
        except redis.RedisError as exc:
            raise BackendError(f"redis read failed: {exc}") from exc
        for reply in replies:
            if isinstance(reply, Exception):
                raise BackendError(f"redis read failed: {reply}")
        return {pair: float(v)
                for pairs, values in zip(by_tenant.values(), replies, strict=True)
                for pair, v in zip(pairs, values, strict=True) if v is not None}

    def ping(self) -> bool:
        try:
            return bool(self.client.ping())
        except redis.RedisError:
            return False


def _add_newest(items: dict[str, float], item: str, ts: float, cap: int) -> None:
    """What the Lua script's add_newest does to a zset: keep the item's latest time, then
    drop the oldest (ties: the smaller id) beyond `cap`."""
    if ts > items.get(item, -math.inf):
        items[item] = ts
    while len(items) > cap:
        del items[min(items.items(), key=lambda kv: (kv[1], kv[0]))[0]]


@dataclass
class _MemoryUser:
    recent: dict[str, float] = field(default_factory=dict)
    sets: dict[str, dict[str, float]] = field(default_factory=lambda: defaultdict(dict))
    touched: float = 0.0


class MemoryOnlineState:
    """The embedded default: the same semantics in process memory, guarded by one lock.

    `read_ranking_with` reads the extra key from the embedded hot cache it is given.
    """

    name = "memory"

    def __init__(self, cache: Any = None, config: OnlineConfig | None = None) -> None:
        self._cache = cache
        self.config = config or OnlineConfig()
        self._lock = threading.Lock()
        self._users: dict[tuple[str, str], _MemoryUser] = {}
        self._applied: dict[tuple[str, str, str], float] = {}  # (tenant, user, event) -> expiry
        self._forgotten: dict[tuple[str, str], tuple[float, float]] = {}  # -> (at, lapses)
        # (tenant, category, hour) -> item -> score
        self._buckets: dict[tuple[str, str, int], dict[str, float]] = {}
        self._trend_cache = _TrendingReadCache(self.config.trending_read_cache_seconds)
        self._last_sweep = 0.0

    def apply(self, updates: Sequence[OnlineUpdate]) -> int:
        cfg = self.config
        now = time.time()
        oldest_hour = _hour(now) - cfg.trending_window_hours + 1
        applied = 0
        with self._lock:
            self._sweep(now)
            for u in updates:
                marker = (u.tenant, u.user_id, u.event_id)
                expiry = self._applied.get(marker)
                if expiry is not None and expiry > now:
                    continue
                self._applied[marker] = now + cfg.dedupe_ttl_seconds
                applied += 1
                user = self._users.setdefault((u.tenant, u.user_id), _MemoryUser())
                user.touched = now
                if u.recent:
                    _add_newest(user.recent, u.item_id, u.timestamp, cfg.recent_limit)
                if u.user_set:
                    _add_newest(user.sets[u.user_set], u.item_id, u.timestamp, cfg.hidden_limit)
                hour = _hour(u.timestamp)
                if u.trend_weight and hour >= oldest_hour:
                    for cat in (ALL_CATEGORIES, u.category):
                        if cat:
                            bucket = self._buckets.setdefault((u.tenant, cat, hour), {})
                            bucket[u.item_id] = bucket.get(u.item_id, 0.0) + u.trend_weight
        return applied

    def _sweep(self, now: float) -> None:
        """Drops expired markers, idle users and old buckets (at most once a minute)."""
        if now - self._last_sweep < 60:
            return
        self._last_sweep = now
        self._applied = {k: v for k, v in self._applied.items() if v > now}
        self._forgotten = {k: v for k, v in self._forgotten.items() if v[1] > now}
        idle = now - self.config.user_ttl_seconds
        self._users = {k: v for k, v in self._users.items() if v.touched > idle}
        oldest = _hour(now) - self.config.trending_window_hours + 1
        self._buckets = {k: v for k, v in self._buckets.items() if k[2] >= oldest}

    def read_user(self, tenant: str, user_id: str) -> UserState:
        with self._lock:
            user = self._users.get((tenant, user_id))
            if user is None or user.touched < time.time() - self.config.user_ttl_seconds:
                return UserState()
            recent = sorted(user.recent.items(), key=lambda kv: (kv[1], kv[0]), reverse=True)
            return UserState(
                recent=[i for i, _ in recent],
                seen=frozenset(user.sets.get("seen", ())),
                purchased=frozenset(user.sets.get("purchased", ())),
                disliked=frozenset(user.sets.get("disliked", ())),
            )

    def read_ranking_with(
        self, tenant: str, user_id: str, extra_key: str
    ) -> tuple[RankingState, bytes | None]:
        extra = None if self._cache is None else self._cache.get(extra_key)
        user = self.read_user(tenant, user_id)
        return RankingState(user.recent, user.seen | user.excluded), extra

    async def read_ranking_with_async(
        self, tenant: str, user_id: str, extra_key: str
    ) -> tuple[RankingState, bytes | None]:
        return self.read_ranking_with(tenant, user_id, extra_key)  # in memory: nothing to wait

    def trending(
        self, tenant: str, n: int, category: str | None = None
    ) -> list[tuple[str, float]]:
        cat = category or ALL_CATEGORIES
        hit = self._trend_cache.get((tenant, cat, n))
        if hit is not None:
            return hit
        now_hour = _hour(time.time())
        totals: dict[str, float] = defaultdict(float)
        with self._lock:
            for hour in _window_hours(now_hour, self.config.trending_window_hours):
                bucket = self._buckets.get((tenant, cat, hour))
                if bucket:
                    w = self.config.decay(max(now_hour - hour, 0))
                    for item, score in bucket.items():
                        totals[item] += w * score
        value = sorted(totals.items(), key=lambda kv: (-kv[1], kv[0]))[:n]
        self._trend_cache.put((tenant, cat, n), value)
        return value

    def forget_user(self, tenant: str, user_id: str) -> int:
        with self._lock:
            user = self._users.pop((tenant, user_id), None)
            marks = len(self._applied)
            self._applied = {k: v for k, v in self._applied.items() if k[:2] != (tenant, user_id)}
            marks -= len(self._applied)
        if user is None:
            return int(marks > 0)
        return int(bool(user.recent)) + sum(1 for s in user.sets.values() if s) + int(marks > 0)

    def applied_any(self, tenant: str, user_id: str, event_ids: Sequence[str]) -> bool:
        now = time.time()
        with self._lock:
            return any(self._applied.get((tenant, user_id, e), 0.0) > now for e in event_ids)

    def mark_forgotten(self, tenant: str, user_id: str, at: float) -> None:
        with self._lock:
            self._forgotten[(tenant, user_id)] = (at, time.time() + FORGOTTEN_MARK_SECONDS)

    def forgotten_marks(
        self, users: Sequence[tuple[str, str]]
    ) -> dict[tuple[str, str], float]:
        now = time.time()
        with self._lock:
            marks = {pair: self._forgotten.get(pair) for pair in users}
        return {pair: m[0] for pair, m in marks.items() if m is not None and m[1] > now}

    def ping(self) -> bool:
        return True


def build_online_state(cache: Any, config: OnlineConfig | None = None) -> OnlineState:
    """Online state next to the hot cache: Redis when the cache is Redis, else in process."""
    client = getattr(cache, "client", None)
    if isinstance(client, redis.Redis):
        return RedisOnlineState(client, config, getattr(cache, "aio", None))
    return MemoryOnlineState(cache, config)


def config_from(settings: Any) -> OnlineConfig:
    """The online-state bounds from the settings module."""
    return OnlineConfig(
        recent_limit=settings.online_recent_limit,
        hidden_limit=settings.online_hidden_limit,
        user_ttl_seconds=settings.online_user_ttl_seconds,
        dedupe_ttl_seconds=settings.feedback_dedupe_ttl_seconds,
        trending_window_hours=settings.trending_window_hours,
        trending_half_life_hours=settings.trending_half_life_hours,
        trending_read_cache_seconds=settings.trending_read_cache_seconds,
    )
