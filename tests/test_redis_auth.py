"""Entra ID sign-in to Redis: the token is refreshed before it expires, and Redis accepts it.

The identity platform is the one part with no local stand-in, so the credential is a stub at
the `get_token` seam; the Redis side is a real redis-server with an ACL user.
"""

from __future__ import annotations

import time
from types import SimpleNamespace

import redis

from shared.settings import Settings
from shared.stores import factory
from shared.stores.redis_auth import REFRESH_MARGIN_SECONDS, EntraTokenProvider


class FakeCredential:
    def __init__(self, lifetime: float) -> None:
        self.calls = 0
        self.lifetime = lifetime

    def get_token(self, scope: str) -> SimpleNamespace:
        self.calls += 1
        assert scope == "https://redis.azure.com/.default"
        return SimpleNamespace(token=f"token-{self.calls}", expires_on=time.time() + self.lifetime)


def test_token_is_cached_then_refreshed_near_expiry() -> None:
    long_lived = FakeCredential(lifetime=3600)
    provider = EntraTokenProvider(long_lived, "object-id")
    assert provider.get_credentials() == ("object-id", "token-1")
    assert provider.get_credentials() == ("object-id", "token-1")
    assert long_lived.calls == 1
    expiring = FakeCredential(lifetime=REFRESH_MARGIN_SECONDS - 1)
    provider = EntraTokenProvider(expiring, "object-id")
    provider.get_credentials()
    assert provider.get_credentials() == ("object-id", "token-2")


def test_cache_signs_in_with_the_identity_token(redis_client: redis.Redis, monkeypatch) -> None:
    credential = FakeCredential(lifetime=3600)
    redis_client.execute_command("ACL", "SETUSER", "object-id", "on", ">token-1", "~*", "+@all")
    try:
        monkeypatch.setattr(factory, "_credential", lambda: credential)
        port = int(redis_client.connection_pool.connection_kwargs["port"])
        cache = factory.build_cache(
            Settings(REDIS_HOST="127.0.0.1", REDIS_PORT=port, REDIS_USERNAME="object-id")
        )
        cache.set_many({"k": b"v"})
        assert cache.get("k") == b"v"
        assert credential.calls == 1
    finally:
        redis_client.execute_command("ACL", "DELUSER", "object-id")
