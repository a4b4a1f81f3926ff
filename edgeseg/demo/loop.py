"""The demo loop: frames -> mask -> overlay + legend + readout -> video file and/or window.

Ends cleanly at the end of the stream, on q/Esc in the window, on Ctrl-C and after
``max_frames``; the output video then holds every frame processed so far.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeseg.demo.annotate import draw_legend, draw_readout, legend_classes
from edgeseg.demo.errors import DemoError
from edgeseg.demo.flicker import FlickerMeter, TemporalSmoother
from edgeseg.demo.sources import Frame, FrameSource
from edgeseg.demo.stats import LatencySummary, RateMeter
from edgeseg.demo.video import Window, video_output

# Why a run ended (DemoSummary.ended).
END_OF_STREAM = "end of stream"
QUIT_KEY = "q/Esc pressed"
INTERRUPTED = "Ctrl-C"
FRAME_LIMIT = "frame limit reached"


@dataclass(frozen=True)
class DemoOptions:
    """How the demo draws and what it records."""

    out: str | os.PathLike[str] | None = None  # video file to write (.mp4, .avi, ...); None = none
    show: bool = False  # open a window (needs a display and OpenCV with GUI support)
    domain: str | None = None  # head of a multi-domain file to run
    alpha: float = 0.5  # weight of the class colours in the overlay (0 = frame only, 1 = mask only)
    smooth: int = 1  # majority vote over this many frames (1 = off); see TemporalSmoother
    max_frames: int | None = None  # stop after this many frames (None = until the stream ends)
    legend: bool = True  # draw the class legend
    readout: bool = True  # draw the FPS / latency readout

    def check(self) -> None:
        if not 0.0 <= self.alpha <= 1.0:
            raise DemoError(f"alpha {self.alpha} must be in [0, 1] (0.5 blends frame and mask equally)")
        if self.smooth < 1:
            raise DemoError(f"smooth {self.smooth} must be >= 1 frame (1 turns smoothing off)")
        if self.max_frames is not None and self.max_frames < 1:
            raise DemoError(f"max_frames {self.max_frames} must be >= 1, or left out to run to the end")


@dataclass
class DemoSummary:
    """What a run did. Latencies in ms; the flicker rates are shares of pixels (0..1)."""

    model: str
    source: str
    frames: int
    seconds: float
    mean_fps: float  # frames / wall time of the loop (read + predict + draw + write + show)
    predict: LatencySummary  # session.predict alone: resize, normalize, model, argmax, resize back
    capture_to_mask: LatencySummary  # from the moment a frame was read to its mask being ready
    flicker: float | None  # raw masks, consecutive frames (meaningful on a static scene)
    flicker_smoothed: float | None  # after the temporal smoothing, when on
    ended: str
    out: str | None = None
    frame_size: tuple[int, int] | None = None  # (height, width) of the source frames

    def to_dict(self) -> dict:
        return {
            "model": self.model, "source": self.source, "frames": self.frames, "seconds": self.seconds,
            "mean_fps": self.mean_fps, "predict": self.predict.as_dict(),
            "capture_to_mask": self.capture_to_mask.as_dict(), "flicker": self.flicker,
            "flicker_smoothed": self.flicker_smoothed, "ended": self.ended, "out": self.out,
            "frame_size": list(self.frame_size) if self.frame_size else None,
        }

    def lines(self) -> list[str]:
        size = f" ({self.frame_size[1]}x{self.frame_size[0]})" if self.frame_size else ""
        lines = [
            f"{self.frames} frames{size} in {self.seconds:.1f} s: mean {self.mean_fps:.1f} FPS; ended: {self.ended}",
            f"predict latency p50 {self.predict.p50_ms:.1f} ms, p99 {self.predict.p99_ms:.1f} ms; "
            f"capture-to-mask p50 {self.capture_to_mask.p50_ms:.1f} ms, p99 {self.capture_to_mask.p99_ms:.1f} ms",
        ]
        if self.flicker is not None:
            text = f"flicker {100 * self.flicker:.2f}% of pixels change class per frame"
            if self.flicker_smoothed is not None:
                text += f" ({100 * self.flicker_smoothed:.2f}% smoothed)"
            lines.append(text + "; on a static scene every change is noise")
        if self.out:
            lines.append(f"wrote {self.out}")
        return lines


class _Drawer:
    """Overlay + legend + readout of one frame, in the session's palette."""

    def __init__(self, session, options: DemoOptions):
        self.session = session
        self.options = options
        self.names = session.classes(options.domain)  # raises DomainError before any frame is read
        self.palette = session.palette(options.domain)
        self.caption = f"{Path(str(session.backend.path)).name} | {session.backend.name} | {session.metadata.precision}"

    def __call__(self, frame: Frame, mask: np.ndarray, fps: float, predict_ms: float,
                 flicker: float | None) -> np.ndarray:
        opts = self.options
        image = self.session.overlay(frame.image, mask, opts.alpha, bgr=True, domain=opts.domain)
        if opts.readout:
            lines = [f"{fps:5.1f} FPS  {predict_ms:6.1f} ms", self.caption]
            if flicker is not None:
                lines.append(f"flicker {100 * flicker:.1f}%")
            draw_readout(image, lines)
        if opts.legend:  # last: on a small frame the legend stays readable over the readout
            draw_legend(image, legend_classes(mask, len(self.names)), self.names, self.palette)
        return image


class _Segmenter:
    """Per frame: predict, measure, smooth, draw. Keeps the numbers the summary reports."""

    def __init__(self, session, options: DemoOptions):
        self.session, self.options = session, options
        self.drawer = _Drawer(session, options)
        self.smoother = TemporalSmoother(options.smooth) if options.smooth > 1 else None
        self.raw_flicker, self.smooth_flicker, self.rate = FlickerMeter(), FlickerMeter(), RateMeter()
        self.predict_s: list[float] = []
        self.capture_s: list[float] = []

    def __call__(self, frame: Frame) -> tuple[np.ndarray, np.ndarray]:
        """(mask, annotated BGR frame)."""
        start = time.perf_counter()
        mask = self.session.predict(frame.image, bgr=True, domain=self.options.domain)
        self.predict_s.append(time.perf_counter() - start)
        flicker = self.raw_flicker.update(mask)
        if self.smoother is not None:
            mask = self.smoother(mask)
            self.smooth_flicker.update(mask)
        self.capture_s.append(time.monotonic() - frame.timestamp)
        self.rate.tick()
        return mask, self.drawer(frame, mask, self.rate.fps, 1000 * self.predict_s[-1], flicker)


def run_demo(session, source: FrameSource, options: DemoOptions = DemoOptions(), *,
             on_frame: Callable[[Frame, np.ndarray], None] | None = None) -> DemoSummary:
    """Segment every frame of ``source`` with ``session`` (an ``edgeseg.runtime`` session).

    ``on_frame(frame, mask)`` is called with each frame's mask (after smoothing, when on).
    """
    options.check()
    segment = _Segmenter(session, options)
    ended, frame_size, done = END_OF_STREAM, None, 0  # done: frames fully drawn and written
    with contextlib.ExitStack() as stack:
        video = stack.enter_context(video_output(options.out, source.fps)) if options.out else None
        window = Window(f"edgeseg: {segment.drawer.caption}") if options.show else None
        if window is not None:
            stack.callback(window.close)
        start = time.perf_counter()
        try:
            for frame in source:
                frame_size = frame.image.shape[:2]
                mask, drawn = segment(frame)
                if on_frame is not None:
                    on_frame(frame, mask)
                if video is not None:
                    video.write(drawn)
                done += 1
                if window is not None and not window.show(drawn):
                    ended = QUIT_KEY
                    break
                if options.max_frames is not None and done >= options.max_frames:
                    ended = FRAME_LIMIT
                    break
        except KeyboardInterrupt:
            ended = INTERRUPTED  # a clean end: the video keeps every frame written so far
        seconds = time.perf_counter() - start
    return DemoSummary(
        model=str(session.backend.path), source=f"{source.kind} {source.target}", frames=done,
        seconds=seconds, mean_fps=done / seconds if seconds > 0 else 0.0,
        predict=LatencySummary.of(segment.predict_s), capture_to_mask=LatencySummary.of(segment.capture_s),
        flicker=segment.raw_flicker.rate,
        flicker_smoothed=segment.smooth_flicker.rate if segment.smoother else None,
        ended=ended, out=str(options.out) if options.out else None, frame_size=frame_size,
    )
