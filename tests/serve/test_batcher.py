"""DynamicBatcher: merging under the token budget, backpressure, errors, draining on close."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from embtune.serve.batcher import DynamicBatcher, Overloaded, ShuttingDown


class Recorder:
    """An encode function that records the texts of each call and returns row i = [len(text)]."""

    def __init__(self, gate: threading.Event | None = None) -> None:
        self.calls: list[list[str]] = []
        self.gate = gate

    def __call__(self, texts: list[str]) -> np.ndarray:
        if self.gate is not None:
            self.gate.wait(10)
        self.calls.append(list(texts))
        return np.array([[float(len(t))] for t in texts], dtype=np.float32)


def _busy(b: DynamicBatcher, gate: threading.Event) -> None:
    """Keep the worker inside an encode call (held at ``gate``) with a first request."""
    b.submit(["blocker"], tokens=1)
    deadline = time.perf_counter() + 5
    while not b._running and time.perf_counter() < deadline:
        time.sleep(0.01)


def test_requests_queued_behind_a_call_are_merged_and_rows_go_back_to_their_request():
    gate = threading.Event()
    enc = Recorder(gate)
    b = DynamicBatcher(enc, max_wait_s=0.2, max_batch_tokens=1000)
    _busy(b, gate)
    futures = [b.submit(["a" * (i + 1)] * (i + 1), tokens=i + 1) for i in range(5)]
    gate.set()
    results = [f.result(5) for f in futures]
    b.close()
    assert [len(c) for c in enc.calls] == [1, 15]  # the blocker, then the five requests in one call
    for i, rows in enumerate(results):
        assert rows.shape == (i + 1, 1) and (rows == i + 1).all()


def test_token_budget_splits_batches():
    gate = threading.Event()
    enc = Recorder(gate)
    b = DynamicBatcher(enc, max_wait_s=0.2, max_batch_tokens=10)
    _busy(b, gate)
    futures = [b.submit(["x"], tokens=4) for _ in range(5)]
    gate.set()
    [f.result(5) for f in futures]
    b.close()
    assert [len(c) for c in enc.calls] == [1, 2, 2, 1]


def test_an_idle_encoder_does_not_wait_for_company():
    enc = Recorder()
    b = DynamicBatcher(enc, max_wait_s=3.0)
    start = time.perf_counter()
    b.submit(["x"], tokens=1).result(10)
    waited = time.perf_counter() - start
    b.close()
    assert waited < 1.5  # not the 3 s max_wait: nothing else was running


def test_a_request_behind_a_running_call_waits_for_company_until_the_deadline():
    gate = threading.Event()
    enc = Recorder(gate)
    b = DynamicBatcher(enc, max_wait_s=0.3, workers=2)
    _busy(b, gate)  # worker 1 is encoding; worker 2 collects
    first = b.submit(["a"], tokens=1)
    time.sleep(0.1)
    second = b.submit(["b"], tokens=1)  # within the first one's 0.3 s wait: same call
    time.sleep(0.4)  # past the deadline: worker 2 holds both (the gate opens only now, so worker 1, done
    gate.set()  # with the blocker, cannot take the second one first)
    first.result(5), second.result(5)
    b.close()
    assert sorted(len(c) for c in enc.calls) == [1, 2]


def test_no_batching_runs_one_call_per_request():
    enc = Recorder()
    b = DynamicBatcher(enc, max_wait_s=0.2, batching=False)
    [f.result(5) for f in [b.submit(["x", "y"], tokens=2) for _ in range(3)]]
    b.close()
    assert [len(c) for c in enc.calls] == [2, 2, 2]


def test_full_queue_raises_overloaded():
    gate = threading.Event()
    b = DynamicBatcher(Recorder(gate), max_wait_s=0.0, max_queue=2)
    first = b.submit(["x"], 1)
    time.sleep(0.1)  # the worker holds the first request and waits on the gate
    b.submit(["x"], 1)
    b.submit(["x"], 1)
    with pytest.raises(Overloaded):
        b.submit(["x"], 1)
    gate.set()
    first.result(5)
    b.close()


def test_an_encode_error_reaches_the_request_and_the_worker_lives_on():
    calls = {"n": 0}

    def flaky(texts):
        calls["n"] += 1
        if calls["n"] == 1:
            raise ValueError("boom")
        return np.zeros((len(texts), 2), dtype=np.float32)

    b = DynamicBatcher(flaky, max_wait_s=0.0)
    with pytest.raises(ValueError, match="boom"):
        b.submit(["x"], 1).result(5)
    assert b.submit(["x"], 1).result(5).shape == (1, 2)
    b.close()


def test_close_finishes_queued_work_then_refuses_new_work():
    gate = threading.Event()
    b = DynamicBatcher(Recorder(gate), max_wait_s=0.0)
    futures = [b.submit(["x"], 1) for _ in range(4)]
    threading.Timer(0.2, gate.set).start()
    b.close()
    assert all(f.result(0).shape == (1, 1) for f in futures)
    with pytest.raises(ShuttingDown):
        b.submit(["x"], 1)


def test_two_workers_keep_two_calls_in_flight_and_close_drains_both():
    gate = threading.Event()
    started: list[float] = []

    def slow(texts: list[str]) -> np.ndarray:
        started.append(time.perf_counter())
        gate.wait(10)
        return np.zeros((len(texts), 1), dtype=np.float32)

    b = DynamicBatcher(slow, batching=False, workers=2)  # one call per request: two requests, two calls
    futures = [b.submit(["x"], 1) for _ in range(2)]
    deadline = time.perf_counter() + 5
    while len(started) < 2 and time.perf_counter() < deadline:
        time.sleep(0.01)
    assert len(started) == 2  # the second call began while the first was still running
    later = [b.submit(["y"], 1) for _ in range(3)]
    gate.set()
    b.close()
    assert all(f.result(5).shape == (1, 1) for f in futures + later)
