"""What the Event Hub trigger does with a batch: validate each event, store, dead-letter.

Events are judged one by one: a bad event goes to the dead-letter container with its raw body
and the reason, and the rest of the batch goes on. Writes are keyed by event id, so a batch
delivered twice is applied once.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from pydantic import ValidationError

from shared.feedback.schema import MAX_EVENT_BYTES, FeedbackEvent
from shared.stores.documents import DocumentStore

log = logging.getLogger(__name__)

EVENTS = "events"
DEADLETTERS = "deadletters"


@dataclass
class BatchResult:
    accepted: int = 0
    duplicates: int = 0
    rejected: list[str] = field(default_factory=list)  # one reason per dead-lettered event


def _reason(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "event"
        parts.append(f"{where}: {err['msg']}")
    return "; ".join(parts)


def parse_event(body: bytes) -> FeedbackEvent | str:
    """The event, or a sentence saying why it cannot be accepted."""
    if len(body) > MAX_EVENT_BYTES:
        return f"event is {len(body)} bytes, over the {MAX_EVENT_BYTES}-byte limit"
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return f"body is not valid JSON: {exc}"
    if not isinstance(data, dict):
        return "body must be a JSON object"
    try:
        return FeedbackEvent.model_validate(data)
    except ValidationError as exc:
        return _reason(exc)


def dead_letter(store: DocumentStore, body: bytes, reason: str) -> None:
    now = datetime.now(UTC)
    # Same body, same id: a redelivered bad event is recorded once.
    digest = hashlib.sha256(body).hexdigest()[:32]
    store.upsert(
        DEADLETTERS,
        {
            "id": digest,
            "pk": now.strftime("%Y-%m-%d"),
            "reason": reason,
            "received": now.isoformat(),
            "body": body.decode("utf-8", errors="replace"),
        },
    )


def process_batch(store: DocumentStore, bodies: Sequence[bytes]) -> BatchResult:
    result = BatchResult()
    for body in bodies:
        parsed = parse_event(body)
        if isinstance(parsed, str):
            dead_letter(store, body, parsed)
            result.rejected.append(parsed)
            continue
        if store.create(EVENTS, parsed.to_document()):
            result.accepted += 1
        else:
            result.duplicates += 1
    if result.rejected:
        log.warning("dead-lettered %d of %d events", len(result.rejected), len(bodies))
    return result
