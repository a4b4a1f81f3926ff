"""Generated hostile inputs (issue 16), at a small budget: metadata edits of ONNX / TFLite /
OpenVINO files, checkpoint header edits and image files from hypothesis, each refused with a typed
error or run to a correct result (tests/fuzz_helpers.py says what "correct" checks); and the
command line in a subprocess: exit 2 with an ``error:`` line and no traceback, or exit 0 with its
outputs and nothing else touched. benchmarks/fuzz.py runs the same generators at a large budget
(byte damage of every format is in test_runtime_fuzz.py)."""

from __future__ import annotations

import itertools
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from fuzz_helpers import (
    METADATA_SOURCES,
    checkpoint_edits,
    image_files,
    metadata_edits,
    run_case,
    write_checkpoint_case,
    write_metadata_case,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[1]
_names = itertools.count()


def fuzz(examples: int) -> settings:
    # Every health check off: generated files are large and slow by design, and a health check
    # that fires on a slow shared CPU would fail the suite without a bug.
    return settings(max_examples=examples, deadline=None, database=None, suppress_health_check=list(HealthCheck))


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz_hostile")


def _settle(case: dict) -> None:
    outcome, detail = run_case(case)
    assert outcome in ("ran", "refused"), f"{outcome}: {detail}\ncase: {case}"


@fuzz(40)
@given(edits=metadata_edits(), source=st.sampled_from(METADATA_SOURCES))
def test_edited_metadata_is_refused_or_runs_correctly(model_files, scratch, edits, source):
    path = model_files[source]
    dest = write_metadata_case(path, edits, scratch / f"meta{next(_names)}{path.suffix}")
    _settle({"kind": "model", "path": str(dest)})


@fuzz(25)
@given(edit=checkpoint_edits())
def test_edited_checkpoint_headers_are_refused_or_run_correctly(model_files, scratch, edit):
    which, edits = edit
    dest = write_checkpoint_case(model_files["ckpt"], which, edits, scratch / f"ckpt{next(_names)}.safetensors")
    _settle({"kind": "model", "path": str(dest)})


@fuzz(40)
@given(image=image_files())
def test_image_files_are_refused_or_segmented_at_their_displayed_size(model_files, scratch, image):
    data, suffix, expectation = image
    dest = scratch / f"img{next(_names)}{suffix}"
    dest.write_bytes(data)
    _settle({"kind": "image", "path": str(dest), "model": str(model_files["onnx"]), **expectation})


# --- the command line, in a subprocess -------------------------------------------------------------
def _edgeseg(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edgeseg", *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=300)


def _refused(proc: subprocess.CompletedProcess) -> None:
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    assert "error: " in proc.stderr and "Traceback" not in proc.stderr + proc.stdout, proc.stderr[-2000:]


def test_cli_refuses_hostile_files_and_keeps_what_is_there(model_files, tmp_path):
    from PIL import Image

    out = tmp_path / "out"
    out.mkdir()
    sentinel = out / "keep.png"
    sentinel.write_bytes(b"not yours")
    image = tmp_path / "a.png"
    Image.fromarray(np.full((40, 48, 3), 90, np.uint8)).save(image)
    bad_model = write_metadata_case(model_files["onnx"], [("set", "mean", [float("nan"), 0.4, 0.4])],
                                    tmp_path / "nan_mean.onnx")
    _refused(_edgeseg("predict", str(bad_model), str(image), "--out", str(out)))
    bomb = tmp_path / "bomb.png"
    from fuzz_helpers import _png_bomb

    bomb.write_bytes(_png_bomb(65000, full=False))
    _refused(_edgeseg("predict", str(model_files["onnx"]), str(image), str(bomb), "--out", str(out)))
    proc = _edgeseg("predict", str(model_files["onnx"]), str(image), "--out", str(out), "--overlay")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "a_overlay.png", "keep.png"]
    assert sentinel.read_bytes() == b"not yours"
    header = write_checkpoint_case(model_files["ckpt"], "header", [("option", "num_classes", 10**9)],
                                   tmp_path / "huge.safetensors")
    _refused(_edgeseg("convert", str(header), "--target", "onnx", "--out", str(tmp_path / "x.onnx")))
    assert not (tmp_path / "x.onnx").exists()
