"""Azure Functions entry point (Python v2 model): every trigger is registered on one object.

The HTTP API is the FastAPI app; the Event Hub and timer handlers are thin calls into
`shared/` and `training/`, which know nothing of Azure Functions.
"""

from __future__ import annotations

import logging

import azure.functions as func

from shared.feedback.process import process_batch
from shared.runtime import get_runtime
from shared.serving.api import create_app
from shared.telemetry import configure_telemetry

configure_telemetry()

app = func.AsgiFunctionApp(app=create_app(), http_auth_level=func.AuthLevel.FUNCTION)


@app.function_name("feedback")
@app.event_hub_message_trigger(
    arg_name="events",
    connection="EventHubConnection",
    event_hub_name="%EVENTHUB_NAME%",
    cardinality=func.Cardinality.MANY,
)
def feedback(events: list[func.EventHubEvent]) -> None:
    result = process_batch(get_runtime().backends.store, [e.get_body() for e in events])
    logging.info(
        "feedback batch: %d accepted, %d duplicates, %d dead-lettered",
        result.accepted, result.duplicates, len(result.rejected),
    )


@app.function_name("retrain")
@app.timer_trigger(arg_name="timer", schedule="%RETRAIN_SCHEDULE%", use_monitor=True)
def retrain(timer: func.TimerRequest) -> None:
    from training.retrain import retrain_from_events

    runtime = get_runtime()
    if timer.past_due:
        logging.warning("retrain timer is past due; running now")
    retrain_from_events(runtime, runtime.settings.default_tenant)
