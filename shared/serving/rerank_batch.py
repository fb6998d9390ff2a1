"""Re-ranking the requests of one event-loop turn together.

Under load, many requests get their Redis answer in the same turn of the event loop. Re-ranked
one by one, each pays numpy's and onnxruntime's per-call overhead, most of the cost on ~100
candidates (bench/serve/profile_path.py). Here they queue instead, and one callback at the end
of the turn builds the features of all of them and runs ONNX once per version and list length.
A request alone pays one future more than calling `rerank`. Scores are the ones a request would
get alone: features are computed per request, and trees score each row independently (a test
compares them).
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from shared import telemetry
from shared.serving.model_data import VersionData
from shared.serving.ranking import RerankInput, features_many

log = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float32]
# Requests per batch: larger batches only delay the first answers. (ONNX's cost per row does
# not depend on rows per call: `python -m bench.serve.profile_path --onnx-rows 100,1000`.)
MAX_BATCH = 64


class _Job(NamedTuple):
    data: VersionData
    features: RerankInput
    answer: asyncio.Future[FloatArray]


class RerankBatcher:
    """`await rerank(data, features)`: the re-ranker's scores for one request's candidates."""

    def __init__(self, max_batch: int = MAX_BATCH,
                 clock: Callable[[], float] = time.time) -> None:
        self.max_batch = max_batch
        self._clock = clock  # the "now" of the age features
        # one queue per event loop (test clients run several); flushed at the end of the turn
        self._queues: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, list[_Job]] = (
            weakref.WeakKeyDictionary()
        )

    async def rerank(self, data: VersionData, features: RerankInput) -> FloatArray:
        if data.reranker is None or features.codes.size == 0:
            return features.scores
        loop = asyncio.get_running_loop()
        queue = self._queues.get(loop)
        if queue is None:
            queue = self._queues[loop] = []
        answer: asyncio.Future[FloatArray] = loop.create_future()
        queue.append(_Job(data, features, answer))
        if len(queue) == 1:
            loop.call_soon(self._flush, loop)
        return await answer

    def _flush(self, loop: asyncio.AbstractEventLoop) -> None:
        jobs = self._queues.pop(loop, [])
        groups: dict[tuple[int, int], list[_Job]] = {}
        for job in jobs:
            groups.setdefault((id(job.data), job.features.codes.size), []).append(job)
        now = self._clock()
        for group in groups.values():
            for lo in range(0, len(group), self.max_batch):
                self._score(group[lo : lo + self.max_batch], now)

    @staticmethod
    def _score(jobs: list[_Job], now: float) -> None:
        data = jobs[0].data
        reranker = data.reranker
        assert reranker is not None  # rerank() queues only versions with a re-ranker
        started = time.perf_counter()
        try:
            rows = features_many(data, [j.features for j in jobs], now)
            scores = reranker.score(rows).reshape(len(jobs), -1)
        except Exception as exc:  # each request decides what a failed re-rank means
            for job in jobs:
                if not job.answer.done():
                    job.answer.set_exception(exc)
            return
        elapsed_ms = (time.perf_counter() - started) * 1e3
        for job, row in zip(jobs, scores, strict=True):
            telemetry.reranked(elapsed_ms)
            if not job.answer.done():  # a cancelled request is not waiting any more
                job.answer.set_result(row)
