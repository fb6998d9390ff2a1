"""The Functions bindings the host will read, and the trigger handlers called as the host would.

The Functions host cannot be installed here, so the handlers are invoked with real
`azure.functions` binding objects: the narrowest seam there is.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import azure.functions as func
import pytest
from azure.functions.timer import TimerRequest

from shared.model_registry import active_version_id
from shared.runtime import get_runtime
from shared.settings import get_settings


def _bindings(f: Any) -> list[dict[str, Any]]:
    return list(json.loads(f.get_function_json())["bindings"])


def test_http_api_is_one_asgi_function_with_function_auth(functions: dict[str, Any]) -> None:
    http = [b for f in functions.values() for b in _bindings(f) if b["type"] == "httpTrigger"]
    assert len(http) == 1
    assert http[0]["authLevel"].lower() == "function"
    assert http[0]["route"] == "/{*route}"


def test_event_hub_trigger_binding(functions: dict[str, Any]) -> None:
    (binding,) = _bindings(functions["feedback"])
    assert binding["type"] == "eventHubTrigger"
    assert binding["eventHubName"] == "%EVENTHUB_NAME%"
    assert binding["connection"] == "EventHubConnection"
    assert binding["cardinality"].lower() == "many"


def test_timer_trigger_schedule_comes_from_a_setting(functions: dict[str, Any]) -> None:
    (binding,) = _bindings(functions["retrain"])
    assert binding["type"] == "timerTrigger"
    assert binding["schedule"] == "%RETRAIN_SCHEDULE%"


def _event(i: int, user: str, item: str, kind: str = "purchase") -> func.EventHubEvent:
    body = {
        "eventId": f"e-{i}", "tenant": "default", "userId": user, "itemId": item,
        "type": kind, "timestamp": datetime.now(UTC).isoformat(),
    }
    return func.EventHubEvent(body=json.dumps(body).encode())


def test_event_hub_handler_logs_events_and_timer_retrains_on_them(
    functions: dict[str, Any],
) -> None:
    events = [_event(i, f"user{i % 3}", f"item{i % 5}") for i in range(12)]
    events.append(func.EventHubEvent(body=b"{not json"))
    functions["feedback"].get_user_function()(events)
    store = get_runtime().backends.store
    assert len(list(store.scan("events"))) == 12
    (dead,) = list(store.scan("deadletters"))
    assert "not valid JSON" in dead["reason"] and dead["body"] == "{not json"

    functions["retrain"].get_user_function()(TimerRequest(past_due=False))
    assert active_version_id(store, "default") is not None


def test_a_tenant_whose_retrain_failed_fails_the_timer_invocation_after_the_others_ran(
    functions: dict[str, Any], monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Monitoring sees failed runs (the runbook's stale-model check asks "did it fail")."""
    import training.retrain as retrain
    from shared.stores.errors import BackendError

    functions["feedback"].get_user_function()(
        [_event(i, f"user{i % 3}", f"item{i % 5}") for i in range(12)])
    real = retrain.retrain_tenant

    def store_down_for_b(runtime: Any, tenant: str, *args: Any, **kwargs: Any) -> Any:
        if tenant == "b":
            raise BackendError("cosmos read failed: 503")
        return real(runtime, tenant, *args, **kwargs)

    monkeypatch.setattr(retrain, "retrain_tenant", store_down_for_b)
    monkeypatch.setenv("RETRAIN_TENANTS", "b,default")
    get_settings.cache_clear()
    get_runtime.cache_clear()
    try:
        with pytest.raises(RuntimeError, match=r"retrain failed for tenant\(s\) b; see the"):
            functions["retrain"].get_user_function()(TimerRequest(past_due=False))
        assert active_version_id(get_runtime().backends.store, "default") is not None
    finally:  # the next tests read the settings of the session's app again
        monkeypatch.undo()
        get_settings.cache_clear()
        get_runtime.cache_clear()


def test_the_trigger_judges_future_timestamps_against_the_enqueued_time(
    functions: dict[str, Any],
) -> None:
    """Processed an hour late (a backlog, retries), an event stamped 30 minutes after Event
    Hubs received it is still too far in the future, as Capture readers judge it."""
    enqueued = datetime.now(UTC) - timedelta(hours=1)
    body = {"eventId": "ahead-1", "tenant": "default", "userId": "late", "itemId": "item1",
            "type": "view", "timestamp": (enqueued + timedelta(minutes=30)).isoformat()}
    functions["feedback"].get_user_function()(
        [func.EventHubEvent(body=json.dumps(body).encode(), enqueued_time=enqueued)])
    store = get_runtime().backends.store
    assert store.query_partition("events", "default|late") == []
    dead = [d for d in store.scan("deadletters") if d.get("userId") == "late"]
    assert len(dead) == 1 and "more than 10 minutes in the future" in dead[0]["reason"]


async def test_http_request_through_the_registered_asgi_function(
    functions: dict[str, Any],
) -> None:
    handler = functions["http_app_func"].get_user_function()
    request = func.HttpRequest(
        method="GET", url="http://localhost/api/recommendations/x?k=0", body=b"", headers={},
        route_params={"route": "api/recommendations/x"},
    )
    response = await handler(request, None)
    assert response.status_code == 422
    assert "k" in json.loads(response.get_body())["error"]
    health = func.HttpRequest(method="GET", url="http://localhost/api/health", body=b"",
                              headers={}, route_params={"route": "api/health"})
    response = await handler(health, None)
    assert response.status_code == 200
    assert json.loads(response.get_body()) == {"status": "ok"}


@pytest.mark.parametrize("path", ["api/recommendations/%FF", "api/users/u%C3",
                                  "api/health%ED%A0%80"])
async def test_a_path_that_is_not_utf8_is_a_400_not_a_failed_invocation(
    functions: dict[str, Any], path: str,
) -> None:
    """The library's ASGI bridge decoded the path as strict UTF-8 and raised: a 500 from the
    host for `/api/recommendations/%FF`, where uvicorn answers a 422."""
    handler = functions["http_app_func"].get_user_function()
    request = func.HttpRequest(method="GET", url=f"http://localhost/{path}?k=3", body=b"",
                               headers={}, route_params={"route": path})
    response = await handler(request, None)
    assert response.status_code == 400
    assert json.loads(response.get_body()) == {
        "error": "the URL path is not valid UTF-8 once percent-decoded"}
    ok = func.HttpRequest(method="GET", url="http://localhost/api/health?x=%FF", body=b"",
                          headers={}, route_params={"route": "api/health"})
    assert (await handler(ok, None)).status_code == 200  # the query is the app's to judge


def test_feedback_batches_are_retried_without_limit(functions: dict[str, Any]) -> None:
    """A batch that fails (backend outage) must not be checkpointed past: retry forever."""
    retry = functions["feedback"].get_settings_dict("retry_policy")  # what the worker reports
    assert retry["strategy"] == "exponential_backoff"
    assert retry["max_retry_count"] == "-1"
