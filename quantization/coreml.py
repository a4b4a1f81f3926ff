"""CoreML int8: W8A8 with coremltools.optimize.torch (activations calibrated in PyTorch, since
CoreML models run only on macOS), or the cheaper weight-only options on the converted model:
int8 linear weights (``--coreml-mode weights``) or an 8-bit k-means palette (``palette``).

W8A8: ``LinearQuantizer`` with observers only (no training steps) on the calibration images,
``finalize`` (BN folded into the convs), TorchScript trace, ``ct.convert`` to an iOS 17 ML
Program whose quantize/dequantize pairs CoreML runs as int8 on the Neural Engine. The same
quantizer, with milestones that train, is the CoreML QAT scheme (:func:`prepare_qat`).
Off macOS the file cannot be run, so the accuracy gate reports "cannot run here".
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import replace
from pathlib import Path

import coremltools as ct
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from edgeseg.converters.coreml import MIN_TARGET
from edgeseg.converters.coreml import describe, input_types, mark_input_kind
from edgeseg.converters.coreml import export as export_float
from edgeseg.quantization.calibration import calibration_inputs
from edgeseg.quantization.errors import QuantizationError
from edgeseg.quantization.gate import gate_int8_file
from edgeseg.quantization.layers import check_layers, graph_path, reference_model

SCHEMES = {
    "w8a8": "coremltools.optimize.torch LinearQuantizer W8A8 (symmetric int8 per-channel weights, int8 activations)",
    "weights": "coremltools linear_quantize_weights (int8 per-channel weights, fp16 compute)",
    "palette": "coremltools palettize_weights (8-bit k-means lookup table)",
}


def quantizer_config(keep_float: tuple[str, ...], *, qat_steps: int = 0):
    """LinearQuantizer config: observers from step 0, fake quant on, BN frozen after ``qat_steps``
    (0 = calibration only: observers see the images, no weight changes)."""
    from coremltools.optimize.torch.quantization import LinearQuantizerConfig, ModuleLinearQuantizerConfig

    global_config = ModuleLinearQuantizerConfig(
        quantization_scheme="symmetric",
        # milestones: [observers on, fake quant on, observers frozen, BN statistics frozen]
        milestones=[0, 0, max(qat_steps, 1) * 10_000, qat_steps],
    )
    return LinearQuantizerConfig(global_config=global_config,
                                 module_name_configs={graph_path(layer): None for layer in keep_float})


class FxTraceable(nn.Module):
    """The network's forward without its Python input checks, which torch.fx (what
    LinearQuantizer traces with) refuses: encoder -> decoder -> upsample to a fixed size."""

    def __init__(self, net: nn.Module, size: tuple[int, int]) -> None:
        super().__init__()
        self.net = net
        self.size = tuple(size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.net.decoder(self.net.encoder(x))
        return F.interpolate(logits, size=self.size, mode="bilinear", align_corners=False)


def prepare(net: nn.Module, size: tuple[int, int], sample: torch.Tensor, keep_float: tuple[str, ...], *, qat_steps: int = 0):
    """LinearQuantizer on the float network: (module with fake quantization, quantizer)."""
    from coremltools.optimize.torch.quantization import LinearQuantizer

    quantizer = LinearQuantizer(FxTraceable(net, size), quantizer_config(keep_float, qat_steps=qat_steps))
    try:
        prepared = quantizer.prepare(example_inputs=(sample,), inplace=False)
    except Exception as exc:  # torch.fx cannot trace the encoder (SegFormer's attention reshapes)
        raise QuantizationError(
            f"coremltools' LinearQuantizer cannot trace {type(net).__name__} with torch.fx "
            f"({type(exc).__name__}: {str(exc)[:200]}); use --coreml-mode weights or palette "
            "(weight-only, no tracing), or another target for full int8"
        ) from exc
    quantizer.step()
    return prepared, quantizer


def calibrate_w8a8(graph, keep_float: tuple[str, ...], inputs: list[np.ndarray]) -> nn.Module:
    """The export graph with its network replaced by the calibrated, finalized W8A8 network."""
    from edgeseg.converters.wrapper import ExportWrapper

    net = graph.module.net
    sample = torch.from_numpy(inputs[0])
    prepared, quantizer = prepare(net, graph.metadata.input_size, sample, keep_float)
    prepared.train()  # observers record in training mode; no optimizer step changes a weight
    freeze_batchnorm(prepared)
    with torch.no_grad():
        for x in inputs:
            prepared(torch.from_numpy(x))
    prepared.eval()
    quantized = quantizer.finalize(prepared, inplace=False)
    return ExportWrapper(quantized, graph.metadata).eval()


def freeze_batchnorm(module: nn.Module) -> None:
    """BN in eval mode: calibration images must not move the trained running statistics."""
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()


def export(graph, files: tuple[Path, ...], options) -> None:
    quant = options.quant
    mark_input_kind(graph, options)
    net = reference_model(graph, quant.keep_float)
    check_layers(net, quant.keep_float)
    graph.metadata = graph.metadata.replace(extra={**graph.metadata.extra, "quantization": {
        "scheme": SCHEMES[quant.coreml_mode], "coreml_mode": quant.coreml_mode, **quant.describe()}})
    with tempfile.TemporaryDirectory(dir=files[0].parent, prefix=".int8-") as scratch:
        package = Path(scratch) / "model.mlpackage"
        if quant.coreml_mode == "w8a8":
            inputs = calibration_inputs(quant.calibration, quant.calib_size, graph.metadata, graph.sample.numpy().dtype)
            model = convert_traced(calibrate_w8a8(graph, quant.keep_float, inputs), graph)
        else:
            export_float(graph, (package,), replace(options, precision="fp32"))
            model = _compress_weights(package, quant.coreml_mode)
        _save(model, graph, package)
        # off macOS: "cannot run here", said in the report
        graph.gate = gate_int8_file(package, net, quant, graph.metadata.input_size)
        shutil.rmtree(files[0], ignore_errors=True)
        package.rename(files[0])


def convert_traced(quantized: nn.Module, graph):
    """A fake-quantized PyTorch graph -> CoreML ML Program (quantize/dequantize ops kept)."""
    out_dtype = np.int32 if graph.metadata.argmax else np.float32
    try:
        with torch.no_grad():
            traced = torch.jit.trace(quantized.eval(), graph.sample)
        return ct.convert(
            traced,
            inputs=input_types(graph),
            outputs=[ct.TensorType(name=name, dtype=out_dtype) for name in graph.output_names],
            convert_to="mlprogram", minimum_deployment_target=MIN_TARGET, skip_model_load=True,
        )
    except Exception as exc:  # Mobile-Former: the frontend fails on `int` of a traced shape
        raise QuantizationError(
            f"coremltools could not convert the W8A8 (int8 activations) network of {graph.metadata.model} "
            f"({type(exc).__name__}: {str(exc)[:200]}); --coreml-mode weights or palette (int8 weights "
            "of the float CoreML file, which converts) works for it, or use another target for int8 "
            "activations"
        ) from exc


def _compress_weights(path: Path, mode: str):
    from coremltools.optimize import coreml as cto

    model = ct.models.MLModel(str(path), skip_model_load=True)
    if mode == "weights":
        config = cto.OptimizationConfig(global_config=cto.OpLinearQuantizerConfig(mode="linear_symmetric", dtype="int8"))
        model = cto.linear_quantize_weights(model, config)
    else:
        config = cto.OptimizationConfig(global_config=cto.OpPalettizerConfig(nbits=8, mode="kmeans"))
        model = cto.palettize_weights(model, config)
    return model


def _save(model, graph, package: Path) -> None:
    describe(model, graph.metadata, "int8")
    staged = package.with_name("staged.mlpackage")  # the float export may already sit at package
    model.save(str(staged))
    shutil.rmtree(package, ignore_errors=True)
    staged.rename(package)
