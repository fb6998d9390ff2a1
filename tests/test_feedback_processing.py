"""Feedback batches: each event judged alone, replays applied once (both store implementations)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from shared.feedback.process import dead_letter_document, process_batch
from shared.ids import TENANT_RULE
from shared.stores.documents import DocumentStore


def _body(event_id: str, **overrides: object) -> bytes:
    event: dict[str, object] = {
        "eventId": event_id, "tenant": "default", "userId": "u1", "itemId": "i1",
        "type": "click", "timestamp": datetime.now(UTC).isoformat(),
    }
    event.update(overrides)
    return json.dumps(event).encode()


def test_replayed_batch_is_applied_once(store: DocumentStore) -> None:
    batch = [_body(f"e{i}") for i in range(5)]
    first = process_batch(store, batch)
    second = process_batch(store, batch)
    assert (first.accepted, first.duplicates) == (5, 0)
    assert (second.accepted, second.duplicates) == (0, 5)
    assert len(list(store.scan("events"))) == 5


def test_bad_events_are_dead_lettered_with_reasons_and_the_rest_applied(
    store: DocumentStore,
) -> None:
    future = (datetime.now(UTC) + timedelta(days=2)).isoformat()
    batch = [
        _body("ok1"),
        b"{broken",
        _body("bad-type", type="teleport"),
        _body("no-user", userId=None),
        _body("later", timestamp=future),
        _body("big", context={"pad": "x" * 20_000}),
        _body("ok2", type="rating", value=4),
        _body("ok3", type="rating", value="3.5"),  # a number sent as text is still a number
        _body("grouped", type="rating", value="1_0"),  # Python's grouping: 10 to pydantic
        _body("grouped-pos", type="impression", recommendationId="r", position="1_0"),
        # a finite value too large for a float32 weight: it once poisoned the next model
        _body("huge", type="rating", value=1e39),
        # nested past the JSON decoder's recursion limit: once a RecursionError that failed
        # (and so retried) the whole batch for good
        _body("deep", context={}).replace(b'"context": {}', b'"context": {"x": '
                                          + b"[" * 1000 + b"]" * 1000 + b"}"),
    ]
    result = process_batch(store, batch)
    assert result.accepted == 3
    reasons = sorted(d["reason"] for d in store.scan("deadletters"))
    assert len(reasons) == 9
    text = " | ".join(reasons)
    for fragment in ("not valid JSON", "type", "userId", "future", "byte limit",
                     "less than or equal to 1000000", "no '_' grouping"):
        assert fragment in text


def test_an_event_whose_context_holds_nan_or_infinity_is_dead_lettered_as_sent(
    store: DocumentStore,
) -> None:
    """Other producers' JSON may carry NaN / Infinity / 1e400: stored, they became null."""
    batch = [_body(f"e{n}", context={}).replace(b'"context": {}', b'"context": {"a": [1, '
                                                 + literal + b"]}")
             for n, literal in enumerate((b"NaN", b"Infinity", b"-Infinity", b"1e400"))]
    batch.append(_body("ok", context={"a": [1, 2.5]}))
    result = process_batch(store, batch)
    assert result.accepted == 1
    dead = list(store.scan("deadletters"))
    assert len(dead) == 4
    assert all("standard JSON cannot carry" in d["reason"] for d in dead)
    assert sorted(d["body"] for d in dead) == sorted(b.decode() for b in batch[:4])


def test_events_without_a_tenant_belong_to_the_default_tenant(store: DocumentStore) -> None:
    body = json.loads(_body("no-tenant"))
    del body["tenant"]
    process_batch(store, [json.dumps(body).encode()], default_tenant="shop")
    (doc,) = store.scan("events")
    assert doc["tenant"] == "shop" and doc["pk"] == "shop|u1"


def test_an_event_of_a_tenant_with_a_colon_is_dead_lettered_stating_the_tenant_rule(
    store: DocumentStore,
) -> None:
    """Tenant "shop:v1" was accepted, and a model trained on its events cached under keys
    that tenant "shop" deletes when it expires version "v1"; users and items keep ':'."""
    result = process_batch(store, [_body("e1", tenant="shop:v1"),
                                   _body("e2", tenant="shop", userId="a:b", itemId="i:1")])
    assert result.accepted == 1
    (dead,) = store.scan("deadletters")
    assert dead["reason"] == f"tenant: must be {TENANT_RULE}"
    (event,) = store.scan("events")
    assert (event["tenant"], event["userId"], event["itemId"]) == ("shop", "a:b", "i:1")


def test_dead_letters_name_the_user_their_body_names(store: DocumentStore) -> None:
    body = json.loads(_body("bad-type", type="teleport"))
    del body["tenant"]
    process_batch(store, [json.dumps(body).encode(), b"{broken", _body("x", userId=7),
                          _body("y", userId=[7])], default_tenant="shop")
    owners = sorted((d.get("tenant", ""), d.get("userId", "")) for d in store.scan("deadletters"))
    # no JSON, or a userId that is no id: no owner; `"userId": 7` names user "7"
    assert owners == [("", ""), ("", ""), ("default", "7"), ("shop", "u1")]


def test_a_bad_event_redelivered_on_another_day_is_dead_lettered_once(
    store: DocumentStore,
) -> None:
    """Event Hubs redelivers a batch after a failure, possibly after midnight."""
    body = _body("bad-type", type="teleport")
    day1 = datetime(2026, 12, 3, 23, 59, tzinfo=UTC)
    first = dead_letter_document(body, "type: unknown", day1)
    again = dead_letter_document(body, "type: unknown", day1 + timedelta(minutes=2))
    store.upsert_many("deadletters", [first])
    store.upsert_many("deadletters", [again])
    (doc,) = store.scan("deadletters")
    assert doc["id"] == first["id"] and doc["body"] == body.decode()
    process_batch(store, [body])  # and today, through the processor
    assert len(list(store.scan("deadletters"))) == 1
