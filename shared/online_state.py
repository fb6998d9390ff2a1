"""Online state: what a user just did, and what is trending, updated by feedback and read by
serving on every request.

CONTRACT (implementations: Redis, and an in-process one for the embedded defaults).
All keys of one tenant share the hash tag `{t:<tenant>}` so that a per-tenant Lua script or
pipeline stays in one cluster slot.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

RECENT_LIMIT = 50  # recent items kept per user


def tenant_tag(tenant: str) -> str:
    return f"os:{{t:{tenant}}}"


def user_state_keys(tenant: str, user_id: str) -> dict[str, str]:
    """The Redis keys of one user's online state, by role."""
    base = f"{tenant_tag(tenant)}:u:{user_id}"
    return {
        "recent": f"{base}:recent",  # zset item -> last timestamp, trimmed to RECENT_LIMIT
        "seen": f"{base}:seen",  # set of items viewed/clicked/carted/rated
        "purchased": f"{base}:purchased",  # set
        "disliked": f"{base}:disliked",  # set
    }


@dataclass(frozen=True)
class UserState:
    recent: list[str] = field(default_factory=list)  # most recent first
    seen: frozenset[str] = frozenset()
    purchased: frozenset[str] = frozenset()
    disliked: frozenset[str] = frozenset()

    @property
    def excluded(self) -> frozenset[str]:
        """Items never to recommend again to this user."""
        return self.purchased | self.disliked


class OnlineState(Protocol):
    name: str

    def read_user(self, tenant: str, user_id: str) -> UserState: ...

    def read_user_with(
        self, tenant: str, user_id: str, extra_key: str
    ) -> tuple[UserState, bytes | None]:
        """The user's state and the cache value at `extra_key` (the candidates), one round trip."""
        ...

    def trending(
        self, tenant: str, n: int, category: str | None = None
    ) -> list[tuple[str, float]]: ...

    def forget_user(self, tenant: str, user_id: str) -> int:
        """Deletes the user's online state; returns how many keys/entries were removed."""
        ...

    def ping(self) -> bool: ...
