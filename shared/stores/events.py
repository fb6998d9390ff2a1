"""Event sink: where accepted feedback goes before it is processed.

In Azure that is Event Hubs (the trigger processes it); embedded, a direct call to the same
processing function the trigger uses.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Any, Protocol, TypeVar

from shared.stores.errors import BackendError

T = TypeVar("T")
log = logging.getLogger(__name__)


class SendFailed(BackendError):
    """Event Hubs failed after retries; `sent` events of the call had gone out before."""

    def __init__(self, message: str, sent: int) -> None:
        super().__init__(message)
        self.sent = sent

RawEvent = Mapping[str, Any]


class EventSink(Protocol):
    name: str

    def send(self, events: Sequence[RawEvent]) -> int: ...


class EventTooLarge(ValueError):
    """One event does not fit in an Event Hubs batch on its own: it can never be sent."""


class UnencodableEvent(ValueError):
    """An event that JSON cannot carry (NaN, an infinity, a lone surrogate in a string): no
    consumer could read it back, so it is refused before anything is sent."""


def encode(event: RawEvent, position: int | None = None) -> bytes:
    """The wire form of one event: compact, standard JSON, as the trigger will read it."""
    try:
        return json.dumps(event, separators=(",", ":"), ensure_ascii=False,
                          allow_nan=False).encode()
    except ValueError as exc:  # UnicodeEncodeError included
        where = "an event" if position is None else f"event #{position}"
        raise UnencodableEvent(f"{where} is not valid JSON ({exc})") from None


def encode_all(events: Sequence[RawEvent]) -> list[bytes]:
    return [encode(e, n) for n, e in enumerate(events)]


def partition_key(event: RawEvent, default_tenant: str = "default") -> str:
    """Events of one user share a partition, so the trigger sees them in order; an event
    without a tenant is the default tenant's, as the processor reads it."""
    return f"{event.get('tenant') or default_tenant}|{event.get('userId', '')}"


class DirectSink:
    """Hands the events to the processing function in this process."""

    name = "direct"

    def __init__(self, handler: Callable[[list[bytes]], Any]) -> None:
        self._handler = handler
        self.last_result: Any = None  # what the handler returned (a BatchResult)

    def send(self, events: Sequence[RawEvent]) -> int:
        self.last_result = self._handler(encode_all(events))
        return len(events)


def _is_transient(exc: Exception) -> bool:
    """Connection drops, timeouts and a busy service pass; bad credentials or data do not."""
    from azure.eventhub.exceptions import (
        AuthenticationError,
        ClientClosedError,
        ConnectError,
        ConnectionLostError,
        EventDataSendError,
        OperationTimeoutError,
    )

    if isinstance(exc, AuthenticationError | ClientClosedError):
        return False
    return isinstance(
        exc, ConnectionLostError | OperationTimeoutError | ConnectError | EventDataSendError
    )


class EventHubSink:
    """Event Hubs producer: one batch per partition key (tenant|user), never over the size
    limit, each send retried with exponential backoff and jitter on transient errors.

    A retried send may deliver a batch twice; the trigger applies an event id once, so that is
    harmless, while giving up would lose feedback. Each send waits at most `send_timeout`
    seconds (the SDK's own default is a minute, with its own retries inside), so a request
    that publishes answers within about (max_retries + 1) x (send_timeout + 5) seconds even
    with Event Hubs down; the producer is built with the SDK's retries off (`build_event_sink`)
    so that they do not multiply these.
    """

    name = "eventhubs"

    def __init__(
        self,
        producer: Any,
        max_retries: int = 5,
        backoff_seconds: float = 0.2,
        max_backoff_seconds: float = 5.0,
        sleep: Callable[[float], None] = time.sleep,
        send_timeout: float = 10.0,
        default_tenant: str = "default",
    ) -> None:
        self._producer = producer
        self._send_timeout = send_timeout
        self._default_tenant = default_tenant
        self._max_retries = max_retries
        self._backoff = backoff_seconds
        self._max_backoff = max_backoff_seconds
        self._sleep = sleep
        self.retries = 0  # transient failures overcome, for logs and tests

    def _with_retry(self, call: Callable[[], T]) -> T:
        """`call()`, retried on transient Event Hubs errors with jittered exponential backoff
        (opening the connection, which the first `create_batch` does, as much as sending)."""
        from azure.eventhub.exceptions import EventHubError

        attempt = 0
        while True:
            try:
                return call()
            except EventHubError as exc:
                if not _is_transient(exc) or attempt == self._max_retries:
                    raise
                delay = min(self._max_backoff, self._backoff * 2**attempt)
                delay *= 0.5 + random.random() / 2  # jitter: producers do not retry in step
                self.retries += 1
                log.warning("event hubs call failed (%s); retry %d in %.2fs",
                            type(exc).__name__, attempt + 1, delay)
                self._sleep(delay)
                attempt += 1

    def _batches(self, key: str, bodies: list[bytes]) -> list[Any]:
        """The events of one partition key packed into as few batches as the limit allows."""
        from azure.eventhub import EventData

        batches = [self._new_batch(key)]
        for body in bodies:
            data = EventData(body)
            try:
                batches[-1].add(data)
            except ValueError:  # batch full: start the next one
                if len(batches[-1]) == 0:
                    raise EventTooLarge(
                        f"an event of {len(body)} bytes is larger than the Event Hubs batch "
                        f"limit of {batches[-1].max_size_in_bytes} bytes"
                    ) from None
                batches.append(self._new_batch(key))
                try:
                    batches[-1].add(data)
                except ValueError:
                    raise EventTooLarge(
                        f"an event of {len(body)} bytes is larger than the Event Hubs batch "
                        f"limit of {batches[-1].max_size_in_bytes} bytes"
                    ) from None
        return [b for b in batches if len(b)]

    def _new_batch(self, key: str) -> Any:
        return self._with_retry(lambda: self._producer.create_batch(partition_key=key))

    def send(self, events: Sequence[RawEvent]) -> int:
        """Sends every event or raises; an event too large for any batch, or not valid JSON,
        fails the call before anything is sent."""
        from azure.eventhub.exceptions import EventHubError

        by_key: dict[str, list[bytes]] = defaultdict(list)
        for e, body in zip(events, encode_all(events), strict=True):
            by_key[partition_key(e, self._default_tenant)].append(body)
        try:
            planned = [(key, self._batches(key, bodies)) for key, bodies in by_key.items()]
        except EventHubError as exc:
            raise SendFailed(f"event hubs unreachable, nothing was sent: {exc}", 0) from exc
        sent = 0
        try:
            for _, batches in planned:
                for batch in batches:
                    self._with_retry(partial(self._producer.send_batch, batch,
                                             timeout=self._send_timeout))
                    sent += len(batch)
        except EventHubError as exc:
            raise SendFailed(f"event hubs send failed after {sent} events: {exc}", sent) from exc
        return sent
