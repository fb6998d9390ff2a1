"""How every record is named in the cache and the store: one place, scoped by tenant."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

ACTIVE_DOC_ID = "active"
# First bytes of a cached value holding item codes (JSON never starts with a NUL byte).
CODES_MAGIC = b"\x00rc1"


def user_partition(tenant: str, user_id: str) -> str:
    """Partition key of everything stored about one user: a user's data lives together."""
    return f"{tenant}|{user_id}"


def candidates_doc_id(version: str, user_id: str) -> str:
    return f"{version}|{user_id}"


def candidates_cache_key(tenant: str, version: str, user_id: str) -> str:
    """Unambiguous because neither a tenant id (shared/ids.py) nor a version id has ':'."""
    return f"reco:{tenant}:{version}:u:{user_id}"


def version_cache_prefix(tenant: str, version: str) -> str:
    """Every key of one version of one tenant, and no other tenant's (tenant ids have no ':')."""
    return f"reco:{tenant}:{version}:"


def encode_candidates(items: list[str], scores: list[float]) -> bytes:
    """The cached value: compact JSON, the same fields as the store document."""
    return json.dumps({"items": items, "scores": scores}, separators=(",", ":")).encode()


def decode_candidates(raw: bytes | str | dict[str, Any]) -> tuple[list[str], list[float]]:
    data = raw if isinstance(raw, dict) else json.loads(raw)
    return [str(i) for i in data["items"]], [float(s) for s in data["scores"]]


def item_list_digest(item_ids: Sequence[str]) -> str:
    """Names an item list (the code space of cached values) in a version's manifest, so that
    serving decodes codes only against the very list publish encoded them with."""
    joined = "\x00".join(item_ids).encode("utf-8", "surrogatepass")
    return hashlib.blake2b(b"%d\x00%s" % (len(item_ids), joined), digest_size=16).hexdigest()


def encode_candidate_codes(codes: npt.ArrayLike, scores: npt.ArrayLike) -> bytes:
    """The cached value when every candidate is in the version's item list: int32 codes, then
    float32 scores, little-endian. Reading it is two `frombuffer`s: no JSON, no id lookups."""
    c = np.asarray(codes).astype("<i4", copy=False)
    s = np.asarray(scores).astype("<f4", copy=False)
    if c.shape != s.shape or c.ndim != 1:
        raise ValueError("codes and scores must be two lists of the same length")
    return CODES_MAGIC + c.tobytes() + s.tobytes()


def decode_candidate_codes(
    raw: bytes,
) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.float32]] | None:
    """(codes, scores) of a value `encode_candidate_codes` wrote; None for any other value."""
    if not raw.startswith(CODES_MAGIC):
        return None
    n, rest = divmod(len(raw) - len(CODES_MAGIC), 8)
    if rest:
        raise ValueError(f"a candidate-codes value of {len(raw)} bytes is truncated")
    start = len(CODES_MAGIC)
    return (np.frombuffer(raw, "<i4", n, start), np.frombuffer(raw, "<f4", n, start + 4 * n))
