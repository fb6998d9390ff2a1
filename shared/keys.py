"""How every record is named in the cache and the store: one place, scoped by tenant."""

from __future__ import annotations

import json
from typing import Any

ACTIVE_DOC_ID = "active"


def user_partition(tenant: str, user_id: str) -> str:
    """Partition key of everything stored about one user: a user's data lives together."""
    return f"{tenant}|{user_id}"


def candidates_doc_id(version: str, user_id: str) -> str:
    return f"{version}|{user_id}"


def candidates_cache_key(tenant: str, version: str, user_id: str) -> str:
    return f"reco:{tenant}:{version}:u:{user_id}"


def version_cache_prefix(tenant: str, version: str) -> str:
    return f"reco:{tenant}:{version}:"


def encode_candidates(items: list[str], scores: list[float]) -> bytes:
    """The cached value: compact JSON, the same fields as the store document."""
    return json.dumps({"items": items, "scores": scores}, separators=(",", ":")).encode()


def decode_candidates(raw: bytes | str | dict[str, Any]) -> tuple[list[str], list[float]]:
    data = raw if isinstance(raw, dict) else json.loads(raw)
    return [str(i) for i in data["items"]], [float(s) for s in data["scores"]]
