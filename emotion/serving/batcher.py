"""Batching across requests: texts of concurrent requests wait in one bounded queue and run
together, up to `max_batch` texts at a time, in one model thread.

A batch starts when it is full or when its oldest text has waited `max_wait` seconds. The
classifier sorts a batch by length (TextClassifier), and a text's scores do not depend on
the texts batched with it (the onnx stage measures that for both graphs), so batching
changes the speed, never the answer. A request that no longer waits (its client went away)
is dropped before its texts run.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np


class Overloaded(Exception):
    """The queue holds `max_queue` texts already: the caller should retry later."""


@dataclass
class _Request:
    texts: Sequence[str]
    done: asyncio.Future
    queued_at: float = field(default_factory=time.monotonic)


class Batcher:
    """Runs `predict` (texts -> an array with a row per text, e.g. logits) on batches of
    queued texts."""

    def __init__(self, predict: Callable[[list[str]], np.ndarray], max_batch: int,
                 max_wait: float, max_queue: int,
                 on_batch: Callable[[int], None] = lambda size: None):
        self.predict, self.max_batch, self.max_wait = predict, max_batch, max_wait
        self.max_queue, self.on_batch = max_queue, on_batch
        self.queued = 0  # texts waiting
        self._waiting: deque[_Request] = deque()
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        """Let the queued requests finish, then stop."""
        while self._waiting:
            await asyncio.sleep(0.01)
        if self._task:
            self._task.cancel()

    async def submit(self, texts: Sequence[str]) -> np.ndarray:
        """The rows of `predict` for `texts`, once their batch has run; Overloaded at once if
        the queue is full."""
        if self.queued + len(texts) > self.max_queue:
            raise Overloaded(f"{self.queued} texts queued (limit {self.max_queue})")
        request = _Request(texts, asyncio.get_running_loop().create_future())
        self._waiting.append(request)
        self.queued += len(texts)
        self._wake.set()
        try:
            return await request.done
        finally:
            if not request.done.done():  # cancelled: its client went away
                request.done.cancel()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._waiting:
                self._wake.clear()
                await self._wake.wait()
            deadline = self._waiting[0].queued_at + self.max_wait
            while self.queued < self.max_batch and time.monotonic() < deadline:
                self._wake.clear()  # set again by the next request
                try:
                    await asyncio.wait_for(self._wake.wait(), deadline - time.monotonic())
                except TimeoutError:
                    break
            batch = self._take()
            if not batch:
                continue
            texts = [text for request in batch for text in request.texts]
            self.on_batch(len(texts))
            try:
                rows = await loop.run_in_executor(None, self.predict, texts)
            except Exception as error:  # these requests get the error; the server goes on
                for request in batch:
                    if not request.done.done():
                        request.done.set_exception(error)
                continue
            start = 0
            for request in batch:
                if not request.done.done():
                    request.done.set_result(rows[start:start + len(request.texts)])
                start += len(request.texts)

    def _take(self) -> list[_Request]:
        """The oldest waiting requests, up to max_batch texts (at least one request);
        requests whose caller stopped waiting are dropped."""
        batch, size = [], 0
        while self._waiting and (not batch or size + len(self._waiting[0].texts)
                                 <= self.max_batch):
            request = self._waiting.popleft()
            self.queued -= len(request.texts)
            if not request.done.cancelled():
                batch.append(request)
                size += len(request.texts)
        return batch
