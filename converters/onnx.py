"""ONNX target: torch.onnx dynamo exporter -> onnx.checker -> onnxslim, metadata in metadata_props.

fp16 converts weights and compute to float16 but keeps the float32 ``image`` input and float
outputs (``keep_io_types``), as the file contract says.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import onnxslim
import torch

from edgeseg.metadata import METADATA_KEY

# The exporter's default; every runtime we target (onnxruntime >= 1.20, OpenCV, TensorRT) reads it.
OPSET = 18


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
        from onnxruntime.transformers.float16 import convert_float_to_float16

        # keep_io_types leaves the graph's Cast nodes out of order; slimming sorts them again.
        model = onnxslim.slim(convert_float_to_float16(model, keep_io_types=True))
    entry = model.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, graph.metadata.to_json()
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(files[0]))


def read_metadata(files: tuple[Path, ...]) -> str | None:
    model = onnx.load(str(files[0]), load_external_data=False)
    return next((p.value for p in model.metadata_props if p.key == METADATA_KEY), None)


def load(files: tuple[Path, ...], graph) -> Callable[[np.ndarray], list[np.ndarray]]:
    import onnxruntime as ort

    settings = ort.SessionOptions()
    settings.intra_op_num_threads = 1  # verification is small; leave the cores to others
    session = ort.InferenceSession(str(files[0]), settings, providers=["CPUExecutionProvider"])
    names = list(graph.output_names)
    return lambda x: session.run(names, {graph.input_name: x})
