"""examples/camera_demo.py on a generated clip: overlay video out, summary printed."""

from __future__ import annotations

from pathlib import Path

from demo_helpers import block_frame, channel_argmax_onnx, load_example, read_video, write_video

ROOT = Path(__file__).resolve().parents[1]


def test_camera_demo_on_a_clip(tmp_path, capsys):
    camera_demo = load_example("camera_demo")
    model = channel_argmax_onnx(tmp_path / "channels.onnx")
    clip = write_video(tmp_path / "clip.avi", [block_frame(i) for i in range(6)])
    camera_demo.main([str(model), "--source", str(clip), "--out", str(tmp_path / "overlay.avi")])
    printed = capsys.readouterr().out
    assert "6 frames" in printed and "smoothed" in printed
    assert len(read_video(tmp_path / "overlay.avi")) == 6
