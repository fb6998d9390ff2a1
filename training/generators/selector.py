"""Pick the model family by catalogue size and memory: dense EASE only when it fits the budget.

EASE inverts an n_items x n_items matrix: memory grows with n^2 and time with n^3, so large
catalogues use sparse item-kNN with ALS instead (both linear in the number of interactions).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import Any

from training.generators import ease
from training.generators.als import ALS
from training.generators.base import CandidateGenerator
from training.generators.ease import EASE
from training.generators.ease_variants import CentredEASE, SessionEASE
from training.generators.item_knn import ItemKNN
from training.generators.low_pass import LowPass
from training.generators.popularity import Popularity

GIB = 1024**3
DEFAULT_MEMORY_BUDGET = 2 * GIB
DEFAULT_MAX_DENSE_ITEMS = 6000  # n^3 inversion stays a few seconds on two cores


@dataclass(frozen=True)
class Plan:
    """Which generators to tune and blend, and why (kept in the model manifest)."""

    members: tuple[str, ...]
    reason: str


def has_implicit() -> bool:
    """ALS needs the `implicit` wheel, which the Function App image does not ship."""
    return importlib.util.find_spec("implicit") is not None


def choose(
    n_items: int,
    memory_budget: int = DEFAULT_MEMORY_BUDGET,
    max_dense_items: int = DEFAULT_MAX_DENSE_ITEMS,
    weighted: bool = False,
    timed: bool = False,
) -> Plan:
    """EASE when the dense fit fits half the memory budget and the size cap, else sparse kNN;
    blended with ALS when `implicit` is installed. With dense EASE, GF-CF's low-pass filter
    joins (large catalogues keep their tuning time for kNN and ALS: with it, the 17k-item
    benchmark's fit went from 8x to 16x ALS's), and the weight-centred and the session EASE
    join when the interactions carry varying weights / timestamps and their item-item matrices
    (kept beside plain EASE's) still fit."""
    need = ease.memory_bytes(n_items)
    als: tuple[str, ...] = ("als",) if has_implicit() else ()
    if n_items <= max_dense_items and need <= memory_budget // 2:
        extras = (("ease_centred",) if weighted else ()) + (("ease_session",) if timed else ())
        kept = 4 * n_items * n_items  # one fitted float32 item-item matrix
        while extras and need + kept * (1 + len(extras)) > memory_budget // 2:
            extras = extras[:-1]
        return Plan(("ease", *als, "low_pass", *extras),
                    f"{n_items} items: dense EASE needs {need / GIB:.2f} GiB")
    return Plan(
        ("item_knn", *als),
        f"{n_items} items: dense EASE would need {need / GIB:.2f} GiB / O(n^3) time; "
        "using sparse kNN",
    )


def make(name: str, params: dict[str, Any]) -> CandidateGenerator:
    """Build a generator by name with keyword parameters."""
    if name == "ease":
        return EASE(**params)
    if name == "ease_centred":
        return CentredEASE(**params)
    if name == "ease_session":
        return SessionEASE(**params)
    if name == "als":
        return ALS(**params)
    if name == "item_knn":
        return ItemKNN(**params)
    if name == "low_pass":
        return LowPass(**params)
    if name == "popularity":
        return Popularity()
    raise ValueError(f"unknown generator {name!r}")
