"""Details people expect (issue 17, point 10): bench statistics, the harness grid's highlight colour,
`examples/robot_stream.py --realtime` pacing for video files."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from demo_helpers import channel_argmax_onnx, load_example

from edgeseg.metadata import default_palette
from edgeseg.validate.latency import LatencyStats
from edgeseg.validate.plots import DISAGREE_COLOURS, disagree_colour, disagreement_overlay

ROOT = Path(__file__).resolve().parents[1]


def test_latency_stats_are_numpy_median_and_mean_and_mean_can_sit_below_p50():
    # Bimodal run times, as round-robin timing gives when a backend's threads are sometimes still
    # awake: 40% fast runs pull the mean below the median. The numbers are what they say.
    seconds = [0.002] * 40 + [0.010] * 60
    stats = LatencyStats.of(seconds)
    assert stats.p50 == 10.0 and abs(stats.mean - 6.8) < 1e-9 and stats.min == 2.0 and stats.runs == 100
    assert stats.mean < stats.p50
    rng = np.random.default_rng(0)
    sample = rng.gamma(2.0, 0.003, 501)
    stats = LatencyStats.of(list(sample))
    assert abs(stats.p50 - 1000 * np.median(sample)) < 1e-9 and abs(stats.mean - 1000 * sample.mean()) < 1e-9


def test_disagreement_colour_is_never_a_class_colour():
    magenta = (255, 0, 255)
    palette = np.array([(128, 64, 128), magenta, (0, 0, 142)], np.uint8)
    name, rgb = disagree_colour(palette)
    assert name != "magenta" and tuple(rgb) not in {tuple(c) for c in palette}
    assert disagree_colour(np.array([(128, 64, 128)], np.uint8))[0] == "magenta"  # the usual choice
    for count in (2, 8, 19, 40):
        pal = np.array(default_palette(count), np.int32)
        _, rgb = disagree_colour(pal)
        assert np.abs(pal - rgb.astype(np.int32)).sum(1).min() >= 60, count
    image = np.zeros((4, 4, 3), np.uint8)
    mask, reference = np.zeros((4, 4), np.uint8), np.zeros((4, 4), np.uint8)
    mask[0, 0] = 1
    picture = disagreement_overlay(image, mask, reference, palette)
    rgb = disagree_colour(palette)[1]
    assert tuple(picture[0, 0]) == tuple(rgb) and tuple(picture[1, 1]) != tuple(rgb)
    assert set(DISAGREE_COLOURS) >= {"magenta", "cyan", "yellow"}


def _video(path: Path, frames: int, fps: float) -> Path:
    import cv2

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (64, 48))
    for i in range(frames):
        image = np.zeros((48, 64, 3), np.uint8)
        image[:, (i * 5) % 64:] = (0, 200, 50)
        writer.write(image)
    writer.release()
    return path


def test_robot_stream_realtime_paces_a_video_at_its_frame_rate(tmp_path):
    video = _video(tmp_path / "clip.avi", 16, 40.0)  # 0.4 s of video
    robot_stream = load_example("robot_stream")

    def read_all(realtime: bool) -> list[float]:
        read_frame, close = robot_stream.opencv_reader(str(video), realtime)
        stamps = []
        while (item := read_frame()) is not None:
            stamps.append(item[0])
        close()
        return stamps

    start = time.monotonic()
    fast = read_all(False)
    assert len(fast) == 16 and time.monotonic() - start < 0.3  # decoding alone: far faster than real time
    paced = read_all(True)
    gaps = np.diff(paced)
    assert len(paced) == 16 and 0.36 < paced[-1] - paced[0] < 0.6 and np.median(gaps) > 0.02

    model = channel_argmax_onnx(tmp_path / "channels.onnx")
    run = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "robot_stream.py"), "--model", str(model), "--source", str(video),
         "--realtime", "--seconds", "5"], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr[-2000:]
    captured, dropped = (int(v) for v in re.search(r"captured (\d+), .* dropped (\d+)", run.stdout).groups())
    assert captured == 16 and dropped <= 2, run.stdout  # paced like the camera: the model keeps up
