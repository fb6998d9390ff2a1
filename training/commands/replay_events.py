"""`replay-events`: send a file of feedback events (JSON lines or CSV) through the event sink.

With Event Hubs configured the events are published (batched per user, retried); embedded they
go straight through the trigger's processing function. Event ids make a replay idempotent:
replaying the same file twice applies each event once.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shared.runtime import get_runtime
from shared.stores.errors import BackendError
from shared.stores.events import EventSink, EventTooLarge, UnencodableEvent, encode
from training.interactions import DataError

# CSV headers: the event's own names, and snake_case spellings of them.
CSV_COLUMNS = {
    "eventId": "eventId", "event_id": "eventId",
    "tenant": "tenant",
    "userId": "userId", "user_id": "userId",
    "itemId": "itemId", "item_id": "itemId",
    "type": "type",
    "value": "value",
    "timestamp": "timestamp",
    "recommendationId": "recommendationId", "recommendation_id": "recommendationId",
    "position": "position",
    "context": "context",
}
SHOWN_BAD_LINES = 5


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser("replay-events", help=__doc__)
    p.add_argument("--file", type=Path, required=True, help="events as .jsonl/.ndjson or .csv")
    p.add_argument("--chunk", type=int, default=500, help="events per send (default 500)")
    p.set_defaults(run=run)


def _jsonl(path: Path, bad: list[int]) -> Iterator[dict[str, Any]]:
    with path.open("rb") as f:
        for n, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                event = json.loads(line)
                if isinstance(event, dict):
                    encode(event)  # NaN, infinities and lone surrogates: no wire form
            except (ValueError, RecursionError):  # UnicodeDecodeError, UnencodableEvent too
                event = None  # RecursionError: nested deeper than the decoder goes; a plain
                # ValueError: an integer of more digits than Python converts (4,300)
            if isinstance(event, dict):
                yield event
            else:
                bad.append(n)


def _cell(column: str, text: str) -> Any:
    """CSV cells are text: numbers and the context object are restored; if a cell cannot be,
    it is sent as it is and the processor dead-letters the event with the reason."""
    if "_" in text and column in ("value", "position"):  # float("1_0") is Python's, not CSV's
        return text
    try:
        if column == "value":
            number = float(text)
            return number if math.isfinite(number) else text
        if column == "position":
            return int(text)
        if column == "context":
            return json.loads(text)
    except (ValueError, RecursionError):  # RecursionError: a context nested too deep
        return text
    return text


def _csv(path: Path, bad: list[int]) -> Iterator[dict[str, Any]]:
    """The file's events; a row with no wire form (a context holding NaN) is a bad line, and
    a file that is not UTF-8 CSV stops the replay with a sentence naming the line."""
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        try:
            header = reader.fieldnames or []
            unknown = [c for c in header if c not in CSV_COLUMNS]
            if unknown:
                raise DataError(
                    f"{path}: unknown column(s) {', '.join(unknown)}; "
                    f"expected some of {', '.join(sorted(set(CSV_COLUMNS.values())))}"
                )
            for row in reader:
                event = {CSV_COLUMNS[c]: _cell(CSV_COLUMNS[c], v) for c, v in row.items()
                         if c is not None and v not in (None, "")}
                try:
                    encode(event)
                except UnencodableEvent:
                    bad.append(reader.line_num)
                    continue
                yield event
        except (UnicodeDecodeError, csv.Error) as exc:
            raise DataError(f"{path}, near line {reader.line_num + 1}: not a readable UTF-8 CSV "
                            f"file ({exc})") from None


@dataclass
class ReplayTotals:
    sent: int = 0
    accepted: int = 0  # the embedded path knows what the processor did; Event Hubs does not
    duplicates: int = 0
    dead_lettered: int = 0
    bad_lines: list[int] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def rate(self) -> float:
        return self.sent / max(self.seconds, 1e-9)


def replay(path: Path, sink: EventSink, chunk: int, progress: Any = sys.stderr) -> ReplayTotals:
    """Sends the file's events in chunks; returns counts for the summary."""
    suffix = path.suffix.lower()
    if not path.is_file():
        raise FileNotFoundError(f"events file not found: {path}")
    totals = ReplayTotals()
    bad = totals.bad_lines
    if suffix in (".jsonl", ".ndjson", ".json"):
        events = _jsonl(path, bad)
    elif suffix == ".csv":
        events = _csv(path, bad)
    else:
        raise DataError(f"{path}: use a .jsonl (one JSON event per line) or a .csv file")
    started = last = time.monotonic()
    pending: list[dict[str, Any]] = []

    def flush() -> None:
        nonlocal last
        try:
            totals.sent += sink.send(pending)
        except EventTooLarge as exc:
            raise DataError(f"{exc} (within the events after #{totals.sent})") from None
        result = getattr(sink, "last_result", None)
        if result is not None:
            totals.accepted += result.accepted
            totals.duplicates += result.duplicates
            totals.dead_lettered += len(result.rejected)
        pending.clear()
        now = time.monotonic()
        if now - last >= 1.0:
            rate = totals.sent / max(now - started, 1e-9)
            print(f"  sent {totals.sent:,} events ({rate:,.0f}/s)", file=progress, flush=True)
            last = now

    for event in events:
        pending.append(event)
        if len(pending) >= chunk:
            flush()
    if pending:
        flush()
    totals.seconds = time.monotonic() - started
    return totals


def run(args: argparse.Namespace) -> int:
    if not 1 <= args.chunk <= 10_000:
        raise DataError("--chunk must be between 1 and 10000")
    runtime = get_runtime()
    try:
        t = replay(args.file, runtime.sink, args.chunk)
    except BackendError as exc:
        print(f"error: the events could not all be sent ({exc}); replaying the file again "
              "is safe: events already applied are skipped", file=sys.stderr)
        return 1
    where = ("Event Hubs" if runtime.sink.name == "eventhubs"
             else "the feedback processor in this process")
    print(f"replayed {t.sent:,} events from {args.file} to {where} "
          f"in {t.seconds:.1f} s ({t.rate:,.0f}/s)")
    if runtime.sink.name == "direct":
        print(f"{t.accepted:,} new, {t.duplicates:,} already applied, "
              f"{t.dead_lettered:,} dead-lettered (reasons in the deadletters container)")
    bad = t.bad_lines
    if bad:
        shown = ", ".join(str(n) for n in bad[:SHOWN_BAD_LINES])
        more = f" and {len(bad) - SHOWN_BAD_LINES} more" if len(bad) > SHOWN_BAD_LINES else ""
        print(f"skipped {len(bad)} line(s) that are not standard JSON objects (NaN, infinities "
              f"and lone surrogates included): {shown}{more}")
        if t.sent == 0:
            return 2
    return 0
