"""Fuzzing: random image shapes/dtypes never crash or give a wrong-shaped mask, and damaged model
bytes of every format (with and without a checksum) are refused with a typed error or run to a
correct mask, and never crash the process (run in a subprocess, so a native crash is a reported
failure)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from fuzz_helpers import BYTE_SOURCES, FAILURES, build_cases, checksummed_copies, run_in_workers

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


# Damaged bytes of every format, with and without a checksum (tests/fuzz_helpers.py): one worker
# subprocess runs every case, so a native crash or a hang is a reported outcome, not a dead pytest.
@settings(max_examples=1, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**32 - 1))
def test_damaged_model_bytes_are_refused_or_run_and_never_crash(model_files, tmp_path_factory, seed):
    folder = tmp_path_factory.mktemp("damaged")
    files = {**model_files, **checksummed_copies(model_files, folder / "sum")}
    assert set(BYTE_SOURCES) <= set(files)
    cases = build_cases("bytes", 8 * len(BYTE_SOURCES), files, folder / "cases", seed=seed)
    results = run_in_workers(cases, folder, timeout_per_case=120, cwd=ROOT)
    failed = [f"{r['format']} {r['what']}: {r['outcome']} {r['detail']}" for r in results if r["outcome"] in FAILURES]
    assert not failed, failed
    # A file that records its checksum is refused as soon as one byte changed (before parsing).
    summed = [r for r in results if r["checksum"] and r["changed"]]
    assert summed and all(r["outcome"] == "refused" for r in summed)


def test_tflite_file_that_loads_but_cannot_run_is_a_model_file_error(model_files, tmp_path):
    # Zeroed bytes in a constant's buffer table: LiteRT loads the file, then refuses to invoke
    # ("Input tensor 3 lacks data", a RuntimeError that used to escape predict untyped).
    data = model_files["tflite"].read_bytes()
    cases = []
    for back in range(120, 260, 8):
        at = len(data) - back
        path = tmp_path / f"zeroed{back}.tflite"
        path.write_bytes(data[:at] + bytes(43) + data[at + 43:])
        cases.append({"family": "bytes", "format": "tflite", "kind": "model", "path": str(path), "what": f"zero at {at}"})
    results = run_in_workers(cases, tmp_path, timeout_per_case=120, cwd=ROOT)
    assert all(r["outcome"] in ("ran", "refused") for r in results), [r["detail"] for r in results]
    assert any("could not run the graph" in r["detail"] for r in results), [r["detail"] for r in results]
