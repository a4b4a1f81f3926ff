"""TFLite (LiteRT) target: litert-torch, fp16 weights via ai-edge-quantizer, metadata buffer.

fp16 is TFLite's "float16 quantization": weights stored as float16 and dequantized to float32
at load (half the file; GPU delegates compute in fp16). The ``image`` input and outputs stay
float32, as the file contract says.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import litert_torch
import numpy as np
import torch
from torch import nn

from edgeseg.metadata import METADATA_KEY
from edgeseg.runtime.tflite_metadata import add_tflite_metadata, read_tflite_metadata

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
    data = add_tflite_metadata(data, {METADATA_KEY: graph.metadata.to_json().encode("utf-8")})
    files[0].write_bytes(data)


def read_metadata(files: tuple[Path, ...]) -> str | None:
    entry = read_tflite_metadata(files[0].read_bytes()).get(METADATA_KEY)
    return entry.decode("utf-8") if entry is not None else None


def load(files: tuple[Path, ...], graph) -> Callable[[np.ndarray], list[np.ndarray]]:
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(files[0]), num_threads=1)
    runner = interpreter.get_signature_runner()

    def run(x: np.ndarray) -> list[np.ndarray]:
        out = runner(**{graph.input_name: x})
        return [out[name] for name in graph.output_names]

    return run
