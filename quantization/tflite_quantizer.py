"""litert-torch's PT2E quantizer, extended to the activations and resizes LiteRT runs in int8.

litert-torch annotates convolutions, linear layers, add/mul (matched by a source tag that
non-strict torch.export does not record), pools, concat, sigmoid and softmax. Left alone, hard-swish
and hard-sigmoid (every MobileNetV3 block and its squeeze-excitation), residual adds and the
bilinear resizes of the LR-ASPP head stay float: each pays DEQUANTIZE -> float op -> QUANTIZE, and
an int8-only accelerator (NNAPI/Edge TPU-style delegates) hands every such island back to the CPU.
LiteRT has int8 kernels for them, so they are annotated here (LR-ASPP-L: QUANTIZE/DEQUANTIZE pairs
40 -> 18; the rest sit on the 1x1 squeeze-excitation gates, where litert-torch decomposes
hard-sigmoid into float ops). On this CPU's XNNPACK the int8 file is no faster for it (see
benchmarks/results/int8.md); the point is a graph that is int8 end to end, as QAT then trains it.

- hard-swish / hard-sigmoid / relu, residual adds and gating muls: inputs reuse their producers'
  int8 tensors, the output gets its own observer (its range differs from the inputs').
- bilinear / nearest resize: output shares the input's scale and zero point (an interpolation
  never leaves the input's range; LiteRT's int8 resize requires equal scales).
"""

from __future__ import annotations

import torch
from torch.fx import Node

# aten ops (functional and in-place) per annotation kind.
_OWN_OUTPUT_RANGE = {
    torch.ops.aten.hardswish.default, torch.ops.aten.hardswish_.default,
    torch.ops.aten.hardsigmoid.default, torch.ops.aten.hardsigmoid_.default,
    torch.ops.aten.relu.default, torch.ops.aten.relu_.default,
}
# Residual adds and gating muls: torch.export (non-strict) records no ``source_fn_stack`` for
# ``x + y``, which litert-torch's own add/mul annotators match on, so they were left float too.
_BINARY = {torch.ops.aten.add.Tensor, torch.ops.aten.mul.Tensor}
_SHARED_RANGE = {
    torch.ops.aten.upsample_bilinear2d.vec, torch.ops.aten.upsample_bilinear2d.default,
    torch.ops.aten.upsample_nearest2d.vec, torch.ops.aten.upsample_nearest2d.default,
}
_ANNOTATED = _OWN_OUTPUT_RANGE | _SHARED_RANGE | _BINARY


def edgeseg_pt2e_quantizer():
    """A ``PT2EQuantizer`` subclass instance that also annotates the ops above."""
    from litert_torch.quantize.pt2e_quantizer import PT2EQuantizer

    class EdgesegPT2EQuantizer(PT2EQuantizer):
        def _annotate_all_static_patterns(self, model, quantization_config, filter_fn=None):
            model = super()._annotate_all_static_patterns(model, quantization_config, filter_fn)
            if quantization_config is not None:
                annotate_activations_and_resizes(model, quantization_config, filter_fn)
            return model

    return EdgesegPT2EQuantizer()


def annotate_activations_and_resizes(model: torch.fx.GraphModule, config, filter_fn=None) -> int:
    """Annotate every not-yet-annotated op of the two kinds; returns how many were."""
    from litert_torch.quantize.pt2e_quantizer_utils import get_input_act_qspec, get_output_act_qspec
    from torchao.quantization.pt2e.quantizer import QuantizationAnnotation, SharedQuantizationSpec

    input_spec, own_output_spec = get_input_act_qspec(config), get_output_act_qspec(config)
    if input_spec is None:
        return 0
    count = 0
    for node in model.graph.nodes:
        if node.op != "call_function" or node.target not in _ANNOTATED:
            continue
        if _annotated(node) or (filter_fn is not None and not filter_fn(node)):
            continue
        sources = [a for a in node.args[: 2 if node.target in _BINARY else 1] if isinstance(a, Node)]
        if not sources or (node.target in _BINARY and len(sources) != 2):
            continue  # x + constant: litert-torch folds it into the neighbouring op
        # Reuse each producer's int8 tensor when it has one: no requantize between them.
        inputs = {a: SharedQuantizationSpec(a) if _has_output_spec(a) else input_spec for a in sources}
        output_spec = SharedQuantizationSpec((sources[0], node)) if node.target in _SHARED_RANGE else own_output_spec
        node.meta["quantization_annotation"] = QuantizationAnnotation(
            input_qspec_map=inputs, output_qspec=output_spec, _annotated=True
        )
        count += 1
    return count


def _annotated(node: Node) -> bool:
    annotation = node.meta.get("quantization_annotation")
    return annotation is not None and annotation._annotated


def _has_output_spec(node: Node) -> bool:
    annotation = node.meta.get("quantization_annotation")
    return annotation is not None and annotation._annotated and annotation.output_qspec is not None
