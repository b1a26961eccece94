"""Requests decoded together: a small scheduler for a server with many users and one model.

A decoding step costs much less per shape in a batch than alone (``python -m smart3d bench
sampling``), but requests arrive one by one. ``DecodeBatcher`` gathers the requests that arrive
within ``window_s`` of the first waiting one (up to ``max_batch``), decodes those with the same
settings as one batch on a worker thread, and hands each request its own stream of ``Step``
records (its row of the batch) through a queue of its own. Each shape has its own seed and
generator (``Pipeline.steps`` with one seed per shape), so a request's tokens are the ones it would
get decoded alone, whoever it shared the batch with.

    batcher = DecodeBatcher(pipe)
    for step in batcher.steps(pipe.condition("chair"), seed=3, options=options, user="session-1"):
        ...                                            # this request's steps, as pipe.steps would give
    batcher.close()

A user (any hashable key, e.g. a session id) may have ``max_per_user`` requests waiting or running;
more are refused with ``TooManyRequests``. A request whose consumer stops reading (closes the
iterator) is dropped from its batch; a batch whose requests all left stops decoding.
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass, field, replace
from typing import Hashable, Iterator

import torch

from .pipeline import Condition, Pipeline
from .sampler import SamplingOptions, Step

_END = object()


class TooManyRequests(RuntimeError):
    """A user already has ``max_per_user`` decodings waiting or running."""


@dataclass(eq=False)
class _Request:
    condition: Condition                     # one shape
    seed: int
    options: SamplingOptions
    user: Hashable
    out: queue.Queue = field(default_factory=queue.Queue)
    left: threading.Event = field(default_factory=threading.Event)   # the consumer stopped reading
    released: bool = False                   # its user's slot is free again


def row_of(step: Step, b: int) -> Step:
    """Row ``b`` of a batch's step record, as a one-shape record."""
    one = slice(b, b + 1)
    return replace(step, tokens=step.tokens[one], mask=step.mask[one], committed=step.committed[one],
                   confidence=step.confidence[one], order=step.order[one], entropy=step.entropy[one],
                   preview=None if step.preview is None else step.preview[one])


def _concat(conditions: list[Condition]) -> Condition:
    """One batch condition from one-shape conditions (given tokens where any has them)."""
    labels = torch.cat([c.labels for c in conditions])
    if all(c.known is None for c in conditions):
        return Condition(labels)
    L = next(c.known for c in conditions if c.known is not None).shape[1]
    tokens = torch.cat([torch.zeros(1, L, dtype=torch.long) if c.tokens is None else c.tokens.cpu() for c in conditions])
    known = torch.cat([torch.zeros(1, L, dtype=torch.bool) if c.known is None else c.known.cpu() for c in conditions])
    return Condition(labels, tokens, known)


class DecodeBatcher:
    """Decode concurrent requests together on one worker thread (see the module docstring)."""

    def __init__(self, pipe: Pipeline, window_s: float = 0.05, max_batch: int = 8, max_per_user: int = 2):
        if max_batch < 1 or max_per_user < 1 or window_s < 0:
            raise ValueError("max_batch and max_per_user must be at least 1 and window_s at least 0")
        self.pipe, self.window_s, self.max_batch, self.max_per_user = pipe, window_s, max_batch, max_per_user
        self._waiting: list[_Request] = []
        self._active: dict[Hashable, int] = {}
        self._lock = threading.Condition()
        self._closed = False
        self.batches: list[int] = []             # size of every batch decoded (for benchmarks and tests)
        self._worker = threading.Thread(target=self._work, name="smart3d-decode-batcher", daemon=True)
        self._worker.start()

    # ---- the requests' side -----------------------------------------------------------------

    def steps(self, condition: Condition, seed: int = 0, options: SamplingOptions = SamplingOptions(),
              user: Hashable = None) -> Iterator[Step]:
        """This request's steps (one shape), as ``Pipeline.steps(condition, [seed], options)`` gives them
        decoded alone. Raises ``TooManyRequests`` when ``user`` has ``max_per_user`` requests in flight."""
        if len(condition.labels) != 1:
            raise ValueError(f"a request is one shape, got {len(condition.labels)}")
        options.check()
        request = _Request(condition, int(seed), options, user)
        with self._lock:
            if self._closed:
                raise RuntimeError("the decode batcher is closed")
            if self._active.get(user, 0) >= self.max_per_user:
                raise TooManyRequests(f"{self.max_per_user} decodings of yours are already waiting or running; "
                                      "wait for one to finish")
            self._active[user] = self._active.get(user, 0) + 1
            self._waiting.append(request)
            self._lock.notify_all()
        return self._stream(request)

    def _stream(self, request: _Request) -> Iterator[Step]:
        try:
            while True:
                item = request.out.get()
                if item is _END:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            request.left.set()
            with self._lock:                       # a request that left frees its user's slot at once
                if request in self._waiting:
                    self._waiting.remove(request)
                self._release(request)

    def _release(self, request: _Request) -> None:
        """Free the request's slot of its user (once; call under the lock)."""
        if request.released:
            return
        request.released = True
        n = self._active.get(request.user, 0) - 1
        if n > 0:
            self._active[request.user] = n
        else:
            self._active.pop(request.user, None)

    def close(self, timeout: float | None = 10.0) -> None:
        """Stop taking requests; waiting ones end with an error; the running batch finishes."""
        with self._lock:
            self._closed = True
            for r in self._waiting:
                r.out.put(RuntimeError("the server is shutting down"))
                self._release(r)
            self._waiting.clear()
            self._lock.notify_all()
        self._worker.join(timeout)

    # ---- the worker -------------------------------------------------------------------------

    def _next_batch(self) -> list[_Request] | None:
        """Wait for a request, then up to ``window_s`` for more with the same settings."""
        with self._lock:
            while not self._waiting and not self._closed:
                self._lock.wait()
            if self._closed:
                return None
            deadline = time.monotonic() + self.window_s
            while len(self._waiting) < self.max_batch and not self._closed:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._lock.wait(left)
            if not self._waiting:
                return None if self._closed else []
            first = self._waiting[0].options
            batch = [r for r in self._waiting if r.options == first][: self.max_batch]
            for r in batch:
                self._waiting.remove(r)
            return batch

    def _work(self) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            if batch:
                self._decode(batch)

    def _decode(self, batch: list[_Request]) -> None:
        self.batches.append(len(batch))
        try:
            condition = _concat([r.condition for r in batch])
            for step in self.pipe.steps(condition, [r.seed for r in batch], batch[0].options):
                if all(r.left.is_set() for r in batch):
                    break
                for b, r in enumerate(batch):
                    # a repair round covers the whole batch: a shape not in it gets no record (as alone)
                    if step.round == 0 or bool(step.mask[b].any() or step.committed[b].any()):
                        r.out.put(row_of(step, b))
            for r in batch:
                r.out.put(_END)
        except Exception as e:                     # noqa: BLE001  (every request of the batch hears of it)
            for r in batch:
                r.out.put(e)
        finally:
            with self._lock:
                for r in batch:
                    self._release(r)
