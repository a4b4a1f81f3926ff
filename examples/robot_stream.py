"""Segmentation inside a robot: a capture thread and an inference thread, latest frame wins.

This is the pattern to copy into a ROS 2 node (or any robot process):

* The camera never waits for the model. The capture thread puts each frame into a one-frame
  mailbox (:class:`LatestFrameSlot`); a frame the model has not taken yet is replaced and counted
  as dropped. Nothing queues up, so memory is flat and latency stays bounded however slow the
  model or the consumer is: at worst one frame waits while one is being processed.
* The inference thread takes the newest frame, runs ``session.predict`` and calls
  ``callback(timestamp, mask)`` with the camera's timestamp, so the consumer can match the mask
  to the robot's pose at capture time.
* Camera-timestamp-to-mask latency is recorded per frame and reported as p50/p99, with the counts
  of frames captured, processed and dropped.
* ``stop()`` (or Ctrl-C / SIGTERM in ``main``) ends both threads cleanly; an error in either
  thread stops the other and is raised again by ``stop()``.

No torch: numpy, ``edgeseg.runtime`` and one backend (OpenCV only to open a camera).

In a ROS 2 node (rclpy), the same three pieces map to:

    class SegmentationNode(Node):
        def __init__(self):
            super().__init__("segmentation")
            self.session = edgeseg.runtime.load("model.onnx", threads=2)
            self.slot = LatestFrameSlot()
            self.pub = self.create_publisher(Image, "mask", 1)
            self.create_subscription(Image, "camera/image_raw", self.on_image, qos_profile_sensor_data)
            self.worker = InferenceWorker(self.session, self.slot, self.publish)  # its own thread
            self.worker.start()
        def on_image(self, msg):   # the executor thread: never blocks on the model
            self.slot.put(StampedFrame(stamp_seconds(msg.header.stamp), seq, to_bgr(msg)))
        def publish(self, timestamp, mask):  # keep the camera stamp in the mask's header
            ...

Run it: ``python examples/robot_stream.py --model model.onnx --source 0 --seconds 10``
(``--source synthetic`` makes frames without a camera; ``--consumer-ms 50`` simulates a slow
consumer).
"""

from __future__ import annotations

import argparse
import collections
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

# Latencies kept for p50/p99: the last this many frames (a robot runs for hours; memory is flat).
LATENCY_WINDOW = 10_000


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

    def __init__(self, session, slot: LatestFrameSlot, callback: Callable[[float, np.ndarray], None], *,
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
        except BaseException as exc:  # handed to the main thread by RobotSegmenter.stop()
            self.error = exc


class CaptureWorker(threading.Thread):
    """Reads frames as fast as the camera gives them and puts each into the slot."""

    def __init__(self, read_frame: Callable[[], tuple[float, np.ndarray] | None], slot: LatestFrameSlot):
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


class RobotSegmenter:
    """Capture + inference threads around one session. ``with RobotSegmenter(...) as robot:``.

    ``read_frame()`` returns ``(camera_timestamp, bgr_image)`` or None when the camera is done;
    it may block until the next frame (as a camera read does). ``callback(timestamp, mask)`` runs
    on the inference thread: keep it short, or hand the mask on (a slow callback only causes
    drops, never a backlog).
    """

    def __init__(self, session, read_frame: Callable[[], tuple[float, np.ndarray] | None],
                 callback: Callable[[float, np.ndarray], None], *, domain: str | None = None,
                 clock: Callable[[], float] = time.monotonic):
        session.classes(domain)  # a wrong or missing domain fails here, not in the thread
        self.slot = LatestFrameSlot()
        self.capture = CaptureWorker(read_frame, self.slot)
        self.inference = InferenceWorker(session, self.slot, callback, domain=domain, clock=clock)
        self._started_at: float | None = None
        self._stopped_at: float | None = None

    def start(self) -> RobotSegmenter:
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

    def __enter__(self) -> RobotSegmenter:
        return self.start()

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.stop()
        else:  # already failing: stop the threads, keep the original error
            try:
                self.stop()
            except RuntimeError:
                pass


# --- frame sources for main() -----------------------------------------------------------------
class SyntheticCamera:
    """A camera without hardware: a moving bar pattern at ``fps`` frames per second."""

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


def opencv_reader(source: str, realtime: bool = False, fps: float = 30.0,
                  ) -> tuple[Callable[[], tuple[float, np.ndarray] | None], Callable[[], None]]:
    """(read_frame, close) for a camera index, video file, folder of images or stream URL, through
    edgeseg.demo. A file is decoded as fast as the CPU allows, far faster than its frame rate, so
    latest-frame-wins then drops most frames; ``realtime`` paces a file (or folder) like the camera
    that recorded it: one frame per 1/FPS s (the video's own FPS, else ``fps``). Cameras and streams
    are paced by the camera already."""
    from edgeseg.demo import open_source

    frames = open_source(source)
    iterator = iter(frames)
    period = 1.0 / (frames.fps or fps) if realtime and not frames.live else 0.0
    due = [time.monotonic()]

    def read_frame() -> tuple[float, np.ndarray] | None:
        if period:
            delay = due[0] - time.monotonic()
            if delay > 0:
                time.sleep(delay)  # as a camera blocks until its next exposure
            due[0] = max(due[0] + period, time.monotonic())  # fallen behind: no burst to catch up
        frame = next(iterator, None)
        return None if frame is None else (frame.timestamp, frame.image)

    return read_frame, frames.close


def main(argv: list[str] | None = None) -> int:
    import edgeseg.runtime as rt

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="converted model file (.onnx, .tflite, .xml)")
    parser.add_argument("--source", default="synthetic", help="camera index, video, stream URL, or 'synthetic'")
    parser.add_argument("--seconds", type=float, default=10.0, help="run this long (or until the source ends)")
    parser.add_argument("--fps", type=float, default=30.0,
                        help="frame rate of the synthetic camera (and of --realtime folders / videos without one)")
    parser.add_argument("--realtime", action="store_true",
                        help="video file or folder: deliver frames at the recording's frame rate, as the camera "
                             "did (default: as fast as they decode, which drops most frames)")
    parser.add_argument("--consumer-ms", type=float, default=0.0, help="simulate a consumer that takes this long")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for the backend")
    parser.add_argument("--domain", default=None, help="head of a multi-domain file")
    args = parser.parse_args(argv)

    session = rt.load(args.model, threads=args.threads)
    if args.source == "synthetic":
        h, w = session.metadata.input_size
        read_frame, close_source = SyntheticCamera(args.fps, (h, w)), lambda: None
    else:
        read_frame, close_source = opencv_reader(args.source, args.realtime, args.fps)

    def consume(timestamp: float, mask: np.ndarray) -> None:
        if args.consumer_ms:
            time.sleep(args.consumer_ms / 1000.0)  # e.g. a planner reading the mask

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    robot = RobotSegmenter(session, read_frame, consume, domain=args.domain).start()
    deadline = time.monotonic() + args.seconds
    try:
        while robot.running and not stop.is_set() and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        stats = robot.stop()
        close_source()
        session.close()
    print(stats.summary())
    return 0


if __name__ == "__main__":
    sys.exit(main())
