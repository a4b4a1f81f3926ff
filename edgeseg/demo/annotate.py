"""Drawing on demo frames: the class legend and the FPS / latency readout (OpenCV, BGR frames)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from edgeseg.demo.sources import import_cv2

# Legend rows beyond this many would cover the picture; the classes present come first.
MAX_LEGEND_ROWS = 12
_FONT_SCALE_AT_480 = 0.45  # font scale for a 480-line frame; scaled with the frame height
_PANEL_ALPHA = 0.6  # darkness of the boxes behind text, so it reads on any scene


def _font_scale(height: int) -> float:
    return max(0.3, _FONT_SCALE_AT_480 * height / 480)


def _darken(frame: np.ndarray, x0: int, y0: int, x1: int, y1: int) -> None:
    x0, y0 = max(0, x0), max(0, y0)
    x1, y1 = min(frame.shape[1], x1), min(frame.shape[0], y1)
    if x1 > x0 and y1 > y0:
        region = frame[y0:y1, x0:x1]
        region[:] = (region * (1 - _PANEL_ALPHA)).astype(np.uint8)


def legend_classes(mask: np.ndarray, num_classes: int) -> list[int]:
    """Class ids to list: those present in the mask by area, then the rest, at most MAX_LEGEND_ROWS."""
    counts = np.bincount(mask.ravel(), minlength=num_classes)[:num_classes]
    present = [int(k) for k in np.argsort(-counts, kind="stable") if counts[k] > 0]
    absent = [k for k in range(num_classes) if counts[k] == 0]
    return (present + absent)[:MAX_LEGEND_ROWS]


def draw_legend(frame: np.ndarray, class_ids: Sequence[int], names: Sequence[str],
                palette_rgb: np.ndarray) -> None:
    """Colour swatch + class name per row, in the top-right corner (drawn in place)."""
    cv2 = import_cv2()
    scale = _font_scale(frame.shape[0])
    thickness = max(1, round(scale * 2))
    row = cv2.getTextSize("Ag", cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)[0][1] + 10
    labels = [names[k] for k in class_ids]
    width = max((cv2.getTextSize(t, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)[0][0] for t in labels), default=0)
    x1 = frame.shape[1] - 4
    x0 = x1 - width - row - 10
    _darken(frame, x0, 0, frame.shape[1], row * len(labels) + 8)
    for i, (k, text) in enumerate(zip(class_ids, labels)):
        top = 4 + i * row
        colour = tuple(int(c) for c in palette_rgb[k][::-1])  # RGB palette -> BGR frame
        cv2.rectangle(frame, (x0 + 4, top + 2), (x0 + row - 2, top + row - 2), colour, -1)
        cv2.putText(frame, text, (x0 + row + 4, top + row - 4), cv2.FONT_HERSHEY_SIMPLEX, scale,
                    (255, 255, 255), thickness, cv2.LINE_AA)


def draw_readout(frame: np.ndarray, lines: Sequence[str]) -> None:
    """White text lines on a dark box in the top-left corner (drawn in place)."""
    cv2 = import_cv2()
    scale = _font_scale(frame.shape[0])
    thickness = max(1, round(scale * 2))
    sizes = [cv2.getTextSize(t, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)[0] for t in lines]
    row = max((h for _, h in sizes), default=0) + 8
    _darken(frame, 0, 0, max((w for w, _ in sizes), default=0) + 12, row * len(lines) + 6)
    for i, text in enumerate(lines):
        cv2.putText(frame, text, (6, (i + 1) * row), cv2.FONT_HERSHEY_SIMPLEX, scale,
                    (255, 255, 255), thickness, cv2.LINE_AA)
