"""The runtime tests' model files (tests/runtime_helpers.py) carry what the runtime reads."""

from __future__ import annotations

import os

from runtime_helpers import MODEL, SIZE


def test_build_files_writes_loadable_metadata(model_files):
    # The helper itself: every file exists and carries the metadata the runtime will read.
    import edgeseg.runtime as rt

    for name, model in (("onnx", MODEL), ("openvino", MODEL), ("tflite", "two_conv")):
        seg = rt.load(model_files[name], threads=1)
        assert seg.metadata.model == model and seg.metadata.input_size == SIZE
    assert os.path.getsize(model_files["ckpt"]) > 1000
