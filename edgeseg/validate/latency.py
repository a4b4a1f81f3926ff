"""Latency statistics and the timing proxy that splits a predict into its model call.

The proxy wraps a session's backend so that one ``predict`` yields two numbers from the same
call: the whole predict (resize, normalize, run, argmax, resize back) and the graph call alone.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class LatencyStats:
    """Milliseconds over the timed runs (warm-up runs excluded)."""

    p50: float
    p90: float
    p99: float
    mean: float
    min: float
    runs: int

    @classmethod
    def of(cls, seconds: list[float]) -> LatencyStats:
        ms = np.asarray(seconds, np.float64) * 1000.0
        p50, p90, p99 = np.percentile(ms, [50, 90, 99])
        return cls(float(p50), float(p90), float(p99), float(ms.mean()), float(ms.min()), len(ms))

    def as_dict(self) -> dict:
        return {"p50_ms": self.p50, "p90_ms": self.p90, "p99_ms": self.p99, "mean_ms": self.mean,
                "min_ms": self.min, "runs": self.runs}


class TimedBackend:
    """Delegates to a backend and remembers how long its last ``run`` took."""

    def __init__(self, inner):
        self._inner = inner
        self.last_run_s = 0.0

    def run(self, tensor: np.ndarray) -> dict[str, np.ndarray]:
        return self._timed(self._inner.run, tensor)

    def run_borrowed(self, tensor: np.ndarray | None) -> dict[str, np.ndarray]:
        return self._timed(self._inner.run_borrowed, tensor)  # what predict calls on LiteRT

    def _timed(self, call, tensor: np.ndarray | None) -> dict[str, np.ndarray]:
        start = time.perf_counter()
        outputs = call(tensor)
        self.last_run_s = time.perf_counter() - start
        return outputs

    def __getattr__(self, name: str):
        return getattr(self._inner, name)
