"""The output of any training run, before it becomes an artifact."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt


@dataclass
class TrainedModel:
    """Everything a published version needs; codes index into user_ids / item_ids.

    top_items[u] holds candidate item codes for user u, best first, seen items removed,
    padded with -1; top_scores holds the generator score for each.
    """

    generator: str
    parameters: dict[str, Any]
    user_ids: npt.NDArray[np.str_]
    item_ids: npt.NDArray[np.str_]
    top_items: npt.NDArray[np.int32]
    top_scores: npt.NDArray[np.float32]
    popularity: npt.NDArray[np.float32]  # interaction count per item code
    metrics: dict[str, float] = field(default_factory=dict)
    item_metadata: dict[str, dict[str, Any]] = field(default_factory=dict)  # item id -> fields
    reranker_onnx: bytes | None = None
    features: list[str] = field(default_factory=list)
    extra_files: dict[str, bytes] = field(default_factory=dict)  # name -> content, kept as is

    def popular_items(self, n: int) -> list[tuple[str, float]]:
        order = np.argsort(-self.popularity, kind="stable")[:n]
        return [(str(self.item_ids[i]), float(self.popularity[i])) for i in order]

    def candidates_for(self, user_code: int) -> list[tuple[str, float]]:
        row = self.top_items[user_code]
        keep = row >= 0
        return [
            (str(self.item_ids[i]), float(s))
            for i, s in zip(row[keep], self.top_scores[user_code][keep], strict=True)
        ]
