"""Attribution: impressions joined to the clicks that came from them, for CTR per model version
and per experiment variant.

An impression is one item shown in one answer: it carries the answer's `recommendationId` and
`context: {"modelVersion", "variant"}` (what the serving answer told the app). A click carries
the `recommendationId` too; it is attributed when an impression of the same tenant,
recommendation and item exists. Each impression counts once however often it was logged or
clicked, so replayed or double-tapped events cannot inflate CTR.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any, Literal

GroupBy = Literal["variant", "model"]
NO_VARIANT = "(none)"


def wilson_interval(successes: int, trials: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a proportion: sound at small counts and near 0 or 1, where the
    normal approximation gives nonsense such as negative CTRs."""
    if trials <= 0:
        return (0.0, 1.0)
    if not 0 < confidence < 1:
        raise ValueError("confidence must be between 0 and 1")
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    p = successes / trials
    denom = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denom
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denom
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == trials else min(1.0, centre + half)
    return (low, high)


@dataclass(frozen=True)
class ArmStats:
    """CTR of one model version or variant."""

    name: str
    impressions: int
    clicks: int
    low: float
    high: float

    @property
    def ctr(self) -> float:
        return self.clicks / self.impressions if self.impressions else 0.0


@dataclass(frozen=True)
class AttributionReport:
    arms: list[ArmStats]
    unattributed_clicks: int  # clicks naming a recommendation with no matching impression
    confidence: float


class Attribution:
    """Streams event documents (store, Capture files, ...) and joins them at the end, so clicks
    may come before their impressions; memory grows with impressions, not with all events."""

    def __init__(self, tenant: str | None = None) -> None:
        self._tenant = tenant
        self._shown: dict[tuple[str, str, str], tuple[str, str]] = {}  # -> (model, variant)
        self._clicked: set[tuple[str, str, str]] = set()

    def add(self, doc: Mapping[str, Any]) -> None:
        kind = doc.get("type")
        if kind not in ("impression", "click"):
            return
        tenant = str(doc.get("tenant", "default"))
        rid = doc.get("recommendationId")
        if rid is None or (self._tenant is not None and tenant != self._tenant):
            return
        key = (tenant, str(rid), str(doc.get("itemId")))
        if kind == "click":
            self._clicked.add(key)
            return
        context = doc.get("context") or {}
        model = str(context.get("modelVersion") or "(unknown)")
        variant = str(context.get("variant") or NO_VARIANT)
        self._shown.setdefault(key, (model, variant))

    def add_all(self, docs: Iterable[Mapping[str, Any]]) -> Attribution:
        for doc in docs:
            self.add(doc)
        return self

    def report(self, by: GroupBy = "variant", confidence: float = 0.95) -> AttributionReport:
        index = 1 if by == "variant" else 0
        shown: dict[str, int] = {}
        clicks: dict[str, int] = {}
        for key, arm in self._shown.items():
            name = arm[index]
            shown[name] = shown.get(name, 0) + 1
            if key in self._clicked:
                clicks[name] = clicks.get(name, 0) + 1
        arms = []
        for name in sorted(shown):
            low, high = wilson_interval(clicks.get(name, 0), shown[name], confidence)
            arms.append(ArmStats(name, shown[name], clicks.get(name, 0), low, high))
        unattributed = sum(1 for key in self._clicked if key not in self._shown)
        return AttributionReport(arms, unattributed, confidence)
