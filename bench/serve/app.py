"""The API as deployed plus one bare endpoint, for the serving benchmark (same process, same
uvicorn settings, same Redis pool): `uvicorn bench.serve.app:app`."""

from fastapi import Request
from fastapi.responses import Response

from shared.keys import candidates_cache_key
from shared.runtime import get_runtime
from shared.serving.api import create_app

app = create_app()


@app.get("/bench/bare/{user_id}", include_in_schema=False)
async def bare(request: Request) -> Response:
    """The baseline: one Redis GET of the user's stored candidates, bytes returned as they are.

    Built like the real route (async, parameters read from the request, the same asyncio Redis
    pool), so the difference between the two is the recommendation work itself.
    """
    rt = get_runtime()
    tenant = rt.settings.default_tenant
    model = rt.active.known(tenant)
    version = model.version if model is not None else "none"
    key = candidates_cache_key(tenant, version, request.path_params["user_id"])
    raw = await rt.backends.cache.get_async(key)
    return Response(raw or b"{}", media_type="application/json")
