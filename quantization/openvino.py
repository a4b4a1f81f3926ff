"""OpenVINO int8: NNCF post-training quantization of the OpenVINO model (``nncf.quantize``), or
``nncf.quantize_with_accuracy_control`` with ``--accuracy-control``.

The float model goes through ``torch.export`` and ``ov.convert_model``, as the fp32 target's does;
OpenVINO names each op after its exported node, whose ``nn_module_stack`` gives the module path:
that is how ``--keep-float`` layers become an NNCF ``IgnoredScope``. Preset MIXED: symmetric int8 weights
per channel, asymmetric int8 activations per tensor (the CPU plugin runs both), which is also the
TFLite and ONNX scheme, so one PT2E QAT run (``edgeseg qat``) mirrors all three.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

import nncf
import numpy as np
import openvino as ov
import torch

from edgeseg.converters.openvino import fix_input_shape, set_model_info
from edgeseg.metadata import METADATA_KEY
from edgeseg.quantization.calibration import calibration_inputs
from edgeseg.quantization.gate import gate_int8_file
from edgeseg.quantization.layers import check_layers, graph_path, in_layers, reference_model


def check_options(quant) -> None:
    """The OpenVINO int8 options (``--accuracy-control``) that need more than a value check."""
    if quant.accuracy_control and not quant.labelled:
        from edgeseg.errors import ConfigError

        raise ConfigError(
            f"--accuracy-control scores mIoU on labelled images, and {quant.gate_spec!r} has no masks; "
            "leave --accuracy-control out (the gate then compares int8 with float), or calibrate "
            "on a labelled folder"
        )


def export(graph, files: tuple[Path, ...], options) -> None:
    """Write the int8 IR (.xml + .bin) of ``graph`` after it passes the accuracy gate."""
    quant = options.quant
    net = reference_model(graph, quant.keep_float)
    check_layers(net, quant.keep_float)
    graph.metadata = graph.metadata.replace(extra={**graph.metadata.extra, "quantization": {
        "scheme": "NNCF " + ("quantize_with_accuracy_control" if quant.accuracy_control else "quantize")
        + " (MIXED preset), int8 per-channel symmetric weights, int8 per-tensor asymmetric activations"
        + " (matmul inputs float, their weights int8; so are convolutions over LayerNorm-normalized tokens;"
        + " grouped convolutions other than depthwise float)",
        **quant.describe()}})
    inputs = calibration_inputs(quant.calibration, quant.calib_size, graph.metadata, graph.sample.numpy().dtype)
    model, modules = float_model(graph)
    quantized = quantize_model(model, modules, inputs, ignored_layers=quant.keep_float,
                               accuracy_control=quant.accuracy_control, net=net, options=quant)
    # NNCF leaves some layers float on purpose (SE blocks are in its ignored patterns) and MatMuls
    # keep float activations (FLOAT_ACTIVATION_TYPES): their weights still get int8 storage
    # (weight-only, per channel), or they would be most of the file.
    kept = {"ignored_scope": ignored_scope(quant.keep_float, modules)} if quant.keep_float else {}
    quantized = nncf.compress_weights(quantized, mode=nncf.CompressWeightsMode.INT8_SYM, **kept)
    set_model_info(quantized, graph.metadata)
    xml, bin_ = files
    with tempfile.TemporaryDirectory(dir=xml.parent, prefix=".int8-") as scratch:
        path = Path(scratch) / "model.xml"
        graph.metadata = graph.metadata.replace(inference_precisions=("fp32",))
        _save(quantized, path, graph.metadata)
        graph.gate = gate_int8_file(path, net, quant, graph.metadata.input_size)
        graph.metadata = verified_precisions(quantized, path, net, quant, graph.metadata)
        _save(quantized, path, graph.metadata)
        os.replace(path, xml)
        os.replace(path.with_suffix(".bin"), bin_)


def _save(model: ov.Model, path: Path, meta) -> None:
    model.set_rt_info(meta.to_json(), [METADATA_KEY])
    ov.save_model(model, str(path), compress_to_fp16=False)


def verified_precisions(model: ov.Model, path: Path, net, quant, meta):
    """``meta`` with the compute precisions the int8 IR's float ops passed the int8 gate at: f32
    (the gate that just ran) and bf16 where the CPU has it and the same gate passes there too.

    The int8 IR's float ops (upsamples, LayerNorm, softmax, matmul inputs) then run at bf16: on an
    AMX-BF16 CPU, LR-ASPP-L 512x512 took 55.2 instead of 63.3 ms (1 thread,
    benchmarks/results/int8_profile.md); a file whose masks drift past the gate at bf16 keeps f32.
    The runtime reads the record (edgeseg.runtime.openvino.pick_precision)."""
    from edgeseg.converters.openvino import REDUCED_PRECISIONS
    from edgeseg.quantization.errors import AccuracyGateError

    capabilities = ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    passed, checks = ["fp32"], {}
    for precision, capability in REDUCED_PRECISIONS.items():
        if capability not in capabilities:
            continue
        # The gate loads the file through the runtime, which runs it at its fastest recorded precision.
        _save(model, path, meta.replace(inference_precisions=("fp32", precision)))
        try:
            report = gate_int8_file(path, net, quant, meta.input_size)
        except AccuracyGateError as exc:
            checks[precision] = f"failed the int8 gate: {str(exc)[:200]}"
            continue
        checks[precision] = {"agreement": report.agreement,
                             "int8_miou": min(report.int8_miou.values()) if report.int8_miou else None}
        passed.append(precision)
    extra = {**meta.extra, "precision_checks": checks} if checks else meta.extra
    return meta.replace(inference_precisions=tuple(passed), extra=extra)


def float_model(graph) -> tuple[ov.Model, dict[str, str]]:
    """The float graph through torch.export, as the fp32 target converts it, and the module path of
    each exported node: OpenVINO names an op after its node ("convolution_23/aten.convolution...").

    Not the TorchScript frontend (whose op names carry module paths): it keeps attention as one
    ScaledDotProductAttention op, and the int8 SegFormer-B0 built from it ran at 0.75-0.79x of
    fp32 against 0.49x from this graph (matmul + softmax), same accuracy."""
    with torch.no_grad():
        program = torch.export.export(graph.module, (graph.sample,), strict=False)
    modules = {node.name: _module_path(node) for node in program.graph.nodes}
    model = ov.convert_model(program)
    fix_input_shape(model, graph)
    model.inputs[0].get_tensor().set_names({graph.input_name})
    for port, name in zip(model.outputs, graph.output_names):
        port.get_tensor().set_names({name})
    return model, modules


def _module_path(node) -> str:
    stack = node.meta.get("nn_module_stack") or {}
    return list(stack.values())[-1][0] if stack else ""


# Op types whose activations stay float (their weights still get int8 storage from
# compress_weights). MatMul: SegFormer-B0's linear and attention matmuls with int8 activations lost
# 3.3-4.9 mIoU points (trained, 128x256: 63.5 -> 60.2 on 50 held-out images, 64.2 -> 59.3 on 100)
# and ran slower (0.69x of fp32) than with float activations and int8 weights (63.46 mIoU, 0.49x,
# 29.7% size). Leaving only the 16 attention matmuls float did not help (59.8): the linears' inputs
# are the sensitive ones. Convolutions (all of LR-ASPP/MobileNetV3) are unaffected.
FLOAT_ACTIVATION_TYPES = ["MatMul"]


def ignored_scope(layers: tuple[str, ...], modules: dict[str, str], types: list[str] | None = None,
                  names: list[str] | None = None):
    """NNCF scope of the ops from the exported nodes inside ``layers`` (and of ``types``, and the
    ops called ``names``)."""
    import nncf

    paths = tuple(map(graph_path, layers))
    inside = [name for name, path in modules.items() if path and in_layers(path, paths)]
    patterns = [rf"^{re.escape(name)}/.*" for name in inside]
    return nncf.IgnoredScope(names=names or [], patterns=patterns, types=types or [], validate=False)


def expanding_group_convs(model: ov.Model) -> list[str]:
    """Names of the grouped convolutions other than plain depthwise ones (more than one input or
    output channel per group): their inputs stay float, as ONNX's do (``onnx.slow_int8_convs``).

    Mobile-Former's 3x3 depthwise convolutions that also expand the channels (2-6 outputs per
    group) lost its QAT int8 IR 2.66 mIoU points (100 held-out images, 128x256). Asked for 0.5,
    NNCF's accuracy control put back to float exactly two of them (12 -> 72 and 16 -> 96 channels,
    at 1/2 and 1/4 of the input), and nothing else of 258 quantized ops. All nine float: -0.14
    points, and the IR ran faster (1.55x -> 1.39x of fp32, one run; the CPU plugin ran them with
    its generic jit_gemm_I8 kernel, benchmarks/results/int8_profile.md). LR-ASPP and SegFormer
    have plain depthwise convolutions only."""
    names = []
    for op in model.get_ordered_ops():
        if op.get_type_name() != "GroupConvolution":
            continue
        weight = op.input(1).get_partial_shape()  # groups, outputs per group, inputs per group, kh, kw
        if weight.is_static and (weight[1].get_length() > 1 or weight[2].get_length() > 1):
            names.append(op.get_friendly_name())
    return names


LAYOUT_TYPES = {"Reshape", "Transpose", "Squeeze", "Unsqueeze"}


def _is_layer_norm(node) -> bool:
    """``node`` ends a LayerNorm as ov.convert_model writes it: MVN -> Multiply (gamma) -> Add (beta),
    or MVN alone (no affine), or MVN -> Multiply."""
    for expected in ("Add", "Multiply"):
        if node.get_type_name() == expected:
            node = node.input_value(0).get_node()
    return node.get_type_name() == "MVN"


def token_convs(model: ov.Model) -> list[str]:
    """Names of the convolutions that read LayerNorm-normalized tokens (through reshapes and
    transposes only): a Linear layer over patches of them, so their inputs stay float like the
    matmuls' (FLOAT_ACTIVATION_TYPES).

    SegFormer-B0 has 13 (the attention's spatial reductions, kernel = stride = 8, 4, 2; the patch
    embeddings of stages 2-4; the decoder's projections). Its int8 IR lost 0.6 mIoU to them: PTQ
    64.02 against float 64.65 on 100 held-out images (128x256, 1500-step checkpoint); 64.52 with
    their inputs float, at the same speed (one round-robin run, within its noise). The spatial
    reductions alone give 64.53: they are the sensitive ones. Float inputs for the RGB stem, or
    for the patch embeddings or projections alone, gained nothing (64.0 to 64.1). Per-tensor
    activation scales do not fit LayerNorm outputs, whose few outlier channels set the range (why
    matmul inputs stay float too). ONNX Runtime's and LiteRT's PTQ of the same checkpoint keep
    them int8 within 0.2 points.
    """
    names = []
    for op in model.get_ordered_ops():
        if op.get_type_name() != "Convolution":
            continue
        node = op.input_value(0).get_node()
        while node.get_type_name() in LAYOUT_TYPES:
            node = node.input_value(0).get_node()
        if _is_layer_norm(node):
            names.append(op.get_friendly_name())
    return names


def quantize_model(model: ov.Model, modules: dict[str, str], inputs: list[np.ndarray], *, ignored_layers=(),
                   accuracy_control=False, net=None, options=None) -> ov.Model:
    import nncf

    dataset = nncf.Dataset(inputs)
    common = {"subset_size": len(inputs), "preset": nncf.QuantizationPreset.MIXED,
              "ignored_scope": ignored_scope(tuple(ignored_layers), modules, FLOAT_ACTIVATION_TYPES,
                                            expanding_group_convs(model) + token_convs(model))}
    if not accuracy_control:
        return nncf.quantize(model, dataset, **common)
    validation = _validation(net, options)
    return nncf.quantize_with_accuracy_control(
        model, dataset, nncf.Dataset(validation.items), validation.miou,
        max_drop=options.max_miou_drop / 100.0, drop_type=nncf.DropType.ABSOLUTE, **common,
    )


class _MiouOnLabels:
    """nncf's validation_fn: mIoU (0..1) of a compiled model on labelled graph inputs."""

    def __init__(self, items: list[tuple[np.ndarray, np.ndarray]], num_classes: int) -> None:
        self.items = items
        self.num_classes = num_classes

    def miou(self, compiled, data) -> float:
        from edgeseg.metrics import ConfusionMatrix

        matrix = ConfusionMatrix(self.num_classes)
        output = compiled.output(0)
        for x, label in data:
            matrix.update(np.asarray(compiled(x)[output]).argmax(1)[0], label)
        miou = matrix.scores().miou
        return 0.0 if np.isnan(miou) else miou


def _validation(net, options) -> _MiouOnLabels:
    """Labelled graph inputs at model size from the gate data, for accuracy control."""
    from edgeseg.quantization.calibration import labelled_inputs

    items = labelled_inputs(options.gate_spec, options.gate_images, net.metadata)
    return _MiouOnLabels(items, len(net.metadata.classes))
