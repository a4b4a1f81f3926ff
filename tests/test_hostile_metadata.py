"""Hostile checkpoint headers and file metadata (issue 16): every field is checked by one schema
on read, with a typed error naming the field, before anything is built or allocated from it."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest

import edgeseg.runtime as rt
from edgeseg.errors import CheckpointError, ConfigError
from edgeseg.metadata import ModelMetadata, check_metadata_dict

IMAGE = np.zeros((64, 64, 3), np.uint8)


def _good() -> dict:
    return ModelMetadata(model="m", classes=("a", "b", "c", "d"), input_size=(64, 64)).to_dict()


# (change to a valid metadata dict, field the error must name)
BAD_METADATA = [
    ({"classes": "abcd", "palette": []}, "classes"),
    ({"classes": ["a", 3]}, "classes[1]"),
    ({"classes": []}, "classes"),
    ({"mean": [float("nan"), 0.4, 0.4]}, "mean"),
    ({"std": [0.2, float("inf"), 0.2]}, "std"),
    ({"std": [0.2, "0.2", 0.2]}, "std"),
    ({"mean": [0.5, 0.5]}, "mean"),
    ({"input_size": [100000, 100000]}, "input_size"),
    ({"input_size": [64.0, 64]}, "input_size"),
    ({"input_size": [True, 64]}, "input_size"),
    ({"output_names": ["logits"]}, "output_names"),
    ({"output_names": {"city": 3}}, "output_names"),
    ({"output_names": {"nowhere": "logits"}}, "output_names"),
    ({"argmax": "true"}, "argmax"),
    ({"include_preprocess": 1}, "include_preprocess"),
    ({"layout": "NCHW"}, "layout"),
    ({"schema_version": "1"}, "schema_version"),
    ({"palette": [[0, 0, 0]] * 3 + [[0, 0, 256]]}, "palette[3]"),
    ({"extra": []}, "extra"),
    ({"domains": [{"name": "x"}]}, "domains[0]"),
    ({"model": ""}, "model"),
    ({"model": "x" * 1000}, "model"),
]


@pytest.mark.parametrize("change,field", BAD_METADATA, ids=[f for _, f in BAD_METADATA])
def test_metadata_schema_names_the_bad_field(change, field):
    data = {**_good(), **change}
    with pytest.raises(ConfigError, match=f"field '{field.split('[')[0]}") as info:
        ModelMetadata.from_dict(json.loads(json.dumps(data)))
    assert "convert" in str(info.value)  # the fix


def test_metadata_schema_accepts_what_edgeseg_writes():
    good = ModelMetadata(model="m", classes=("a", "b"), mean=(0.1, 0.2, 0.3), input_size=(32, 48))
    assert ModelMetadata.from_json(good.to_json()) == good
    check_metadata_dict(good.to_dict())  # tuples, as to_dict gives them in process


def test_metadata_constructor_refuses_a_string_and_non_finite_values():
    with pytest.raises(ConfigError, match="one string"):
        ModelMetadata(model="m", classes="abcd")
    with pytest.raises(ConfigError, match="NaN or infinity"):
        ModelMetadata(model="m", classes=("a",), std=(0.2, math.nan, 0.2))
    with pytest.raises(ConfigError, match="input_size"):
        ModelMetadata(model="m", classes=("a",), input_size=(100000, 100000))


# --- checkpoint headers ---------------------------------------------------------------------
def _rewrite_checkpoint(src, dst, *, header=None, metadata=None):
    """A copy of checkpoint ``src`` with its header texts replaced (strings: raw text)."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    with safe_open(str(src), "pt") as f:
        meta = dict(f.metadata())
    for key, value in (("edgeseg.checkpoint", header), ("edgeseg", metadata)):
        if value is not None:
            old = json.loads(meta[key])
            meta[key] = value if isinstance(value, str) else json.dumps(value(old))
    save_file(load_file(str(src)), str(dst), metadata=meta)
    return dst


def _without(key):
    return lambda d: {k: v for k, v in d.items() if k != key}


BAD_HEADERS = {
    "not_json": dict(header="{not json"),
    "a_list": dict(header="[1, 2]"),
    "no_model": dict(header=_without("model")),
    "string_build_config": dict(header=lambda d: {**d, "build_config": "abc"}),
    "string_format_version": dict(header=lambda d: {**d, "format_version": "1"}),
    "newer_format": dict(header=lambda d: {**d, "format_version": 99}),
    "huge_num_classes": dict(header=lambda d: {**d, "build_config": {**d["build_config"], "num_classes": 10**9}}),
    "nan_width": dict(header=lambda d: {**d, "build_config": {**d["build_config"], "width_mult": math.nan}}),
    "other_num_classes": dict(header=lambda d: {**d, "build_config": {**d["build_config"], "num_classes": 9}}),
    "unknown_option": dict(header=lambda d: {**d, "build_config": {**d["build_config"], "bogus": 1}}),
    "string_schema_version": dict(metadata=lambda d: {**d, "schema_version": "1"}),
    "metadata_two_classes": dict(metadata=lambda d: {**d, "classes": ["a", "b"], "palette": []}),
    "metadata_nan_mean": dict(metadata=lambda d: {**d, "mean": [math.nan, 0, 0]}),
    "metadata_huge_input": dict(metadata=lambda d: {**d, "input_size": [100000, 100000]}),
    "metadata_not_json": dict(metadata="\x00garbage"),
}


@pytest.mark.parametrize("case", sorted(BAD_HEADERS))
def test_bad_checkpoint_headers_raise_typed_errors(model_files, tmp_path, case):
    from edgeseg.checkpoint import load_model

    path = _rewrite_checkpoint(model_files["ckpt"], tmp_path / f"{case}.safetensors", **BAD_HEADERS[case])
    with pytest.raises(CheckpointError):
        load_model(path)
    with pytest.raises(rt.ModelFileError):
        rt.load(path)


def test_good_checkpoint_still_loads(model_files, tmp_path):
    path = _rewrite_checkpoint(model_files["ckpt"], tmp_path / "same.safetensors", header=lambda d: d)
    assert rt.load(path).predict(IMAGE).shape == (64, 64)


# --- graphs that contradict their metadata, or have no input -----------------------------------
def _onnx_with_metadata(src, dst, change):
    import onnx

    proto = onnx.load(str(src))
    for entry in proto.metadata_props:
        if entry.key == "edgeseg":
            entry.value = json.dumps(change(json.loads(entry.value)))
    onnx.save(proto, str(dst))
    return dst


def test_argmax_flag_on_a_logits_graph_is_refused_at_load(model_files, tmp_path):
    path = _onnx_with_metadata(model_files["onnx"], tmp_path / "m.onnx", lambda d: {**d, "argmax": True})
    with pytest.raises(rt.UnsupportedModelError, match="argmax"):
        rt.load(path)


def test_argmax_graph_with_fewer_classes_in_its_metadata_is_refused(model_files, tmp_path):
    path = _onnx_with_metadata(
        model_files["onnx_nhwc_pre_argmax"], tmp_path / "m.onnx", lambda d: {**d, "classes": ["a", "b"], "palette": []}
    )
    seg = rt.load(path)
    rng = np.random.default_rng(0)
    with pytest.raises(rt.UnsupportedModelError, match="names 2 classes"):
        for _ in range(20):  # some image gives a class id >= 2
            seg.predict(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))


def test_logits_graph_with_fewer_classes_in_its_metadata_is_refused(model_files, tmp_path):
    path = _onnx_with_metadata(
        model_files["onnx"], tmp_path / "m.onnx", lambda d: {**d, "classes": ["a", "b"], "palette": []}
    )
    with pytest.raises(rt.UnsupportedModelError, match="not 2 class"):
        rt.load(path)


def _constant_graph(path):
    """An ONNX graph with no input: one constant (1, 4, 64, 64) output."""
    import onnx
    from onnx import TensorProto, helper

    value = helper.make_tensor("v", TensorProto.FLOAT, [1, 4, 64, 64], np.zeros(4 * 64 * 64, np.float32))
    graph = helper.make_graph(
        [helper.make_node("Constant", [], ["logits"], value=value)], "g", [],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 4, 64, 64])],
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    proto.ir_version = 8
    onnx.save(proto, str(path))
    return path


def test_graph_without_inputs_is_refused(tmp_path):
    import openvino as ov

    onnx_path = _constant_graph(tmp_path / "const.onnx")
    with pytest.raises(rt.UnsupportedModelError, match="0 inputs"):
        rt.load(onnx_path)
    ov.save_model(ov.convert_model(str(onnx_path)), str(tmp_path / "const.xml"))
    with pytest.raises(rt.UnsupportedModelError, match="0 inputs"):
        rt.load(tmp_path / "const.xml")


def test_non_utf8_metadata_is_a_model_file_error(model_files, tmp_path):
    import onnx

    proto = onnx.load(str(model_files["onnx"]))
    for entry in proto.metadata_props:
        if entry.key == "edgeseg":
            entry.value = entry.value.replace('"model": "', '"model": "QQQQ')
    data = proto.SerializeToString().replace(b"QQQQ", b"\xff\xfe\xff\xfe")
    (tmp_path / "bad.onnx").write_bytes(data)
    with pytest.raises(rt.ModelFileError, match="not UTF-8"):
        rt.load(tmp_path / "bad.onnx")

    xml = model_files["openvino"].read_bytes()
    damaged = xml.replace(b"&quot;model&quot;: &quot;", b"&quot;model&quot;: &quot;\xff\xfe", 1)
    assert damaged != xml
    (tmp_path / "bad.xml").write_bytes(damaged)
    shutil.copy(model_files["openvino"].with_suffix(".bin"), tmp_path / "bad.bin")
    with pytest.raises(rt.ModelFileError, match="not UTF-8"):
        rt.load(tmp_path / "bad.xml")
