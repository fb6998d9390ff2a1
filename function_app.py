"""Azure Functions entry point (Python v2 model): every trigger is registered on one object.

The HTTP API is the FastAPI app; the Event Hub and timer handlers are thin calls into
`shared/` and `training/`, which know nothing of Azure Functions.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote_to_bytes, urlsplit

import azure.functions as func

from shared.feedback.process import process_batch
from shared.runtime import get_runtime
from shared.serving.api import create_app
from shared.telemetry import configure_telemetry

configure_telemetry()

BAD_PATH = b'{"error":"the URL path is not valid UTF-8 once percent-decoded"}'


def _utf8_path(url: str) -> bool:
    """Whether the URL's path decodes as the library's ASGI bridge decodes it (strict UTF-8)."""
    if "%" not in url:  # nothing percent-encoded: the host's URL text is UTF-8 already
        return True
    try:
        unquote_to_bytes(urlsplit(url).path).decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


class _Utf8PathMiddleware(func.AsgiMiddleware):
    """The ASGI bridge, answering 400 for a path such as `/api/users/%FF`: the library decodes
    the path before the app sees it and raised UnicodeDecodeError, which the host turned into a
    500 (uvicorn decodes it with U+FFFD instead, which the id rule refuses with a 422)."""

    async def handle_async(self, req: func.HttpRequest,
                           context: func.Context | None = None) -> Any:
        if not _utf8_path(req.url):
            return func.HttpResponse(BAD_PATH, status_code=400, mimetype="application/json")
        return await super().handle_async(req, context)


class _AsgiFunctionApp(func.AsgiFunctionApp):
    """`AsgiFunctionApp` whose HTTP function serves through `_Utf8PathMiddleware`."""

    def __init__(self, app: Any, http_auth_level: func.AuthLevel) -> None:
        self._checked = _Utf8PathMiddleware(app)
        super().__init__(app=app, http_auth_level=http_auth_level)

    def _add_http_app(self, http_middleware: Any, function_name: str = "http_app_func") -> None:
        # the base class passes the plain bridge it built; start-up and shutdown use this one
        self.middleware = self._checked
        super()._add_http_app(self._checked, function_name)


app = _AsgiFunctionApp(app=create_app(), http_auth_level=func.AuthLevel.FUNCTION)


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
