"""The HTTP API (FastAPI): Azure Functions runs it through `AsgiFunctionApp`, locally uvicorn."""
# No "from __future__ import annotations" here: FastAPI resolves the dependencies declared
# inside create_app() from live annotations.


import logging
import secrets
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Annotated, Any
from urllib.parse import parse_qsl

import anyio.to_thread
from fastapi import Body, Depends, FastAPI, Header, HTTPException, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, BeforeValidator, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Scope

from shared.ids import (
    ID_PATTERN,
    ID_RULE,
    TENANT_PATTERN,
    TENANT_RULE,
    broken_rule,
    is_valid_id,
    is_valid_tenant,
)
from shared.runtime import Runtime, get_runtime
from shared.serving.ranking import Scored, category_mask
from shared.serving.recommender import (
    Answer,
    DeletionIncomplete,
    ItemList,
    NoActiveModel,
    RegistryUnavailable,
    new_id,
)
from shared.serving.recommender import (
    Query as RecoQuery,
)
from shared.settings import ConfigurationError

log = logging.getLogger(__name__)

MAX_EVENTS_PER_REQUEST = 1000
MAX_LIST_PARAMS = 100  # exclude ids per request
MAX_RECENT = 50  # recent ids per request
MAX_CATEGORIES = 20
CATEGORY_MAX_LEN = 128
JSON = "application/json"


class RankedItemOut(BaseModel):
    itemId: str
    score: float
    rank: int


class RecommendationsOut(BaseModel):
    tenant: str
    userId: str
    modelVersion: str
    source: str = Field(description="cache, store, cold_start or degraded")
    recommendationId: str = Field(description="send it back with impression/click events")
    experiment: str | None = Field(None, description="the running experiment, if any")
    variant: str | None = Field(None, description="the user's variant: log it with impressions")
    items: list[RankedItemOut]


class ItemsOut(BaseModel):
    tenant: str
    modelVersion: str
    source: str = Field(description="model, trending, popular, cold_start or degraded")
    recommendationId: str
    items: list[RankedItemOut]


class ForgetOut(BaseModel):
    tenant: str
    userId: str
    removed: dict[str, int] = Field(
        description="recommendations, events, deadLetters, cacheKeys and onlineState entries "
        "deleted"
    )


class ReadyOut(BaseModel):
    ready: bool
    tenant: str
    backends: dict[str, bool]
    breakers: dict[str, str]
    model: dict[str, Any]
    reasons: list[str]


class EventsAccepted(BaseModel):
    accepted: int


class ErrorOut(BaseModel):
    """Every error answer (but readiness's own 503, a ReadyOut): what is wrong, in a sentence."""

    error: str


K_RULE = "must be an integer from 1 to 100"


def _k_or_0(text: str) -> int:
    """`k` from its query text: ASCII digits only (int() would also take " 3", "+3", "1_0" and
    non-ASCII digits, pydantic also "1.0"), and few of them (int() refuses over 4,300); 0 for
    anything else."""
    return int(text) if len(text) <= 3 and text.isascii() and text.isdigit() else 0


def _k_text(raw: object) -> int:
    """`_k_or_0` for the routes whose parameters FastAPI parses: every route reads k alike."""
    k = _k_or_0(raw) if isinstance(raw, str) else raw if type(raw) is int else 0
    if not 1 <= k <= 100:
        raise ValueError(K_RULE)
    return k


def _json_error(exc: RequestValidationError) -> str | None:
    """A sentence for a request body that is not JSON (FastAPI reports it as a validation error
    whose location is the decoder's position), or None for any other error."""
    for err in exc.errors():
        if err.get("type") == "json_invalid":
            loc = err.get("loc", ())
            at = f" at character {loc[-1]}" if len(loc) > 1 else ""
            detail = str((err.get("ctx") or {}).get("error", "")).lower()
            return f"the body is not valid JSON{at}" + (f": {detail}" if detail else "")
    return None


def _not_sent_as_json(request: Request, exc: RequestValidationError) -> str | None:
    """A body FastAPI did not parse because its Content-Type is not JSON (curl's `-d` sends
    a form type): it then only reported "Input should be a valid list"."""
    content_type = request.headers.get("content-type", "")
    if request.method != "POST" or "json" in content_type.lower():
        return None
    if not any(tuple(err.get("loc", ()))[:1] == ("body",) for err in exc.errors()):
        return None
    sent = f"'{content_type[:60]}'" if content_type else "none"
    return (f"the body is not JSON: send it with Content-Type: application/json (the request's "
            f"Content-Type is {sent})")


def _readable(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = [str(p) for p in err.get("loc", ()) if p not in ("path", "query", "body", "header")]
        where = ".".join(loc)
        msg = str(err.get("msg", "invalid"))
        if "pattern" in msg:  # the rule in words: the id rule, or the tenant rule
            msg = f"must be {broken_rule(err)}"
        elif err.get("type") == "value_error":  # our validators' sentence, without pydantic's
            msg = str((err.get("ctx") or {}).get("error", msg))  # "Value error, " prefix
        parts.append(f"{where}: {msg}" if where else msg)
    return "; ".join(parts)


def _ids(name: str, values: list[str] | None, limit: int = MAX_LIST_PARAMS) -> list[str]:
    """Repeatable id parameters; comma-separated values are accepted too."""
    if not values:
        return []
    out: list[str] = []
    for value in values:
        out.extend(v.strip() for v in value.split(",") if v.strip())
    if len(out) > limit:
        raise HTTPException(422, f"{name}: at most {limit} ids")
    bad = next((v for v in out if not is_valid_id(v)), None)
    if bad is not None:
        raise HTTPException(422, f"{name}: '{bad[:40]}' must be {ID_RULE}")
    return out


def _categories(values: list[str] | None) -> tuple[str, ...]:
    if not values:
        return ()
    out = [v.strip() for value in values for v in value.split(",") if v.strip()]
    if len(out) > MAX_CATEGORIES:
        raise HTTPException(422, f"category: at most {MAX_CATEGORIES} categories")
    if any(len(c) > CATEGORY_MAX_LEN or not c.isprintable() for c in out):
        raise HTTPException(422, f"category: at most {CATEGORY_MAX_LEN} printable characters")
    return tuple(dict.fromkeys(out))


def _valid_id_or_422(name: str, value: str, valid: Callable[[str], bool] = is_valid_id,
                     rule: str = ID_RULE) -> str:
    """`value` if `valid` (the id rule; the tenant rule for tenants), else a 422 stating it."""
    if not valid(value):
        raise HTTPException(422, f"{name}: must be {rule}")
    return value


def _key_matches(given: str | None, expected: str) -> bool:
    """Constant-time comparison; as bytes, since `compare_digest` refuses non-ASCII strings."""
    return bool(given) and secrets.compare_digest(
        str(given).encode("utf-8", "surrogateescape"), expected.encode("utf-8", "surrogateescape")
    )


def _header(scope: Scope, name: bytes) -> str | None:
    """A request header as Starlette's `Headers.get` reads it (the first one; ASGI servers send
    names in lower case), without building the `Headers` object."""
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


def _headers(scope: Scope, name: bytes) -> list[str]:
    """Every value of a request header, in order (`_header` reads the first)."""
    return [str(value.decode("latin-1")) for key, value in scope["headers"] if key == name]


_LIST_PARAMS = frozenset(("exclude", "category", "recent", "tenant"))


def _query(scope: Scope) -> tuple[dict[str, str], dict[str, list[str]]]:
    """The query string read as Starlette's `QueryParams` reads it (the last value of a key for
    `get`, all of them for `getlist`), in one pass and without its multidict."""
    last: dict[str, str] = {}
    lists: dict[str, list[str]] = {}
    raw = scope["query_string"]
    if not raw:
        return last, lists
    text = raw.decode("latin-1")
    if "%" in text or "+" in text:
        pairs = parse_qsl(text, keep_blank_values=True)
    else:  # nothing to unquote: parse_qsl's split, without its per-field unquoting
        pairs = [(*field.split("=", 1), "")[:2] for field in text.split("&") if field]
    for key, value in pairs:
        last[key] = value
        if key in _LIST_PARAMS:
            lists.setdefault(key, []).append(value)
    return last, lists


def _recommendation_query(rt: Runtime, request: Request) -> RecoQuery:
    """The recommendation parameters, validated as the documented schema says (422 with a
    sentence naming the parameter otherwise), and the API key when one is configured.

    Read from the ASGI scope directly: Starlette's `query_params` and `headers` objects cost
    more than the rest of the parsing on this route."""
    scope = request.scope
    expected = rt.settings.api_key
    if expected:
        given = _header(scope, b"x-api-key")
        if not _key_matches(given, expected):
            raise HTTPException(401, "missing or wrong x-api-key header")
    user_id = _valid_id_or_422("user_id", request.path_params["user_id"])
    params, lists = _query(scope)
    k = 10
    raw_k = params.get("k")
    if raw_k is not None:
        k = _k_or_0(raw_k)
        if not 1 <= k <= 100:
            raise HTTPException(422, f"k: {K_RULE}")
    tenant = _named_once("tenant", lists.get("tenant"))
    if tenant is not None:
        _valid_id_or_422("tenant", tenant, is_valid_tenant, TENANT_RULE)
    header_tenant = _named_once("x-tenant", _headers(scope, b"x-tenant"))
    if header_tenant is not None:
        _valid_id_or_422("x-tenant", header_tenant, is_valid_tenant, TENANT_RULE)
    return RecoQuery(
        tenant=_one_tenant(tenant, header_tenant) or rt.settings.default_tenant,
        user_id=user_id,
        k=k,
        exclude=frozenset(_ids("exclude", lists.get("exclude"))),
        categories=_categories(lists.get("category")),
        recent=tuple(_ids("recent", lists.get("recent"), MAX_RECENT)),
    )


def _named_once(name: str, values: list[str] | None) -> str | None:
    """The tenant a repeatable source (`tenant=`, `x-tenant`) names; naming two with it is
    refused like naming two with both (else the query's last or the header's first won: a
    gateway appending its own header was overridden by the caller's)."""
    if not values:
        return None
    other = next((v for v in values if v != values[0]), None)
    if other is not None:
        raise HTTPException(422, f"{name}: names '{values[0][:40]}' and '{other[:40]}'; "
                                 "name one tenant")
    return values[0]


def _tenant_repeats_agree(request: Request) -> None:
    """`_named_once` for the routes whose parameters FastAPI parses (one value each)."""
    _named_once("tenant", request.query_params.getlist("tenant"))
    _named_once("x-tenant", request.headers.getlist("x-tenant"))


def _one_tenant(query: str | None, header: str | None) -> str | None:
    """The tenant the request names, by `tenant=` or `x-tenant`; naming two is refused (a
    gateway that sets the header from the caller's identity must not be overridden)."""
    if query is not None and header is not None and query != header:
        raise HTTPException(422, f"tenant: '{query}' differs from the x-tenant header "
                                 f"'{header}'; name one tenant")
    return query or header


def _of_tenant(n: int, event: dict[str, Any], tenant: str) -> dict[str, Any]:
    own = event.get("tenant")
    if own is None:
        return {**event, "tenant": tenant}
    if own != tenant:
        raise HTTPException(422, f"event {n}: tenant {own!r} differs from the request's tenant "
                                 f"'{tenant}'; nothing was sent")
    return event


def _documented_parameters(signature_only: Callable[..., Any]) -> list[dict[str, Any]]:
    """The OpenAPI parameters FastAPI would generate for a function with this signature."""
    probe = FastAPI()
    probe.get("/{user_id}")(signature_only)
    return list(probe.openapi()["paths"]["/{user_id}"]["get"]["parameters"])


# The tenant parameters of every route, documented with the tenant rule
TenantQuery = Annotated[str | None, Query(pattern=TENANT_PATTERN,
                                          description=f"the tenant: {TENANT_RULE}")]
TenantHeader = Annotated[str | None, Header(pattern=TENANT_PATTERN,
                                            description=f"the tenant: {TENANT_RULE}")]


def _errors(described: dict[int, str]) -> dict[int | str, dict[str, Any]]:
    """Responses documented with the error shape (FastAPI would document its own 422 body,
    `{"detail": [...]}`, which this API never sends)."""
    return {code: {"model": ErrorOut, "description": text} for code, text in described.items()}


REQUEST_ERRORS = _errors({
    401: "missing or wrong x-api-key header (when RECO_API_KEY is set)",
    422: "invalid parameters; `error` says which and why",
})
UNAVAILABLE = _errors({503: "the model registry or the model is not available yet; retry "
                            "after Retry-After seconds"})


def create_app(runtime_factory: Callable[[], Runtime] = get_runtime) -> FastAPI:
    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        """Loads the default tenant's model in the background so the first requests find it."""

        def warm() -> None:
            try:
                rt = runtime_factory()
                rt.recommender.warm(rt.settings.default_tenant)
            except Exception as exc:  # not ready yet: /api/ready says why
                log.warning("warm-up failed: %s", exc)

        threading.Thread(target=warm, name="warm-up", daemon=True).start()
        try:
            # One BLAS thread per request thread: the feature maths is tiny, and BLAS worker
            # threads spinning per call made concurrent requests several times slower.
            from threadpoolctl import threadpool_limits

            threadpool_limits(limits=1)
        except Exception as exc:
            log.warning("BLAS thread limit not applied: %s", exc)
        try:
            # Fewer request threads than anyio's 40: the work is CPU-bound under the GIL, and
            # a shorter run queue keeps the tail latency down.
            limiter = anyio.to_thread.current_default_thread_limiter()
            limiter.total_tokens = runtime_factory().settings.max_threads
        except Exception as exc:
            log.warning("thread limit not applied: %s", exc)
        yield

    app = FastAPI(
        title="Recommender API",
        version="1",
        description="Personalised top-k recommendations, served from Redis / Cosmos DB.",
        lifespan=lifespan,
    )

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        not_json = _json_error(exc) or _not_sent_as_json(request, exc)
        if not_json is not None:  # the documented 400, not a 422 naming a field "1"
            return JSONResponse(status_code=400, content={"error": not_json})
        return JSONResponse(status_code=422, content={"error": _readable(exc)})

    @app.exception_handler(ConfigurationError)
    async def _configuration(_: Request, exc: ConfigurationError) -> JSONResponse:
        """A setting the process cannot run with: every route but health says which (503,
        not a 500), and the next request tries again once it is fixed."""
        log.error("%s", exc)
        return JSONResponse(status_code=503, content={"error": str(exc)},
                            headers={"Retry-After": "30"})

    # Starlette's class: its router raises it for unknown routes (404) and methods (405)
    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(status_code=exc.status_code, content={"error": exc.detail},
                            headers=exc.headers)

    # Dependencies are async: they do no I/O, and sync ones would each cost a thread hop.
    async def runtime() -> Runtime:
        return runtime_factory()

    async def check_key(
        rt: Annotated[Runtime, Depends(runtime)],
        x_api_key: Annotated[str | None, Header()] = None,
    ) -> None:
        """Locally, an optional key; in Azure the Functions host enforces the function key."""
        expected = rt.settings.api_key
        if expected and not _key_matches(x_api_key, expected):
            raise HTTPException(401, "missing or wrong x-api-key header")

    async def tenant_of(
        rt: Annotated[Runtime, Depends(runtime)],
        request: Request,
        tenant: TenantQuery = None,
        x_tenant: TenantHeader = None,
    ) -> str:
        _tenant_repeats_agree(request)
        return _one_tenant(tenant, x_tenant) or rt.settings.default_tenant

    # Limits the routes enforce themselves (k's validator, `_ids`, `_categories`), stated in
    # the schema too; `ge`/`le` beside a BeforeValidator would reach it as unknown keywords.
    K = Annotated[
        int, BeforeValidator(_k_text),
        Query(description="how many items (1-100)",
              json_schema_extra={"minimum": 1, "maximum": 100}),
    ]
    Exclude = Annotated[
        list[str] | None,
        Query(description=f"item ids never to return (repeatable or a,b; at most "
                          f"{MAX_LIST_PARAMS} ids, each {ID_RULE})",
              json_schema_extra={"maxItems": MAX_LIST_PARAMS}),
    ]
    Category = Annotated[
        list[str] | None,
        Query(description=f"only items in any of these categories (repeatable or a,b; at most "
                          f"{MAX_CATEGORIES}, each up to {CATEGORY_MAX_LEN} printable "
                          "characters)",
              json_schema_extra={"maxItems": MAX_CATEGORIES}),
    ]
    Recent = Annotated[
        list[str] | None,
        Query(description=f"the session's recent item ids, most recent first (re-ranker "
                          f"context; repeatable or a,b; at most {MAX_RECENT} ids, each {ID_RULE})",
              json_schema_extra={"maxItems": MAX_RECENT}),
    ]
    not_published = {**_errors({404: "the tenant has no published model"}), **UNAVAILABLE,
                     **REQUEST_ERRORS}

    def _model_errors(exc: Exception) -> HTTPException:
        if isinstance(exc, NoActiveModel):
            return HTTPException(404, str(exc))
        log.warning("model registry: %s", exc)  # the detail may name hosts: server side only
        return HTTPException(503, "the model registry is unavailable; retry shortly",
                             headers={"Retry-After": "5"})

    def _items_response(produce: Callable[[], ItemList]) -> Response:
        """An item list as JSON; a tenant without a model is a 404, an unreadable registry 503."""
        try:
            out = produce()
        except (NoActiveModel, RegistryUnavailable) as exc:
            raise _model_errors(exc) from None
        return Response(out.to_json(), media_type=JSON)

    @app.get("/api/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    # Liveness needs no key; readiness does: it says which tenants exist, their versions and
    # the state of every backend.
    @app.get("/api/ready", response_model=ReadyOut, dependencies=[Depends(check_key)],
             responses={503: {"description": "not ready; `reasons` says why"},
                        **_errors({404: "a tenant other than the default has no model"}),
                        **REQUEST_ERRORS})
    def ready(rt: Annotated[Runtime, Depends(runtime)],
              tenant: Annotated[str, Depends(tenant_of)]) -> JSONResponse:
        """Backends reachable and the tenant's active model loaded (its version, age); the
        default tenant unless `tenant=` or `x-tenant` names another. The default tenant
        without a model is "not ready" (503); another tenant without one is unknown (404)."""
        ok, details, unknown = rt.recommender.readiness(tenant)
        named = tenant != rt.settings.default_tenant
        if named and unknown and all(details["backends"].values()):
            raise HTTPException(404, f"tenant '{tenant}' has no published model")
        return JSONResponse(status_code=200 if ok else 503, content={"ready": ok, **details})

    def recommendations_doc(
        user_id: Annotated[str, Path(pattern=ID_PATTERN)],
        k: K = 10,
        exclude: Exclude = None,
        category: Category = None,
        recent: Recent = None,
        tenant: TenantQuery = None,
        x_api_key: Annotated[str | None, Header()] = None,
        x_tenant: TenantHeader = None,
    ) -> None:
        """Only the signature: the parameters the hot route documents (and parses itself)."""

    @app.get(
        "/api/recommendations/{user_id}",
        response_model=RecommendationsOut,
        responses=not_published,
        openapi_extra={"parameters": _documented_parameters(recommendations_doc)},
    )
    async def recommendations(request: Request) -> Response:
        """Top `k` for the user: re-ranked stored candidates, filtered, diversified.

        The hot path: parameters are parsed here rather than by FastAPI's dependency machinery
        (documented above all the same), the answer is serialised once with orjson and not
        validated against the response model, and a cache hit never leaves the event loop.
        """
        rt = runtime_factory()
        q = _recommendation_query(rt, request)
        try:
            answer = await rt.recommender.recommend_async(q)
        except (NoActiveModel, RegistryUnavailable) as exc:
            raise _model_errors(exc) from None
        except Exception:
            log.exception("recommendation failed; answering with the popular list")
            answer = _last_resort(rt, q)
        return Response(answer.to_json(), media_type=JSON)

    def _last_resort(rt: Runtime, q: RecoQuery) -> Answer:
        """The popular list of the loaded version, marked degraded: a valid request never 5xx.

        Plain filters only (the ranking code may be what failed): the request's exclusions,
        its session items and categories, and the tenant's blocked items still hold."""
        data = rt.recommender.models.current(q.tenant)
        if data is None:
            raise HTTPException(503, "no model loaded yet; retry shortly",
                                headers={"Retry-After": "5"})
        skip = q.exclude | rt.recommender.rules.for_tenant(q.tenant).blocked | set(q.recent)
        ids = data.popular_ids
        mask = category_mask(data, data.codes(ids), q.categories)
        picked = [Scored(i, float(score)) for n, (i, score) in enumerate(data.popular)
                  if i not in skip and (mask is None or mask[n])][: q.k]
        return Answer(q.tenant, q.user_id, data.version, "degraded", picked, new_id())

    @app.get(
        "/api/items/{item_id}/similar",
        response_model=ItemsOut,
        dependencies=[Depends(check_key)],
        responses=not_published,
    )
    def similar(
        rt: Annotated[Runtime, Depends(runtime)],
        tenant: Annotated[str, Depends(tenant_of)],
        item_id: Annotated[str, Path(pattern=ID_PATTERN)],
        k: K = 10,
        exclude: Exclude = None,
        category: Category = None,
        user: Annotated[
            str | None,
            Query(pattern=ID_PATTERN, description="also drop what this user bought or disliked"),
        ] = None,
    ) -> Response:
        """Item-to-item neighbours from the model; popular items of the same category
        (source cold_start) when the model has none for this item."""
        return _items_response(lambda: rt.recommender.similar(
            tenant, item_id, k, frozenset(_ids("exclude", exclude)), _categories(category), user,
        ))

    @app.get("/api/popular", response_model=ItemsOut, dependencies=[Depends(check_key)],
             responses=not_published)
    def popular(
        rt: Annotated[Runtime, Depends(runtime)],
        tenant: Annotated[str, Depends(tenant_of)],
        k: K = 10,
        exclude: Exclude = None,
        category: Category = None,
    ) -> Response:
        return _items_response(lambda: rt.recommender.popular(
            tenant, k, frozenset(_ids("exclude", exclude)), _categories(category)
        ))

    @app.get("/api/trending", response_model=ItemsOut, dependencies=[Depends(check_key)],
             responses=not_published)
    def trending(
        rt: Annotated[Runtime, Depends(runtime)],
        tenant: Annotated[str, Depends(tenant_of)],
        k: K = 10,
        exclude: Exclude = None,
        category: Category = None,
    ) -> Response:
        """Recent-window popularity from the feedback stream; popular items until there is some."""
        return _items_response(lambda: rt.recommender.trending(
            tenant, k, frozenset(_ids("exclude", exclude)), _categories(category)
        ))

    @app.delete(
        "/api/users/{user_id}",
        response_model=ForgetOut,
        dependencies=[Depends(check_key)],
        responses={**_errors({503: "a backend failed; the message says what was removed"}),
                   **REQUEST_ERRORS},
    )
    def forget_user(
        rt: Annotated[Runtime, Depends(runtime)],
        tenant: Annotated[str, Depends(tenant_of)],
        user_id: Annotated[str, Path(pattern=ID_PATTERN)],
    ) -> ForgetOut:
        """Removes everything stored about the user: candidate lists of every version, events,
        cache keys and online state. Safe to repeat."""
        try:
            removed = rt.recommender.forget_user(tenant, user_id)
        except DeletionIncomplete as exc:
            log.warning("DELETE /api/users: a backend failed: %s", exc)  # names hosts: not sent
            raise HTTPException(503, "not everything could be removed (a backend is "
                                     f"unavailable); removed so far: {exc.removed_so_far}; "
                                     "retry: what is already removed stays removed",
                                headers={"Retry-After": "5"}) from None
        return ForgetOut(tenant=tenant, userId=user_id, removed=removed)

    @app.post(
        "/api/events",
        response_model=EventsAccepted,
        status_code=202,
        dependencies=[Depends(check_key)],
        responses={**_errors({400: "the body is not JSON",
                              413: "an event is over the Event Hubs batch limit; none was sent",
                              503: "Event Hubs is unavailable; the message says how many events "
                                   "were sent"}),
                   **REQUEST_ERRORS},
    )
    def post_events(
        rt: Annotated[Runtime, Depends(runtime)],
        request: Request,
        events: Annotated[list[dict[str, Any]], Body(max_length=MAX_EVENTS_PER_REQUEST)],
        tenant: TenantQuery = None,
        x_tenant: TenantHeader = None,
    ) -> EventsAccepted:
        """Events are validated by the processor; bad ones are dead-lettered, not refused.

        When the request names a tenant, events without one are that tenant's and an event
        naming another is a 422 (nothing sent); otherwise an event without a tenant is the
        default tenant's. Embedded, the sink runs the trigger's own processing function in
        this request; in Azure it publishes to Event Hubs (batched per user, retried on
        transient errors).
        """
        from shared.stores.errors import BackendError
        from shared.stores.events import EventTooLarge, SendFailed, UnencodableEvent

        _tenant_repeats_agree(request)
        named = _one_tenant(tenant, x_tenant)
        if named is not None:
            events = [_of_tenant(n, e, named) for n, e in enumerate(events)]
        try:
            return EventsAccepted(accepted=rt.sink.send(events))
        except EventTooLarge as exc:
            raise HTTPException(413, f"{exc}; nothing was sent") from None
        except UnencodableEvent as exc:
            raise HTTPException(422, f"{exc}; nothing was sent") from None
        except BackendError as exc:
            log.warning("POST /api/events: %s", exc)  # the detail names hosts: server side only
            sent = exc.sent if isinstance(exc, SendFailed) else 0
            raise HTTPException(503, "events could not be recorded (Event Hubs is unavailable), "
                                     f"retry later; sent before the failure: {sent}") from None

    return app
