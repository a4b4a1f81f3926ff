"""runtime/tflite_metadata.py: named metadata entries read back byte-exact, model still runs."""

from __future__ import annotations

import numpy as np
import pytest

from edgeseg.runtime.tflite_metadata import TFLiteMetadataError, add_tflite_metadata, read_tflite_metadata


@pytest.fixture(scope="module")
def tiny_tflite() -> bytes:
    import litert_torch
    import torch

    module = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU()).eval()
    return bytes(litert_torch.convert(module, (torch.randn(1, 3, 16, 16),)).model_content())


def _run(data: bytes, x: np.ndarray) -> np.ndarray:
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=data)
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
    interpreter.invoke()
    return interpreter.get_tensor(interpreter.get_output_details()[0]["index"])


def test_entries_round_trip_and_model_still_runs(tiny_tflite):
    before = read_tflite_metadata(tiny_tflite)
    payload = '{"model": "x", "classes": ["a", "\u00e9"]}'.encode()
    data = add_tflite_metadata(tiny_tflite, {"edgeseg": payload, "empty": b""})
    after = read_tflite_metadata(data)
    assert after["edgeseg"] == payload and after["empty"] == b""
    assert {k: v for k, v in after.items() if k in before} == before  # converter's entries kept
    x = np.random.default_rng(0).random((1, 3, 16, 16), dtype=np.float32)
    np.testing.assert_array_equal(_run(tiny_tflite, x), _run(data, x))


def test_replacing_an_entry_keeps_one_copy(tiny_tflite):
    data = add_tflite_metadata(tiny_tflite, {"edgeseg": b"old"})
    data = add_tflite_metadata(data, {"edgeseg": b"new"})
    assert read_tflite_metadata(data)["edgeseg"] == b"new"


def test_agrees_with_the_generated_tflite_schema(tiny_tflite):
    from ai_edge_litert import schema_py_generated as schema

    data = add_tflite_metadata(tiny_tflite, {"edgeseg": b"{}" * 37})
    model = schema.ModelT.InitFromPackedBuf(data, 0)
    by_name = {m.name.decode(): bytes(model.buffers[m.buffer].data) for m in model.metadata}
    assert by_name == read_tflite_metadata(data)
    # Buffer.data is force_align 16 in the schema: the new entry keeps that alignment.
    vec_offset = data.index(b"{}" * 37)
    assert vec_offset % 16 == 0


def test_bad_inputs_raise_clear_errors(tiny_tflite):
    with pytest.raises(TFLiteMetadataError, match="TFL3"):
        read_tflite_metadata(b"not a model at all")
    with pytest.raises(TFLiteMetadataError, match="must be bytes"):
        add_tflite_metadata(tiny_tflite, {"edgeseg": "text"})


def test_buffers_stored_after_the_flatbuffer_keep_working():
    # ai-edge-quantizer writes weights after the FlatBuffer (Buffer.offset/size, absolute file
    # offsets); adding metadata in front of the file must move those offsets with it.
    import litert_torch
    import torch
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_quantizer import quantizer

    from edgeseg.converters.tflite import FP16_WEIGHTS_RECIPE

    module = torch.nn.Sequential(torch.nn.Conv2d(3, 128, 3, padding=1), torch.nn.Conv2d(128, 128, 3, padding=1)).eval()
    data = bytes(litert_torch.convert(module, (torch.randn(1, 3, 8, 8),)).model_content())
    data = bytes(quantizer.Quantizer(data, FP16_WEIGHTS_RECIPE).quantize().quantized_model)
    assert any(b.offset > 1 for b in schema.ModelT.InitFromPackedBuf(data, 0).buffers)
    with_meta = add_tflite_metadata(data, {"edgeseg": b"{}"})
    assert read_tflite_metadata(with_meta)["edgeseg"] == b"{}"
    x = np.random.default_rng(1).random((1, 3, 8, 8), dtype=np.float32)
    np.testing.assert_array_equal(_run(data, x), _run(with_meta, x))
