"""Azure Functions entry point (Python v2 model): every trigger is registered on one object.

The HTTP API is the FastAPI app; the Event Hub and timer handlers are thin calls into
`shared/` and `training/`, which know nothing of Azure Functions.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import azure.functions as func

from shared.feedback.process import process_batch
from shared.runtime import get_runtime
from shared.serving.api import create_app
from shared.telemetry import configure_telemetry

configure_telemetry()

app = func.AsgiFunctionApp(app=create_app(), http_auth_level=func.AuthLevel.FUNCTION)


@app.function_name("feedback")
# A failed batch is retried in place, without limit (-1): the checkpoint moves past a batch only
# once it is applied, so an outage of Cosmos DB or Redis delays feedback but never drops it.
# Every step of process_batch is idempotent, so a retry finishes what a failed attempt started.
@app.retry(strategy="exponential_backoff", max_retry_count="-1",
           minimum_interval="00:00:01", maximum_interval="00:01:00")
@app.event_hub_message_trigger(
    arg_name="events",
    connection="EventHubConnection",
    event_hub_name="%EVENTHUB_NAME%",
    cardinality=func.Cardinality.MANY,
    consumer_group="%EVENTHUB_CONSUMER_GROUP%",
)
def feedback(events: list[func.EventHubEvent]) -> None:
    runtime = get_runtime()
    result = process_batch(
        runtime.backends.store, [e.get_body() for e in events], runtime.online,
        category_of=runtime.recommender.category_of,
        default_tenant=runtime.settings.default_tenant,
        received=[_utc(e.enqueued_time) for e in events],
    )
    logging.info(
        "feedback batch: %d accepted, %d duplicates, %d dead-lettered, %d online updates",
        result.accepted, result.duplicates, len(result.rejected), result.online_applied,
    )


def _utc(when: datetime | None) -> datetime | None:
    """The enqueued time as an aware datetime (the host gives UTC, possibly naive)."""
    if when is None:
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


@app.function_name("retrain")
@app.timer_trigger(arg_name="timer", schedule="%RETRAIN_SCHEDULE%", use_monitor=True)
def retrain(timer: func.TimerRequest) -> None:
    from training.retrain import run_scheduled

    if timer.past_due:
        logging.warning("retrain timer is past due; running now")
    results = run_scheduled(get_runtime())  # each tenant under its lease
    for result in results:
        logging.info(result.message)
    failed = [r.tenant for r in results if r.status == "failed"]
    if failed:  # the invocation shows as failed (the other tenants' runs stand)
        raise RuntimeError(f"retrain failed for tenant(s) {', '.join(failed)}; see the log")
