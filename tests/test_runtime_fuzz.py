"""Fuzzing: random image shapes/dtypes never crash or give a wrong-shaped mask, and corrupted model
bytes never crash the process (run in a subprocess, so a native crash is a reported failure)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_runtime_files import model_files  # noqa: F401 (fixture)

import edgeseg.runtime as rt

ROOT = Path(__file__).resolve().parents[1]

DTYPES = [np.uint8, np.uint16, np.int32, np.float16, np.float32, np.float64, np.bool_, np.int8]


@st.composite
def arrays(draw):
    ndim = draw(st.integers(1, 4))
    shape = tuple(draw(st.lists(st.integers(0, 70), min_size=ndim, max_size=ndim)))
    if ndim == 3 and draw(st.booleans()):
        shape = (*shape[:2], 3)  # make the accepted shape common
    dtype = np.dtype(draw(st.sampled_from(DTYPES)))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    if dtype.kind == "f":
        scale = draw(st.sampled_from([1.0, 255.0]))
        data = (rng.random(shape) * scale).astype(dtype)
        if data.size and draw(st.booleans()):
            data.flat[draw(st.integers(0, data.size - 1))] = draw(st.sampled_from([np.nan, np.inf, -1.0]))
    elif dtype.kind == "b":
        data = rng.random(shape) > 0.5
    else:
        info = np.iinfo(dtype)
        data = rng.integers(info.min, info.max, shape, dtype=dtype, endpoint=True)
    if data.ndim >= 2 and draw(st.booleans()):
        data = data[::-1]  # a negative-stride view
    return data


@pytest.fixture(scope="module")
def seg(model_files):
    return rt.load(model_files["onnx"], threads=1)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(image=arrays())
def test_any_array_gives_a_mask_or_an_image_error(seg, image):
    try:
        mask = seg.predict(image)
    except rt.ImageError:
        return
    # Accepted: exactly the documented cases, and the mask has the image's own size.
    assert image.ndim == 3 and image.shape[2] == 3 and min(image.shape[:2]) >= 8
    assert image.dtype == np.uint8 or (
        image.dtype.kind == "f" and np.isfinite(image).all() and image.min() >= 0 and image.max() <= 1
    )
    assert mask.shape == image.shape[:2] and mask.dtype == np.uint8 and mask.max() < 4


# One subprocess loads every corrupted copy and prints one JSON line per file before and after;
# a native crash kills it, and the last "start" line names the file that did it.
_LOADER = """
import json, sys, warnings
import numpy as np
import edgeseg.runtime as rt
warnings.simplefilter("ignore")
image = np.zeros((40, 40, 3), np.uint8)
for path in sys.argv[1:]:
    print(json.dumps({"start": path}), flush=True)
    try:
        rt.load(path, threads=1).predict(image)
        outcome = "ran"
    except rt.ModelFileError as exc:
        outcome = "ModelFileError"
    except Exception as exc:
        outcome = f"untyped {type(exc).__name__}: {exc}"
    print(json.dumps({"path": path, "outcome": outcome}), flush=True)
"""


def corrupt(data: bytes, rng: np.random.Generator) -> tuple[bytes, str]:
    """Truncate, zero or overwrite with noise a random span of ``data``; say which."""
    kind = rng.choice(["truncate", "zero", "noise"])
    # Half the damage lands in the first 4 KiB, where the headers and tables are.
    at = int(rng.integers(0, min(len(data), 4096) if rng.random() < 0.5 else len(data)))
    length = int(rng.integers(1, 65))
    if kind == "truncate":
        return data[:at], f"truncate at {at}"
    span = bytes(length) if kind == "zero" else rng.integers(0, 256, length, dtype=np.uint8).tobytes()
    return data[:at] + span + data[at + length :], f"{kind} {length} bytes at {at}"


@pytest.mark.parametrize("name", ["onnx", "tflite", "openvino"])
@settings(max_examples=3, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**32 - 1))
def test_corrupted_model_bytes_never_crash(model_files, tmp_path_factory, name, seed):
    rng = np.random.default_rng(seed)
    source = model_files[name]
    folder = tmp_path_factory.mktemp(f"corrupt_{name}")
    paths, cases = [], []
    for i in range(12):
        path = folder / f"case{i}{source.suffix}"
        if name == "openvino":  # corrupt the graph text and the weights, in turn
            weights = source.with_suffix(".bin")
            xml, bin_ = source.read_bytes(), weights.read_bytes()
            if i % 2:
                bin_, case = corrupt(bin_, rng)
            else:
                xml, case = corrupt(xml, rng)
            path.write_bytes(xml)
            path.with_suffix(".bin").write_bytes(bin_)
        else:
            data, case = corrupt(source.read_bytes(), rng)
            path.write_bytes(data)
        paths.append(str(path))
        cases.append(case)
    proc = subprocess.run(
        [sys.executable, "-c", _LOADER, *paths], capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0:
        started = [line["start"] for line in lines if "start" in line]
        crashed = started[-1] if started else "before the first file"
        case = cases[paths.index(crashed)] if crashed in paths else ""
        pytest.fail(f"the runtime crashed (exit {proc.returncode}) on {crashed} {case}: {proc.stderr[-2000:]}")
    outcomes = [line["outcome"] for line in lines if "outcome" in line]
    assert len(outcomes) == len(paths)
    untyped = [o for o in outcomes if o.startswith("untyped")]
    assert not untyped, untyped
