"""TFLite (LiteRT) target: litert-torch, fp16 weights via ai-edge-quantizer, metadata buffer.

fp16 is TFLite's "float16 quantization": weights stored as float16 and dequantized to float32
at load (half the file; GPU delegates compute in fp16). The ``image`` input and outputs stay
float32, as the file contract says.
"""

from __future__ import annotations

from pathlib import Path

import litert_torch
import torch
from torch import nn

from edgeseg.metadata import METADATA_KEY, ModelMetadata
from edgeseg.runtime.tflite_metadata import (
    STANDARD_KEY,
    StandardMetadata,
    StandardOutput,
    add_associated_files,
    add_tflite_metadata,
    build_standard_metadata,
)

# ai-edge-quantizer recipe: cast the weights of every op that has weights to float16.
FP16_WEIGHTS_RECIPE = [
    {
        "regex": ".*",
        "operation": "*",
        "algorithm_key": "float_casting",
        "op_config": {
            "weight_tensor_config": {"num_bits": 16, "dtype": "FLOAT"},
            "compute_precision": "FLOAT",
            "explicit_dequantize": True,
        },
    }
]


class _NamedOutputs(nn.Module):
    """litert-torch names a signature's outputs after the keys of a returned dict (else
    ``output_0``...), so this returns ``{output name: tensor}``; only the TFLite path needs it."""

    def __init__(self, module: nn.Module, names: tuple[str, ...]) -> None:
        super().__init__()
        self.module = module
        self.names = names

    def forward(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        out = self.module(image)
        outs = (out,) if isinstance(out, torch.Tensor) else out
        return dict(zip(self.names, outs))


def unlowerable_ops(graph) -> list[str]:
    """ATen ops of the graph that litert-torch has no lowering for (asked after a failure).

    litert-torch's own failure for such an op can be an unrelated assertion deep in a pass;
    this check names the op instead. It reads litert-torch internals (decomposition table and
    lowering registry) and is skipped if they move.
    """
    try:
        from litert_torch import fx_infra
        from litert_torch.backend import lowerings
    except ImportError:
        return []
    program = torch.export.export(graph.module, (graph.sample,), strict=False)
    program = program.run_decompositions(fx_infra.decomp.pre_lower_decomp())
    return sorted({
        str(node.target)
        for node in program.graph.nodes
        if node.op == "call_function" and hasattr(node.target, "_schema") and lowerings.lookup(node.target) is None
    })


def export(graph, files: tuple[Path, ...], options) -> None:
    named = _NamedOutputs(graph.module, graph.output_names).eval()
    try:
        converted = litert_torch.convert(named, sample_kwargs={graph.input_name: graph.sample})
    except Exception as exc:
        missing = unlowerable_ops(graph)
        if missing:
            raise RuntimeError(f"LiteRT has no lowering for: {', '.join(missing)}") from exc
        raise
    data = bytes(converted.model_content())
    if options.precision == "fp16":
        from ai_edge_quantizer import quantizer

        data = bytes(quantizer.Quantizer(data, FP16_WEIGHTS_RECIPE).quantize().quantized_model)
    files[0].write_bytes(with_metadata(data, graph.metadata, graph.input_name, graph.output_names))


def standard_metadata(meta: ModelMetadata, input_name: str, output_names: tuple[str, ...]) -> StandardMetadata:
    """The standard TFLite metadata of a file: what MediaPipe's ImageSegmenter and the TFLite Task
    Library read (they never see the "edgeseg" entry). NormalizationOptions are in the input's own
    pixel range: a float input takes ``(pixel - 255 * mean) / (255 * std)``; a uint8 input
    (``include_preprocess``, the TFLite default) takes the pixels as they are (mean 0, std 1)."""
    if meta.include_preprocess:
        # One value for every channel: MediaPipe refuses per-channel normalization.
        mean, std = (0.0,), (1.0,)
    else:
        mean = tuple(255.0 * m for m in meta.mean)
        std = tuple(255.0 * s for s in meta.std)
    domains = [meta.domain_info(d) for d in meta.output_names] if meta.output_names else []
    outputs = []
    for i, name in enumerate(output_names):
        classes = domains[i].classes if domains else meta.classes
        kind = "class mask (uint8 class ids)" if meta.argmax else f"logits, one channel per class ({len(classes)})"
        layout = "(1, H, W)" if meta.argmax else ("(1, H, W, classes)" if meta.layout == "nhwc" else "(1, classes, H, W)")
        labels_file = f"labels_{domains[i].name}.txt" if domains else "labels.txt"
        outputs.append(StandardOutput(name, f"Segmentation {kind}, {layout}.", classes, labels_file))
    h, w = meta.input_size
    return StandardMetadata(
        name=meta.model,
        description=(f"edgeseg semantic segmentation: {meta.model}, {meta.num_classes} classes, {h}x{w} "
                     f"{meta.layout.upper()} RGB input, {meta.precision}."),
        version=meta.edgeseg_version,
        author="edgeseg",
        input_name=input_name,
        color_space="RGB",
        image_size=(h, w),
        mean=mean,
        std=std,
        outputs=tuple(outputs),
        # MediaPipe's confidence masks are then class probabilities (its category mask, the
        # argmax, is the same either way); a class mask output has nothing to activate.
        segmenter_activation="" if meta.argmax else "softmax",
    )


def with_metadata(data: bytes, meta: ModelMetadata, input_name: str, output_names: tuple[str, ...]) -> bytes:
    """The model bytes with edgeseg's own metadata entry, the standard TFLite metadata beside it,
    and the labels files it names appended (every TFLite file edgeseg writes goes through here)."""
    standard = standard_metadata(meta, input_name, output_names)
    data = add_tflite_metadata(data, {
        METADATA_KEY: meta.to_json().encode("utf-8"),
        STANDARD_KEY: build_standard_metadata(standard),
    })
    labels = {out.labels_file: ("\n".join(out.labels) + "\n").encode("utf-8") for out in standard.outputs}
    return add_associated_files(data, labels)
