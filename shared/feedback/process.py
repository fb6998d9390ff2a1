"""What the Event Hub trigger does with a batch: validate, dead-letter, store, update online state.

Events are judged one by one: a bad event goes to the dead-letter container with its raw body
and the reason, and the rest of the batch goes on. Every write is idempotent, so the batch can
be delivered again (Event Hubs is at-least-once, and the trigger retries a failed batch):

1. dead letters are upserted under the hash of the raw body;
2. events are created under their event id in one store call (one SQLite transaction);
3. online state (recent items, seen/purchased/disliked, trending) is updated in one pipelined
   Redis round trip; each event's updates are applied only if its "applied" marker is new.

Step 2 runs before step 3, so a failure anywhere leaves nothing that a re-run would double.

Events of a user deleted after sending them (DELETE /api/users came while they were on their
way) are dropped, never stored: the user's forgotten mark (`shared/online_state.py`) is read
before step 2 and again after step 3, and what a deletion between the two missed is removed;
what an earlier, failed attempt at the batch wrote for them is removed too, and their bad
events are not dead-lettered.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from shared import forgotten, telemetry
from shared.feedback.schema import (
    MAX_CLOCK_SKEW,
    MAX_EVENT_BYTES,
    EventType,
    FeedbackEvent,
    utc_time,
)
from shared.ids import broken_rule
from shared.online_state import FORGOTTEN_MARK_SECONDS, OnlineState, OnlineUpdate
from shared.stores.documents import DocumentStore

log = logging.getLogger(__name__)

EVENTS = "events"
DEADLETTERS = "deadletters"
MAX_DEADLETTER_BODY_CHARS = 64 * 1024  # an oversized body is kept in part: enough to debug

# What each kind of event does online: (into recent items, user set, trending weight).
# Impressions only matter for attribution (read from the events store), so they skip Redis.
ONLINE_EFFECTS: dict[EventType, tuple[bool, str | None, float]] = {
    EventType.VIEW: (True, "seen", 1.0),
    EventType.CLICK: (True, "seen", 2.0),
    EventType.ADD_TO_CART: (True, "seen", 3.0),
    EventType.RATING: (True, "seen", 2.0),
    EventType.PURCHASE: (True, "purchased", 5.0),
    EventType.DISLIKE: (False, "disliked", 0.0),
}

CategoryOf = Callable[[str, str], "str | None"]  # (tenant, item) -> category, when known


@dataclass
class BatchResult:
    accepted: int = 0  # events this delivery made count (newly stored or newly applied)
    duplicates: int = 0  # events already fully applied (replays, repeats within the batch)
    rejected: list[str] = field(default_factory=list)  # one reason per dead-lettered event
    online_applied: int = 0  # events whose online updates were new (not replays)
    forgotten: int = 0  # events of users deleted after sending them: dropped, not stored


_MESSAGES = {
    "missing": "is required",
    "extra_forbidden": "is not a known field",
}


def _reason(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors(include_url=False):
        kind = err["type"]
        if kind == "json_invalid":
            return f"body is not valid JSON: {err['msg'].removeprefix('Invalid JSON: ')}"
        if kind in ("model_type", "model_attributes_type"):
            return "body must be a JSON object"
        where = ".".join(str(p) for p in err["loc"]) or "event"
        if kind == "string_pattern_mismatch":  # the rule in words: the id or the tenant rule
            msg = f"must be {broken_rule(err)}"
        else:
            msg = _MESSAGES.get(kind, err["msg"]).removeprefix("Value error, ")
        parts.append(f"{where}: {msg}")
    return "; ".join(parts)


def parse_event(body: bytes | str, default_tenant: str = "default",
                received: datetime | None = None) -> FeedbackEvent | str:
    """The event, or a sentence saying why it cannot be accepted.

    An event without a tenant belongs to the deployment's default tenant, the one serving
    answers for when a request names none. `received` (Event Hubs' enqueued time) is what
    "in the future" is judged against; now when not known.
    """
    size = len(body.encode() if isinstance(body, str) else body)
    if size > MAX_EVENT_BYTES:
        return f"event is {size} bytes, over the {MAX_EVENT_BYTES}-byte limit"
    try:
        event = FeedbackEvent.model_validate_json(body, context={"received": received})
    except ValidationError as exc:
        return _reason(exc)
    if "tenant" not in event.model_fields_set and event.tenant != default_tenant:
        event = event.model_copy(update={"tenant": default_tenant})
    return event


def _as_id(value: Any) -> str | None:
    """An id as a body names it: a string, or an integer (`"userId": 42`, refused by the
    schema, still names user "42")."""
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


def _owner(text: str, default_tenant: str) -> dict[str, str]:
    """The tenant and user a rejected body names, when it is a JSON object with a `userId`:
    kept beside the body so that deleting the user finds their dead letters too."""
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):  # deep nesting: refused by the schema, and here too
        return {}
    user = _as_id(data.get("userId")) if isinstance(data, dict) else None
    if user is None:
        return {}
    tenant = _as_id(data.get("tenant"))
    return {"tenant": default_tenant if tenant is None else tenant, "userId": user}


def dead_letter_document(
    body: bytes | str, reason: str, now: datetime, default_tenant: str = "default"
) -> dict[str, Any]:
    raw = body.encode() if isinstance(body, str) else body
    text = raw.decode("utf-8", errors="replace")
    digest = hashlib.sha256(raw).hexdigest()[:32]
    return {
        **_owner(text, default_tenant),
        # Same body, same id and partition: a redelivered bad event is recorded once, even
        # when the redelivery comes on another day (a day partition would hold it twice).
        "id": digest,
        "pk": digest,
        "reason": reason,
        "received": now.isoformat(),
        "bodyBytes": len(raw),
        "truncated": len(text) > MAX_DEADLETTER_BODY_CHARS,
        "body": text[:MAX_DEADLETTER_BODY_CHARS],
    }


def online_update(
    event: FeedbackEvent, category_of: CategoryOf | None = None
) -> OnlineUpdate | None:
    """The online-state change one event makes, or None (impressions)."""
    effect = ONLINE_EFFECTS.get(event.type)
    if effect is None:
        return None
    recent, user_set, weight = effect
    category = event.category
    if category is None and category_of is not None and weight:
        category = category_of(event.tenant, event.item_id)
    return OnlineUpdate(
        tenant=event.tenant,
        event_id=event.event_id,
        user_id=event.user_id,
        item_id=event.item_id,
        timestamp=event.epoch_seconds,
        recent=recent,
        user_set=user_set,
        trend_weight=weight,
        category=category,
    )


def create_events(store: DocumentStore, docs: list[dict[str, Any]]) -> int:
    """Creates the documents that are new (by id); returns how many were."""
    create_many = getattr(store, "create_many", None)
    if create_many is not None:
        return int(create_many(EVENTS, docs))
    return sum(1 for d in docs if store.create(EVENTS, d))


# Event times come from devices, the deletion time from the server: an event stamped up to the
# clock skew the schema allows after a deletion may have been sent before it, so it goes too
# (a user who really returns within that time loses those first events).
SKEW_SECONDS = MAX_CLOCK_SKEW.total_seconds()


def _of_forgotten_users(
    events: dict[str, FeedbackEvent], online: OnlineState | None,
    store: DocumentStore | None = None, now: float = 0.0,
) -> list[str]:
    """The batch's events sent before their user's deletion (keys of `events`); with `store`,
    the deletion records are read for events older than the Redis marks live."""
    oldest = _oldest_by_user(((e.tenant, e.user_id), e.epoch_seconds) for e in events.values())
    marks = _deletions(oldest, online, store, now)
    if not marks:
        return []
    return [key for key, e in events.items()
            if _sent_before(e.epoch_seconds, marks.get((e.tenant, e.user_id)))]


def _oldest_by_user(times: Iterable[tuple[tuple[str, str], float]]
                    ) -> dict[tuple[str, str], float]:
    """(tenant, user) -> the oldest of their times."""
    oldest: dict[tuple[str, str], float] = {}
    for pair, when in times:
        oldest[pair] = min(oldest.get(pair, float("inf")), when)
    return oldest


def _deletions(oldest: dict[tuple[str, str], float], online: OnlineState | None,
               store: DocumentStore | None, now: float) -> dict[tuple[str, str], float]:
    """When each (tenant, user) -> the oldest time the batch has of them, was deleted.

    The Redis mark lapses after FORGOTTEN_MARK_SECONDS, as long as Event Hubs keeps an event,
    but an export replayed later (`replay-events`) holds older ones: for a user with a time
    before the marks' reach and no mark, the store's deletion record (kept for good) is read,
    so the live path, whose events are recent, costs no store read."""
    marks = online.forgotten_marks(list(oldest)) if online is not None and oldest else {}
    if store is None:
        return marks
    reach = now - FORGOTTEN_MARK_SECONDS + SKEW_SECONDS
    for pair, when in oldest.items():
        if pair not in marks and when < reach:
            at = forgotten.deleted_at(store, *pair)
            if at is not None:
                marks[pair] = at
    return marks


def _sent_before(when: float, deleted_at: float | None) -> bool:
    """Whether something stamped `when` may have been sent before the user's deletion."""
    return deleted_at is not None and when <= deleted_at + SKEW_SECONDS


def _without_forgotten_owners(dead: dict[str, dict[str, Any]], online: OnlineState | None,
                              store: DocumentStore, now: float) -> dict[str, dict[str, Any]]:
    """Dead letters whose body names a user deleted after sending it are not kept (a body
    whose time cannot be read counts as sent before the deletion)."""
    oldest = _oldest_by_user(((str(d["tenant"]), str(d["userId"])), _body_time(str(d["body"])))
                             for d in dead.values() if "userId" in d)
    marks = _deletions(oldest, online, store, now)
    if not marks:
        return dead
    return {key: doc for key, doc in dead.items()
            if not _sent_before(_body_time(str(doc["body"])),
                                marks.get((str(doc.get("tenant")), str(doc.get("userId")))))}


def _body_time(text: str) -> float:
    """The unix time a rejected body claims, or -inf when it claims none readable."""
    try:
        return utc_time(str(json.loads(text).get("timestamp"))).timestamp()
    except (ValueError, AttributeError, TypeError, RecursionError):
        return float("-inf")


def _remove_written(store: DocumentStore, online: OnlineState | None,
                    events: list[FeedbackEvent]) -> None:
    """Undoes what this batch (or an earlier attempt at it) wrote of events sent before their
    user's deletion. Online state cannot say which event put an item there, so a user's state
    is cleared, but only when the marks show one of these events was applied: the state a
    returning user built since the deletion is kept when an old event merely arrives late."""
    for e in events:
        doc = e.to_document()
        store.delete(EVENTS, str(doc["id"]), str(doc["pk"]))
    if online is not None:
        by_user: dict[tuple[str, str], list[str]] = {}
        for e in events:
            by_user.setdefault((e.tenant, e.user_id), []).append(e.event_id)
        for (tenant, user_id), ids in by_user.items():
            if online.applied_any(tenant, user_id, ids):
                online.forget_user(tenant, user_id)


def process_batch(
    store: DocumentStore,
    bodies: Sequence[bytes | str],
    online: OnlineState | None = None,
    category_of: CategoryOf | None = None,
    default_tenant: str = "default",
    received: Sequence[datetime | None] | None = None,
) -> BatchResult:
    """Applies one delivered batch; raises only when a backend fails (the batch is retried).

    `received`: each body's Event Hubs enqueued time, when the trigger knows it."""
    result = BatchResult()
    events: dict[str, FeedbackEvent] = {}  # one batch may repeat an event
    dead: dict[str, dict[str, Any]] = {}
    now = datetime.now(UTC)
    times = list(received) if received is not None else [None] * len(bodies)
    for body, at in zip(bodies, times, strict=True):
        parsed = parse_event(body, default_tenant, at)
        if isinstance(parsed, str):
            doc = dead_letter_document(body, parsed, now, default_tenant)
            dead[doc["id"]] = doc
            result.rejected.append(parsed)
            continue
        # the store's identity of an event: its id within the user's partition
        events.setdefault(f"{parsed.tenant}|{parsed.user_id}|{parsed.event_id}", parsed)
    if dead:
        dead = _without_forgotten_owners(dead, online, store, now.timestamp())
    if dead:
        store.upsert_many(DEADLETTERS, list(dead.values()))
        log.warning("dead-lettered %d of %d events", len(result.rejected), len(bodies))
    if events:
        dropped = _of_forgotten_users(events, online, store, now.timestamp())
        if dropped:  # an earlier, failed attempt at this batch may have written them
            _remove_written(store, online, [events[key] for key in dropped])
        for key in dropped:
            del events[key]
        result.forgotten = len(dropped)
    if events:
        created = create_events(store, [e.to_document() for e in events.values()])
        result.accepted = created
        if online is not None:
            updates = [u for e in events.values() if (u := online_update(e, category_of))]
            result.online_applied = online.apply(updates)
            # a retry after an online failure stores nothing new but applies what the failed
            # attempt did not: those events count as accepted now, not as duplicates
            result.accepted = max(created, result.online_applied)
            late = _of_forgotten_users(events, online)  # deleted while this batch was written
            if late:
                _remove_written(store, online, [events[key] for key in late])
                result.forgotten += len(late)
                result.accepted = max(0, result.accepted - len(late))
        result.duplicates = max(0, len(bodies) - len(result.rejected) - result.forgotten
                                - result.accepted)
    if result.forgotten:
        log.info("dropped %d events of users deleted after sending them", result.forgotten)
    telemetry.events_processed(result.accepted, result.duplicates, len(result.rejected))
    return result
