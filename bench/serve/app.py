"""The API as deployed plus one bare endpoint, for the serving benchmark (same process, same
uvicorn settings, same Redis pool): `uvicorn bench.serve.app:app`."""

from fastapi import Path
from fastapi.responses import Response

from shared.keys import candidates_cache_key
from shared.runtime import get_runtime
from shared.serving.api import create_app

app = create_app()


@app.get("/bench/bare/{user_id}", include_in_schema=False)
def bare(user_id: str = Path()) -> Response:
    """The baseline: one Redis GET of the user's stored candidates, bytes returned as they are."""
    rt = get_runtime()
    model = rt.active.known(rt.settings.default_tenant)
    version = model.version if model is not None else "none"
    raw = rt.backends.cache.get(candidates_cache_key(rt.settings.default_tenant, version, user_id))
    return Response(raw or b"{}", media_type="application/json")
