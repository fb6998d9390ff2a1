"""The Event Hubs producer: real `EventDataBatch` objects behind a fake producer client whose
create_batch/send_batch we control (sending needs a namespace; batching does not)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from azure.eventhub import EventData, EventDataBatch
from azure.eventhub.exceptions import (
    AuthenticationError,
    ConnectionLostError,
    EventHubError,
    OperationTimeoutError,
)

from shared.stores.errors import BackendError
from shared.stores.events import DirectSink, EventHubSink, EventTooLarge, SendFailed


def transient() -> EventHubError:
    return ConnectionLostError("link detached")


class FakeProducer:
    """Real batches; send_batch raises the queued failures first, then records."""

    def __init__(self, max_size_in_bytes: int = 1024 * 1024,
                 failures: list[Exception] | None = None) -> None:
        self.max_size = max_size_in_bytes
        self.failures = list(failures or [])
        self.sent: list[EventDataBatch] = []
        self.attempts = 0
        self.timeouts: list[float | None] = []

    def create_batch(self, partition_key: str | None = None, **_: Any) -> EventDataBatch:
        return EventDataBatch(max_size_in_bytes=self.max_size, partition_key=partition_key)

    def send_batch(self, batch: EventDataBatch, **kwargs: Any) -> None:
        self.attempts += 1
        self.timeouts.append(kwargs.get("timeout"))
        if self.failures:
            raise self.failures.pop(0)
        self.sent.append(batch)

    def sent_keys(self) -> list[tuple[str, EventDataBatch]]:
        return [(_key(b), b) for b in self.sent]

    def bodies(self) -> list[dict[str, Any]]:
        out = []
        for batch in self.sent:
            for e in batch._internal_events:
                assert isinstance(e, EventData)
                out.append(json.loads(e.body_as_str()))
        return out


def _key(batch: EventDataBatch) -> str:
    key = batch._partition_key
    return key.decode() if isinstance(key, bytes) else str(key)


def _events(n: int, users: int = 3, pad: int = 0) -> list[dict[str, Any]]:
    return [{"eventId": f"e{i}", "tenant": "t", "userId": f"u{i % users}", "itemId": f"i{i}",
             "type": "view", "timestamp": "2025-01-01T00:00:00Z", "context": {"pad": "x" * pad}}
            for i in range(n)]


def _sink(producer: FakeProducer, retries: int = 3) -> tuple[EventHubSink, list[float]]:
    sleeps: list[float] = []
    return EventHubSink(producer, max_retries=retries, sleep=sleeps.append), sleeps


def test_events_are_batched_by_user_and_keep_their_order() -> None:
    producer = FakeProducer()
    sink, _ = _sink(producer)
    events = _events(30, users=3)
    assert sink.send(events) == 30
    assert sorted(k for k, _ in producer.sent_keys()) == ["t|u0", "t|u1", "t|u2"]
    by_user: dict[str, list[str]] = {}
    for body in producer.bodies():
        by_user.setdefault(body["userId"], []).append(body["eventId"])
    assert by_user["u1"] == [f"e{i}" for i in range(1, 30, 3)]
    assert producer.bodies()[0] == events[0]  # the body is the event's JSON, unchanged


def test_a_full_batch_is_sent_and_the_next_one_started_never_over_the_limit() -> None:
    producer = FakeProducer(max_size_in_bytes=2048)
    sink, _ = _sink(producer)
    assert sink.send(_events(40, users=1, pad=300)) == 40
    assert len(producer.sent) > 5
    assert all(b.size_in_bytes <= 2048 for b in producer.sent)
    assert sum(len(b) for b in producer.sent) == 40
    assert [b["eventId"] for b in producer.bodies()] == [f"e{i}" for i in range(40)]


def test_transient_errors_are_retried_with_growing_backoff() -> None:
    producer = FakeProducer(failures=[transient(), OperationTimeoutError("slow"), transient()])
    sink, sleeps = _sink(producer, retries=3)
    assert sink.send(_events(5, users=1)) == 5
    assert producer.attempts == 4 and len(producer.sent) == 1 and sink.retries == 3
    assert len(sleeps) == 3 and sleeps[0] < sleeps[2]
    assert all(0 < s <= 5.0 for s in sleeps)


def test_giving_up_after_the_retries_says_how_many_were_sent() -> None:
    producer = FakeProducer(failures=[None] * 0)  # type: ignore[list-item]
    sink, sleeps = _sink(producer, retries=2)
    original = producer.send_batch
    calls = {"n": 0}

    def second_user_fails(batch: EventDataBatch, **kw: Any) -> None:
        calls["n"] += 1
        if _key(batch) == "t|u1":
            raise transient()
        original(batch, **kw)

    producer.send_batch = second_user_fails  # type: ignore[method-assign]
    with pytest.raises(BackendError, match="after 1 events") as failed:
        sink.send(_events(2, users=2))
    assert isinstance(failed.value, SendFailed) and failed.value.sent == 1
    assert len(sleeps) == 2 and calls["n"] == 4  # u0 once, u1 three times


def test_errors_that_cannot_pass_are_not_retried() -> None:
    producer = FakeProducer(failures=[AuthenticationError("bad token")])
    sink, sleeps = _sink(producer)
    with pytest.raises(BackendError, match="bad token"):
        sink.send(_events(1))
    assert sleeps == [] and producer.attempts == 1


def test_an_event_larger_than_any_batch_fails_before_anything_is_sent() -> None:
    producer = FakeProducer(max_size_in_bytes=1024)
    sink, _ = _sink(producer)
    events = _events(3, users=3)
    events[2]["context"] = {"pad": "x" * 2000}
    with pytest.raises(EventTooLarge, match="larger than the Event Hubs batch limit"):
        sink.send(events)
    assert producer.attempts == 0


def test_direct_sink_hands_the_same_json_to_the_handler() -> None:
    got: list[list[bytes]] = []
    events = _events(2)
    assert DirectSink(got.append).send(events) == 2
    assert [json.loads(b) for b in got[0]] == events


def test_an_unreachable_event_hub_is_a_backend_error_after_retries_nothing_sent() -> None:
    """The first create_batch opens the connection: its failure was a bare ConnectError (a 500
    on POST /api/events, a traceback in replay-events)."""
    producer = FakeProducer()
    refusals = [transient(), transient(), transient(), transient()]

    def connect_then_batch(partition_key: str | None = None, **_: Any) -> EventDataBatch:
        if refusals:
            raise refusals.pop(0)
        return EventDataBatch(max_size_in_bytes=producer.max_size, partition_key=partition_key)

    producer.create_batch = connect_then_batch  # type: ignore[method-assign]
    sink, sleeps = _sink(producer, retries=2)
    with pytest.raises(BackendError, match="event hubs unreachable, nothing was sent"):
        sink.send(_events(2, users=1))
    assert producer.sent == [] and len(sleeps) == 2
    assert sink.send(_events(2, users=1)) == 2  # the link comes back after one more refusal


def test_every_send_waits_at_most_the_send_timeout() -> None:
    producer = FakeProducer(failures=[transient()])
    sink = EventHubSink(producer, max_retries=2, sleep=lambda _: None, send_timeout=3.5)
    assert sink.send(_events(4, users=2)) == 4
    assert producer.timeouts == [3.5, 3.5, 3.5]  # a retried send and two users' batches


def test_an_event_without_a_tenant_is_keyed_as_the_default_tenant_the_processor_reads() -> None:
    producer = FakeProducer()
    sink = EventHubSink(producer, sleep=lambda _: None, default_tenant="shop")
    events = _events(2, users=1)
    events[1].pop("tenant")
    events[0]["tenant"] = "shop"
    sink.send(events)
    assert [k for k, _ in producer.sent_keys()] == ["shop|u0"]  # one partition, in order


def test_the_producer_is_built_without_sdk_retries_and_with_the_configured_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Up to the SDK boundary: the client is built (no connection is opened until a send)."""
    from shared.runtime import build_event_sink
    from shared.settings import Settings

    monkeypatch.setenv("EVENTHUB_CONNECTION_STRING",
                       "Endpoint=sb://example.servicebus.windows.net/;"
                       "SharedAccessKeyName=send;SharedAccessKey=bm90LWEta2V5")
    monkeypatch.setenv("EVENTHUB_SEND_TIMEOUT_SECONDS", "7")
    monkeypatch.setenv("RECO_DEFAULT_TENANT", "shop")
    sink = build_event_sink(Settings(), backends=None)  # type: ignore[arg-type]
    assert isinstance(sink, EventHubSink)
    assert sink._producer._config.retry_total == 0
    assert (sink._send_timeout, sink._default_tenant) == (7.0, "shop")
    sink._producer.close()
