"""ONNX target: torch.onnx dynamo exporter -> onnx.checker -> onnxslim, metadata in metadata_props.

fp16 stores weights and activations in float16 and computes in float16, except the op types in
:data:`FP32_OPS` and the logits head (see :data:`HEAD_STARTS`), which run in float32 between Casts
(mixed precision); the ``image`` input and the outputs stay float32 (``keep_io_types``), as the
file contract says.
"""

from __future__ import annotations

from pathlib import Path

import onnx
import onnxslim
import torch

from edgeseg.metadata import METADATA_KEY

# The exporter's default; every runtime we target (onnxruntime >= 1.20, OpenCV, TensorRT) reads it.
OPSET = 18

# Op types an fp16 file keeps in float32, on top of onnxruntime's default list (Max, Min, TopK...).
# LayerNormalization, measured on mobileformer_lraspp_294m (random init, seeds 0-9, 128x256, the
# fidelity benchmark's images; benchmarks/results/fidelity.md): in fp16 the global tokens are
# rounded to fp16 twice per LayerNorm (its input, the residual sum, and its output), and the
# tokens steer every pixel (bridges, dynamic-ReLU slopes): max |logit err| 2.3-4.5e-3, argmax
# agreement down to 99.58%. Kept float32 (onnxruntime then fuses the residual Add into it, in
# float32): 1.3-1.9e-3, worst 99.87%, near the cost of fp16 weights alone (0.7-1.3e-3). Softmax,
# MatMul, GELU (Erf, Div), HardSigmoid or ReduceMean kept float32 as well moved the error by
# < 0.4e-3 either way (seed noise); Gemm lowered it by 0.1-0.3e-3 but would keep 36% of the
# weights in float32. Convs and matmuls stay float16: the file is half the fp32 size.
FP32_OPS = ("LayerNormalization",)

# The logits head is kept float32 too: the nodes from each output back to the nearest op in
# HEAD_STARTS (the classifier), i.e. the classifier, the residual Add and the upsampling. Measured
# on multidomain_mobileformer_lraspp_151m (random init): logits up to 0.19 rounded to fp16 (steps of
# 1.2e-4) tie classes that differ by less: 98.69% agreement on the converter's own check (99.80%
# on the fidelity images), max |logit err| 5.9e-5, just that rounding. With the head in float32:
# 99.99% on the fidelity images, 1.7e-5 (mobileformer_lraspp_294m: 1.5-1.9e-3 -> 1.2-1.7e-3).
# The head holds a few thousand weights, which stay float32.
HEAD_STARTS = ("Conv", "MatMul", "Gemm")


def export(graph, files: tuple[Path, ...], options) -> None:
    program = torch.onnx.export(
        graph.module,
        (graph.sample,),
        dynamo=True,
        opset_version=OPSET,
        input_names=[graph.input_name],
        output_names=list(graph.output_names),
        verbose=False,
    )
    model = onnxslim.slim(program.model_proto)
    if options.precision == "fp16":
        model = _to_mixed_fp16(model)
    entry = model.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, graph.metadata.to_json()
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(files[0]))


def _to_mixed_fp16(model: onnx.ModelProto) -> onnx.ModelProto:
    from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST, convert_float_to_float16

    head = _logits_head(model)
    model = convert_float_to_float16(model, keep_io_types=True, op_block_list=[*DEFAULT_OP_BLOCK_LIST, *FP32_OPS],
                                     node_block_list=head)
    _drop_duplicate_casts(model)
    _drop_fp16_round_trips(model)
    # keep_io_types leaves the graph's Cast nodes out of order; slimming sorts them again.
    return onnxslim.slim(model)


def _logits_head(model: onnx.ModelProto) -> list[str]:
    """Names of the nodes between each output and the nearest HEAD_STARTS op, that op included."""
    producer = {out: node for node in model.graph.node for out in node.output}
    head, todo = {}, [out.name for out in model.graph.output]
    while todo:
        node = producer.get(todo.pop())
        if node is None or node.name in head or node.op_type == "Shape":  # Shape reads no values
            continue
        head[node.name] = node
        if node.op_type not in HEAD_STARTS:
            todo += node.input
    return list(head)


def _drop_fp16_round_trips(model: onnx.ModelProto) -> None:
    """The converter casts every float32 op's output to fp16 and back for the next float32 op (or
    the float32 output): a round trip that only rounds. Read the float32 value directly."""
    graph = model.graph
    float32 = {v.name for v in (*graph.input, *graph.value_info) if v.type.tensor_type.elem_type == onnx.TensorProto.FLOAT}
    producer = {out: node for node in graph.node for out in node.output}
    source = {}
    for node in graph.node:
        first = producer.get(node.input[0]) if _casts_to(node, onnx.TensorProto.FLOAT) else None
        if first is not None and _casts_to(first, onnx.TensorProto.FLOAT16) and first.input[0] in float32:
            source[node.output[0]] = first.input[0]
    outputs = {out.name for out in graph.output}
    nodes = []
    for node in graph.node:
        if node.op_type == "Cast" and node.output[0] in source:
            if node.output[0] in outputs:  # the graph output keeps its name
                nodes.append(onnx.helper.make_node("Identity", [source[node.output[0]]], list(node.output), name=node.name))
            continue
        node.input[:] = [source.get(name, name) for name in node.input]
        nodes.append(node)
    del graph.node[:]
    graph.node.extend(nodes)


def _casts_to(node: onnx.NodeProto, dtype: int) -> bool:
    return node.op_type == "Cast" and any(a.name == "to" and a.i == dtype for a in node.attribute)


def _drop_duplicate_casts(model: onnx.ModelProto) -> None:
    """The converter gives each float32 op its own Cast of an fp16 input, named after the input:
    two such ops sharing an input (every LayerNorm's all-zero bias, merged by slimming with the
    fp16 Linears' zero biases) get two identical Casts, an invalid graph. Keep the first."""
    seen, nodes = set(), []
    for node in model.graph.node:
        if node.op_type == "Cast" and node.output[0] in seen:
            continue
        seen.update(node.output)
        nodes.append(node)
    del model.graph.node[:]
    model.graph.node.extend(nodes)
