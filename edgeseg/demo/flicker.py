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
    """Per-pixel majority vote over the last ``window`` masks (ties go to the newest mask's class).

    Works on masks alone, so it fits files whose graph ends in argmax. A vote over N frames lags a
    moving edge by about N/2 frames: keep N small (3..5) on a moving robot.
    """

    def __init__(self, window: int, num_classes: int):
        if window < 1:
            raise DemoError(f"smoothing window {window} must be >= 1 frame (1 = no smoothing)")
        if not 1 <= num_classes <= 65535:
            raise DemoError(f"num_classes {num_classes} must be in 1..65535")
        self.window = window
        self.num_classes = num_classes
        self._masks: deque[np.ndarray] = deque()
        self._votes: np.ndarray | None = None  # (num_classes, H*W) counts over the masks held

    def reset(self) -> None:
        self._masks.clear()
        self._votes = None

    def __call__(self, mask: np.ndarray) -> np.ndarray:
        if self.window == 1:
            return mask
        if mask.size and int(mask.max()) >= self.num_classes:
            raise DemoError(
                f"mask holds class {int(mask.max())} but the smoother counts {self.num_classes} classes; "
                "give it the model's number of classes"
            )
        if self._votes is not None and self._masks[0].shape != mask.shape:
            self.reset()  # the frame size changed: old votes do not line up
        if self._votes is None:
            self._votes = np.zeros((self.num_classes, mask.size), np.uint16)
        pixels = np.arange(mask.size)
        self._votes[mask.ravel(), pixels] += 1
        self._masks.append(mask)
        if len(self._masks) > self.window:
            self._votes[self._masks.popleft().ravel(), pixels] -= 1
        return self._vote(mask)

    def _vote(self, newest: np.ndarray) -> np.ndarray:
        # Doubling the counts and adding 1 for the newest mask's class breaks ties toward it.
        best = self._votes[0] * 2 + (newest.ravel() == 0)
        winner = np.zeros(newest.size, newest.dtype)
        for k in range(1, self.num_classes):
            score = self._votes[k] * 2 + (newest.ravel() == k)
            better = score > best
            winner[better] = k
            np.maximum(best, score, out=best)
        return winner.reshape(newest.shape)
