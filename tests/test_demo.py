"""edgeseg demo: video in -> overlay video out, with the masks a known model must produce."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from demo_helpers import (
    BLOCKS,
    FRAME_SIZE,
    PALETTE,
    block_frame,
    channel_argmax_onnx,
    expected_classes,
    read_video,
    write_video,
)

import edgeseg.runtime as rt
from edgeseg.demo import (
    DemoError,
    DemoOptions,
    SourceError,
    VideoWriteError,
    open_source,
    run_demo,
)
from edgeseg.demo.loop import END_OF_STREAM, FRAME_LIMIT, INTERRUPTED

FRAMES = 12
MARGIN = 8  # columns this close to a block edge are blurred by the resize to 32x32 and back


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    return channel_argmax_onnx(tmp_path_factory.mktemp("model") / "channels.onnx")


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    frames = [block_frame(i) for i in range(FRAMES)]
    return write_video(tmp_path_factory.mktemp("clip") / "clip.avi", frames), frames


def interior_columns(index: int) -> np.ndarray:
    """Columns at least MARGIN away from every block edge of frame ``index``."""
    classes = expected_classes(index)
    edges = np.flatnonzero(np.diff(classes)) + 0.5
    columns = np.arange(FRAME_SIZE[1])
    far = np.all(np.abs(columns[:, None] - edges[None, :]) > MARGIN, axis=1)
    return columns[far]


def test_video_in_overlay_video_out(model_file, clip, tmp_path):
    path, frames = clip
    out = tmp_path / "overlay.mp4"
    masks = []
    with rt.load(model_file) as seg, open_source(str(path)) as source:
        summary = run_demo(seg, source, DemoOptions(out=out), on_frame=lambda f, m: masks.append(m))
    assert summary.frames == FRAMES and summary.ended == END_OF_STREAM
    assert summary.mean_fps > 0 and 0 < summary.predict.p50_ms <= summary.predict.p99_ms
    assert summary.frame_size == FRAME_SIZE
    # The masks are the known classes of every block.
    for i, mask in enumerate(masks):
        cols = interior_columns(i)
        assert mask.shape == FRAME_SIZE
        np.testing.assert_array_equal(mask[:, cols], np.broadcast_to(expected_classes(i)[cols], (FRAME_SIZE[0], len(cols))))
    # The written video has every frame, and below the legend/readout band each is the overlay.
    written = read_video(out)
    assert len(written) == FRAMES
    palette_bgr = np.asarray(PALETTE, np.float32)[:, ::-1]
    below = slice(2 * FRAME_SIZE[0] // 3, None)  # the legend and the readout sit above this
    for i, (frame, drawn) in enumerate(zip(frames, written)):
        cols = interior_columns(i)
        expected = 0.5 * frame.astype(np.float32) + 0.5 * palette_bgr[expected_classes(i)][None]
        error = np.abs(drawn[below][:, cols].astype(np.float32) - expected[below][:, cols])
        assert error.mean() < 6, f"frame {i}: the overlay differs from frame/2 + palette/2 by {error.mean():.1f}"
        raw_error = np.abs(drawn[below][:, cols].astype(np.float32) - frame[below][:, cols])
        assert raw_error.mean() > 60, "the output is the raw frame: no overlay was drawn"


def test_legend_and_readout_are_drawn(model_file, clip, tmp_path):
    path, frames = clip
    with rt.load(model_file) as seg, open_source(str(path)) as source:
        plain = run_demo(seg, source, DemoOptions(out=tmp_path / "plain.avi", legend=False, readout=False, max_frames=1))
    with rt.load(model_file) as seg, open_source(str(path)) as source:
        drawn = run_demo(seg, source, DemoOptions(out=tmp_path / "drawn.avi", max_frames=1))
    assert plain.frames == drawn.frames == 1 and drawn.ended == FRAME_LIMIT
    (a,), (b,) = read_video(tmp_path / "plain.avi"), read_video(tmp_path / "drawn.avi")
    h, w = FRAME_SIZE
    top_left, top_right = (slice(0, h // 3), slice(0, w // 3)), (slice(0, h // 2), slice(w // 2, w))
    assert np.abs(a[top_left].astype(int) - b[top_left]).mean() > 20, "no FPS/latency readout"
    # Legend: a swatch of each class present in the frame, in its palette colour (BGR).
    corner = b[top_right].reshape(-1, 3).astype(int)
    for name, (_, k) in BLOCKS.items():
        colour = np.asarray(PALETTE[k][::-1])
        assert (np.abs(corner - colour).max(axis=1) < 40).sum() >= 4, f"no legend swatch for {name}"


def test_folder_source_and_frame_limit(model_file, tmp_path):
    import cv2

    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(5):
        cv2.imwrite(str(folder / f"{i:04d}.png"), block_frame(i))
    (folder / "notes.txt").write_text("ignored: not an image")
    masks = []
    with rt.load(model_file) as seg, open_source(str(folder)) as source:
        assert source.kind == "folder" and source.fps is None
        summary = run_demo(seg, source, DemoOptions(max_frames=3), on_frame=lambda f, m: masks.append(m))
    assert summary.frames == 3 and summary.ended == FRAME_LIMIT and summary.out is None
    cols = interior_columns(2)
    np.testing.assert_array_equal(masks[2][0, cols], expected_classes(2)[cols])
    # Frames 0..2 move the red/green border by 8 px twice: the flicker rate counts those columns.
    assert summary.flicker == pytest.approx((8 / 128 + 8 / 128) / 2, abs=0.02)


def test_ctrl_c_ends_cleanly_and_keeps_the_frames_written(model_file, clip, tmp_path):
    path, _ = clip
    out = tmp_path / "stopped.avi"

    def interrupt_at_fifth(frame, mask):
        if frame.index == 4:
            raise KeyboardInterrupt

    with rt.load(model_file) as seg, open_source(str(path)) as source:
        summary = run_demo(seg, source, DemoOptions(out=out), on_frame=interrupt_at_fifth)
    assert summary.ended == INTERRUPTED and summary.frames == 4
    assert len(read_video(out)) == 4


def test_a_failed_run_leaves_no_video(model_file, clip, tmp_path):
    path, _ = clip
    out = tmp_path / "broken.mp4"

    def fail(frame, mask):
        if frame.index == 3:
            raise RuntimeError("consumer crashed")

    with rt.load(model_file) as seg, open_source(str(path)) as source, pytest.raises(RuntimeError):
        run_demo(seg, source, DemoOptions(out=out), on_frame=fail)
    assert list(tmp_path.iterdir()) == [], "a partial or temporary video was left behind"


def test_bad_inputs_name_the_problem(model_file, clip, tmp_path):
    path, _ = clip
    with pytest.raises(SourceError, match="neither a camera index"):
        open_source(str(tmp_path / "missing.mp4"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(SourceError, match="holds no images"):
        open_source(str(tmp_path / "empty"))
    not_video = tmp_path / "notes.mp4"
    not_video.write_text("not a video")
    with pytest.raises(SourceError, match="could not be opened"):
        open_source(str(not_video))
    with rt.load(model_file) as seg:
        with open_source(str(path)) as source, pytest.raises(VideoWriteError, match="unknown video container"):
            run_demo(seg, source, DemoOptions(out=tmp_path / "overlay.gif"))
        with open_source(str(path)) as source, pytest.raises(DemoError, match="smooth"):
            run_demo(seg, source, DemoOptions(smooth=0))
        with open_source(str(path)) as source, pytest.raises(rt.DomainError, match="single-domain"):
            run_demo(seg, source, DemoOptions(domain="night"))
    assert not (tmp_path / "overlay.gif").exists()


def test_domain_picks_the_head_of_a_multi_domain_file(clip, tmp_path):
    path, _ = clip
    model = channel_argmax_onnx(tmp_path / "two_heads.onnx", two_domains=True)
    masks = []
    with rt.load(model) as seg:
        assert seg.domains == ["day", "night"]
        with open_source(str(path)) as source:
            run_demo(seg, source, DemoOptions(domain="night", max_frames=2), on_frame=lambda f, m: masks.append(m))
        with open_source(str(path)) as source, pytest.raises(rt.DomainError, match="pass domain="):
            run_demo(seg, source, DemoOptions())
    cols = interior_columns(1)
    np.testing.assert_array_equal(masks[1][0, cols], 2 - expected_classes(1)[cols])


def test_cli_writes_video_and_summary(model_file, clip, tmp_path):
    from typer.testing import CliRunner

    from edgeseg.cli import app

    path, _ = clip
    out, summary = tmp_path / "cli.mp4", tmp_path / "summary.json"
    result = CliRunner().invoke(app, [
        "demo", "--model", str(model_file), "--source", str(path), "--out", str(out), "--show",
        "--smooth", "3", "--summary-json", str(summary),
    ])
    assert result.exit_code == 0, result.output
    assert f"{FRAMES} frames" in result.output and "p99" in result.output and "smoothed" in result.output
    assert "no display" in result.output  # --show on a headless machine says so and goes on
    data = json.loads(summary.read_text())
    assert data["frames"] == FRAMES and data["ended"] == END_OF_STREAM
    assert data["flicker_smoothed"] is not None and data["predict"]["p99_ms"] >= data["predict"]["p50_ms"]
    assert len(read_video(out)) == FRAMES


def test_demo_package_does_not_import_torch():
    code = "import sys, edgeseg.demo, edgeseg.runtime; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
