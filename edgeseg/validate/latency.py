"""Latency statistics. One ``predict`` yields two numbers from the same call: the whole predict
(resize, normalize, run, argmax, resize back), timed by the caller, and the graph call alone,
which the session records (``SegmentationSession.last_model_call_s``).
"""

from __future__ import annotations

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
