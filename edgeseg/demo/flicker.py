"""Temporal stability of masks on video: the flicker rate, and a light smoothing that lowers it.

Flicker rate: the share of pixels whose class changes between consecutive frames. On a static
scene every change is noise, so the rate says directly whether a model is stable enough to drive
on; on a moving scene it also counts real motion, so measure it on a static shot.
"""

from __future__ import annotations

from collections import deque

import numpy as np

from edgeseg.demo.errors import DemoError


def flicker_rate(previous: np.ndarray, current: np.ndarray) -> float:
    """Share of pixels (0..1) whose class differs between two masks of the same size."""
    if previous.shape != current.shape:
        raise DemoError(
            f"masks of different sizes {previous.shape} and {current.shape}; the flicker rate compares "
            "consecutive frames of one video"
        )
    return float(np.count_nonzero(previous != current)) / max(1, current.size)


class FlickerMeter:
    """Accumulates the flicker rate over consecutive masks (the first frame has no predecessor)."""

    def __init__(self) -> None:
        self._previous: np.ndarray | None = None
        self.changed = 0  # pixels that changed class, summed over every consecutive pair
        self.compared = 0  # pixels compared, summed over every consecutive pair
        self.pairs = 0

    def update(self, mask: np.ndarray) -> float | None:
        """Add the next mask; return its flicker against the previous one (None for the first,
        or after the frame size changed)."""
        previous, self._previous = self._previous, mask
        if previous is None or previous.shape != mask.shape:
            return None
        changed = int(np.count_nonzero(previous != mask))
        self.changed += changed
        self.compared += mask.size
        self.pairs += 1
        return changed / max(1, mask.size)

    @property
    def rate(self) -> float | None:
        """Mean share of changed pixels over every pair seen, or None before the second frame."""
        return self.changed / self.compared if self.compared else None


class TemporalSmoother:
    """Per-pixel majority vote over the last ``window`` masks (ties go to the newer mask's class).

    Works on masks alone, so it fits files whose graph ends in argmax. A vote over N frames lags a
    moving edge by about N/2 frames: keep N small (3..5) on a moving robot.
    """

    def __init__(self, window: int):
        if window < 1:
            raise DemoError(f"smoothing window {window} must be >= 1 frame (1 = no smoothing)")
        self.window = window
        self._masks: deque[np.ndarray] = deque(maxlen=window)

    def reset(self) -> None:
        self._masks.clear()

    def __call__(self, mask: np.ndarray) -> np.ndarray:
        if self.window == 1:
            return mask
        if self._masks and self._masks[-1].shape != mask.shape:
            self.reset()  # the frame size changed: old masks do not line up
        self._masks.append(mask)
        return self._vote()

    def _vote(self) -> np.ndarray:
        # Votes per pixel for each held mask's class = how many held masks agree with it there.
        # O(window^2) comparisons of uint8 planes: independent of the number of classes and
        # several times faster than per-class vote counters for the small windows used here.
        masks = list(self._masks)
        newest = masks[-1]
        winner, best = newest.copy(), self._agreeing(newest, masks)
        for older in reversed(masks[:-1]):  # newest first: a strictly larger count is needed to win
            count = self._agreeing(older, masks)
            better = count > best
            winner[better] = older[better]
            np.maximum(best, count, out=best)
        return winner

    @staticmethod
    def _agreeing(mask: np.ndarray, masks: list[np.ndarray]) -> np.ndarray:
        count = np.zeros(mask.shape, np.uint8)
        for other in masks:
            count += mask == other
        return count
