"""OpenVINO backend (``.xml`` + ``.bin``, the pair written side by side by the converter).

The compiled model is shared by every thread; each thread gets its own infer request (requests
keep per-call state), so one session serves several threads at once. ``threads`` sets
``INFERENCE_NUM_THREADS``.

Precision: a file runs at the fastest compute precision it was verified at. The converter runs
every OpenVINO file at f32 and, where the CPU has bf16, at bf16 too, and records in the edgeseg
metadata (``inference_precisions``) which passed the file's gate; the runtime sets
``INFERENCE_PRECISION_HINT`` to the fastest recorded one this device has (bf16 before fp16 before
f32), and f32 for files without the record (older files, int8 files). It must set the hint itself:
OpenVINO ignores precision in rt_info runtime_options, and on CPUs with bf16/fp16 units it would
otherwise lower the precision of any file on its own, so masks would drift from the reference
(fp16 multi-domain LR-ASPP, night domain, bf16: 99.18% of pixels agree, under the 99.5% fp16
gate). ``precision="fp32"``/``"bf16"``/``"fp16"`` forces one; ``backend.inference_precision``
says which runs.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from edgeseg.metadata import METADATA_KEY
from edgeseg.runtime.backend import (
    Backend, TensorInfo, import_backend_library, require_graph_io, undecodable_metadata,
)
from edgeseg.runtime.devices import AUTO, auto_note, parse_device, unavailable_device, unknown_device
from edgeseg.runtime.errors import ConfigError, MetadataError, ModelFileError, ModelFileNotFoundError
from edgeseg.runtime.formats import FORMATS

# load(precision=...) -> OpenVINO INFERENCE_PRECISION_HINT.
PRECISION_HINTS = {"fp32": "f32", "fp16": "f16", "bf16": "bf16"}
# Fastest first: what the runtime picks among the precisions a file records as verified.
FASTEST_FIRST = ("bf16", "fp16", "fp32")
# OPTIMIZATION_CAPABILITIES entry a device lists when it computes at that precision natively.
_CAPABILITY = {"bf16": "BF16", "fp16": "FP16"}


def _info(port) -> TensorInfo:
    shape = tuple(d.get_length() if d.is_static else -1 for d in port.get_partial_shape())
    return TensorInfo(port.get_any_name(), shape, np.dtype(port.get_element_type().to_dtype()))


def _precision_hint(precision: str | None) -> str:
    """The INFERENCE_PRECISION_HINT for ``load(precision=...)`` (None: decided from the file)."""
    if precision is None:
        return "f32"
    if precision not in PRECISION_HINTS:
        raise ConfigError(f"precision={precision!r} is not one of {sorted(PRECISION_HINTS)} for OpenVINO")
    return PRECISION_HINTS[precision]


def recorded_precisions(metadata_json: str | None) -> tuple[str, ...]:
    """The compute precisions the file's edgeseg metadata records as verified (() if none).

    Read leniently: a damaged entry is reported by the metadata check later; here it only means
    nothing is recorded, so the file runs at f32."""
    import json

    try:
        value = json.loads(metadata_json).get("inference_precisions", ()) if metadata_json else ()
    except (ValueError, AttributeError):
        return ()
    return tuple(v for v in value if v in PRECISION_HINTS) if isinstance(value, list) else ()


def pick_precision(recorded: tuple[str, ...], capabilities: list[str]) -> str:
    """The fastest recorded precision the device computes at natively; fp32 otherwise.

    Files without the record run at f32, as the converter verified them. int8 IRs record bf16 only
    when their int8 accuracy gate passed again with the float ops (upsamples, LayerNorm, softmax,
    matmul inputs) at bf16 (edgeseg.quantization.openvino.verified_precisions): their masks drift
    a little there (trained SegFormer-B0 int8 IR, 40 synthetic images: 99.6% of pixels agree with
    its f32 run, 62.43 vs 62.52 mIoU)."""
    for precision in FASTEST_FIRST:
        if precision in recorded and (precision == "fp32" or _CAPABILITY[precision] in capabilities):
            return precision
    return "fp32"


# What ``device="auto"`` tries, best first (then the CPU).
AUTO_ORDER = ("GPU", "NPU")


def _available(core) -> list[str]:
    """``core.available_devices`` as device names (lower case, the CPU first)."""
    names = [d.lower() for d in core.available_devices]
    return sorted(names, key=lambda n: n != "cpu")


def _device(core, device: str | None) -> tuple[str, str]:
    """(the OpenVINO device name to compile for, the note on the choice)."""
    request = parse_device(device)
    if request is None or request.is_cpu:
        return "CPU", ""
    devices = list(core.available_devices)  # "CPU", "GPU", "GPU.0", "GPU.1", "NPU"
    available = _available(core)
    if request.name == AUTO:
        for family in AUTO_ORDER:
            found = [d for d in devices if d.split(".")[0] == family]
            if found:
                return found[0], auto_note(found[0], available)
        return "CPU", auto_note("cpu", available)
    families = {"CPU", "GPU", "NPU"} | {d.split(".")[0] for d in devices}
    name = request.name.upper()
    if name not in families:
        raise unknown_device("OpenVINO", request, ["auto", *sorted(f.lower() for f in families)], available)
    wanted = f"{name}.{request.index}" if request.index is not None else name
    if wanted in devices or (request.index is None and any(d.split(".")[0] == name for d in devices)):
        return wanted, ""
    if request.index == "0" and name in devices:
        return name, ""  # a single GPU is listed as "GPU"
    raise unavailable_device(
        "OpenVINO", request, available, "no such device in ov.Core().available_devices; GPU and NPU need "
        "their drivers (intel-opencl-icd, the NPU driver)",
    )


def _config(core, target: str, threads, hint: str, precision, request) -> dict:
    """Compile config for ``target``: only the properties that device supports (an NPU takes no
    thread count), plus the request's own options."""
    supported = core.get_property(target, "SUPPORTED_PROPERTIES")
    config = {}
    if threads is not None and "INFERENCE_NUM_THREADS" in supported:
        config["INFERENCE_NUM_THREADS"] = threads
    if "INFERENCE_PRECISION_HINT" in supported:
        config["INFERENCE_PRECISION_HINT"] = hint
    elif precision is not None:
        raise ConfigError(f"precision={precision!r}: OpenVINO's {target} takes no precision hint; leave it out")
    if request is not None:
        config.update(request.options)
    return config


def _model_info(model) -> dict[str, str]:
    """OpenVINO Model API's ``model_info`` rt_info as strings ({} when the file has none)."""
    if not model.has_rt_info(["model_info"]):
        return {}
    return {key: str(model.get_rt_info(["model_info", key]).astype(str)) for key in model.get_rt_info()["model_info"]}


def _output_activations(model) -> dict[str, str]:
    """Output name -> "sigmoid"/"softmax" where the output is that op's result (through converts)."""
    found = {}
    for port in model.outputs:
        node = port.get_node().input_value(0).get_node()
        while node.get_type_name() in ("Convert", "FakeQuantize", "Reshape") and node.get_input_size():
            node = node.input_value(0).get_node()
        kind = {"Sigmoid": "sigmoid", "Softmax": "softmax"}.get(node.get_type_name())
        if kind and port.get_names():
            found[port.get_any_name()] = kind
    return found


# Model API resize_type -> ModelMetadata.resize.
_MODEL_API_RESIZE = {"standard": "stretch", "fit_to_window_letterbox": "letterbox"}


def model_info_fields(info: dict[str, str], path: Path) -> dict:
    """ModelMetadata fields from Model API's ``model_info``: labels, mean/scale values (0..255
    pixel range), reverse_input_channels (False: the model takes BGR), resize_type."""

    def floats(key: str) -> tuple[float, ...]:
        try:
            values = tuple(float(v) for v in info[key].split())
        except ValueError as exc:
            raise MetadataError(f"{path}: model_info {key} {info[key]!r} is not a list of numbers") from exc
        if len(values) not in (1, 3):
            raise MetadataError(
                f"{path}: model_info {key} holds {len(values)} values; give 1 or 3 (one per channel), "
                "or override mean/std with load(path, metadata={...})"
            )
        return tuple(float(v) for v in np.broadcast_to(values, 3))

    fields: dict = {}
    if info.get("labels", "").strip() not in ("", "None"):
        fields["classes"] = tuple(info["labels"].split())
    if "mean_values" in info or "scale_values" in info:
        mean = floats("mean_values") if info.get("mean_values", "").strip() else (0.0, 0.0, 0.0)
        scale = floats("scale_values") if info.get("scale_values", "").strip() else (1.0, 1.0, 1.0)
        if any(s <= 0 for s in scale):
            raise MetadataError(f"{path}: model_info scale_values {scale} has a value <= 0")
        fields["mean"] = tuple(m / 255.0 for m in mean)
        fields["std"] = tuple(s / 255.0 for s in scale)
    # Model API is given OpenCV (BGR) frames; without reverse_input_channels the model takes them so.
    if info.get("reverse_input_channels", "False") not in ("True", "YES"):
        fields["extra"] = {"channel_order": "bgr"}
    resize = info.get("resize_type")
    if resize is not None:
        if resize not in _MODEL_API_RESIZE:
            raise MetadataError(
                f"{path}: model_info resize_type {resize!r} has no edgeseg equivalent (stretch = "
                "'standard', letterbox = 'fit_to_window_letterbox'); override it with "
                "load(path, metadata={'resize': 'stretch'})"
            )
        fields["resize"] = _MODEL_API_RESIZE[resize]
    return fields


class OpenVinoBackend(Backend):
    name = "openvino"
    thread_safe = True
    threads_note = "INFERENCE_NUM_THREADS of the compiled OpenVINO model"
    companions = FORMATS["openvino"].companions  # the weights

    def __init__(self, path: Path, *, threads: int | None = None, precision: str | None = None,
                 device: str | None = None):
        hint = _precision_hint(precision)  # a bad value is refused before OpenVINO reads anything
        weights = path.with_suffix(self.companions[0])
        if not weights.is_file():
            raise ModelFileNotFoundError(
                f"{path} needs its weights file {weights.name} beside it, which is missing; "
                "copy the .xml and the .bin together (they are one model)"
            )
        ov = import_backend_library("openvino", "openvino", "OpenVINO")
        self.path = path
        core = ov.Core()
        target, self.device_note = _device(core, device)
        try:
            model = core.read_model(str(path), str(weights))
        except Exception as exc:
            raise ModelFileError(
                f"{path} (+ {weights.name}) could not be read by OpenVINO ({type(exc).__name__}: "
                f"{exc}). The files are truncated, corrupted or do not belong together: convert again"
            ) from exc
        try:
            self._metadata = (
                str(model.get_rt_info([METADATA_KEY]).astype(str)) if model.has_rt_info([METADATA_KEY]) else None
            )
        except UnicodeDecodeError as exc:
            raise undecodable_metadata(path, exc) from exc
        require_graph_io(path, len(model.inputs), len(model.outputs))
        self._model_info = _model_info(model)  # Model API's settings, read when there is no edgeseg entry
        self._activations = _output_activations(model)
        #: The compute precision the file runs at (fp32/bf16/fp16), and why.
        self.inference_precision = precision or "fp32"
        self.precision_note = "asked with precision=" if precision else "no verified precision recorded: fp32"
        if precision is None:
            recorded = recorded_precisions(self._metadata)
            if recorded:
                try:
                    capabilities = list(core.get_property(target, "OPTIMIZATION_CAPABILITIES"))
                except Exception:  # noqa: BLE001 (a device that does not say: no reduced precision)
                    capabilities = []
                self.inference_precision = pick_precision(recorded, capabilities)
                hint = PRECISION_HINTS[self.inference_precision]
                self.precision_note = (f"the fastest of the verified {', '.join(recorded)} that {target} "
                                       "computes at")
        config = _config(core, target, threads, hint, precision, parse_device(device))
        try:
            self._compiled = core.compile_model(model, target, config)
        except Exception as exc:
            if target != "CPU":
                raise unavailable_device(
                    "OpenVINO", parse_device(device), self.available_devices(),
                    f"compiling for {target} failed: {type(exc).__name__}: {exc}",
                ) from exc
            raise ModelFileError(
                f"{path} could not be compiled by OpenVINO for CPU ({type(exc).__name__}: {exc}); "
                "the .bin may be truncated or from another model: convert again"
            ) from exc
        self.device = ", ".join(self._compiled.get_property("EXECUTION_DEVICES")) or target
        self.input_count = len(self._compiled.inputs)
        self.input = _info(self._compiled.inputs[0])
        self.outputs = {info.name: info for info in map(_info, self._compiled.outputs)}
        self._local = threading.local()

    @classmethod
    def available_devices(cls) -> list[str]:
        ov = import_backend_library("openvino", "openvino", "OpenVINO")
        return _available(ov.Core())

    def metadata_json(self) -> str | None:
        return self._metadata

    def declared_metadata(self) -> tuple[dict, str] | None:
        if not self._model_info:
            return None
        return model_info_fields(self._model_info, self.path), "its OpenVINO Model API model_info"

    def output_activation(self, name: str) -> str | None:
        return self._activations.get(name)

    def _request(self):
        request = getattr(self._local, "request", None)
        if request is None:
            request = self._local.request = self._compiled.create_infer_request()
        return request

    def run(self, tensor: np.ndarray) -> dict[str, np.ndarray]:
        request = self._request()
        # share_inputs: the request reads the caller's array in place (no copy of the image);
        # share_outputs: infer() returns views instead of copying every output into arrays that
        # would be discarded (measured +13-20% of the model call on LR-ASPP at 512x512).
        request.infer({0: np.ascontiguousarray(tensor)}, share_inputs=True, share_outputs=True)
        # No copy: these arrays view the request's buffers, which only this thread's next call
        # overwrites, and the session turns them into a mask before it calls again.
        return {name: request.get_output_tensor(i).data for i, name in enumerate(self.outputs)}
