"""benchmarks/ceiling.py splits a profile into dense matmul-class ops and the rest: a depthwise
convolution must land in the rest even after ONNX Runtime rewrote the graph it ran."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
sys.path.append(str(Path(__file__).resolve().parents[1] / "benchmarks"))  # after every installed module


def _two_convs(path: Path, channels: int = 32, size: int = 64) -> None:
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    dense = numpy_helper.from_array(rng.standard_normal((channels, channels, 1, 1)).astype(np.float32), "w_dense")
    depthwise = numpy_helper.from_array(rng.standard_normal((channels, 1, 3, 3)).astype(np.float32), "w_dw")
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w_dense"], ["y"], name="pointwise"),
         helper.make_node("Conv", ["y", "w_dw"], ["z"], name="depthwise", group=channels, pads=[1, 1, 1, 1])],
        "two_convs",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, channels, size, size])],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, [1, channels, size, size])],
        [dense, depthwise],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))


def test_ceiling_puts_a_depthwise_conv_in_the_rest_and_bounds_the_file(tmp_path):
    import ceiling
    import int8_profile

    path = tmp_path / "two.onnx"
    _two_convs(path)
    profile = int8_profile.profile_onnx(path, runs=3, nodes=True)
    groups = sorted(group for op, _ms, group in profile["nodes"] if op == "Conv")
    assert groups == [1, 32]  # read from the graph ONNX Runtime ran (NCHWc), by node name
    dense, rest = ceiling.split("onnxruntime", profile)
    assert dense > 0 and rest.get("Conv (grouped)", 0) > 0
    assert dense + sum(rest.values()) == pytest.approx(min(profile["kernel_ms"], profile["wall_ms"]))
    # a dense op never counts as rest, whatever its backend calls it
    _, ov_rest = ceiling.split("openvino", {"by_op": {"Convolution (brgconv_avx512_1x1_f32)": 2.0,
                                                      "GroupConvolution (jit_avx512_dw_f32)": 1.0},
                                            "kernel_ms": 3.0, "wall_ms": 6.0})
    assert ov_rest == {"GroupConvolution (jit_avx512_dw_f32)": 1.0}  # never scaled up to the wall time
