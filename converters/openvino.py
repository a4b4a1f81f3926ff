"""OpenVINO target: torch.export -> openvino.convert_model -> IR (.xml + .bin), rt_info metadata.

fp16 stores the weights as float16 (``compress_to_fp16``); the CPU plugin still computes at the
precision asked at compile time, so verification pins ``INFERENCE_PRECISION_HINT`` to f32 and
the fidelity benchmark also measures the CPU default (bf16 on CPUs with AMX/AVX512-BF16).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import openvino as ov
import torch

from edgeseg.metadata import METADATA_KEY


def export(graph, files: tuple[Path, ...], options) -> None:
    program = torch.export.export(graph.module, (graph.sample,), strict=False)
    model = ov.convert_model(program)
    fix_input_shape(model, graph)
    model.inputs[0].get_tensor().set_names({graph.input_name})
    for port, name in zip(model.outputs, graph.output_names):
        port.get_tensor().set_names({name})
    set_model_info(model, graph.metadata)
    xml, bin_ = files
    # save_model names the .bin after the .xml; the atomic temp names differ, so save in a
    # scratch folder beside them and move each file onto its temp path. The pid in its name lets
    # the next run remove it if this one is killed (edgeseg.fileio.remove_stale_temporaries).
    with tempfile.TemporaryDirectory(dir=xml.parent, prefix=f".ov-{os.getpid()}-") as scratch:
        fp16 = options.precision == "fp16"
        # The saved weights (fp16 rounded) are checked at the reduced compute precisions, then
        # the record of what passed goes into the metadata and the file is saved again with it.
        ov.save_model(model, str(Path(scratch) / "model.xml"), compress_to_fp16=fp16)
        graph.metadata = record_precisions(Path(scratch) / "model.xml", graph)
        model.set_rt_info(graph.metadata.to_json(), [METADATA_KEY])
        ov.save_model(model, str(Path(scratch) / "model.xml"), compress_to_fp16=fp16)
        os.replace(Path(scratch) / "model.xml", xml)
        os.replace(Path(scratch) / "model.bin", bin_)


# Compute precisions below f32 the converter checks, with the OPTIMIZATION_CAPABILITIES entry a CPU
# lists when it has them natively (OpenVINO's CPU plugin emulates nothing slower on purpose).
REDUCED_PRECISIONS = {"bf16": "BF16"}


def record_precisions(xml: Path, graph):
    """``graph.metadata`` with ``inference_precisions``: fp32 (the conversion's own check runs
    there) plus every reduced compute precision this CPU has at which the saved file passes the
    16-bit float gate against PyTorch (``TOLERANCES["fp16"]``: >= 99.5% of pixels of the sample
    images keep PyTorch's class; fp16 files are held to it at f32 already). The measured agreement
    goes to ``extra["precision_checks"]``. int8 files (written by edgeseg.quantization) record
    nothing: their accuracy gate ran at f32."""
    from edgeseg.converters.verify import TOLERANCES, compare_outputs, graph_input, sample_images
    from edgeseg.runtime.openvino import OpenVinoBackend

    meta = graph.metadata
    if meta.precision not in ("fp32", "fp16"):
        return meta
    core = ov.Core()
    capabilities = core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    passed, checks = ["fp32"], {}
    inputs = [graph_input(image, meta) for image in sample_images(*meta.input_size)]
    reference = None
    for precision, capability in REDUCED_PRECISIONS.items():
        if capability not in capabilities:
            continue
        if reference is None:
            with torch.no_grad():
                outs = [graph.module(torch.from_numpy(x)) for x in inputs]
            reference = [[o.numpy()] if isinstance(o, torch.Tensor) else [t.numpy() for t in o] for o in outs]
        # The runtime's own backend (the code that ships) at that precision; the file has no
        # edgeseg metadata yet, so the backend class is used without the loader's metadata step.
        backend = OpenVinoBackend(xml, threads=1, precision=precision)
        got = [[np.array(out) for out in backend.run(x).values()] for x in inputs]
        agreement = min(c.agreement for c in compare_outputs(reference, got, graph.output_names, meta))
        checks[precision] = round(agreement, 6)
        if agreement >= TOLERANCES["fp16"].min_agreement:
            passed.append(precision)
    extra = {**meta.extra, "precision_checks": checks} if checks else meta.extra
    return meta.replace(inference_precisions=tuple(passed), extra=extra)


# OpenVINO Model API (``openvino-model-api``) reads its wrapper's settings from rt_info/model_info.
MODEL_INFO_KEY = "model_info"
_MODEL_API_RESIZE = {"stretch": "standard", "letterbox": "fit_to_window_letterbox"}


def model_info(meta) -> dict[str, str]:
    """The ``model_info`` rt_info that makes ``model_api.models.Model.create_model(xml)`` a
    SegmentationModel with the file's own preprocessing: Model API resizes and normalizes inside
    the compiled model (mean/scale in the 0..255 pixel range), takes OpenCV's BGR frames
    (``reverse_input_channels``: edgeseg models take RGB), takes the argmax and resizes the mask
    to the image. Its labels are one whitespace-separated list, so spaces in class names become
    ``_``."""
    info = {
        "model_type": "Segmentation",
        "labels": " ".join(c.replace(" ", "_") for c in meta.classes),
        "reverse_input_channels": "True",
        "resize_type": _MODEL_API_RESIZE[meta.resize],
        "interpolation_mode": "LINEAR",
        "blur_strength": "-1",  # argmax as is: no smoothing, no confidence threshold
        "soft_threshold": "-inf",
    }
    if not meta.include_preprocess:
        info["mean_values"] = " ".join(f"{255.0 * m:.6g}" for m in meta.mean)
        info["scale_values"] = " ".join(f"{255.0 * s:.6g}" for s in meta.std)
    if meta.resize == "letterbox":
        info["pad_value"] = str(round(255.0 * sum(meta.mean) / 3))
    return info


def fix_input_shape(model: ov.Model, graph) -> None:
    """The image input at the exported size: ``convert_model`` of an ExportedProgram leaves it
    dynamic ``[?,?,?,?]``, and consumers that adapt to the input (Model API embeds its resize
    only for a static input, else reshapes the model to each image) would run it at other sizes."""
    model.reshape({model.inputs[0]: ov.PartialShape(list(graph.sample.shape))})


def set_model_info(model: ov.Model, meta) -> None:
    for key, value in model_info(meta).items():
        model.set_rt_info(value, [MODEL_INFO_KEY, key])


def default_cpu_precision() -> str:
    """The CPU plugin's default inference precision on this machine (f32, bf16 or f16)."""
    value = ov.Core().get_property("CPU", "INFERENCE_PRECISION_HINT")
    return value.to_string() if hasattr(value, "to_string") else str(value)
