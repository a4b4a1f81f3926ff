"""edgeseg.runtime.stream (run by examples/robot_stream.py): latest-frame-wins under a slow
consumer, bounded latency, shutdown; and the example's command line without torch."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from demo_helpers import channel_argmax_onnx

import edgeseg.runtime as rt
from edgeseg.runtime import stream

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "robot_stream.py"


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    return channel_argmax_onnx(tmp_path_factory.mktemp("robot") / "channels.onnx")


class RecordingCamera:
    """The synthetic camera, remembering every timestamp it handed out."""

    def __init__(self, fps: float, frames: int | None = None):
        self.camera = stream.SyntheticCamera(fps, (48, 64), frames)
        self.stamps: list[float] = []

    def __call__(self):
        item = self.camera()
        if item is not None:
            self.stamps.append(item[0])
        return item


def test_slow_consumer_drops_frames_instead_of_queueing(model_file):
    consumer_s = 0.04
    received: list[tuple[float, np.ndarray]] = []

    def slow_consumer(timestamp, mask):
        received.append((timestamp, mask))
        time.sleep(consumer_s)

    camera = RecordingCamera(fps=250)
    with rt.load(model_file, threads=1) as seg:
        robot = stream.StreamSegmenter(seg, camera, slow_consumer).start()
        robot.wait(1.2)
        stats = robot.stop()
    assert not robot.capture.is_alive() and not robot.inference.is_alive()
    # Every captured frame is accounted for, and most were dropped rather than queued.
    assert stats.captured == stats.processed + stats.dropped + stats.pending
    assert stats.pending <= 1
    assert stats.captured > 3 * stats.processed and stats.dropped > stats.processed
    assert stats.processed == len(received) and stats.processed <= 1.2 / consumer_s + 2
    # Latency stays bounded by one consumer call plus one predict; a FIFO would grow it frame by frame.
    assert stats.latency_p99_ms < 3 * consumer_s * 1000
    # The callback gets the camera's own timestamps, newest first each time (gaps are the drops).
    stamps = [t for t, _ in received]
    assert all(t in camera.stamps for t in stamps) and stamps == sorted(stamps)
    assert camera.stamps.index(stamps[-1]) - camera.stamps.index(stamps[0]) > len(stamps)
    assert all(m.shape == (48, 64) and m.dtype == np.uint8 for _, m in received)


def test_fast_consumer_processes_every_frame_of_a_slow_camera(model_file):
    received = []
    camera = RecordingCamera(fps=20, frames=12)
    with rt.load(model_file, threads=1) as seg:
        robot = stream.StreamSegmenter(seg, camera, lambda t, m: received.append(t)).start()
        robot.wait(5)  # ends when the camera does
        time.sleep(0.1)  # let the last frame through
        stats = robot.stop()
    assert stats.captured == 12 and stats.processed == 12 and stats.dropped == 0
    assert received == camera.stamps


def test_slot_keeps_only_the_newest_frame():
    slot = stream.LatestFrameSlot()
    frames = [stream.StampedFrame(float(i), i, np.zeros((2, 2, 3), np.uint8)) for i in range(5)]
    for frame in frames:
        slot.put(frame)
    assert slot.pending == 1 and slot.dropped == 4
    assert slot.take(timeout=0).sequence == 4
    assert slot.take(timeout=0.01) is None
    waiter = threading.Thread(target=lambda: time.sleep(0.05) or slot.close())
    waiter.start()
    start = time.monotonic()
    assert slot.take(timeout=5) is None and time.monotonic() - start < 2  # close() wakes a waiting take
    waiter.join()


def test_errors_in_the_threads_reach_the_caller(model_file):
    def broken_consumer(timestamp, mask):
        raise ValueError("planner crashed")

    with rt.load(model_file, threads=1) as seg:
        robot = stream.StreamSegmenter(seg, RecordingCamera(fps=100), broken_consumer).start()
        robot.wait(2)
        assert not robot.running
        with pytest.raises(RuntimeError, match="edgeseg-inference.*planner crashed"):
            robot.stop()
        with pytest.raises(rt.DomainError):
            stream.StreamSegmenter(seg, RecordingCamera(fps=100), print, domain="night")


def test_main_runs_without_torch(model_file):
    code = (
        "import sys, importlib.util\n"
        f"spec = importlib.util.spec_from_file_location('robot_stream', {str(EXAMPLE)!r})\n"
        "m = importlib.util.module_from_spec(spec); sys.modules['robot_stream'] = m; spec.loader.exec_module(m)\n"
        f"m.main(['--model', {str(model_file)!r}, '--seconds', '0.6', '--fps', '100', '--consumer-ms', '20'])\n"
        "print('torch imported:', 'torch' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "torch imported: False" in result.stdout
    assert "dropped" in result.stdout and "p99" in result.stdout
