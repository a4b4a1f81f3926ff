"""Full-int8 I/O for a quantized ``.tflite``: the image input and the output as float, int8 or uint8.

A file that normalizes inside (uint8 RGB pixels in, the TFLite default) keeps its pixel input: only
its outputs take the ``io`` type.

litert-torch's static PT2E conversion folds the first QUANTIZE into the input (int8 in) and ends
with a float output. This rewrites the flatbuffer's boundary: a QUANTIZE op in front of the
input (float -> int8, or uint8 -> int8 requantize: same scale, zero point + 128), and at the
output either the final DEQUANTIZE removed (int8 out) or a QUANTIZE appended with the range the
logits had on the calibration images. The runtime reads each tensor's scale/zero point back.
"""

from __future__ import annotations

import flatbuffers
import numpy as np
from ai_edge_litert import schema_py_generated as fb

_TYPES = {"float": fb.TensorType.FLOAT32, "int8": fb.TensorType.INT8, "uint8": fb.TensorType.UINT8}
_ZERO_SHIFT = {fb.TensorType.INT8: 0, fb.TensorType.UINT8: 128}
_LIMITS = {fb.TensorType.INT8: (-128, 127), fb.TensorType.UINT8: (0, 255)}


def set_io_types(data: bytes, io: str, input_range: tuple[float, float], output_ranges: list[tuple[float, float]]) -> bytes:
    """Return the model with input and outputs of type ``io``.

    ``input_range`` / ``output_ranges``: (min, max) of the input and of each output on the
    calibration images, used where a boundary tensor is float and has no scale to take.
    """
    model = fb.ModelT.InitFromPackedBuf(data, 0)
    graph = model.subgraphs[0]
    graph.inputs, graph.outputs = [int(i) for i in graph.inputs], [int(i) for i in graph.outputs]
    want = _TYPES[io]
    index = graph.inputs[0]
    tensor = graph.tensors[index]
    # A uint8 input without a scale is the raw pixels of a file that normalizes inside (the TFLite
    # default, --include-preprocess): integer already, and what MediaPipe feeds; it stays as it is.
    pixels_in = tensor.type == fb.TensorType.UINT8 and not _is_quantized(tensor)
    if tensor.type != want and not pixels_in:
        new = _boundary_tensor(graph, index, want, tensor.name + b"_" + io.encode(), _range_of(tensor, input_range))
        graph.operators.insert(0, _op(model, _convert_code(want, tensor.type), [new], [index]))
        _retarget(model, graph, index, new, inputs=True)
    for k, index in enumerate(list(graph.outputs)):
        tensor = graph.tensors[index]
        if tensor.type == want:
            continue
        producer = next(op for op in graph.operators if index in op.outputs)
        source = producer.inputs[0]
        if _is_dequantize(model, producer) and graph.tensors[source].type == want:
            graph.operators.remove(producer)  # int8 -> float at the very end: just drop it
            _retarget(model, graph, index, source, inputs=False)
            continue
        quantized = _source_quantization(graph, producer, model)
        new = _boundary_tensor(graph, index, want, tensor.name + b"_" + io.encode(), _range_of(quantized, output_ranges[k]))
        graph.operators.append(_op(model, _convert_code(tensor.type, want), [index], [new]))
        _retarget(model, graph, index, new, inputs=False)
    builder = flatbuffers.Builder(len(data) + 1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _range_of(tensor, fallback: tuple[float, float]) -> tuple[float, float]:
    """The real range a quantized tensor covers, or ``fallback`` for a float tensor."""
    q = tensor.quantization if tensor is not None else None
    if q is not None and q.scale is not None and len(q.scale) == 1 and tensor.type in _LIMITS:
        lo, hi = _LIMITS[tensor.type]
        scale, zero = float(q.scale[0]), int(q.zeroPoint[0])
        return (lo - zero) * scale, (hi - zero) * scale
    return fallback


def _is_quantized(tensor) -> bool:
    q = tensor.quantization
    return q is not None and q.scale is not None and len(q.scale) > 0


def _source_quantization(graph, producer, model):
    """The int8 tensor a final DEQUANTIZE reads (its scale is the output's), else None."""
    if _is_dequantize(model, producer):
        return graph.tensors[producer.inputs[0]]
    return None


def _boundary_tensor(graph, like: int, dtype: int, name: bytes, real_range: tuple[float, float]) -> int:
    """Add a tensor shaped like ``like`` of ``dtype`` (quantized to cover ``real_range``)."""
    src = graph.tensors[like]
    tensor = fb.TensorT()
    tensor.shape, tensor.shapeSignature = list(src.shape), src.shapeSignature
    tensor.type, tensor.buffer, tensor.name = dtype, 0, name
    if dtype in _LIMITS:
        lo, hi = _LIMITS[dtype]
        real_lo, real_hi = min(real_range[0], 0.0), max(real_range[1], 0.0)
        scale = max((real_hi - real_lo) / (hi - lo), 1e-8)
        zero = int(np.clip(round(lo - real_lo / scale), lo, hi))
        q = fb.QuantizationParametersT()
        q.scale, q.zeroPoint = [float(scale)], [zero]
        tensor.quantization = q
    graph.tensors.append(tensor)
    return len(graph.tensors) - 1


def _convert_code(src: int, dst: int) -> int:
    """QUANTIZE takes float or int8/uint8 in (requantize); DEQUANTIZE gives float out."""
    return fb.BuiltinOperator.DEQUANTIZE if dst == fb.TensorType.FLOAT32 else fb.BuiltinOperator.QUANTIZE


def _op(model, code: int, inputs: list[int], outputs: list[int]):
    op = fb.OperatorT()
    op.opcodeIndex, op.inputs, op.outputs = _opcode_index(model, code), inputs, outputs
    return op


def _opcode_index(model, code: int) -> int:
    for i, opcode in enumerate(model.operatorCodes):
        if max(opcode.builtinCode, opcode.deprecatedBuiltinCode) == code:
            return i
    opcode = fb.OperatorCodeT()
    opcode.builtinCode, opcode.deprecatedBuiltinCode, opcode.version = code, min(code, 127), 2
    model.operatorCodes.append(opcode)
    return len(model.operatorCodes) - 1


def _is_dequantize(model, op) -> bool:
    code = model.operatorCodes[op.opcodeIndex]
    return max(code.builtinCode, code.deprecatedBuiltinCode) == fb.BuiltinOperator.DEQUANTIZE


def _retarget(model, graph, old: int, new: int, *, inputs: bool) -> None:
    """Make tensor ``new`` the graph (and signature) input or output that ``old`` was."""
    ends = graph.inputs if inputs else graph.outputs
    ends[list(ends).index(old)] = new
    for signature in model.signatureDefs or []:
        for entry in signature.inputs if inputs else signature.outputs:
            if entry.tensorIndex == old:
                entry.tensorIndex = new
