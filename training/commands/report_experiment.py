"""`report-experiment`: CTR per experiment variant (or model version) with Wilson intervals.

Impressions (each carrying the answer's recommendation id, model version and variant) are
joined to the clicks that name the same recommendation and item; read from the events store,
or from Event Hubs Capture files with `--capture` for large volumes.
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from shared.feedback.attribution import Attribution, AttributionReport
from shared.feedback.process import EVENTS
from shared.runtime import get_runtime
from training.commands.list_versions import tenant_arg
from training.interactions import DataError


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser("report-experiment", help=__doc__)
    p.add_argument("--tenant", default=None)
    p.add_argument("--by", choices=["variant", "model"], default="variant",
                   help="group by experiment variant (default) or model version")
    p.add_argument("--since", default=None, help="only events at or after this ISO date/time")
    p.add_argument("--confidence", type=float, default=0.95, help="interval level (0.95)")
    p.add_argument("--capture", type=Path, nargs="+", default=None,
                   help="read Event Hubs Capture .avro files/folders instead of the store")
    p.set_defaults(run=run)


def _instant(text: str) -> datetime:
    """An ISO date or date-time as an aware datetime (naive means UTC); ValueError if not one.

    Aware datetimes compare as instants whatever their offsets, with no conversion to UTC
    (which overflows at the ends of the calendar, e.g. 0001-01-01T00:00:00+14:00).
    """
    ts = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)


def _since(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        return _instant(text)
    except ValueError:
        raise DataError(f"--since '{text}' is not an ISO date or date-time") from None


def _at_or_after(timestamp: Any, since: datetime) -> bool:
    """Whether an event's timestamp is at or after `since`; an unreadable one is left out."""
    try:
        return _instant(str(timestamp)) >= since
    except ValueError:
        return False


def format_report(report: AttributionReport, by: str, tenant: str, source: str) -> str:
    level = f"{report.confidence:.0%}"
    label = "variant" if by == "variant" else "model version"
    lines = [f"CTR per {label} for tenant '{tenant}' ({level} Wilson interval), from {source}:"]
    width = max([len(label), *(len(a.name) for a in report.arms)])
    lines.append(f"  {label:<{width}}  {'impressions':>11}  {'clicks':>8}  {'CTR':>7}  {level} CI")
    for a in report.arms:
        lines.append(f"  {a.name:<{width}}  {a.impressions:>11,}  {a.clicks:>8,}  "
                     f"{a.ctr:>7.2%}  [{a.low:.2%}, {a.high:.2%}]")
    if len(report.arms) >= 2:
        best = max(report.arms, key=lambda a: a.ctr)
        rest = [a for a in report.arms if a is not best]
        if all(best.low > a.high for a in rest):
            lines.append(f"'{best.name}' has the highest CTR and its interval overlaps no other.")
        else:
            lines.append(f"'{best.name}' has the highest CTR, but the intervals overlap: "
                         "no clear winner yet at this level.")
    if report.unattributed_clicks:
        lines.append(f"{report.unattributed_clicks:,} clicked item(s) named a recommendation "
                     "with no logged impression of that item (not counted).")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    if not 0.5 <= args.confidence < 1:
        raise DataError("--confidence must be at least 0.5 and below 1, e.g. 0.95")
    since = _since(args.since)
    runtime = get_runtime()
    tenant = tenant_arg(args.tenant, runtime.settings.default_tenant)
    attribution = Attribution(tenant)
    if args.capture:
        from training.capture import iter_event_documents

        docs: Any = iter_event_documents(args.capture, None, runtime.settings.default_tenant)
        source = f"{len(args.capture)} capture path(s)"
    else:
        docs = runtime.backends.store.scan(EVENTS, {"tenant": tenant})  # filtered in the store
        source = f"the {runtime.backends.store.name} events store"
    for doc in docs:
        if doc.get("type") not in ("impression", "click"):
            continue
        if since is None or _at_or_after(doc.get("timestamp"), since):
            attribution.add(doc)
    report = attribution.report(args.by, args.confidence)
    if not report.arms:
        print(f"no impressions with a recommendation id for tenant '{tenant}' in {source}; "
              "apps log them with context.modelVersion and context.variant")
        return 0
    print(format_report(report, args.by, tenant, source))
    return 0
