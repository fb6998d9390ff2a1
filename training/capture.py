"""Event Hubs Capture files (Avro) as a training and reporting source for large volumes.

Capture writes every event the hub received, in Avro records whose `Body` bytes hold our JSON
event, to `{namespace}/{hub}/{partition}/{yyyy}/{mm}/{dd}/{hh}/{mm}/{ss}.avro` blobs. Reading
them avoids scanning the events container. Files are streamed record by record (`fastavro`),
so memory does not grow with file size; bodies that fail the trigger's validation are skipped
and counted (the trigger dead-lettered them when they arrived).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from shared.feedback.process import parse_event
from training.events_source import InteractionsBuilder
from training.interactions import DataError, Interactions

# The schema Event Hubs Capture writes (Microsoft.ServiceBus.Messaging.EventData).
CAPTURE_SCHEMA: dict[str, Any] = {
    "type": "record",
    "name": "EventData",
    "namespace": "Microsoft.ServiceBus.Messaging",
    "fields": [
        {"name": "SequenceNumber", "type": "long"},
        {"name": "Offset", "type": "string"},
        {"name": "EnqueuedTimeUtc", "type": "string"},
        {"name": "SystemProperties", "type": {"type": "map", "values": [
            "long", "double", "string", "bytes"]}},
        {"name": "Properties", "type": {"type": "map", "values": [
            "long", "double", "string", "bytes", "null"]}},
        {"name": "Body", "type": ["null", "bytes"]},
    ],
}


def capture_files(paths: Iterable[Path]) -> list[Path]:
    """The .avro files named, or found under the folders named (in path order)."""
    out: list[Path] = []
    for p in paths:
        if p.is_dir():
            out.extend(sorted(p.rglob("*.avro")))
        elif p.is_file():
            out.append(p)
        else:
            raise DataError(f"capture path not found: {p}")
    return out


def enqueued_time(text: object) -> datetime | None:
    """Capture's `EnqueuedTimeUtc` ("1/31/2025 6:05:09 PM"), or None when unreadable."""
    try:
        return datetime.strptime(str(text), "%m/%d/%Y %I:%M:%S %p").replace(tzinfo=UTC)
    except ValueError:
        return None


def iter_records(paths: Iterable[Path]) -> Iterator[tuple[bytes, datetime | None]]:
    """Every event body in the Capture files with its enqueued time, in file order."""
    import fastavro

    for path in capture_files(paths):
        try:
            with path.open("rb") as f:
                if path.stat().st_size == 0:
                    continue
                for record in fastavro.reader(f):
                    if not isinstance(record, dict):
                        continue
                    body = record.get("Body")
                    if body:
                        yield bytes(body), enqueued_time(record.get("EnqueuedTimeUtc"))
        except OSError:
            raise
        except Exception as exc:  # fastavro on a damaged file: zlib, index, key, schema errors
            raise DataError(
                f"{path} is not a readable Event Hubs Capture (Avro) file: "
                f"{type(exc).__name__}: {exc}"
            ) from None


@dataclass
class CaptureStats:
    bodies: int = 0
    invalid: int = 0


def iter_event_documents(
    paths: Iterable[Path], stats: CaptureStats | None = None, default_tenant: str = "default"
) -> Iterator[dict[str, Any]]:
    """Valid events from Capture files, in the events-store document form; an event without a
    tenant is the deployment's default tenant's, as the trigger files it."""
    stats = stats if stats is not None else CaptureStats()
    for body, received in iter_records(paths):
        stats.bodies += 1
        event = parse_event(body, default_tenant, received)  # judged as the trigger judged it
        if isinstance(event, str):
            stats.invalid += 1
            continue
        yield event.to_document()


def read_capture(
    paths: Iterable[Path], tenant: str, since: datetime | None = None,
    default_tenant: str = "default",
) -> tuple[Interactions | None, CaptureStats]:
    """The tenant's interactions from Capture files (each event id once) and what was read."""
    stats = CaptureStats()
    docs = iter_event_documents(paths, stats, default_tenant)
    builder = InteractionsBuilder(tenant, since).add_all(docs)
    return builder.build(f"capture:{tenant}"), stats


def write_capture_file(path: Path, bodies: Iterable[bytes | dict[str, Any]],
                       enqueued: datetime | None = None) -> int:
    """Writes bodies as Capture does (for tests and local replays); returns how many."""
    import fastavro

    when = (enqueued or datetime.now(UTC)).astimezone(UTC)
    stamp = f"{when.month}/{when.day}/{when.year} {when.strftime('%I:%M:%S %p').lstrip('0')}"
    records = []
    for n, body in enumerate(bodies):
        raw = json.dumps(body).encode() if isinstance(body, dict) else body
        records.append({
            "SequenceNumber": n, "Offset": str(n * 512), "EnqueuedTimeUtc": stamp,
            "SystemProperties": {}, "Properties": {}, "Body": raw,
        })
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as f:
        fastavro.writer(f, fastavro.parse_schema(CAPTURE_SCHEMA), records, codec="deflate")
    return len(records)
