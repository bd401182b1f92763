"""Prometheus-style metrics of the server, in the text exposition format (no client library needed)."""

from __future__ import annotations

import threading
from collections import Counter

from .batcher import BatchStats

_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048)
_SECONDS_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class _Histogram:
    def __init__(self, buckets: tuple[float, ...]) -> None:
        self.buckets = buckets
        self.counts = [0] * len(buckets)
        self.total = 0.0
        self.n = 0

    def observe(self, value: float) -> None:
        for i, edge in enumerate(self.buckets):
            if value <= edge:
                self.counts[i] += 1
        self.total += value
        self.n += 1

    def lines(self, name: str) -> list[str]:
        out = [f'{name}_bucket{{le="{edge}"}} {count}' for edge, count in zip(self.buckets, self.counts, strict=True)]
        out += [f'{name}_bucket{{le="+Inf"}} {self.n}', f"{name}_sum {self.total:.6f}", f"{name}_count {self.n}"]
        return out


class Metrics:
    """Counters and histograms updated by the routes and the batcher; ``render()`` gives /metrics."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: Counter[tuple[str, int]] = Counter()
        self.batch_texts = _Histogram(_BATCH_BUCKETS)
        self.queue_seconds = _Histogram(_SECONDS_BUCKETS)
        self.tokens = 0
        self.texts = 0
        self.encode_seconds = 0.0

    def request(self, route: str, status: int) -> None:
        with self._lock:
            self.requests[(route, status)] += 1

    def batch(self, stats: BatchStats) -> None:
        with self._lock:
            self.batch_texts.observe(stats.texts)
            for q in stats.queue_seconds:
                self.queue_seconds.observe(q)
            self.tokens += stats.tokens
            self.texts += stats.texts
            self.encode_seconds += stats.encode_seconds

    def render(self, queue_depth: int) -> str:
        with self._lock:
            lines = ["# HELP embtune_requests_total HTTP requests by route and status code.",
                     "# TYPE embtune_requests_total counter"]
            for (route, status), n in sorted(self.requests.items()):
                lines.append(f'embtune_requests_total{{route="{route}",status="{status}"}} {n}')
            lines += ["# HELP embtune_batch_texts Texts per encode call (dynamic batches).",
                      "# TYPE embtune_batch_texts histogram", *self.batch_texts.lines("embtune_batch_texts")]
            lines += ["# HELP embtune_queue_seconds Time a request waited before its encode call started.",
                      "# TYPE embtune_queue_seconds histogram", *self.queue_seconds.lines("embtune_queue_seconds")]
            tps = self.tokens / self.encode_seconds if self.encode_seconds > 0 else 0.0
            lines += [
                "# TYPE embtune_tokens_total counter", f"embtune_tokens_total {self.tokens}",
                "# TYPE embtune_texts_total counter", f"embtune_texts_total {self.texts}",
                "# TYPE embtune_encode_seconds_total counter", f"embtune_encode_seconds_total {self.encode_seconds:.6f}",
                "# HELP embtune_tokens_per_second Tokens embedded per second of encode time.",
                "# TYPE embtune_tokens_per_second gauge", f"embtune_tokens_per_second {tps:.1f}",
                "# TYPE embtune_queue_depth gauge", f"embtune_queue_depth {queue_depth}",
            ]
        return "\n".join(lines) + "\n"
