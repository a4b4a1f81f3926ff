"""litert-torch's PT2E quantizer, extended to the activations and resizes LiteRT runs in int8.

litert-torch annotates convolutions, linear layers, add/mul (matched by a source tag that
non-strict torch.export does not record), pools, concat, sigmoid and softmax. Left alone, hard-swish
and hard-sigmoid (every MobileNetV3 block and its squeeze-excitation), residual adds and the
bilinear resizes of the LR-ASPP head stay float: each pays DEQUANTIZE -> float op -> QUANTIZE, and
an int8-only accelerator (NNAPI/Edge TPU-style delegates) hands every such island back to the CPU.
LiteRT has int8 kernels for them, so they are annotated here. XNNPACK, LiteRT's CPU delegate, has
no int8 HARD_SWISH, though: each one split the delegate's partition (LR-ASPP-L: 21 partitions, int8
1.3-1.7x slower than fp32), and litert-torch lowered the squeeze-excitation hard-sigmoid to float ops
between DEQUANTIZE and QUANTIZE. :func:`decompose_hard_activations` rewrites both into int8
ADD/MUL before PT2E (PTQ and QAT alike): the file is one XNNPACK partition with QUANTIZE/DEQUANTIZE
only at its boundary (benchmarks/results/int8.md).

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
    torch.ops.aten.slice.Tensor,  # a slice of an int8 tensor: the same scale (TFLite requires it)
    torch.ops.aten.upsample_bilinear2d.vec, torch.ops.aten.upsample_bilinear2d.default,
    torch.ops.aten.upsample_nearest2d.vec, torch.ops.aten.upsample_nearest2d.default,
}
_ANNOTATED = _OWN_OUTPUT_RANGE | _SHARED_RANGE | _BINARY


_HARD = {
    torch.ops.aten.hardswish.default: False, torch.ops.aten.hardswish_.default: False,
    torch.ops.aten.hardsigmoid.default: True, torch.ops.aten.hardsigmoid_.default: True,
}


def decompose_hard_activations(model: torch.fx.GraphModule) -> int:
    """Rewrite hard-swish and hard-sigmoid into ops XNNPACK runs in int8; returns how many.

    XNNPACK (LiteRT's CPU delegate) has no int8 HARD_SWISH: each one splits the delegate's
    partition and runs in TFLite's own int8 kernel (LR-ASPP-L: 21 partitions, int8 slower than
    fp32), and litert-torch lowers a quantized hard-sigmoid to float ops between DEQUANTIZE and
    QUANTIZE. Here ``hardsigmoid(x) = relu6(x + 3) * (1/6)`` (an ADD with a fused RELU6 and a MUL
    by a constant, both int8) and ``hardswish(x) = x * hardsigmoid(x)`` (one more int8 MUL). The
    float result is the same up to rounding (a multiply by 1/6 instead of a divide by 6).
    """
    graph = model.graph
    count = 0
    for node in _calls(graph, _HARD):
        x = node.args[0]
        with graph.inserting_before(node):
            three, sixth = (_constant(model, x, value) for value in (3.0, 1.0 / 6.0))
            shifted = graph.call_function(torch.ops.aten.add.Tensor, (x, three))
            clipped = graph.call_function(torch.ops.aten.hardtanh.default, (shifted, 0.0, 6.0))
            out = gate = graph.call_function(torch.ops.aten.mul.Tensor, (clipped, sixth))
            if not _HARD[node.target]:
                out = graph.call_function(torch.ops.aten.mul.Tensor, (x, gate))
        _replace(graph, node, out, {shifted, clipped, gate, out}, _META_KEYS)
        count += 1
    return _finish(model, count)


_ELEMENTWISE = (torch.ops.aten.mul.Tensor, torch.ops.aten.add.Tensor, torch.ops.aten.sub.Tensor,
                torch.ops.aten.rsub.Scalar, torch.ops.aten.mul.Scalar, torch.ops.aten.add.Scalar)


def float_scalars(model: torch.fx.GraphModule) -> int:
    """Make the Python ``int`` operands of float elementwise ops floats (``2 * x`` -> ``2.0 * x``);
    returns how many. The PT2E quantizer turns such a scalar into a tensor constant and observes
    it: an int64 constant fails the histogram observer (Mobile-Former's dynamic ReLU,
    ``x * (2 * a1)``). Same values: the op promoted the int to float anyway."""
    count = 0
    for node in _calls(model.graph, _ELEMENTWISE):
        val = node.meta.get("val")
        if not (isinstance(val, torch.Tensor) and val.is_floating_point()):
            continue
        args = tuple(float(a) if isinstance(a, int) and not isinstance(a, bool) else a for a in node.args)
        if args != node.args or any(type(a) is not type(b) for a, b in zip(args, node.args)):
            node.args = args
            count += 1
    return _finish(model, count)


def chunks_as_slices(model: torch.fx.GraphModule) -> int:
    """Rewrite ``chunk`` (and its ``getitem`` users) into one ``slice`` per piece; returns how many.

    The quantizer leaves a chunk's pieces unannotated, so each consumer observed its piece anew
    and TFLite's SLICE got an output scale other than its input's, which the converter refuses
    (Mobile-Former's dynamic ReLU splits its slopes with ``chunk``). A slice is annotated to
    share its input's int8 range. Same values: the pieces are the same views."""
    import operator

    graph = model.graph
    count = 0
    for node in _calls(graph, {torch.ops.aten.chunk.default}):
        x, pieces = node.args[0], node.args[1]
        dim = node.args[2] if len(node.args) > 2 else node.kwargs.get("dim", 0)
        val = x.meta.get("val") if isinstance(x, Node) else None
        users = list(node.users)
        if not isinstance(val, torch.Tensor) or not all(u.target is operator.getitem for u in users):
            continue
        dim %= val.dim()
        size = -(-val.shape[dim] // pieces)  # torch.chunk: ceil(n / pieces) per piece
        for user in users:
            index = user.args[1]
            with graph.inserting_before(user):
                piece = graph.call_function(torch.ops.aten.slice.Tensor, (x, dim, index * size, min((index + 1) * size, val.shape[dim])))
            _replace(graph, user, piece, {piece}, _META_KEYS)
        graph.erase_node(node)
        count += 1
    return _finish(model, count)


def normalization_as_conv(model: torch.fx.GraphModule) -> int:
    """Rewrite the input normalization ``x * scale + shift`` (per-channel constants of shape
    (1, C, 1, 1)) into one depthwise 1x1 convolution; returns how many.

    XNNPACK runs an int8 MUL/ADD whose constant broadcasts over a 3-channel image row by row: on
    LR-ASPP-S at 512x512 the two ops took about 47 ms of 170 (timed with the constants made
    scalars); a depthwise convolution does the same affine map in one pass. The float result is the
    same up to rounding (one multiply-add per pixel either way).
    """
    graph = model.graph
    count = 0
    for add in _calls(graph, {torch.ops.aten.add.Tensor}):
        mul, shift = add.args[0], add.args[1]
        if not (isinstance(mul, Node) and mul.op == "call_function" and mul.target == torch.ops.aten.mul.Tensor
                and len(mul.users) == 1 and isinstance(shift, Node) and shift.op == "get_attr"):
            continue
        x, scale = mul.args[0], mul.args[1]
        if not (isinstance(x, Node) and isinstance(scale, Node) and scale.op == "get_attr"):
            continue
        scale_value, shift_value = _attr(model, scale.target), _attr(model, shift.target)
        val = x.meta.get("val")
        if not (isinstance(val, torch.Tensor) and val.dim() == 4 and isinstance(scale_value, torch.Tensor)
                and isinstance(shift_value, torch.Tensor)):
            continue
        channels = val.shape[1]
        if scale_value.shape != (1, channels, 1, 1) or shift_value.shape != (1, channels, 1, 1):
            continue
        name = f"_edgeseg_normalize_{count}"
        model.register_buffer(name + "_weight", scale_value.detach().reshape(channels, 1, 1, 1).clone(), persistent=False)
        model.register_buffer(name + "_bias", shift_value.detach().reshape(channels).clone(), persistent=False)
        with graph.inserting_before(add):
            weight, bias = graph.get_attr(name + "_weight"), graph.get_attr(name + "_bias")
            conv = graph.call_function(torch.ops.aten.conv2d.default, (x, weight, bias, [1, 1], [0, 0], [1, 1], channels))
        weight.meta["val"], bias.meta["val"] = _attr(model, name + "_weight"), _attr(model, name + "_bias")
        _replace(graph, add, conv, {conv}, ("nn_module_stack", "stack_trace", "val"), also=(mul,))
        count += 1
    return _finish(model, count)


# The meta a rewritten node takes from the one it replaces: module paths (--keep-float filters
# match on them), the source op, the trace and the shape.
_META_KEYS = ("nn_module_stack", "source_fn_stack", "stack_trace", "val")


def _calls(graph: torch.fx.Graph, targets) -> list[Node]:
    """The graph's call_function nodes of ``targets``, listed first (rewrites change the graph)."""
    return [node for node in graph.nodes if node.op == "call_function" and node.target in targets]


def _replace(graph: torch.fx.Graph, old: Node, out: Node, new: set[Node], keys: tuple[str, ...],
             also: tuple[Node, ...] = ()) -> None:
    """``old`` (and the nodes in ``also``, now unused) replaced by ``out``; the ``new`` nodes take
    ``old``'s ``keys`` of meta (module paths: --keep-float filters match on them; shapes)."""
    for node in new:
        node.meta.update({k: v for k, v in old.meta.items() if k in keys})
    old.replace_all_uses_with(out)
    for node in (old, *also):
        graph.erase_node(node)


def _finish(model: torch.fx.GraphModule, count: int) -> int:
    """After ``count`` rewrites: drop dead nodes, check the graph and regenerate its code."""
    if count:
        model.graph.eliminate_dead_code()
        model.graph.lint()
        model.recompile()
    return count


def _attr(model: torch.nn.Module, target: str):
    value = model
    for part in target.split("."):
        value = getattr(value, part, None)
    return value


def _constant(model: torch.fx.GraphModule, like: Node, value: float) -> Node:
    """A constant of ``like``'s rank (1 x 1 x 1 x 1 for a feature map), as a buffer: litert-torch
    keeps an elementwise op in NHWC only when every input is 4-D (a scalar puts TRANSPOSEs around it)."""
    val = like.meta.get("val")
    rank = val.dim() if isinstance(val, torch.Tensor) else 4
    name = f"_edgeseg_const_{str(value).replace('.', '_')}_{rank}d"
    if not hasattr(model, name):
        model.register_buffer(name, torch.full((1,) * rank, value), persistent=False)
    node = model.graph.get_attr(name)
    node.meta["val"] = torch.full((1,) * rank, value)
    return node


def edgeseg_pt2e_quantizer(keep_float: tuple[str, ...] = ()):
    """A ``PT2EQuantizer`` subclass instance that also annotates the ops above, and leaves the ops
    of the ``keep_float`` layers (export-graph module paths, ``net.backbone.0``) float.

    litert-torch's own per-module settings (``set_module_name``) match nothing on torch.export
    graphs of torch 2.13: their filter expects ``nn_module_stack`` keys of the form
    ``L__self___a_b`` (now ``L__self__module.a.b``) and turns every ``_`` of a name into a dot.
    So the layers are matched here, on the module paths the stack records."""
    from litert_torch.quantize.pt2e_quantizer import PT2EQuantizer

    quantized = _outside(keep_float) if keep_float else None

    class EdgesegPT2EQuantizer(PT2EQuantizer):
        def _annotate_for_static_quantization_config(self, model):
            return self._annotate_all_static_patterns(model, self.global_config, quantized)

        def _annotate_all_static_patterns(self, model, quantization_config, filter_fn=None):
            model = super()._annotate_all_static_patterns(model, quantization_config, filter_fn)
            if quantization_config is not None:
                annotate_activations_and_resizes(model, quantization_config, filter_fn)
            return model

    return EdgesegPT2EQuantizer()


def _outside(layers: tuple[str, ...]):
    """Node filter: True for a node outside every layer of ``layers`` (export-graph paths)."""
    from edgeseg.quantization.layers import in_layers

    def quantized(node: Node) -> bool:
        for path, _ in (node.meta.get("nn_module_stack") or {}).values():
            # the exported module is the TFLite wrapper (_NamedOutputs), whose ``module`` is the graph
            relative = path[len("module."):] if path.startswith("module.") else path
            if in_layers(relative, layers):
                return False
        return True

    return quantized


def annotate_activations_and_resizes(model: torch.fx.GraphModule, config, filter_fn=None) -> int:
    """Annotate every not-yet-annotated op of the two kinds; returns how many were."""
    from litert_torch.quantize.pt2e_quantizer_utils import get_input_act_qspec, get_output_act_qspec
    from torchao.quantization.pt2e.quantizer import QuantizationAnnotation, SharedQuantizationSpec

    input_spec, own_output_spec = get_input_act_qspec(config), get_output_act_qspec(config)
    if input_spec is None:
        return 0
    count = _annotate_add_relu6(model, input_spec, own_output_spec, filter_fn)
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


def _annotate_add_relu6(model: torch.fx.GraphModule, input_spec, output_spec, filter_fn=None) -> int:
    """``relu6(x + c)`` (the decomposed hard-sigmoid) as one int8 ADD with a fused RELU6: no
    observer between the add and the clamp (an int8 tensor there would be requantized to [0, 6]),
    the clamp's output gets its own (its range is [0, 6], not the sum's)."""
    from torchao.quantization.pt2e.quantizer import QuantizationAnnotation, SharedQuantizationSpec

    count = 0
    for clamp in model.graph.nodes:
        if clamp.op != "call_function" or clamp.target not in (torch.ops.aten.hardtanh.default, torch.ops.aten.hardtanh_.default):
            continue
        add = clamp.args[0]
        if (not isinstance(add, Node) or add.target != torch.ops.aten.add.Tensor or len(add.users) != 1
                or _annotated(add) or _annotated(clamp) or (filter_fn is not None and not (filter_fn(add) and filter_fn(clamp)))):
            continue
        sources = [a for a in add.args[:2] if isinstance(a, Node)]
        add.meta["quantization_annotation"] = QuantizationAnnotation(
            input_qspec_map={a: SharedQuantizationSpec(a) if _has_output_spec(a) else input_spec for a in sources},
            _annotated=True,
        )
        clamp.meta["quantization_annotation"] = QuantizationAnnotation(output_qspec=output_spec, _annotated=True)
        count += 1
    return count


def _annotated(node: Node) -> bool:
    annotation = node.meta.get("quantization_annotation")
    return annotation is not None and annotation._annotated


def _has_output_spec(node: Node) -> bool:
    annotation = node.meta.get("quantization_annotation")
    return annotation is not None and annotation._annotated and annotation.output_qspec is not None
