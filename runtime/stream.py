"""Latest frame wins: segment a live camera in a robot without ever queueing frames.

Two threads around one :class:`~edgeseg.runtime.SegmentationSession`::

    from edgeseg.runtime.stream import StreamSegmenter

    with edgeseg.runtime.load("model.onnx", threads=2) as session:
        with StreamSegmenter(session, read_frame, on_mask) as stream:
            stream.wait(10.0)              # or until the camera ends or a thread fails
        print(stream.stats().summary())    # captured, processed, dropped, latency p50/p99

* ``read_frame()`` returns ``(camera_timestamp, bgr_image)`` or None when the camera is done; it may
  block until the next exposure, as a camera read does. A capture thread puts each frame into a
  one-frame mailbox (:class:`LatestFrameSlot`): a frame the model has not taken yet is replaced and
  counted as dropped. The camera never waits for the model, memory is flat, and latency is bounded
  however slow the model or the consumer: at worst one frame waits while one is processed.
* An inference thread takes the newest frame, runs ``session.predict`` and calls
  ``on_mask(timestamp, mask)`` with the camera's timestamp, so the consumer can match the mask to
  the robot's pose at capture time.
* Camera-timestamp-to-mask latency is recorded per frame (:class:`StreamStats`: p50/p99, with the
  counts of frames captured, processed and dropped).
* ``stop()`` ends both threads (the frame being processed finishes); an error in either thread
  stops the other and is raised again by ``stop()``.

numpy and the threading module only: no torch, no OpenCV (a camera is any ``read_frame``).
``examples/robot_stream.py`` runs it from the command line; ``benchmarks/e2e_latency.py`` measures it.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

__all__ = [
    "CaptureWorker",
    "InferenceWorker",
    "LatestFrameSlot",
    "StampedFrame",
    "StreamSegmenter",
    "StreamStats",
    "SyntheticCamera",
]

# Latencies kept for p50/p99: the last this many frames (a robot runs for hours; memory is flat).
LATENCY_WINDOW = 10_000

FrameReader = Callable[[], "tuple[float, np.ndarray] | None"]
MaskCallback = Callable[[float, np.ndarray], None]


@dataclass(frozen=True)
class StampedFrame:
    timestamp: float  # capture time on the clock the robot uses (time.monotonic() here), seconds
    sequence: int  # 0-based capture counter (gaps in the processed sequence are dropped frames)
    image: np.ndarray  # (H, W, 3) uint8 BGR


class LatestFrameSlot:
    """A one-frame mailbox between the camera and the model: ``put`` never blocks.

    ``put`` replaces a frame nobody took (counted in ``dropped``); ``take`` waits for a frame.
    """

    def __init__(self) -> None:
        self._ready = threading.Condition()
        self._frame: StampedFrame | None = None
        self._closed = False
        self.put_count = 0
        self.dropped = 0

    def put(self, frame: StampedFrame) -> None:
        with self._ready:
            if self._frame is not None:
                self.dropped += 1  # stale: the model never saw it, and never will
            self._frame = frame
            self.put_count += 1
            self._ready.notify()

    def take(self, timeout: float | None = None) -> StampedFrame | None:
        """The newest frame, or None after ``timeout`` seconds or once closed and empty."""
        with self._ready:
            self._ready.wait_for(lambda: self._frame is not None or self._closed, timeout)
            frame, self._frame = self._frame, None
            return frame

    @property
    def pending(self) -> int:
        """Frames waiting: 0 or 1, by construction."""
        with self._ready:
            return int(self._frame is not None)

    def close(self) -> None:
        with self._ready:
            self._closed = True
            self._ready.notify_all()


@dataclass(frozen=True)
class StreamStats:
    captured: int
    processed: int
    dropped: int  # replaced in the slot before the model took them
    pending: int  # left in the slot at the end (0 or 1)
    seconds: float
    latency_p50_ms: float  # camera timestamp -> mask ready
    latency_p99_ms: float
    latency_max_ms: float
    predict_p50_ms: float  # session.predict alone

    @property
    def fps(self) -> float:
        return self.processed / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> str:
        return (
            f"captured {self.captured}, processed {self.processed} ({self.fps:.1f} FPS), dropped "
            f"{self.dropped}; camera-to-mask latency p50 {self.latency_p50_ms:.1f} ms, p99 "
            f"{self.latency_p99_ms:.1f} ms (max {self.latency_max_ms:.1f}); predict p50 {self.predict_p50_ms:.1f} ms"
        )


def _percentiles(seconds) -> tuple[float, float, float]:
    if not seconds:
        return float("nan"), float("nan"), float("nan")
    ms = np.asarray(seconds, np.float64) * 1000.0
    p50, p99 = np.percentile(ms, [50, 99])
    return float(p50), float(p99), float(ms.max())


class InferenceWorker(threading.Thread):
    """Takes the newest frame, predicts, hands ``(timestamp, mask)`` to the callback."""

    def __init__(self, session, slot: LatestFrameSlot, callback: MaskCallback, *,
                 domain: str | None = None, clock: Callable[[], float] = time.monotonic):
        super().__init__(name="edgeseg-inference", daemon=True)
        self.session, self.slot, self.callback = session, slot, callback
        self.domain, self.clock = domain, clock
        self.processed = 0
        self.latency_s: collections.deque[float] = collections.deque(maxlen=LATENCY_WINDOW)
        self.predict_s: collections.deque[float] = collections.deque(maxlen=LATENCY_WINDOW)
        self.error: BaseException | None = None
        self.stopping = threading.Event()

    def run(self) -> None:
        try:
            while not self.stopping.is_set():
                frame = self.slot.take(timeout=0.1)
                if frame is None:
                    continue
                start = time.perf_counter()
                mask = self.session.predict(frame.image, bgr=True, domain=self.domain)
                self.predict_s.append(time.perf_counter() - start)
                self.latency_s.append(self.clock() - frame.timestamp)
                self.processed += 1
                self.callback(frame.timestamp, mask)
        except BaseException as exc:  # handed to the caller's thread by StreamSegmenter.stop()
            self.error = exc


class CaptureWorker(threading.Thread):
    """Reads frames as fast as the camera gives them and puts each into the slot."""

    def __init__(self, read_frame: FrameReader, slot: LatestFrameSlot):
        super().__init__(name="edgeseg-capture", daemon=True)
        self.read_frame, self.slot = read_frame, slot
        self.error: BaseException | None = None
        self.ended = threading.Event()  # the camera stopped delivering (end of a video file)
        self.stopping = threading.Event()

    def run(self) -> None:
        sequence = 0
        try:
            while not self.stopping.is_set():
                item = self.read_frame()
                if item is None:
                    break
                timestamp, image = item
                self.slot.put(StampedFrame(timestamp, sequence, image))
                sequence += 1
        except BaseException as exc:
            self.error = exc
        finally:
            self.ended.set()


class StreamSegmenter:
    """Capture + inference threads around one session. ``with StreamSegmenter(...) as stream:``.

    ``read_frame()`` returns ``(camera_timestamp, bgr_image)`` or None when the camera is done;
    it may block until the next frame (as a camera read does). ``callback(timestamp, mask)`` runs
    on the inference thread: keep it short, or hand the mask on (a slow callback only causes
    drops, never a backlog). ``domain``: the head of a multi-domain file. ``clock``: the clock the
    camera timestamps come from (``time.monotonic`` by default), for the latency.
    """

    def __init__(self, session, read_frame: FrameReader, callback: MaskCallback, *,
                 domain: str | None = None, clock: Callable[[], float] = time.monotonic):
        session.classes(domain)  # a wrong or missing domain fails here, not in the thread
        self.slot = LatestFrameSlot()
        self.capture = CaptureWorker(read_frame, self.slot)
        self.inference = InferenceWorker(session, self.slot, callback, domain=domain, clock=clock)
        self._started_at: float | None = None
        self._stopped_at: float | None = None

    def start(self) -> StreamSegmenter:
        self._started_at = time.perf_counter()
        self.inference.start()
        self.capture.start()
        return self

    @property
    def running(self) -> bool:
        """False once the camera ended or either thread failed."""
        return not self.capture.ended.is_set() and self.inference.is_alive() and self.capture.is_alive()

    def wait(self, seconds: float | None = None) -> None:
        """Block until ``seconds`` pass, the camera ends, or a thread fails."""
        deadline = None if seconds is None else time.monotonic() + seconds
        while self.running and (deadline is None or time.monotonic() < deadline):
            time.sleep(0.02)

    def stop(self, timeout: float = 5.0) -> StreamStats:
        """Stop both threads (the frame being processed finishes) and return the statistics."""
        self.capture.stopping.set()
        self.inference.stopping.set()
        self.slot.close()
        self.capture.join(timeout)
        self.inference.join(timeout)
        if self._stopped_at is None:
            self._stopped_at = time.perf_counter()
        for worker in (self.inference, self.capture):
            if worker.error is not None:
                raise RuntimeError(f"the {worker.name} thread failed: {worker.error!r}") from worker.error
        return self.stats()

    def stats(self) -> StreamStats:
        end = self._stopped_at or time.perf_counter()
        p50, p99, worst = _percentiles(list(self.inference.latency_s))
        predict_p50, _, _ = _percentiles(list(self.inference.predict_s))
        return StreamStats(
            captured=self.slot.put_count, processed=self.inference.processed, dropped=self.slot.dropped,
            pending=self.slot.pending, seconds=end - (self._started_at or end),
            latency_p50_ms=p50, latency_p99_ms=p99, latency_max_ms=worst, predict_p50_ms=predict_p50,
        )

    def __enter__(self) -> StreamSegmenter:
        return self.start()

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.stop()
        else:  # already failing: stop the threads, keep the original error
            try:
                self.stop()
            except RuntimeError:
                pass


class SyntheticCamera:
    """A camera without hardware (a ``read_frame``): a moving bar pattern at ``fps`` frames per
    second, ``size`` (height, width) BGR, ``frames`` of them or without end."""

    def __init__(self, fps: float = 30.0, size: tuple[int, int] = (256, 512), frames: int | None = None):
        self.period = 1.0 / fps
        self.size, self.frames = size, frames
        self._sequence = 0
        self._next = time.monotonic()

    def __call__(self) -> tuple[float, np.ndarray] | None:
        if self.frames is not None and self._sequence >= self.frames:
            return None
        delay = self._next - time.monotonic()
        if delay > 0:
            time.sleep(delay)  # a real camera blocks in read() until its next exposure
        self._next = max(self._next + self.period, time.monotonic())
        h, w = self.size
        columns = (np.arange(w) + 8 * self._sequence) % 128
        image = np.empty((h, w, 3), np.uint8)
        image[..., 0] = columns[None, :] * 2
        image[..., 1] = np.linspace(0, 255, h, dtype=np.uint8)[:, None]
        image[..., 2] = 255 - image[..., 0]
        self._sequence += 1
        return time.monotonic(), image
