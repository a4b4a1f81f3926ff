"""TFLite int8: PT2E with litert-torch's quantizer, the LiteRT int8 scheme.

Weights int8 per output channel (symmetric), activations int8 per tensor (asymmetric) from
histogram observers on the calibration images (PTQ) or moving-average fake quantization (QAT,
:func:`prepare_qat`, with conv+BN folded in the fake-quantized graph as LiteRT folds it). Hard-swish
and hard-sigmoid are rewritten into int8 ADD/MUL first, and they, residual adds, gates and resizes
are annotated int8 (``tflite_quantizer``): MobileNetV3 LR-ASPP is one XNNPACK partition. Ops left
unannotated (LayerNorm, matmul) run in float between QUANTIZE/DEQUANTIZE.
``--io int8|uint8`` rewrites the file's boundary for full-int8 I/O (see ``tflite_io``).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

from edgeseg.converters.tflite import _NamedOutputs, with_metadata
from edgeseg.quantization.calibration import calibration_inputs
from edgeseg.quantization.gate import gate_int8_file
from edgeseg.quantization.layers import check_layers, graph_path, reference_model


def quantizer(keep_float: tuple[str, ...] = (), *, qat: bool = False):
    """litert-torch's PT2E quantizer (per-channel int8 weights, int8 activations), extended to
    hard-swish / hard-sigmoid / resize (see ``tflite_quantizer``)."""
    from litert_torch.quantize.pt2e_quantizer import get_symmetric_quantization_config

    from edgeseg.quantization.tflite_quantizer import edgeseg_pt2e_quantizer

    keep = tuple(graph_path(layer) for layer in keep_float)
    return edgeseg_pt2e_quantizer(keep).set_global(get_symmetric_quantization_config(is_per_channel=True, is_qat=qat))


def export_program(module: nn.Module, graph, batch: int = 1) -> nn.Module:
    """The graph as a torch.export GraphModule with named outputs (what PT2E prepares), for
    inputs of ``batch`` images (QAT trains on batches; the file itself takes one image)."""
    named = _NamedOutputs(module, graph.output_names).eval()
    sample = graph.sample.expand(batch, *graph.sample.shape[1:]).contiguous()
    program = torch.export.export(named, (), {graph.input_name: sample}, strict=False).module()
    from edgeseg.quantization.tflite_quantizer import (
        chunks_as_slices,
        decompose_hard_activations,
        float_scalars,
        normalization_as_conv,
    )

    float_scalars(program)  # int operands of float ops: the quantizer would observe int64 constants
    chunks_as_slices(program)  # pieces that keep their input's int8 scale
    decompose_hard_activations(program)  # hard-swish/-sigmoid as int8 ops XNNPACK takes
    normalization_as_conv(program)  # the input's per-channel x * scale + shift as one 1x1 depthwise conv
    return program


def prepare_ptq(graph, keep_float: tuple[str, ...], inputs: list[np.ndarray]):
    """PT2E PTQ: insert observers, run the calibration images, convert to Q/DQ."""
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    q = quantizer(keep_float)
    prepared = prepare_pt2e(export_program(graph.module, graph), q)
    with torch.no_grad():
        for x in inputs:
            prepared(**{graph.input_name: torch.from_numpy(x)})
    return convert_pt2e(prepared, fold_quantize=False), q


def write_tflite(converted, q, graph, io: str, inputs: list[np.ndarray]) -> bytes:
    """litert-torch conversion of a PT2E-converted graph, I/O types set, metadata added."""
    import litert_torch
    from litert_torch.quantize.quant_config import QuantConfig

    from edgeseg.quantization.tflite_io import set_io_types

    model = litert_torch.convert(converted, sample_kwargs={graph.input_name: graph.sample},
                                 quant_config=QuantConfig(pt2e_quantizer=q))
    data = bytes(model.model_content())
    data = set_io_types(data, io, _range(inputs), _output_ranges(graph, inputs))
    return with_metadata(data, graph.metadata, graph.input_name, graph.output_names)


def export(graph, files: tuple[Path, ...], options) -> None:
    """Write the int8 ``.tflite`` of ``graph`` after it passes the accuracy gate."""
    quant = options.quant
    net = reference_model(graph, quant.keep_float)
    check_layers(net, quant.keep_float)
    _describe(graph, quant, "PT2E PTQ (litert-torch PT2EQuantizer)")
    inputs = calibration_inputs(quant.calibration, quant.calib_size, graph.metadata, graph.sample.numpy().dtype)
    converted, q = prepare_ptq(graph, quant.keep_float, inputs)
    graph.gate = write_gated(write_tflite(converted, q, graph, quant.io, inputs), files, net, quant,
                             graph.metadata.input_size)


def write_gated(data: bytes, files: tuple[Path, ...], net: nn.Module, quant, input_size: tuple[int, int]):
    with tempfile.TemporaryDirectory(dir=files[0].parent, prefix=".int8-") as scratch:
        path = Path(scratch) / "model.tflite"
        path.write_bytes(data)
        gate = gate_int8_file(path, net, quant, input_size)
        os.replace(path, files[0])
    return gate


def _describe(graph, quant, how: str) -> None:
    graph.metadata = graph.metadata.replace(extra={**graph.metadata.extra, "quantization": {
        "scheme": f"{how}, int8 per-channel symmetric weights, int8 per-tensor activations", **quant.describe()}})


def _range(arrays) -> tuple[float, float]:
    return float(min(a.min() for a in arrays)), float(max(a.max() for a in arrays))


def _output_ranges(graph, inputs: list[np.ndarray]) -> list[tuple[float, float]]:
    """(min, max) of each float output on the calibration images: scales of int8 outputs."""
    with torch.no_grad():
        outs = [graph.module(torch.from_numpy(x)) for x in inputs]
    outs = [(o,) if isinstance(o, torch.Tensor) else o for o in outs]
    return [_range([o[k].float().numpy() for o in outs]) for k in range(len(graph.output_names))]
