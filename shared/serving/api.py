"""The HTTP API (FastAPI): Azure Functions runs it through `AsgiFunctionApp`, locally uvicorn."""
# No "from __future__ import annotations" here: FastAPI resolves the dependencies declared
# inside create_app() from live annotations.


import secrets
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import Body, Depends, FastAPI, Header, HTTPException, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from shared.ids import ID_PATTERN, ID_RULE
from shared.runtime import Runtime, get_runtime
from shared.serving.recommender import Answer, NoActiveModel

MAX_EVENTS_PER_REQUEST = 1000


class RankedItemOut(BaseModel):
    itemId: str
    score: float
    rank: int


class RecommendationsOut(BaseModel):
    tenant: str
    userId: str
    modelVersion: str
    source: str = Field(description="cache, store, cold_start or degraded")
    recommendationId: str
    items: list[RankedItemOut]


class EventsAccepted(BaseModel):
    accepted: int


def _answer_out(a: Answer) -> RecommendationsOut:
    return RecommendationsOut(
        tenant=a.tenant,
        userId=a.user_id,
        modelVersion=a.model_version,
        source=a.source,
        recommendationId=a.recommendation_id,
        items=[RankedItemOut(itemId=i.item_id, score=i.score, rank=i.rank) for i in a.items],
    )


def _readable(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err.get("loc", ()) if p not in ("path", "query", "body"))
        msg = str(err.get("msg", "invalid"))
        if "pattern" in msg:
            msg = f"must be {ID_RULE}"
        parts.append(f"{where}: {msg}" if where else msg)
    return "; ".join(parts)


def create_app(runtime_factory: Callable[[], Runtime] = get_runtime) -> FastAPI:
    app = FastAPI(
        title="Recommender API",
        version="1",
        description="Personalised top-k recommendations, served from Redis / Cosmos DB.",
    )

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(status_code=422, content={"error": _readable(exc)})

    @app.exception_handler(HTTPException)
    async def _http(_: Request, exc: HTTPException) -> JSONResponse:
        return JSONResponse(status_code=exc.status_code, content={"error": exc.detail})

    def runtime() -> Runtime:
        return runtime_factory()

    def check_key(
        rt: Annotated[Runtime, Depends(runtime)],
        x_api_key: Annotated[str | None, Header()] = None,
    ) -> None:
        """Locally, an optional key; in Azure the Functions host enforces the function key."""
        expected = rt.settings.api_key
        if expected and not (x_api_key and secrets.compare_digest(x_api_key, expected)):
            raise HTTPException(401, "missing or wrong x-api-key header")

    def tenant_of(
        rt: Annotated[Runtime, Depends(runtime)],
        tenant: Annotated[str | None, Query(pattern=ID_PATTERN)] = None,
        x_tenant: Annotated[str | None, Header(pattern=ID_PATTERN)] = None,
    ) -> str:
        return tenant or x_tenant or rt.settings.default_tenant

    @app.get("/api/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get(
        "/api/recommendations/{user_id}",
        response_model=RecommendationsOut,
        dependencies=[Depends(check_key)],
    )
    def recommendations(
        rt: Annotated[Runtime, Depends(runtime)],
        tenant: Annotated[str, Depends(tenant_of)],
        user_id: Annotated[str, Path(pattern=ID_PATTERN)],
        k: Annotated[int, Query(ge=1, le=100)] = 10,
    ) -> RecommendationsOut:
        try:
            answer = rt.recommender.recommend(tenant, user_id, k)
        except NoActiveModel as exc:
            raise HTTPException(404, str(exc)) from None
        return _answer_out(answer)

    @app.post(
        "/api/events",
        response_model=EventsAccepted,
        status_code=202,
        dependencies=[Depends(check_key)],
    )
    def post_events(
        rt: Annotated[Runtime, Depends(runtime)],
        events: Annotated[list[dict[str, Any]], Body(max_length=MAX_EVENTS_PER_REQUEST)],
    ) -> EventsAccepted:
        """Events are validated by the processor; bad ones are dead-lettered, not refused."""
        return EventsAccepted(accepted=rt.sink.send(events))

    return app
