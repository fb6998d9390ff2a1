"""Event sink: where accepted feedback goes before it is processed.

In Azure that is Event Hubs (the trigger processes it); embedded, a direct call to the same
processing function the trigger uses.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from shared.stores.errors import BackendError

RawEvent = Mapping[str, Any]


class EventSink(Protocol):
    name: str

    def send(self, events: Sequence[RawEvent]) -> int: ...


class DirectSink:
    """Hands the events to the processing function in this process."""

    name = "direct"

    def __init__(self, handler: Callable[[list[bytes]], Any]) -> None:
        self._handler = handler

    def send(self, events: Sequence[RawEvent]) -> int:
        self._handler([json.dumps(e).encode() for e in events])
        return len(events)


class EventHubSink:
    """Event Hubs producer: one batch per partition key (the user), never over the size limit."""

    name = "eventhubs"

    def __init__(self, producer: Any) -> None:
        self._producer = producer

    def send(self, events: Sequence[RawEvent]) -> int:
        from azure.eventhub import EventData
        from azure.eventhub.exceptions import EventHubError

        by_key: dict[str, list[RawEvent]] = defaultdict(list)
        for e in events:
            by_key[f"{e.get('tenant', '')}|{e.get('userId', '')}"].append(e)
        sent = 0
        try:
            for key, group in by_key.items():
                batch = self._producer.create_batch(partition_key=key)
                for e in group:
                    data = EventData(json.dumps(e))
                    try:
                        batch.add(data)
                    except ValueError as full:  # batch full: send it and start the next
                        if len(batch) == 0:
                            raise ValueError(
                                "one event is larger than the batch size limit"
                            ) from full
                        self._producer.send_batch(batch)
                        sent += len(batch)
                        batch = self._producer.create_batch(partition_key=key)
                        batch.add(data)
                if len(batch):
                    self._producer.send_batch(batch)
                    sent += len(batch)
        except EventHubError as exc:
            raise BackendError(f"event hubs send failed after {sent} events: {exc}") from exc
        return sent
