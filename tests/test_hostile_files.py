"""Hostile and unusual inputs outside model files (issue 16): dataset class files, output paths,
leftover temporaries, options that do not apply, text reports, and small API edges."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgeseg.data.errors import DatasetLayoutError
from edgeseg.data.folder import read_class_file

# --- classes.yaml of a folder dataset ------------------------------------------------------------
BAD_CLASS_FILES = {
    "yaml syntax": ("classes.yaml", "classes: [road, car\npalette: {"),
    "tab indentation": ("classes.yaml", "classes:\n\t- road\n"),
    "not utf-8": ("classes.yaml", b"classes: [\xff\xfe]\n"),
    "a string": ("classes.yaml", "classes: abcd\n"),
    "a scalar": ("classes.yaml", "42\n"),
    "empty": ("classes.yaml", ""),
    "nested names": ("classes.yaml", "classes: [[a, b], c]\n"),
    "yes/no names": ("classes.yaml", "classes: [yes, no]\n"),
    "repeated names": ("classes.yaml", "classes: [road, road]\n"),
    "palette out of range": ("classes.yaml", "classes: [a]\npalette: [[0, 0, 300]]\n"),
    "palette not triples": ("classes.yaml", "classes: [a]\npalette: [abc]\n"),
    "json syntax": ("classes.json", '{"classes": ["a",]}'),
    "json list of numbers in palette": ("classes.json", '{"classes": ["a"], "palette": [1, 2, 3]}'),
}


@pytest.mark.parametrize("case", sorted(BAD_CLASS_FILES))
def test_malformed_class_file_is_a_layout_error_with_the_format(tmp_path, case):
    name, content = BAD_CLASS_FILES[case]
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(DatasetLayoutError, match=str(path)) as info:
        read_class_file(tmp_path)
    assert "classes" in str(info.value)


def test_plain_list_class_file_is_accepted_with_default_colours(tmp_path):
    (tmp_path / "classes.yaml").write_text("- road\n- car\n- person\n")
    classes, palette = read_class_file(tmp_path)
    assert classes == ("road", "car", "person") and len(palette) == 3 and len(set(palette)) == 3


# --- the command line, in process ------------------------------------------------------------------
def cli(*args: str):
    """Run ``edgeseg ARGS`` in process; returns typer's result (``exception``: what main() would
    turn into ``error: ...`` and exit status 2 when it is an EdgesegError)."""
    from typer.testing import CliRunner

    from edgeseg.cli import app

    return CliRunner().invoke(app, list(args))


def _typed(result, match: str):
    from edgeseg.errors import EdgesegError

    assert isinstance(result.exception, EdgesegError), (result.exception, result.output[-2000:])
    assert re.search(match, str(result.exception)), str(result.exception)
    return str(result.exception)


def _image(path):
    from PIL import Image

    Image.fromarray(np.full((16, 16, 3), 100, np.uint8)).save(path)
    return path


@pytest.fixture(scope="module")
def onnx_file(tmp_path_factory):
    """A 4-class ONNX file with metadata (the two-convolution graph: exported in a second)."""
    from runtime_helpers import SIZE, export_onnx, two_conv_model
    import torch

    from edgeseg.metadata import ModelMetadata

    model = two_conv_model()
    meta = ModelMetadata(model="two_conv", classes=("a", "b", "c", "d"), input_size=SIZE)
    path = tmp_path_factory.mktemp("onnx") / "two_conv.onnx"
    return export_onnx(model, torch.randn(1, 3, *SIZE), path, meta)


def test_predict_refuses_outputs_that_collide(onnx_file, tmp_path):
    model = str(onnx_file)
    a, b = _image(tmp_path / "a.jpg"), _image(tmp_path / "a_overlay.jpg")
    out = tmp_path / "out"
    # a.jpg's overlay and a_overlay.jpg's mask are both a_overlay.png: refused before anything runs.
    _typed(cli("predict", model, str(a), str(b), "--out", str(out), "--overlay"), "would both write")
    sub = tmp_path / "sub"
    sub.mkdir()
    _typed(cli("predict", model, str(a), str(_image(sub / "a.png")), "--out", str(out)), "overwrite each other")
    # An input inside --out that one of the outputs would overwrite.
    png = _image(tmp_path / "c.png")
    _typed(cli("predict", model, str(png), "--out", str(tmp_path)), "overwrite the input image")
    assert not out.exists()
    assert cli("predict", model, str(a), str(a), "--out", str(out)).exit_code == 0  # the same image twice


def test_predict_and_convert_refuse_unwritable_outputs(onnx_file, tmp_path, monkeypatch):
    image = _image(tmp_path / "a.jpg")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    for out in (blocker, blocker / "masks"):
        _typed(cli("predict", str(onnx_file), str(image), "--out", str(out)), "is a file, not a folder")
    _typed(cli("convert", "missing.safetensors", "--target", "onnx", "--out", str(blocker / "m.onnx")),
           "is a file, not a folder")
    _typed(cli("convert", "missing.safetensors", "--target", "onnx", "--out", str(tmp_path)), "existing folder")

    def refuse(self, *args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "mkdir", refuse)
    _typed(cli("predict", str(onnx_file), str(image), "--out", str(tmp_path / "new")), "Permission denied")


@pytest.mark.parametrize("flags", [["--io", "int8"], ["--calibration", "images:x"], ["--keep-float", "head"],
                                   ["--calib-size", "64"], ["--coreml-mode", "weights", "--gate-images", "8"]])
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_int8_options_at_float_precision_are_refused(flags, precision):
    message = _typed(cli("convert", "missing.safetensors", "--target", "tflite", "--precision", precision, *flags),
                     "int8 only")
    assert flags[0] in message


# --- temporaries of a killed run --------------------------------------------------------------------
_WRITER = """
import sys, time
from edgeseg.fileio import atomic_output
with atomic_output(sys.argv[1]) as tmp:
    tmp.write_bytes(b"half")
    print(tmp, flush=True)
    time.sleep(60)
"""


def test_temporaries_of_a_killed_writer_are_removed_by_the_next_write(tmp_path):
    from edgeseg.fileio import remove_stale_temporaries, write_text_atomic

    proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(tmp_path / "m.onnx")], stdout=subprocess.PIPE,
                            text=True)
    temp = Path(proc.stdout.readline().strip())
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    scratch = tmp_path / f".ov-{proc.pid}-abc"  # the OpenVINO converter's scratch folder
    scratch.mkdir()
    (scratch / "model.bin").write_bytes(b"x")
    live = tmp_path / f".m.onnx.{os.getpid()}.0123456789ab.tmp"  # a live writer's: kept
    live.write_bytes(b"x")
    assert temp.exists() and temp.name.startswith(".m.onnx.") and temp.suffix == ".tmp"
    # A temporary is never taken for a finished file: no backend reads its suffix.
    import edgeseg.runtime as rt

    with pytest.raises(rt.UnsupportedModelError, match="'.tmp'"):
        rt.load(temp)
    write_text_atomic(tmp_path / "other.txt", "done")
    assert not temp.exists() and not scratch.exists() and live.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.name, "other.txt"])
    assert remove_stale_temporaries(tmp_path) == []  # once per folder and process


# --- text reports ---------------------------------------------------------------------------------
HOSTILE_NAMES = ["<script>alert(1)</script>", "<img src=x onerror=alert(1)>", "two\nlines", "a|b",
                 "[link](http://x)", "`code`", "\x1b[31mred", "road_1"]


def test_markdown_tables_escape_names_from_files_and_datasets():
    from edgeseg.validate.report import _markdown_table, md_escape

    rows = [[name, "1.00"] for name in HOSTILE_NAMES]
    lines = _markdown_table((["class", "IoU %"], rows))
    assert len(lines) == 2 + len(rows)  # a newline in a name does not start a new row
    text = "\n".join(lines)
    assert "<" not in text and ">" not in text and "\x1b" not in text
    assert "&lt;script&gt;" in text and "\\[link\\]" in text and "\\`code\\`" in text
    for line in lines[2:]:  # every row keeps its two cells: no unescaped "|" inside a cell
        assert len(re.findall(r"(?<!\\)\|", line)) == 3
    assert md_escape("road_1") == "road_1"  # ordinary names unchanged


# --- small edges ----------------------------------------------------------------------------------
def test_colorize_refuses_negative_class_ids(onnx_file):
    import edgeseg.runtime as rt

    seg = rt.load(onnx_file, threads=1)
    mask = np.zeros((4, 4), np.int32)
    assert seg.colorize(mask).shape == (4, 4, 3)
    mask[0, 0] = -1  # would index the palette's last colour
    with pytest.raises(rt.MaskError, match="class -1"):
        seg.colorize(mask)


def test_threads_true_is_refused(onnx_file):
    import edgeseg.runtime as rt
    from edgeseg.errors import ConfigError

    with pytest.raises(ConfigError, match="threads=True"):
        rt.load(onnx_file, threads=True)


def test_forced_backend_on_another_format_names_it_with_the_right_article(onnx_file, tmp_path):
    import edgeseg.runtime as rt

    tflite_bytes = b"\x1c\x00\x00\x00TFL3" + bytes(64)
    (tmp_path / "m.onnx").write_bytes(tflite_bytes)
    with pytest.raises(rt.ModelFileError) as info:
        rt.load(tmp_path / "m.onnx")
    assert "like an ONNX file" in str(info.value) and "is a TFLite file" in str(info.value)
    with pytest.raises(rt.ModelFileError, match="like an ONNX file but its content is an OpenVINO IR file"):
        (tmp_path / "m.xml").write_text('<?xml version="1.0"?><net></net>')
        rt.load(tmp_path / "m.xml", backend="onnx")


def test_demo_source_that_opens_but_gives_no_frame_is_a_source_error(tmp_path):
    from edgeseg.demo.errors import SourceError
    from edgeseg.demo.sources import open_source

    pattern = tmp_path / "frame_%03d.png"  # OpenCV opens it as an image sequence with no image
    pattern.write_bytes(b"")
    with pytest.raises(SourceError, match="delivered no frame"):
        with open_source(str(pattern)) as frames:
            list(frames)


def test_predict_refuses_alpha_without_overlay(tmp_path):
    image = _image(tmp_path / "a.jpg")
    _typed(cli("predict", "missing.onnx", str(image), "--out", str(tmp_path / "o"), "--alpha", "0.8"), "--overlay")
