"""`POST /api/events` and what it changes for the next request, over the HTTP API."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import redis

from shared.feedback.process import process_batch
from shared.runtime import Runtime
from shared.stores.events import EventHubSink
from shared.stores.factory import build_backends
from tests.conftest import azure_settings, embedded_settings
from tests.helpers import client_for, runtime_on, tiny_interactions
from tests.test_producer import FakeProducer, transient
from training.retrain import train_and_publish


@pytest.fixture(params=["embedded", "azure"])
def published(request: pytest.FixtureRequest, tmp_path: Path) -> Runtime:
    if request.param == "embedded":
        settings = embedded_settings(tmp_path)
    else:
        client: redis.Redis = request.getfixturevalue("redis_client")
        port = int(client.connection_pool.connection_kwargs["port"])
        settings = azure_settings(port, request.getfixturevalue("cosmos_endpoint"),
                                  request.getfixturevalue("azurite_connection"))
    runtime = runtime_on(settings, build_backends(settings))
    train_and_publish(runtime, tiny_interactions(), "default")
    return runtime


def _event(user: str, item: str, kind: str, **extra: Any) -> dict[str, Any]:
    return {"eventId": uuid.uuid4().hex, "userId": user, "itemId": item, "type": kind,
            "timestamp": datetime.now(UTC).isoformat(), **extra}


def _items(runtime: Runtime, user: str, k: int = 3) -> list[str]:
    body = client_for(runtime).get(f"/api/recommendations/{user}?k={k}").json()
    return [i["itemId"] for i in body["items"]]


def test_a_purchased_item_is_not_recommended_to_that_user_again(published: Runtime) -> None:
    before = _items(published, "u1")
    assert before[0] == "c"  # u1 has a and b: c is the top candidate
    response = client_for(published).post(
        "/api/events", json=[_event("u1", "c", "purchase"), _event("u1", "d", "dislike")]
    )
    assert response.status_code == 202 and response.json() == {"accepted": 2}
    after = _items(published, "u1")
    assert "c" not in after and "d" not in after
    assert "c" in _items(published, "u2") or "c" in _items(published, "u3")  # others unaffected


def test_events_are_logged_and_bad_ones_dead_lettered_not_refused(published: Runtime) -> None:
    good = _event("u9", "a", "click")
    bad = {"eventId": "x1", "userId": "u9", "type": "teleport"}
    response = client_for(published).post("/api/events", json=[good, bad])
    assert response.status_code == 202
    store = published.backends.store
    assert [d["id"] for d in store.scan("events")] == [good["eventId"]]
    (dead,) = list(store.scan("deadletters"))
    assert "type" in dead["reason"] and "itemId: is required" in dead["reason"]
    assert published.online.read_user("default", "u9").recent == ["a"]


def test_events_belong_to_the_tenant_the_request_names(published: Runtime) -> None:
    train_and_publish(published, tiny_interactions(), "shop")
    client = client_for(published)
    before = [i["itemId"] for i in client.get("/api/recommendations/u1?k=3&tenant=shop")
              .json()["items"]]
    response = client.post("/api/events", json=[_event("u1", before[0], "purchase")],
                           headers={"x-tenant": "shop"})
    assert response.status_code == 202, response.text
    (doc,) = published.backends.store.scan("events")
    assert doc["tenant"] == "shop"
    after = client.get("/api/recommendations/u1?k=3", headers={"x-tenant": "shop"}).json()
    assert before[0] not in [i["itemId"] for i in after["items"]]
    assert published.online.read_user("default", "u1").purchased == set()  # not the default's


def test_an_event_of_another_tenant_than_the_request_names_is_a_422(published: Runtime) -> None:
    client = client_for(published)
    response = client.post("/api/events?tenant=shop",
                           json=[_event("u1", "a", "click"),
                                 _event("u1", "b", "click", tenant="default")])
    assert response.status_code == 422
    assert response.json()["error"] == (
        "event 1: tenant 'default' differs from the request's tenant 'shop'; nothing was sent")
    assert list(published.backends.store.scan("events")) == []
    both = client.get("/api/recommendations/u1?tenant=default", headers={"x-tenant": "shop"})
    assert both.status_code == 422 and "differs from the x-tenant header" in both.json()["error"]


@pytest.mark.parametrize("payload, fragment", [
    ({"eventId": "e1"}, "list"),
    ([1, 2], "dictionary"),
    ([{}] * 1001, "1000"),
])
def test_a_body_that_is_not_an_array_of_objects_is_a_readable_422(
    tmp_path: Path, payload: Any, fragment: str,
) -> None:
    settings = embedded_settings(tmp_path)
    runtime = runtime_on(settings, build_backends(settings))
    response = client_for(runtime).post("/api/events", json=payload)
    assert response.status_code == 422
    assert fragment in response.json()["error"]


@pytest.mark.parametrize("body", [b"{nope", b"[{\"eventId\": \"e1\",]"])
def test_a_body_that_is_not_json_is_the_documented_400_with_a_sentence(
    tmp_path: Path, body: bytes,
) -> None:
    """The schema documents 400 for a body that is not JSON; it was a 422 reading
    "1: JSON decode error" (the decoder's position as if it named a field)."""
    settings = embedded_settings(tmp_path)
    runtime = runtime_on(settings, build_backends(settings))
    response = client_for(runtime).post(
        "/api/events", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error.startswith("the body is not valid JSON") and "character" in error
    assert list(runtime.backends.store.scan("deadletters")) == []


@pytest.mark.parametrize("value, context", [
    ("NaN", '{}'), ("Infinity", '{}'), ("1e999", '{}'), ("4", '{"s": "\\ud800"}'),
])
def test_an_event_json_cannot_carry_is_a_422_and_nothing_is_stored(
    tmp_path: Path, value: str, context: str,
) -> None:
    """NaN, infinities and lone surrogates parse in Python but have no standard JSON form:
    stored, a NaN once made every filtered events query (and so every retrain) fail."""
    settings = embedded_settings(tmp_path)
    runtime = runtime_on(settings, build_backends(settings))
    good = _event("u1", "a", "view")
    body = (f'[{json.dumps(good)}, {{"eventId": "n1", "userId": "u1", "itemId": "b", '
            f'"type": "rating", "value": {value}, "context": {context}, '
            f'"timestamp": "{good["timestamp"]}"}}]')
    response = client_for(runtime).post(
        "/api/events", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == 422
    assert "event #1 is not valid JSON" in response.json()["error"]
    assert list(runtime.backends.store.scan("events")) == []
    assert list(runtime.backends.store.scan("deadletters")) == []
    assert list(runtime.backends.store.scan("events", {"userId": "u1"})) == []  # still readable


def test_a_non_finite_rating_from_another_producer_is_dead_lettered(tmp_path: Path) -> None:
    """Event Hubs may carry bodies this API did not write: the processor refuses NaN too."""
    settings = embedded_settings(tmp_path)
    runtime = runtime_on(settings, build_backends(settings))
    good = _event("u1", "a", "view")
    body = (f'{{"eventId": "n1", "userId": "u1", "itemId": "b", "type": "rating", '
            f'"value": NaN, "timestamp": "{good["timestamp"]}"}}').encode()
    result = process_batch(runtime.backends.store, [json.dumps(good).encode(), body],
                           runtime.online)
    assert result.accepted == 1 and len(result.rejected) == 1
    assert "finite" in result.rejected[0]
    assert [d["id"] for d in runtime.backends.store.scan("events", {"userId": "u1"})] == [
        good["eventId"]
    ]


def _with_event_hubs(tmp_path: Path, producer: FakeProducer) -> Runtime:
    settings = embedded_settings(tmp_path)
    runtime = runtime_on(settings, build_backends(settings))
    runtime.sink = EventHubSink(producer, max_retries=2, sleep=lambda _: None)
    return runtime


def test_events_go_to_event_hubs_when_it_is_configured(tmp_path: Path) -> None:
    producer = FakeProducer()
    runtime = _with_event_hubs(tmp_path, producer)
    events = [_event("u1", "a", "view"), _event("u2", "b", "view"), _event("u1", "c", "view")]
    response = client_for(runtime).post("/api/events", json=events)
    assert response.status_code == 202 and response.json() == {"accepted": 3}
    assert sorted((key, len(b)) for key, b in producer.sent_keys()) == [
        ("default|u1", 2), ("default|u2", 1),
    ]
    assert list(runtime.backends.store.scan("events")) == []  # the trigger will store them


def test_an_event_hubs_outage_is_a_503_and_an_oversized_event_a_413(tmp_path: Path) -> None:
    down = _with_event_hubs(tmp_path / "a", FakeProducer(failures=[transient()] * 5))
    response = client_for(down).post("/api/events", json=[_event("u1", "a", "view")])
    assert response.status_code == 503
    assert response.json()["error"] == ("events could not be recorded (Event Hubs is "
                                        "unavailable), retry later; sent before the failure: 0")

    small = _with_event_hubs(tmp_path / "b", FakeProducer(max_size_in_bytes=400))
    response = client_for(small).post(
        "/api/events", json=[_event("u1", "a", "view", context={"pad": "x" * 500})]
    )
    assert response.status_code == 413
    assert "larger than the Event Hubs batch limit" in response.json()["error"]


def test_deleting_a_user_removes_the_dead_letters_naming_them_by_a_numeric_id(
    published: Runtime,
) -> None:
    """A producer sending `"userId": 42` has its events dead-lettered, and their bodies name
    user "42": only a string `userId` was recorded as the owner, so DELETE left them."""
    client = client_for(published)
    bad = _event("x", "a", "view", userId=42)
    response = client.post("/api/events", json=[bad, {**bad, "tenant": 7},
                                                {**bad, "userId": 43}, {**bad, "userId": True}])
    assert response.status_code == 202
    store = published.backends.store
    assert len(list(store.scan("deadletters"))) == 4
    removed = client.delete("/api/users/42").json()["removed"]
    assert removed["deadLetters"] == 1
    assert client.delete("/api/users/42?tenant=7").json()["removed"]["deadLetters"] == 1
    left = [json.loads(d["body"])["userId"] for d in store.scan("deadletters")]
    assert sorted(map(str, left)) == ["43", "True"]  # other users' stay (a bool is no id)


def test_a_body_sent_without_a_json_content_type_is_a_400_saying_so(published: Runtime) -> None:
    """curl's -d sends application/x-www-form-urlencoded: the answer says what to send."""
    client = client_for(published)
    body = json.dumps([{"eventId": "e1", "userId": "u1", "itemId": "i1", "type": "view",
                        "timestamp": "2025-01-01T00:00:00Z"}])
    response = client.post("/api/events", content=body,
                           headers={"content-type": "application/x-www-form-urlencoded"})
    assert response.status_code == 400
    assert "Content-Type: application/json" in response.json()["error"]
    assert "x-www-form-urlencoded" in response.json()["error"]
