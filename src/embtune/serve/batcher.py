"""Dynamic batching: concurrent requests merged into token-budgeted encode calls by one worker thread.

Requests wait in a bounded queue (full -> ``Overloaded``, which the server turns into a 503). The worker takes
the oldest request, then keeps adding queued requests until the token budget is reached or ``max_wait_s``
has passed since the first one arrived, and runs one ``encode`` over all their texts (``encode`` sorts them by
length and cuts them into padded batches itself). Each request's rows are handed back through its future.

The wait only pays while another encode call is running (new requests pile up behind it anyway): when no
call is in flight, the worker takes what is queued at that moment and starts at once, so a lone client gets
the latency of one encode per request. Measured (bench/serve_load.py's client, servers started alternately,
3 rounds): 1 client 515-527 -> 616-626 texts/s, 8 and 64 clients level (1,326-1,410 vs 1,310-1,351; 2,000-2,232
vs 1,953-2,206). Waiting only while requests keep arriving within 1.25 ms was no better at 8 clients.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field

import numpy as np


class Overloaded(Exception):
    """The request queue is full; the client should retry later."""


class ShuttingDown(Exception):
    """The server is stopping and takes no new work."""


@dataclass
class Job:
    texts: list[str]
    tokens: int
    future: Future = field(default_factory=Future)
    enqueued: float = field(default_factory=time.perf_counter)


@dataclass
class BatchStats:
    """What the worker reports after each encode call (for /metrics)."""

    requests: int
    texts: int
    tokens: int
    queue_seconds: list[float]
    encode_seconds: float


class DynamicBatcher:
    """Run ``encode(texts) -> (N, D) array`` over merged requests in one background thread.

    Args:
        encode: the function that embeds a list of texts (called only from the worker thread).
        max_batch_tokens: token budget of one merged call (a single larger request still runs alone).
        max_wait_s: how long the first request of a batch may wait for company.
        max_queue: requests waiting at most; more raise ``Overloaded``.
        batching: False runs one encode call per request (the baseline the load test compares against).
        on_batch: called with a BatchStats after every encode call.
        workers: encode calls in flight at once (threads); more than 1 only for an ``encode`` that queues
            overlapping calls itself (``EncodeProcess``: the child finds the next batch waiting).
    """

    def __init__(
        self,
        encode: Callable[[list[str]], np.ndarray],
        *,
        max_batch_tokens: int = 16384,
        max_wait_s: float = 0.005,
        max_queue: int = 256,
        batching: bool = True,
        on_batch: Callable[[BatchStats], None] | None = None,
        workers: int = 1,
    ) -> None:
        self._encode = encode
        self.max_batch_tokens = max_batch_tokens
        self.max_wait_s = max_wait_s
        self.batching = batching
        self._on_batch = on_batch
        self._queue: queue.Queue[Job] = queue.Queue(maxsize=max_queue)
        self._closing = False
        self._running = 0  # encode calls in flight
        self._running_lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, name=f"embtune-batcher-{i}", daemon=True)
                         for i in range(max(1, workers))]
        for thread in self._threads:
            thread.start()

    @property
    def depth(self) -> int:
        return self._queue.qsize()

    def submit(self, texts: list[str], tokens: int) -> Future:
        """Queue one request; its future resolves to a (len(texts), D) float32 array."""
        if self._closing:
            raise ShuttingDown("the server is shutting down")
        job = Job(texts, tokens)
        try:
            self._queue.put_nowait(job)
        except queue.Full:
            raise Overloaded(f"more than {self._queue.maxsize} requests are waiting") from None
        return job.future

    def close(self, timeout: float = 30.0) -> None:
        """Stop taking work, finish what is queued, stop the workers."""
        self._closing = True  # submit refuses from now on; the workers finish the queue, then stop
        deadline = time.perf_counter() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.perf_counter()))
        while True:  # a request submitted just as the workers stopped: run it here
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                return
            self._run_jobs([job])

    def _collect(self, first: Job) -> list[Job]:
        jobs, tokens = [first], first.tokens
        deadline = first.enqueued + self.max_wait_s
        while self.batching and tokens < self.max_batch_tokens:
            try:
                if self._running:  # a call is running: wait for company until the deadline
                    job = self._queue.get(timeout=max(0.0, deadline - time.perf_counter()))
                else:  # the encoder is idle: take only what is already queued
                    job = self._queue.get_nowait()
            except queue.Empty:
                break
            if tokens + job.tokens > self.max_batch_tokens:
                self._run_jobs(jobs)  # the budget is full: run what we have, start over from this job
                jobs, tokens, deadline = [job], job.tokens, job.enqueued + self.max_wait_s
                continue
            jobs.append(job)
            tokens += job.tokens
        return jobs

    def _run(self) -> None:
        while True:
            try:
                first = self._queue.get(timeout=0.1)
            except queue.Empty:
                if self._closing:  # nothing left and nothing more will come
                    return
                continue
            self._run_jobs(self._collect(first))

    def _run_jobs(self, jobs: list[Job]) -> None:
        jobs = [j for j in jobs if j.future.set_running_or_notify_cancel()]
        if not jobs:
            return
        start = time.perf_counter()
        texts = [t for j in jobs for t in j.texts]
        with self._running_lock:
            self._running += 1
        try:
            emb = self._encode(texts)
        except BaseException as exc:  # hand every error to the waiting requests; the worker lives on
            for j in jobs:
                j.future.set_exception(exc)
            return
        finally:
            with self._running_lock:
                self._running -= 1
        done = time.perf_counter()
        row = 0
        for j in jobs:
            j.future.set_result(emb[row : row + len(j.texts)])
            row += len(j.texts)
        if self._on_batch is not None:
            queued = [start - j.enqueued for j in jobs]
            self._on_batch(BatchStats(len(jobs), len(texts), sum(j.tokens for j in jobs), queued, done - start))
