"""Entra ID (managed identity) sign-in for Azure Managed Redis, with token refresh.

The access token is the Redis password and lasts about an hour; every new connection asks this
provider, which hands out the cached token until five minutes before it expires.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from redis.credentials import CredentialProvider

REDIS_SCOPE = "https://redis.azure.com/.default"
REFRESH_MARGIN_SECONDS = 300


class EntraTokenProvider(CredentialProvider):
    def __init__(self, credential: Any, username: str) -> None:
        self._credential = credential
        self._username = username
        self._lock = threading.Lock()
        self._token = ""
        self._expires_on = 0.0

    def _fresh_token(self) -> str:
        with self._lock:
            if time.time() > self._expires_on - REFRESH_MARGIN_SECONDS:
                token = self._credential.get_token(REDIS_SCOPE)
                self._token, self._expires_on = token.token, float(token.expires_on)
            return self._token

    def get_credentials(self) -> tuple[str, str]:
        return self._username, self._fresh_token()

    async def get_credentials_async(self) -> tuple[str, str]:
        # get_token may do network I/O once an hour; a new connection waits for it either way
        return self.get_credentials()
