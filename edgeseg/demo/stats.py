"""Latency and frame-rate bookkeeping for live readouts and end-of-run summaries."""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class LatencySummary:
    """Milliseconds over every recorded frame."""

    count: int
    mean_ms: float
    p50_ms: float
    p99_ms: float
    max_ms: float

    @classmethod
    def of(cls, seconds: list[float]) -> LatencySummary:
        if not seconds:
            return cls(0, float("nan"), float("nan"), float("nan"), float("nan"))
        ms = np.asarray(seconds, np.float64) * 1000.0
        p50, p99 = np.percentile(ms, [50, 99])
        return cls(len(ms), float(ms.mean()), float(p50), float(p99), float(ms.max()))

    def as_dict(self) -> dict:
        return {"count": self.count, "mean_ms": self.mean_ms, "p50_ms": self.p50_ms,
                "p99_ms": self.p99_ms, "max_ms": self.max_ms}


class RateMeter:
    """Frames per second over the last ``window`` frames: the live readout of the demo."""

    def __init__(self, window: int = 30):
        self._recent: deque[float] = deque(maxlen=window)

    def tick(self, now: float | None = None) -> None:
        self._recent.append(time.perf_counter() if now is None else now)

    @property
    def fps(self) -> float:
        if len(self._recent) < 2:
            return 0.0
        span = self._recent[-1] - self._recent[0]
        return (len(self._recent) - 1) / span if span > 0 else 0.0
