"""CoreML backend (``.mlpackage`` directory or ``.mlmodel``). CoreML models run only on macOS
(Apple's framework does the work; coremltools on Linux can convert but not predict), so on any
other system ``load`` raises :class:`BackendUnavailableError` instead of pretending.

``MLModel.predict`` is documented by Apple as safe to call from several threads. ``threads``
has no CoreML equivalent (the framework schedules CPU/GPU/Neural Engine itself): ``threads=1``
restricts it to the CPU (``ComputeUnit.CPU_ONLY``), any other value is refused.
"""

from __future__ import annotations

import platform
from pathlib import Path

import numpy as np

from edgeseg.metadata import METADATA_KEY
from edgeseg.runtime.backend import Backend, TensorInfo, import_backend_library, refuse_precision
from edgeseg.runtime.errors import BackendUnavailableError, ConfigError, ModelFileError

# CoreML multi-array data types (FeatureTypes_pb2.ArrayFeatureType) -> numpy.
_ARRAY_DTYPES = {65568: np.float32, 65600: np.float64, 65552: np.float16, 131104: np.int32}


def _info(feature) -> TensorInfo:
    kind = feature.type.WhichOneof("Type")
    if kind == "multiArrayType":
        array = feature.type.multiArrayType
        dtype = np.dtype(_ARRAY_DTYPES.get(array.dataType, np.float32))
        return TensorInfo(feature.name, tuple(int(d) for d in array.shape), dtype)
    if kind == "imageType":
        image = feature.type.imageType
        return TensorInfo(feature.name, (1, 3, int(image.height), int(image.width)), np.dtype(np.uint8))
    raise ModelFileError(f"CoreML feature {feature.name!r} has type {kind}, not an array or image")


# load(device=...) -> CoreML compute units; CoreML itself places each op on them.
COMPUTE_UNITS = {"cpu": "CPU_ONLY", "gpu": "CPU_AND_GPU", "ane": "CPU_AND_NE", "npu": "CPU_AND_NE", "auto": "ALL"}


def _compute_units(ct, threads: int | None, device: str | None):
    from edgeseg.runtime.devices import parse_device, unknown_device

    request = parse_device(device)
    if request is None:
        return ct.ComputeUnit.CPU_ONLY if threads == 1 else ct.ComputeUnit.ALL
    name = COMPUTE_UNITS.get(request.name) if request.index is None else None
    if name is None:
        raise unknown_device("CoreML", request, list(COMPUTE_UNITS), list(COMPUTE_UNITS))
    return getattr(ct.ComputeUnit, name)


class CoremlBackend(Backend):
    name = "coreml"
    thread_safe = True
    threads_note = "threads=1 restricts CoreML to the CPU; CoreML schedules its own threads"

    def __init__(self, path: Path, *, threads: int | None = None, precision: str | None = None,
                 device: str | None = None):
        if platform.system() != "Darwin":
            raise BackendUnavailableError(
                f"{path} is a CoreML model, and CoreML models only run on macOS (this is "
                f"{platform.system()}). Run it on a Mac or iPhone, or convert the model to ONNX, "
                "TFLite or OpenVINO to run it here"
            )
        refuse_precision(self.name, precision)
        if threads not in (None, 1):
            raise ConfigError(
                f"threads={threads}: CoreML chooses its own threads; give threads=1 (CPU only) or leave it out"
            )
        ct = import_backend_library("coremltools", "coreml", "CoreML")
        units = _compute_units(ct, threads, device)
        self.device = f"ComputeUnit.{units.name}"
        try:
            self._model = ct.models.MLModel(str(path), compute_units=units)
        except Exception as exc:
            raise ModelFileError(
                f"{path} could not be loaded by CoreML ({type(exc).__name__}: {exc}); convert it again"
            ) from exc
        self.path = path
        description = self._model.get_spec().description
        self.input_count = len(description.input)
        self.input = _info(description.input[0])
        self.outputs = {f.name: _info(f) for f in description.output}
        # An ImageType input (edgeseg's default) takes a picture, not an array: Vision hands it a
        # CVPixelBuffer, coremltools on macOS a PIL image.
        self._image_input = description.input[0].type.WhichOneof("Type") == "imageType"

    def metadata_json(self) -> str | None:
        return self._model.user_defined_metadata.get(METADATA_KEY)

    def run(self, tensor: np.ndarray) -> dict[str, np.ndarray]:
        if self._image_input:
            from PIL import Image

            tensor = Image.fromarray(np.ascontiguousarray(tensor[0].transpose(1, 2, 0)), "RGB")
        result = self._model.predict({self.input.name: tensor})
        return {name: np.asarray(result[name]) for name in self.outputs}
