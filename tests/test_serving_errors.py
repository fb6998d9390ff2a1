"""Bad input gets a 4xx with a sentence, never a 500; a schema-driven fuzz run finds no 5xx."""

from __future__ import annotations

import os

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import (
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.core.failures import Failure, FailureGroup
from schemathesis.core.result import Ok

from shared.ids import ID_PATTERN, TENANT_PATTERN, TENANT_RULE
from shared.serving.api import create_app
from tests.helpers import client_for
from tests.test_serving_support import make_catalogue, publish_catalogue

LONG = "x" * 129


@pytest.fixture
def catalogue(redis_client, cosmos_endpoint: str, azurite_connection: str):
    return make_catalogue(redis_client, cosmos_endpoint, azurite_connection)


@pytest.mark.parametrize(
    ("url", "headers", "status", "fragment"),
    [
        ("/api/recommendations/u1?k=0", {}, 422, "k"),
        ("/api/recommendations/u1?k=101", {}, 422, "k"),
        ("/api/recommendations/u1?k=-3", {}, 422, "k"),
        ("/api/recommendations/u1?k=%203", {}, 422, "k"),  # int() would take these three
        ("/api/recommendations/u1?k=1_0", {}, 422, "k"),
        ("/api/recommendations/u1?k=%EF%BC%93", {}, 422, "k"),  # a fullwidth 3
        ("/api/recommendations/u1?k=" + "1" * 5000, {}, 422, "k"),
        ("/api/recommendations/bad%20id", {}, 422, "user_id"),
        (f"/api/recommendations/{LONG}", {}, 422, "user_id"),
        ("/api/recommendations/u1?exclude=ok,no%20way", {}, 422, "exclude"),
        ("/api/recommendations/u1?recent=%2Fetc", {}, 422, "recent"),
        (f"/api/recommendations/u1?category={'c' * 200}", {}, 422, "category"),
        ("/api/recommendations/u1?tenant=no%20such", {}, 422, "tenant"),
        # a trailing newline: Python's "$" matches before it, the id rule does not allow it
        ("/api/recommendations/u1%0A", {}, 422, "user_id"),
        ("/api/recommendations/u1?tenant=default%0A", {}, 422, "tenant"),
        ("/api/recommendations/u1", {"x-tenant": "bad tenant"}, 422, "x-tenant"),
        ("/api/recommendations/u1?tenant=nobody", {}, 404, "no model has been published"),
        ("/api/items/bad%20item/similar", {}, 422, "item_id"),
        ("/api/items/i01/similar?k=500", {}, 422, "k"),
        ("/api/items/i01/similar?tenant=nobody", {}, 404, "nobody"),
        ("/api/popular?k=0", {}, 422, "k"),
        ("/api/popular?tenant=nobody", {}, 404, "nobody"),
        ("/api/trending?k=1000", {}, 422, "k"),
        # every route reads k as the recommendations route does (pydantic took these)
        ("/api/popular?k=1.0", {}, 422, "k: must be an integer from 1 to 100"),
        ("/api/trending?k=%2B3", {}, 422, "k: must be an integer from 1 to 100"),
        ("/api/items/i01/similar?k=1_0", {}, 422, "k: must be an integer from 1 to 100"),
        ("/api/popular?k=%203", {}, 422, "k: must be an integer from 1 to 100"),
        ("/api/no-such-route", {}, 404, "Not Found"),  # the router's own errors, same shape
    ],
)
def test_bad_requests_get_4xx_with_a_readable_message(
    catalogue, url: str, headers: dict[str, str], status: int, fragment: str
) -> None:
    runtime, _ = catalogue
    response = client_for(runtime).get(url, headers=headers)
    assert response.status_code == status, response.text
    message = response.json()["error"]
    assert fragment in message
    assert "Traceback" not in message


@pytest.mark.parametrize(("method", "url", "headers"), [
    ("GET", "/api/recommendations/u1?tenant=nobody&tenant=default", []),
    ("GET", "/api/recommendations/u1", [("x-tenant", "nobody"), ("x-tenant", "default")]),
    ("GET", "/api/popular?tenant=default&tenant=nobody", []),
    ("GET", "/api/ready", [("x-tenant", "default"), ("x-tenant", "nobody")]),
    ("DELETE", "/api/users/u1", [("x-tenant", "default"), ("x-tenant", "nobody")]),
    ("DELETE", "/api/users/u1?tenant=nobody&tenant=default", []),
    ("POST", "/api/events?tenant=default&tenant=nobody", []),
])
def test_a_tenant_named_twice_by_one_parameter_is_a_422(
    catalogue, method: str, url: str, headers: list[tuple[str, str]],
) -> None:
    """Naming two tenants with `tenant=` and `x-tenant` is refused; naming two with one of
    them answered for the query's last or the header's first (a gateway appending its own
    x-tenant after the caller's was overridden by the caller's)."""
    runtime, _ = catalogue
    response = client_for(runtime).request(method, url, headers=headers, json=[])
    assert response.status_code == 422, response.text
    assert response.json()["error"].endswith("; name one tenant")
    assert runtime.backends.store.query_partition("recommendations", "default|u1") != []


@pytest.mark.parametrize(("method", "url", "headers"), [
    ("GET", "/api/recommendations/u1?tenant=shop:v1", {}),  # the hot path parses its own
    ("GET", "/api/recommendations/u1", {"x-tenant": "shop:v1"}),
    ("GET", "/api/items/i01/similar?tenant=shop:v1", {}),
    ("GET", "/api/popular", {"x-tenant": "shop:v1"}),
    ("GET", "/api/trending?tenant=shop:v1", {}),
    ("GET", "/api/ready?tenant=shop:v1", {}),
    ("DELETE", "/api/users/u1?tenant=shop:v1", {}),
    ("POST", "/api/events", {"x-tenant": "shop:v1"}),
])
def test_a_tenant_with_a_colon_is_a_422_stating_the_tenant_rule(
    catalogue, method: str, url: str, headers: dict[str, str],
) -> None:
    """Tenant "shop:v1" was served and cached under `reco:shop:v1:...`, the keys tenant
    "shop" deletes when it expires version "v1"; user and item ids keep their ':'."""
    runtime, _ = catalogue
    client = client_for(runtime)
    response = client.request(method, url, headers=headers, json=[])
    name = "x-tenant" if headers else "tenant"
    assert response.status_code == 422, response.text
    assert response.json() == {"error": f"{name}: must be {TENANT_RULE}"}
    assert client.get("/api/recommendations/shop:v1?exclude=i:1").status_code == 200


def test_the_schema_shows_the_tenant_rule_on_every_tenant_parameter() -> None:
    spec = create_app().openapi()
    patterns = {}
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            for p in operation.get("parameters", []):
                schemas = p["schema"].get("anyOf", [p["schema"]])  # optional: string or null
                patterns[(method, path, p["name"])] = next(
                    (s.get("pattern") for s in schemas if s.get("type") == "string"), None)
    tenants = {key: pattern for key, pattern in patterns.items()
               if key[2] in ("tenant", "x-tenant")}
    assert len(tenants) == 2 * 7 and set(tenants.values()) == {TENANT_PATTERN}
    assert patterns["get", "/api/recommendations/{user_id}", "user_id"] == ID_PATTERN


def test_too_many_excluded_ids_are_refused(catalogue) -> None:
    runtime, _ = catalogue
    query = "&".join(f"exclude=i{n}" for n in range(101))
    response = client_for(runtime).get(f"/api/recommendations/u1?{query}")
    assert response.status_code == 422
    assert "at most 100" in response.json()["error"]


@pytest.mark.parametrize(("route", "name", "limit"), [
    ("/api/recommendations/u1", "exclude", 100), ("/api/recommendations/u1", "recent", 50),
    ("/api/recommendations/u1", "category", 20), ("/api/popular", "exclude", 100),
    ("/api/trending", "category", 20), ("/api/items/i1/similar", "exclude", 100),
])
def test_the_schema_states_the_list_limits_the_routes_enforce(
    catalogue, route: str, name: str, limit: int,
) -> None:
    runtime, _ = catalogue
    client = client_for(runtime)
    spec = create_app(lambda: runtime).openapi()
    template = {"/api/recommendations/u1": "/api/recommendations/{user_id}",
                "/api/items/i1/similar": "/api/items/{item_id}/similar"}.get(route, route)
    params = {p["name"]: p["schema"] for p in spec["paths"][template]["get"]["parameters"]}
    assert params[name]["maxItems"] == limit
    assert (params["k"]["minimum"], params["k"]["maximum"]) == (1, 100)
    at_limit = "&".join(f"{name}=i{n}" for n in range(limit))
    assert client.get(f"{route}?{at_limit}").status_code == 200
    response = client.get(f"{route}?{at_limit}&{name}=i{limit}")
    assert response.status_code == 422 and f"at most {limit}" in response.json()["error"]


def test_a_method_a_route_does_not_take_is_a_405_in_the_error_shape(catalogue) -> None:
    runtime, _ = catalogue
    response = client_for(runtime).put("/api/recommendations/u1")
    assert response.status_code == 405 and response.json() == {"error": "Method Not Allowed"}
    assert "GET" in response.headers["allow"]


def test_deleting_a_malformed_user_id_is_refused(catalogue) -> None:
    runtime, _ = catalogue
    response = client_for(runtime).delete("/api/users/no%20such%20user")
    assert response.status_code == 422 and "user_id" in response.json()["error"]


def test_ready_reports_version_and_age(catalogue) -> None:
    runtime, version = catalogue
    runtime.recommender.warm("default")
    body = client_for(runtime).get("/api/ready").json()
    assert body["ready"] is True, body["reasons"]
    assert body["model"]["activeVersion"] == version
    assert body["model"]["ageSeconds"] >= 0
    assert body["backends"] == {"cache": True, "store": True, "artifacts": True,
                                "onlineState": True}


def test_ready_answers_for_the_tenant_the_request_names(catalogue) -> None:
    runtime, _ = catalogue
    runtime.recommender.warm("default")
    client = client_for(runtime)
    assert client.get("/api/ready?tenant=default").json()["ready"] is True
    assert client.get("/api/ready?tenant=default&tenant=default").json()["ready"] is True
    for response in (client.get("/api/ready?tenant=nobody"),
                     client.get("/api/ready", headers={"x-tenant": "nobody"})):
        assert response.status_code == 404
        assert response.json() == {"error": "tenant 'nobody' has no published model"}


def test_every_error_answer_is_documented_in_the_one_error_shape() -> None:
    """FastAPI documented its own 422 body (`{"detail": [...]}`) on every route but one, and
    no 401 at all: generated clients expected a shape this API never sends."""
    spec = create_app().openapi()
    assert "HTTPValidationError" not in spec["components"]["schemas"]
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            errors = {code: r for code, r in operation["responses"].items() if int(code) >= 400}
            if path != "/api/health":
                assert {"401", "422"} <= set(errors), (method, path)
            for code, response in errors.items():
                if (path, code) == ("/api/ready", "503"):
                    continue  # readiness says why in its own body
                assert response["content"]["application/json"]["schema"] == {
                    "$ref": "#/components/schemas/ErrorOut"}, (method, path, code)


# Examples per operation and generation mode; RECO_FUZZ_EXAMPLES raises it for a longer run.
FUZZ_EXAMPLES = int(os.environ.get("RECO_FUZZ_EXAMPLES", "25"))


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE],
                         ids=lambda m: m.value)
def test_schema_fuzzing_finds_no_server_errors(catalogue, mode: GenerationMode) -> None:
    """Cases valid by the schema (positive) and cases with parameters broken against it
    (negative: wrong types, patterns, lengths, missing or odd headers) both get a documented
    status and body, never a 5xx. Schemathesis's "invalid data was accepted" check is not
    used: a query string carries only text, so its "boolean" `true` or "number" `0` reaches
    the route as the valid id "true" or "0"."""
    runtime, _ = catalogue
    runtime.recommender.warm("default")
    schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(lambda: runtime))
    checks = [not_a_server_error, status_code_conformance, response_schema_conformance]
    failures: list[str] = []
    calls: list[int] = []
    operations = 0
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), result
        operation = result.ok()
        operations += 1
        if mode is GenerationMode.NEGATIVE and not any(
                len(group) for group in (operation.path_parameters, operation.query,
                                         operation.headers, operation.body)):
            continue  # nothing to break (health, ready without its key)

        @settings(max_examples=FUZZ_EXAMPLES, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy(generation_mode=mode))
        def run(case: schemathesis.Case) -> None:
            response = case.call()
            calls.append(response.status_code)
            try:  # no 5xx, and every answer's status and body as the schema documents them
                case.validate_response(response, checks=checks)
            except (Failure, FailureGroup) as exc:  # one failure, or a group of them
                failures.append(f"{case.method} {case.formatted_path} {case.query} "
                                f"{case.headers} -> {response.status_code} "
                                f"{response.text[:200]}: {str(exc)[:300]}")

        run()
    assert operations >= 7 and len(calls) >= 5 * operations
    assert not any(code >= 500 for code in calls)
    assert failures == []


def test_ready_does_not_answer_with_the_backends_own_error(
    catalogue, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A store error names its host (`HTTPConnection(host=..., port=...)`): the other routes
    keep it in the log, readiness put it in `reasons`."""
    from shared.stores.errors import BackendError

    runtime, _ = catalogue

    def unreachable(*_: object) -> None:
        raise BackendError("cosmos read failed: HTTPConnection(host='acct.documents.azure.com',"
                           " port=443): Failed to establish a new connection")

    monkeypatch.setattr(runtime.backends.store, "read", unreachable)
    response = client_for(runtime).get("/api/ready")  # this process never read the pointer
    assert response.status_code == 503
    reasons = response.json()["reasons"]
    assert ("the active model of tenant 'default' cannot be read (the store is unavailable)"
            in reasons)
    assert not [r for r in reasons if "acct.documents" in r], reasons


def test_ready_does_not_call_a_tenant_unknown_when_its_pointer_cannot_be_read(
    catalogue, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The ping passes (or bypasses an open breaker) while the pointer read fails: readiness
    answered 404 "has no published model" for a tenant that has one."""
    from shared.stores.errors import BackendError

    runtime, _ = catalogue
    publish_catalogue(runtime, tenant="shop")

    def throttled(*_: object) -> None:
        raise BackendError("cosmos read failed: 429 Too Many Requests")

    monkeypatch.setattr(runtime.backends.store, "read", throttled)
    response = client_for(runtime).get("/api/ready?tenant=shop")
    assert response.status_code == 503, response.text
    assert ("the active model of tenant 'shop' cannot be read (the store is unavailable)"
            in response.json()["reasons"])
