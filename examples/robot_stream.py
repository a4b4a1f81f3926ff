"""Segmentation inside a robot: a capture thread and an inference thread, latest frame wins.

The threads, the one-frame mailbox and the statistics are library code,
:mod:`edgeseg.runtime.stream` (read its docstring); this script adds the frame sources (a synthetic
camera, or OpenCV through edgeseg.demo) and a command line. The pattern to copy into a ROS 2
node (or any robot process):

* The camera never waits for the model: each frame goes into a one-frame mailbox
  (:class:`LatestFrameSlot`); a frame the model has not taken yet is replaced and counted as
  dropped, so memory is flat and latency stays bounded however slow the model or the consumer is.
* The inference thread takes the newest frame, runs ``session.predict`` and calls
  ``callback(timestamp, mask)`` with the camera's timestamp, so the consumer can match the mask
  to the robot's pose at capture time.
* Camera-timestamp-to-mask latency is reported as p50/p99, with the counts of frames captured,
  processed and dropped.
* ``stop()`` (or Ctrl-C / SIGTERM in ``main``) ends both threads cleanly; an error in either
  thread stops the other and is raised again by ``stop()``.

No torch: numpy, ``edgeseg.runtime`` and one backend (OpenCV only to open a camera).

In a ROS 2 node (rclpy), the same three pieces map to:

    from edgeseg.runtime.stream import InferenceWorker, LatestFrameSlot, StampedFrame

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
import signal
import sys
import threading
import time
from collections.abc import Callable

import numpy as np

from edgeseg.runtime.stream import StreamSegmenter, SyntheticCamera


# --- frame sources for main() -----------------------------------------------------------------
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
    robot = StreamSegmenter(session, read_frame, consume, domain=args.domain).start()
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
